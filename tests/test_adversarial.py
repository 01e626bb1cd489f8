"""The trust audit, item by item: malicious and corrupt files, careless flags and configs,
extreme numbers, empty inputs. Every case either works correctly or fails with one clear
line (exit code 2 on the command line) -- never a traceback, a silent wrong number, or lost
results. (Output-folder races and signals: tests/test_outputs.py and tests/test_cli.py.)"""

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import imcsim
from crossbar_models import ADC, WireModel, solve_currents
from imcsim import CrossbarConv2d, CrossbarLinear, HardwareConfig, InputSpec
from imcsim.checkpoints import load_checkpoint, save_checkpoint
from imcsim.cost import Technology, analytical_estimate, estimate, layer_specs
from imcsim.datasets import read_idx
from imcsim.dynamic import exit_decisions, run_dynamic
from imcsim.errors import ConfigError, DataError
from imcsim.training import accuracy, predict_logits

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-test"


def cli(*args, cwd=None, timeout=600):
    r = subprocess.run([sys.executable, "-m", "imcsim", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, cwd=cwd)
    return r


def one_line_error(r, match):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    """A tiny SNN checkpoint on the embedded digits."""
    d = tmp_path_factory.mktemp("adv")
    torch.manual_seed(0)
    net = imcsim.mlp(in_shape=(1, 8, 8), hidden=(16,), kind="snn", timesteps=2)
    save_checkpoint(d / "snn.pt", net, dataset="digits", data_dir=None, holdout=40, n_train=200, n_test=60)
    return d / "snn.pt"


# ------------------------------------------------------------------------------ critical: checkpoints are data


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write_pickle(path, obj):
    with open(path, "wb") as f:
        torch.save(obj, f)


def test_a_malicious_checkpoint_never_runs_its_payload(tmp_path, ck):
    marker = tmp_path / "PWNED"
    bad = tmp_path / "evil.pt"
    _write_pickle(bad, {"format": "imcsim-checkpoint-2", "arch": {"name": "mlp"}, "state_dict": {},
                        "meta": Payload(marker)})
    with pytest.raises(ConfigError, match="holds Python objects.*never runs code"):
        load_checkpoint(bad)
    assert not marker.exists()
    for cmd in (["evaluate", "--checkpoint", bad], ["energy", "--checkpoint", bad],
                ["compare", "--snn", bad, "--qnn", bad]):
        r = cli(*cmd, "--quiet", "--out", tmp_path / "o")
        one_line_error(r, "never runs code")
        assert not marker.exists()
    raw = tmp_path / "raw.pt"  # a bare pickle, not even torch's zip format
    raw.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ConfigError):
        load_checkpoint(raw)
    assert not marker.exists()


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.pop("arch"), "'arch' must be a dict"),
    (lambda c: c.update(arch=None), "'arch' must be a dict"),
    (lambda c: c.update(meta=[1, 2]), "'meta' must be a dict"),
    (lambda c: c["arch"].update(colour="red"), "has no parameter 'colour'"),
    (lambda c: c.update(state_dict={}), "'state_dict' must be a non-empty dict"),
    (lambda c: c["state_dict"].pop(next(iter(c["state_dict"]))), "weights do not match"),
    (lambda c: c["state_dict"].update({"body.1.weight": torch.zeros(3, 3)}), "weights do not match"),
    (lambda c: c.update(format="other"), "is not an imcsim checkpoint"),
])
def test_malformed_checkpoints_name_what_is_wrong(tmp_path, ck, edit, match):
    c = torch.load(ck, weights_only=True)
    edit(c)
    p = tmp_path / "x.pt"
    _write_pickle(p, c)
    with pytest.raises(ConfigError, match=match):
        load_checkpoint(p)
    r = cli("evaluate", "--checkpoint", p, "--quiet", "--out", tmp_path / "o")
    one_line_error(r, match.replace("\\", ""))


# ------------------------------------------------------------------------------ reproducibility


@pytest.fixture(scope="module")
def chip():
    torch.manual_seed(0)
    net = imcsim.convnet(in_shape=(1, 8, 8), channels=(6,), hidden=16, kind="snn", timesteps=3).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(3.0)
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    return imcsim.convert(net, HardwareConfig.preset("rram"), calibration=x), x


