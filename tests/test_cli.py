"""The imcsim command: every subcommand on tiny settings, error handling, reproducibility, Ctrl-C."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-test"


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "imcsim", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def ok(*args):
    r = run(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


TINY = ["--dataset", "digits", "--train-limit", "400", "--test-limit", "120", "--holdout", "80", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    ok("train", *TINY, "--kind", "snn", "--timesteps", "3", "--out", d / "snn")
    ok("train", *TINY, "--kind", "qnn", "--timesteps", "3", "--out", d / "qnn")
    return d


def test_train_writes_checkpoint_and_reports(runs):
    files = {p.name for p in (runs / "snn").iterdir()}
    assert {"model.pt", "history.csv", "train.json", "report.md"} <= files
    info = json.loads((runs / "snn" / "train.json").read_text())
    assert info["arch"]["kind"] == "snn" and info["arch"]["timesteps"] == 3 and len(info["history"]) == 2
    q = json.loads((runs / "qnn" / "train.json").read_text())
    assert q["arch"]["bits"] == 2  # ceil(log2(3 + 1))


def test_training_round_trip_is_bit_for_bit(runs, tmp_path):
    ok("train", *TINY, "--kind", "snn", "--timesteps", "3", "--out", tmp_path / "again")
    a = torch.load(runs / "snn" / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "again" / "model.pt", weights_only=False)
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert a["meta"]["test_accuracy"] == b["meta"]["test_accuracy"]
    # evaluating the checkpoint reproduces the accuracy recorded at training time exactly
    ok("evaluate", "--checkpoint", runs / "snn" / "model.pt", "--preset", "ideal", "--chips", "1", "--quiet",
       "--out", tmp_path / "ev")
    acc = json.loads((tmp_path / "ev" / "evaluate.json").read_text())["accuracy"]
    assert acc[0]["hardware"] == "float (digital)" and acc[0]["mean"] == a["meta"]["test_accuracy"]


def test_evaluate_sweep(runs, tmp_path):
    r = ok("evaluate", "--checkpoint", runs / "snn" / "model.pt", "--sweep", "adc.bits=2,6", "--chips", "2",
           "--test-limit", "60", "--quiet", "--out", tmp_path / "ev")
    res = json.loads((tmp_path / "ev" / "evaluate.json").read_text())
    assert [row["value"] for row in res["sweep"]["rows"]] == [2, 6]
    assert all(len(row["values"]) == 2 and row["n"] == 2 for row in res["sweep"]["rows"])
    rows = {row["hardware"]: row for row in res["accuracy"]}
    # the ideal counterpart is the same architecture as the preset, the lossless ideal another one
    assert rows["rram-ideal"]["architecture"] == rows["rram"]["architecture"] != rows["ideal (lossless)"]["architecture"]
    assert res["chip_seeds"] == [0, 1]
    assert (tmp_path / "ev" / "sweep.png").stat().st_size > 1000
    assert "accuracy %" in r.stdout


@pytest.mark.parametrize("preset, rows", [("ideal", ["float (digital)", "ideal"]),
                                          ("rram-ideal", ["float (digital)", "ideal (lossless)", "rram-ideal"])])
def test_evaluate_lists_each_chip_once(runs, tmp_path, preset, rows):
    """No reference row repeats the preset itself (an ideal preset needs no ideal counterpart)."""
    ok("evaluate", "--checkpoint", runs / "snn" / "model.pt", "--preset", preset, "--chips", "1",
       "--test-limit", "30", "--quiet", "--out", tmp_path / "ev")
    res = json.loads((tmp_path / "ev" / "evaluate.json").read_text())
    assert [row["hardware"] for row in res["accuracy"]] == rows


def test_categorical_sweeps_by_name_and_accuracies_with_their_uncertainty(runs, tmp_path, monkeypatch):
    import csv

    import imcsim.plots as plots
    from imcsim.app.cli import main

    figs = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.setdefault(Path(path).name, fig) and Path(path))
    assert main(["evaluate", "--checkpoint", str(runs / "snn" / "model.pt"), "--chips", "1", "--test-limit", "60",
                 "--sweep", "adc.bits=2,lossless", "--quiet", "--out", str(tmp_path / "e")]) == 0
    res = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert [r["label"] for r in res["sweep"]["rows"]] == ["2", "lossless"]  # before: None / an empty cell / ticks 0, 1
    rows = list(csv.DictReader(open(tmp_path / "e" / "sweep.csv")))
    assert [r["value"] for r in rows] == ["2", "lossless"]
    ax = figs["sweep.png"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "lossless"]
    assert "1 chip each" in ax.get_title()
    report = (tmp_path / "e" / "report.md").read_text()
    assert "| lossless |" in report and "95 % test-set interval" in report and "one sample = 1.67 pp" in report
    for r in res["accuracy"]:  # every accuracy with its uncertainty
        lo, hi = r["test_ci95"]
        assert lo <= r["mean"] <= hi and r["n_test"] == 60 and r["se_pp"] > 0
    acc = list(csv.DictReader(open(tmp_path / "e" / "accuracy.csv")))
    assert {"ci95_low", "ci95_high", "se_pp"} <= set(acc[0])


def _rram_with(**values) -> str:
    """The shipped rram.toml with some of its lines set by hand (section.key = value)."""
    import re

    import imcsim

    text = (Path(imcsim.__file__).parent / "presets" / "hardware" / "rram.toml").read_text()
    section = None
    out = []
    for line in text.splitlines():
        m = re.match(r"\[(\w+)\]", line)
        if m:
            section = m.group(1)
        k = re.match(r"(\w+)\s*=", line)
        if k and f"{section}.{k.group(1)}" in values:
            line = f"{k.group(1)} = {values[f'{section}.{k.group(1)}']}"
        out.append(line)
    return "\n".join(out) + "\n"


_OFF = {"device.variation": "0.0", "device.read_noise": "0.0", "device.p_stuck_on": "0.0", "device.p_stuck_off": "0.0",
        "wires.r_row": "0.0", "wires.r_col": "0.0", "wires.r_src": "0.0", "wires.r_sink": "0.0", "device.g_off": "0.0",
        "adc.bits": '"lossless"', "weights.bits": "16"}
_ALONE = {  # rram with every non-ideality off but one, by hand (independent of imcsim's attribution code)
    "variation": _rram_with(**{**_OFF, "device.variation": "0.05"}),
    "wires": _rram_with(**{**_OFF, "wires.r_row": "2.5", "wires.r_col": "2.5", "wires.r_src": "50.0",
                           "wires.r_sink": "50.0", "device.g_off": "1.0e-11"}),
    "ADC resolution": _rram_with(**{**_OFF, "adc.bits": "4"}),
}


def test_attribution_rows_equal_separately_configured_chips(runs, tmp_path):
    snn = runs / "snn" / "model.pt"
    small = ["--chips", "2", "--test-limit", "60", "--quiet"]
    r = ok("evaluate", "--checkpoint", snn, *small, "--attribution", "--out", tmp_path / "at")
    res = json.loads((tmp_path / "at" / "evaluate.json").read_text())["attribution"]
    rows = {x["config"]: x for x in res["rows"]}
    names = [e["nonideality"] for e in res["effects"]]
    assert names == ["variation", "read noise", "stuck-at faults", "wires", "on/off ratio", "ADC resolution",
                     "weight quantisation"]
    assert rows["all (rram)"]["chips"] == 2 and rows["wires alone"]["chips"] == 1  # no seed changes a wires-only chip
    for name, toml in _ALONE.items():
        (tmp_path / f"{name}.toml").write_text(toml)
        ok("evaluate", "--checkpoint", snn, *small, "--config", tmp_path / f"{name}.toml", "--out", tmp_path / name)
        chip = json.loads((tmp_path / name / "evaluate.json").read_text())["accuracy"][-1]
        alone = rows[f"{name} alone"]
        assert chip["values"][: alone["chips"]] == alone["values"], name
    # the effects are the differences of the rows
    e = {x["nonideality"]: x for x in res["effects"]}
    assert e["wires"]["loss_alone_pp"] == pytest.approx(rows["none (all of them off)"]["mean"] - rows["wires alone"]["mean"])
    assert e["wires"]["recovered_when_left_out_pp"] == pytest.approx(rows["all but wires"]["mean"]
                                                                     - rows["all (rram)"]["mean"])
    assert (tmp_path / "at" / "attribution.png").stat().st_size > 0 and "accuracy lost with it alone" in r.stdout
    assert len((tmp_path / "at" / "attribution.csv").read_text().splitlines()) == 1 + 16


def test_energy_measured_and_analytical(runs, tmp_path):
    r = ok("energy", "--checkpoint", runs / "snn" / "model.pt", "--test-limit", "50", "--analytical", "--quiet",
           "--out", tmp_path / "m")
    res = json.loads((tmp_path / "m" / "energy.json").read_text())
    m = res["report"]
    assert m["energy_J"] > 0 and m["latency_s"] > 0 and m["edp_Js"] == pytest.approx(m["energy_J"] * m["latency_s"])
    assert m["area_mm2"] > 0 and m["edap_Jsmm2"] == pytest.approx(m["edp_Js"] * m["area_mm2"])
    assert "area" in r.stdout and "EDAP" in r.stdout
    assert "technology spikesim-65nm-rram:" not in r.stdout  # its own geometry: no scaling note
    # --analytical: the analytical model at the measured per-layer activity, with the rates it assumed
    a = res["analytical_at_measured_activity"]
    assert a["source"] == "analytical" and set(a["assumed"]["input_activity"]) and "measured per-layer" in r.stdout
    ok("energy", "--checkpoint", runs / "snn" / "model.pt", "--spike-rate", "0.2", "--tech", "puma-32nm",
       "--out", tmp_path / "a", "--quiet")
    a = json.loads((tmp_path / "a" / "energy.json").read_text())["report"]
    assert a["source"] == "analytical" and a["technology"] == "puma-32nm"
    assert (tmp_path / "m" / "breakdown.png").exists() and (tmp_path / "m" / "breakdown.csv").exists()


def test_timesteps(runs, tmp_path):
    r = ok("timesteps", "--checkpoint", runs / "snn" / "model.pt", "--thetas", "0.3,0.7",
           "--test-limit", "60", "--quiet", "--out", tmp_path / "t")
    res = json.loads((tmp_path / "t" / "timesteps.json").read_text())
    modes = [(row["hardware"], row["mode"], row["T_max"]) for row in res["rows"]]
    for hw in ("rram-ideal", "rram"):  # the default: a preset and its ideal counterpart
        assert [m[1:] for m in modes if m[0] == hw][:3] == [("static", 1), ("static", 2), ("static", 3)]
        assert any(m[0] == hw and m[1] == "dynamic" for m in modes)
    for s in res["summary"]:
        assert s["best_static_T"] in (1, 2, 3) and "test_drop_pp" in s and "tolerance_pp" in s
    assert res["summary"][0]["architecture"] == res["summary"][1]["architecture"]
    assert "dynamic exit" in r.stdout and "Test-split change" in r.stdout
    assert "technology spikesim-65nm-rram:" not in r.stdout  # its own geometry: no scaling note
    points = [(row["hardware"], row["mode"], f"{row['theta']:.3g}", row["T_max"]) for row in res["rows"]]
    assert len(points) == len(set(points))  # a chosen theta equal to a swept one is one row (it was listed twice)
    assert all(s["n_test"] == 60 for s in res["summary"]) and "of 60 test samples" in r.stdout
    assert (tmp_path / "t" / "pareto.png").exists()


def test_compare(runs, tmp_path):
    r = ok("compare", "--snn", runs / "snn" / "model.pt", "--qnn", runs / "qnn" / "model.pt", "--test-limit", "60",
           "--quiet", "--out", tmp_path / "c")
    res = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert res["comparison"]["energy_ratio"] > 0 and "break-even" in r.stdout
    assert "technology spikesim-65nm-rram:" not in r.stdout  # its own geometry: no scaling note
    # each platform's figure equals its model called directly on the same measured activity
    from imcsim.checkpoints import load_checkpoint
    from imcsim.cost import layer_specs, neuromorphic, systolic
    from imcsim.app.workflows import hardware

    rows = {row["platform"]: row for row in res["platforms"]}
    assert list(rows) == ["imc", "systolic", "neuromorphic"] and "SNN vs QNN on three platforms" in r.stdout
    hw = hardware(None, res["hardware"])
    snn, _ = load_checkpoint(runs / "snn" / "model.pt")
    qnn, _ = load_checkpoint(runs / "qnn" / "model.pt")
    shape = tuple(snn.arch["in_shape"])
    ss, qs = layer_specs(snn, shape, hw), layer_specs(qnn, shape, hw)
    act = res["platform_activity"]
    assert rows["imc"]["energy_ratio"] == pytest.approx(res["comparison"]["energy_ratio"], rel=1e-9)
    s = systolic.systolic_estimate(ss, act["snn"], snn.timesteps, arch="sata")
    q = systolic.systolic_estimate(qs, act["qnn"], 1, arch="eyeriss", act_bits=qnn.arch["bits"])
    same = lambda a, b: a == pytest.approx(b, rel=1e-7)  # noqa: E731 -- compare.json keeps 8 significant digits
    assert same(rows["systolic"]["snn_energy_J"], s["energy_J"]) and same(rows["systolic"]["qnn_energy_J"], q["energy_J"])
    assert same(rows["systolic"]["snn_latency_s"], s["latency_s"])
    n = neuromorphic.network_energy(ss, act["snn"], kind="snn", T=snn.timesteps, weight_bits=hw.weight_bits)
    m = neuromorphic.network_energy(qs, act["qnn"], kind="qnn", bits=qnn.arch["bits"], weight_bits=hw.weight_bits)
    assert same(rows["neuromorphic"]["snn_energy_J"], n["energy_J"]) and same(rows["neuromorphic"]["qnn_energy_J"],
                                                                             m["energy_J"])
    assert (tmp_path / "c" / "platforms.png").stat().st_size > 10000
    bad = run("compare", "--snn", "x", "--qnn", "y", "--platforms", "imc,gpu", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "--platforms must be comma-separated names out of imc, systolic, neuromorphic" in bad.stderr


def test_a_technology_of_another_geometry_is_stated_by_every_pricing_command(runs, tmp_path):
    snn, qnn = runs / "snn" / "model.pt", runs / "qnn" / "model.pt"
    scaled = ["technology puma-32nm: crossbar figures are for 128x128 arrays, scaled to this chip's 64x64 tiles",
              "technology puma-32nm: ADC figures are for 8-bit ADCs, scaled to 4 bits by its model 'linear'"]
    for i, args in enumerate((["energy", "--checkpoint", snn], ["timesteps", "--checkpoint", snn, "--thetas", "0.5"],
                              ["compare", "--snn", snn, "--qnn", qnn])):
        r = ok(*args, "--tech", "puma-32nm", "--test-limit", "40", "--quiet", "--out", tmp_path / f"p{i}")
        assert all(s in r.stdout for s in scaled), (args[0], r.stdout[-2000:])
    # with the preset's own technology (its geometry): no note, in test_energy_measured_and_analytical,
    # test_timesteps and test_compare


def test_demo(tmp_path):
    r = ok("demo", "--quiet", "--chips", "1", "--out", tmp_path / "demo")
    report = (tmp_path / "demo" / "report.md").read_text()
    for section in ("Accuracy under non-idealities", "Energy, latency, area, EDP", "Static vs dynamic timesteps",
                    "SNN vs QNN", "rram-ideal"):
        assert section in report
    assert "done in" in r.stdout
    pngs = sorted(p.name for p in (tmp_path / "demo").glob("*.png"))
    assert pngs == ["accuracy_vs_variation.png", "exit_histogram.png", "pareto.png", "platforms.png",
                    "qnn_breakdown.png", "snn_breakdown.png"]
    assert "SNN vs QNN on three platforms" in report and "![platforms](platforms.png)" in report
    assert "SNN/QNN energy on the digital platforms: systolic x" in r.stdout


def test_every_option_has_help_and_a_default():
    from imcsim.app.cli import build_parser

    p = build_parser()
    sub = next(a for a in p._actions if a.dest == "command")
    for name, sp in sub.choices.items():
        text = " ".join(sp.format_help().split())
        fmt = sp._get_formatter()
        assert sp.description, name
        for action in sp._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (name, action.option_strings)
            shown = fmt._get_help_string(action)  # what --help prints for it
            assert "default" in shown or "required" in shown, (name, action.option_strings, shown)
            assert " ".join(shown.split()[:3]) in text, (name, shown)


@pytest.mark.parametrize(
    "args, match",
    [
        (["train", "--epochs", "0", "--out", "X"], "--epochs must be >= 1, got 0"),
        (["train", "--kind", "cnn", "--out", "X"], "invalid choice: 'cnn'"),
        (["evaluate", "--checkpoint", "CK", "--config", "nope.toml", "--out", "X"], "hardware config file not found: 'nope.toml'"),
        (["evaluate", "--checkpoint", "CK", "--config", "BAD", "--out", "X"], "is not valid TOML"),
        (["train", "--dataset", "mnist", "--data-dir", "/no/such/dir", "--out", "X"], "data directory not found: '/no/such/dir'"),
        (["train", "--dataset", "mnist", "--data-dir", "EMPTY", "--out", "X"], "no mnist IDX files in"),
        (["evaluate", "--checkpoint", "missing.pt", "--out", "X"], "checkpoint not found: 'missing.pt'"),
        (["evaluate", "--checkpoint", "CK", "--sweep", "adc.bitz=1,2", "--out", "X"], "--sweep: unknown field 'adc.bitz'"),
        (["energy", "--checkpoint", "CK", "--preset", "rram7", "--out", "X"], "unknown hardware preset 'rram7'"),
        (["energy", "--checkpoint", "CK", "--tech", "nope", "--out", "X"], "unknown technology preset 'nope'"),
        (["timesteps", "--checkpoint", "QCK", "--preset", "ideal", "--out", "X"], "timesteps needs an SNN checkpoint"),
        (["train", "--out", "EXISTS"], "already exists; use --force to replace it"),
    ],
)
def test_bad_input_exits_2_with_one_line(runs, tmp_path, args, match):
    (tmp_path / "bad.toml").write_text("[crossbar\nrows = 4\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "exists").mkdir()
    sub = {"CK": runs / "snn" / "model.pt", "QCK": runs / "qnn" / "model.pt", "BAD": tmp_path / "bad.toml",
           "EMPTY": tmp_path / "empty", "X": tmp_path / "out", "EXISTS": tmp_path / "exists"}
    r = subprocess.run([sys.executable, "-m", "imcsim", *[str(sub.get(a, a)) for a in args], "--quiet"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_ctrl_c_leaves_no_partial_results(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "imcsim", "demo", "--quiet", "--out", str(tmp_path / "demo")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # well inside training
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted; no results were written" in err
    # neither the folder nor a partial one; at most the journal of finished tasks (for --resume)
    assert [p.name for p in tmp_path.iterdir() if p.name != ".demo.journal.jsonl"] == []


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist-test")
def test_train_on_real_mnist_files(tmp_path):
    ok("train", "--dataset", "mnist", "--data-dir", SHARED_MNIST, "--train-limit", "300", "--test-limit", "100",
       "--epochs", "1", "--quiet", "--out", tmp_path / "m")
    info = json.loads((tmp_path / "m" / "train.json").read_text())
    assert "first 8000 images train, last 2000 evaluate" in info["split"]