def test_results_do_not_depend_on_the_batch_size(chip):
    model, x = chip
    out = [predict_logits(model, x, batch_size=b) for b in (1, 7, 40)]
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_dynamic_exits_equal_the_pure_rule_with_read_noise(chip):
    model, x = chip
    logits = predict_logits(model, x)
    for theta in (0.2, 0.6, 0.9):
        steps, pred = exit_decisions(logits, theta)
        run = run_dynamic(model, x, theta, 3, batch_size=9)
        assert torch.equal(run.exit_steps, steps) and torch.equal(run.predictions, pred)


def test_seed_picks_the_chip_instances(ck, tmp_path):
    import json

    outs = {}
    for name, seed in (("a", 0), ("b", 7), ("c", 7)):
        r = cli("evaluate", "--checkpoint", ck, "--chips", "2", "--seed", seed, "--quiet", "--out", tmp_path / name)
        assert r.returncode == 0, r.stderr
        outs[name] = json.loads((tmp_path / name / "evaluate.json").read_text())
    assert outs["a"]["chip_seeds"] == [0, 1] and outs["b"]["chip_seeds"] == [7, 8]
    assert outs["b"] == outs["c"]  # same seed, same numbers
    chips = lambda o: [r for r in o["accuracy"] if r["hardware"] == "rram"][0]["values"]  # noqa: E731
    assert outs["a"]["accuracy"][0] == outs["b"]["accuracy"][0]  # the float model does not depend on it
    a = imcsim.convert(load_checkpoint(ck)[0], HardwareConfig.preset("rram"), seed=0)
    b = imcsim.convert(load_checkpoint(ck)[0], HardwareConfig.preset("rram"), seed=7)
    assert not torch.equal(imcsim.crossbar_layers(a)[0][1].G, imcsim.crossbar_layers(b)[0][1].G)
    assert len(chips(outs["a"])) == 2


# ------------------------------------------------------------------------------ silent wrong numbers


def test_integer_inputs_are_values_not_truncated_outputs():
    lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[-0.4, 0.2, 0.1, 0.3], [0.5, -0.25, 0.0, 0.125]]))
        lin.bias.zero_()
    layer = CrossbarLinear(lin, HardwareConfig.ideal(), InputSpec("quantized", 8, 1.0))
    xi = torch.tensor([[3, 7, 0, 1]], dtype=torch.int64)
    for x in (xi, xi.to(torch.uint8)):
        y = layer(x)
        assert y.dtype == torch.float32
        assert torch.allclose(y, layer(xi.float()))
    assert not torch.equal(layer(xi), layer(xi).round())  # fractional results survive


def test_non_finite_inputs_raise_on_every_path(chip):
    model, x = chip
    bad = x.clone()
    bad[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="must be finite"):
        predict_logits(model, bad)
    with pytest.raises(ValueError, match="must be finite"):
        run_dynamic(model, torch.full_like(x, float("nan")), 0.5, 3)
    for dtype in (torch.float32, torch.float64):
        with pytest.raises(ValueError, match="ADC input must be finite"):
            ADC(4, 1.0)(torch.tensor([0.5, float("nan")], dtype=dtype))
    lin = CrossbarLinear(nn.Linear(4, 2), HardwareConfig.ideal(), InputSpec("analog", 8, 1.0), name="fc0")
    with pytest.raises(ValueError, match="'fc0'.*finite"):
        lin(torch.tensor([[1.0, float("inf"), 0.0, 0.0]]))


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist-test")
def test_data_of_another_shape_than_the_checkpoint_is_refused(tmp_path):
    torch.manual_seed(0)
    net = imcsim.convnet(in_shape=(1, 30, 30), channels=(4,), hidden=8, kind="snn", timesteps=2)
    save_checkpoint(tmp_path / "m.pt", net, dataset="mnist", data_dir=str(SHARED_MNIST), holdout=10)
    r = cli("evaluate", "--checkpoint", tmp_path / "m.pt", "--quiet", "--out", tmp_path / "o")
    one_line_error(r, "the data's samples are (1, 28, 28) but the checkpoint's network takes (1, 30, 30)")


def test_cost_arguments_are_validated_and_json_is_standard(tmp_path):
    from imcsim.io import write_json

    net = imcsim.mlp(in_shape=(1, 8, 8), hidden=(8,), kind="snn", timesteps=2)
    tech = Technology.preset("spikesim-65nm-rram")
    xnet = imcsim.convert(net, HardwareConfig.ideal(), calibration=torch.rand(4, 1, 8, 8))
    with torch.no_grad():
        xnet(torch.rand(4, 1, 8, 8))
    for kw, match in ((dict(n_inferences=float("nan")), "n_inferences"), (dict(n_inferences=float("inf")), "n_inferences"),
                      (dict(input_bits_per_inference=-8.0), "input_bits_per_inference")):
        with pytest.raises(ValueError, match=match):
            estimate(xnet, tech, **kw)
    specs = layer_specs(net, (1, 8, 8))
    with pytest.raises(ValueError, match="timesteps must be"):
        analytical_estimate(specs, HardwareConfig.ideal(), tech, -3, 0.1)
    d = tech.to_dict()
    d["crossbar"] = dict(d["crossbar"], read_latency_ns=0.0)
    d["adc"] = dict(d["adc"], latency_ns=0.0)
    with pytest.raises(ConfigError, match="a read must take some time"):
        Technology.from_dict(d)
    write_json(tmp_path / "x.json", {"a": float("inf"), "b": [float("nan")], "c": 87.99999952316284})
    assert (tmp_path / "x.json").read_text().split() == ["{", '"a":', "null,", '"b":', "[", "null", "],", '"c":', "88.0", "}"]


def test_solvers_and_adc_refuse_ranges_where_numerics_are_not_exact():
    G = torch.full((2, 3), 1e-5, dtype=torch.float64)
    with pytest.raises(ValueError, match="r_row must be <= 1000000.0"):
        solve_currents(G, torch.ones(1, 2, dtype=torch.float64), WireModel(1e20, 1e20, 1e20, 1e20))
    for fs in (1e40, 1e-300):
        with pytest.raises(ValueError, match="full_scale"):
            ADC(4, fs)


# ------------------------------------------------------------------------------ clear errors


def _idx(path: Path, dims, data: bytes, gz=False):
    head = struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + b"".join(struct.pack(">i", d) for d in dims)
    raw = head + data
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("case, match", [
    ("truncated-gz", "truncated or corrupt"), ("corrupt-gz", "truncated or corrupt"),
    ("zero", "holds no data"), ("negative", "is corrupt: header says"), ("short", "is corrupt: header says"),
])
def test_corrupt_idx_files_are_data_errors(tmp_path, case, match):
    p = tmp_path / "f-idx3-ubyte"
    if case == "truncated-gz":
        _idx(p, (2, 2, 2), bytes(8), gz=True)
        p = p.rename(p.with_suffix(".gz"))
        p.write_bytes(p.read_bytes()[:-6])
    elif case == "corrupt-gz":
        p = tmp_path / "f-idx3-ubyte.gz"
        p.write_bytes(b"\x1f\x8b\x08\x00garbage" * 3)
    elif case == "zero":
        _idx(p, (0, 28, 28), b"")
    elif case == "negative":
        _idx(p, (-5, 28, 28), b"")
    else:
        _idx(p, (2, 28, 28), bytes(10))
    with pytest.raises(DataError, match=match):
        read_idx(p)


@pytest.mark.parametrize("text, match", [
    ("[device]\n" * 0 + "a = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("", "sets no field"), ("[adc]\n[device]\n", "sets no field"),
    ('name = []\n', "name must be a non-empty string"),
    ('name = ""\n', "name must be a non-empty string"),
    ('[crossbar]\nrows = "64"\n', "crossbar.rows must be an integer"),
    ('seed = 1e23\n', "seed must be an integer"),
    ('seed = 99999999999\n', "seed must be <="),
])
def test_hardware_toml_mistakes_are_config_errors(tmp_path, text, match):
    p = tmp_path / "hw.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        HardwareConfig.from_toml(p)


def test_non_utf8_toml_names_the_file(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.toml.*UTF-8"):
        HardwareConfig.from_toml(p)


@pytest.mark.parametrize("args, match", [
    (["evaluate", "--checkpoint", "CK", "--seed", "1e23"], "--seed must be an integer"),
    (["evaluate", "--checkpoint", "CK", "--seed", str(2**40)], "--seed must be in [0, 4294967295]"),
    (["timesteps", "--checkpoint", "CK", "--thetas", "nan"], "--thetas must be comma-separated numbers in (0, 1]"),
    (["timesteps", "--checkpoint", "CK", "--thetas", "0.2,,0.3"], "--thetas must be comma-separated"),
    (["evaluate", "--checkpoint", "CK", "--preset", ""], "preset name must be a non-empty string"),
    (["timesteps", "--checkpoint", "CK", "--preset", "ideal,ideal"], "--preset names 'ideal' twice"),
    (["timesteps", "--checkpoint", "CK", "--preset", "ideal,"], "--preset must be comma-separated preset names"),
    (["evaluate", "--checkpoint", "CK", "--data-dir", "DIR"], "--data-dir does not apply"),
    (["train", "--kind", "snn", "--bits", "3"], "--bits sets a QNN's activation bits"),
    (["train", "--data-dir", "DIR"], "--data-dir does not apply to 'digits'"),
    (["evaluate", "--checkpoint", "CK", "--sweep", "device.variation=0,abc"], "--sweep device.variation=abc"),
    (["evaluate", "--checkpoint", "CK", "--sweep", "adc.bits=4,99"], "--sweep adc.bits=99"),
    (["evaluate", "--checkpoint", "CK", "--sweep", "device.variation=0,nan"], "values must be finite"),
    (["energy", "--checkpoint", "CK", "--spike-rate", "inf"], "--spike-rate must be in [0.0, 1.0]"),
    (["evaluate", "--checkpoint", "CK", "--workers", "0"], "--workers must be in [1, 1024]"),
    (["evaluate", "--checkpoint", "CK", "--address", "1.2.3.4:6379"], "--address needs --engine ray"),
    (["evaluate", "--checkpoint", "CK", "--test-limit", "0"], "--test-limit must be >= 1"),
    (["import", "NIR", "--dt", "0"], "--dt must be in"),
])
def test_careless_flags_are_refused_before_any_work(ck, tmp_path, args, match):
    sub = {"CK": ck, "DIR": tmp_path, "NIR": tmp_path / "none.nir"}
    r = cli(*[sub.get(a, a) for a in args], "--quiet", "--out", tmp_path / "o")
    one_line_error(r, match)
    assert not (tmp_path / "o").exists()


def test_sweep_typos_fail_before_the_baseline_runs(tmp_path):
    """The sweep is checked before anything is loaded or run: with a checkpoint that does not
    even exist, the error is still about the sweep."""
    r = cli("evaluate", "--checkpoint", tmp_path / "not-there.pt", "--sweep", "adc.bits=4,5,x", "--chips", "50",
            "--quiet", "--out", tmp_path / "o")
    one_line_error(r, "--sweep adc.bits=x")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("make, match", [
    (lambda d: d / "file.txt", "exists and is not a folder"),
    (lambda d: d / "file.txt" / "sub", "is a file, not a folder"),
    (lambda d: d / ("x" * 300), "bytes long"),
    (lambda d: d / "dangling", "dangling symbolic link"),
    (lambda d: d / "locked" / "out", "no permission to write"),
])
def test_bad_output_paths_are_refused_before_work(ck, tmp_path, make, match):
    if os.geteuid() == 0 and "locked" in str(make(tmp_path)):
        pytest.skip("root may write anywhere: the permission check cannot fail for root")
    (tmp_path / "file.txt").write_text("thesis")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "locked").mkdir(mode=0o500)
    r = cli("evaluate", "--checkpoint", ck, "--quiet", "--out", make(tmp_path))
    one_line_error(r, match)
    assert (tmp_path / "file.txt").read_text() == "thesis"


def test_out_cwd_or_root_with_force_deletes_nothing(ck, tmp_path):
    (tmp_path / "thesis.txt").write_text("years of work")
    for out in (".", "/"):
        r = cli("evaluate", "--checkpoint", ck, "--quiet", "--force", "--out", out, cwd=tmp_path)
        one_line_error(r, "refusing to use")
    assert (tmp_path / "thesis.txt").read_text() == "years of work"


def test_convert_refuses_a_fractional_seed():
    with pytest.raises(ValueError, match="seed must be an integer"):
        imcsim.convert(imcsim.mlp(in_shape=(1, 4, 4), hidden=(4,)), HardwareConfig.ideal(), seed=1.7)


# ------------------------------------------------------------------------------ empty inputs


def test_empty_inputs_work_or_fail_clearly(chip):
    model, x = chip
    conv = CrossbarConv2d(nn.Conv2d(1, 2, 3), HardwareConfig.ideal(), InputSpec("spike"))
    assert conv(torch.zeros(0, 1, 5, 5)).shape == (0, 2, 3, 3)
    G = torch.full((3, 2), 1e-5, dtype=torch.float64)
    assert solve_currents(G, torch.zeros(0, 3, dtype=torch.float64), WireModel(1.0, 1.0, 1.0, 1.0)).shape == (0, 2)
    with pytest.raises(ValueError, match="no samples to evaluate"):
        accuracy(model, x[:0], torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="no samples to run"):
        run_dynamic(model, x[:0], 0.5, 3)
