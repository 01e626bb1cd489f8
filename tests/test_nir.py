"""NIR import / export: a hand-built graph against a hand-written Euler simulation, round
trips, recurrent graphs (exact, on crossbars, with dynamic exits), and clear errors."""

import json

import numpy as np
import pytest
import torch

import imcsim
from imcsim.dynamic import exit_decisions, run_dynamic
from imcsim.training import predict_logits

nir = pytest.importorskip("nir", reason="the nir package is not installed (pip install nir)")


def _graph(seed=0, recurrent=True):
    """Input (2, 6, 6) -> Conv2d -> LIF -> SumPool2d -> Flatten -> Affine -> CubaLIF (with a
    recurrent Linear) -> Output."""
    r = np.random.default_rng(seed)
    f32 = np.float32
    conv_w = r.normal(0, 0.6, (3, 2, 3, 3)).astype(f32)
    lif_shape = (3, 6, 6)
    nodes = {
        "in": nir.Input(input_type=np.array([2, 6, 6])),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=conv_w, stride=1, padding=1, dilation=1, groups=1,
                           bias=r.normal(0, 0.1, 3).astype(f32)),
        "lif": nir.LIF(tau=np.full(lif_shape, 3.0, f32), r=np.full(lif_shape, 1.5, f32), v_leak=np.zeros(lif_shape, f32),
                       v_threshold=np.full(lif_shape, 0.5, f32), v_reset=np.zeros(lif_shape, f32)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=r.normal(0, 0.4, (5, 27)).astype(f32), bias=np.zeros(5, f32)),
        "cuba": nir.CubaLIF(tau_syn=np.full(5, 2.0, f32), tau_mem=np.full(5, 4.0, f32), r=np.full(5, 2.0, f32),
                            v_leak=np.zeros(5, f32), v_threshold=np.full(5, 0.3, f32), v_reset=np.zeros(5, f32),
                            w_in=np.full(5, 1.5, f32)),
        "out": nir.Output(output_type=np.array([5])),
    }
    edges = [("in", "conv"), ("conv", "lif"), ("lif", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "cuba"),
             ("cuba", "out")]
    if recurrent:
        nodes["rec"] = nir.Linear(weight=r.normal(0, 0.5, (5, 5)).astype(f32))
        edges += [("cuba", "rec"), ("rec", "cuba")]
    return nir.NIRGraph(nodes=nodes, edges=edges), conv_w


def _reference(g, x, dt):
    """The documented forward-Euler discretisation, written out step by step."""
    n = g.nodes
    T, B = x.shape[:2]
    v1 = torch.zeros(B, 3, 6, 6)
    i2, v2, s2 = torch.zeros(B, 5), torch.zeros(B, 5), torch.zeros(B, 5)
    W = torch.tensor(n["conv"].weight)
    out = []
    for t in range(T):
        c = torch.nn.functional.conv2d(x[t], W, torch.tensor(n["conv"].bias), padding=1)
        v1 = v1 + dt / 3.0 * (0.0 - v1 + 1.5 * c)
        s1 = (v1 > 0.5).float()
        v1 = torch.where(s1 > 0, torch.zeros_like(v1), v1)
        p = torch.nn.functional.avg_pool2d(s1, 2) * 4
        a = p.flatten(1) @ torch.tensor(n["fc"].weight).T
        if "rec" in n:
            a = a + s2 @ torch.tensor(n["rec"].weight).T  # the previous step's spikes
        i2 = i2 + dt / 2.0 * (-i2 + 1.5 * a)
        v2 = v2 + dt / 4.0 * (0.0 - v2 + 2.0 * i2)
        s2 = (v2 > 0.3).float()
        v2 = torch.where(s2 > 0, torch.zeros_like(v2), v2)
        out.append(s2)
    return torch.stack(out)


def _spikes(T=8, B=20, seed=1):
    return (torch.rand(T, B, 2, 6, 6, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


@pytest.mark.parametrize("recurrent", [False, True])
def test_import_follows_the_documented_discretisation(recurrent):
    g, _ = _graph(recurrent=recurrent)
    x = _spikes()
    net = imcsim.from_nir(g, dt=1.0)
    with torch.no_grad():
        out = net(x)
    ref = _reference(g, x, 1.0)
    assert out.shape == (8, 20, 5) and ref.sum() > 0
    assert torch.equal(out, ref)


def test_round_trip_reproduces_the_graph(tmp_path):
    g, _ = _graph()
    back = imcsim.to_nir(imcsim.from_nir(g, dt=0.5))
    assert set(back.nodes) == set(g.nodes) and set(map(tuple, back.edges)) == set(map(tuple, g.edges))
    for name, node in g.nodes.items():
        a, b = node.to_dict(), back.nodes[name].to_dict()
        assert a["type"] == b["type"], name
        for k, v in a.items():
            if isinstance(v, np.ndarray):
                assert np.array_equal(np.asarray(b[k]), v), (name, k)
    # through a file, and through an imcsim checkpoint
    imcsim.to_nir(imcsim.from_nir(g), tmp_path / "g.nir")
    net = imcsim.from_nir(tmp_path / "g.nir", dt=1.0)
    from imcsim.checkpoints import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", net)
    again, _ = load_checkpoint(tmp_path / "m.pt")
    x = _spikes(B=4)
    with torch.no_grad():
        assert torch.equal(again(x), net(x))


def test_snntorch_recurrent_export_imports_and_maps_its_recurrent_weights():
    """snnTorch's RLeaky exports as a NIR LIF with a recurrent Affine. (Its own zero reset
    also discards the input of the step after a spike, which a NIR LIF cannot express, so
    its simulation is not the reference here: the documented equations are, see above.)"""
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 16),
                              snn.RLeaky(beta=0.8, linear_features=16, init_hidden=True, reset_mechanism="zero"),
                              torch.nn.Linear(16, 4))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(3.0)
    x = (torch.rand(10, 50, 12, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    with torch.no_grad():
        graph = export_to_nir(net, x[0], ignore_dims=[0])
    imported = imcsim.from_nir(graph, dt=1e-4)
    assert any(cyclic for cyclic, _ in imported.body.blocks)  # the recurrence runs step by step
    hw = imcsim.HardwareConfig.ideal(weight_bits=12)
    chip = imcsim.convert(imported, hw, calibration=x)
    rec = [e for e in chip.conversion_report.entries if e.name.endswith("w_rec")]
    assert rec and rec[0].status == "crossbar" and rec[0].input == "spikes"
    with torch.no_grad():
        ref, out = imported(x), chip(x)
    lif = imported.body.module("1.lif")
    assert lif.threshold == 1.0 and lif.leak == pytest.approx(0.8)
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05 * float(ref.abs().max()))


def test_dynamic_exits_on_a_recurrent_network_on_rram_equal_the_pure_rule():
    g, _ = _graph()
    net = imcsim.from_nir(g, dt=1.0, timesteps=8)
    x = _spikes(B=30, seed=3)
    chip = imcsim.convert(net, imcsim.HardwareConfig.preset("rram"), calibration=x)
    logits = predict_logits(chip, x, batch_size=7)
    for theta in (0.2, 0.6):
        run = run_dynamic(chip, x, theta, 8, batch_size=11)
        steps, pred = exit_decisions(logits, theta)
        assert torch.equal(run.exit_steps, steps) and torch.equal(run.predictions, pred)


def test_errors_name_the_node():
    g, _ = _graph(recurrent=False)
    g.nodes["lag"] = nir.Delay(delay=np.array([1.0]))
    g.edges.append(("lif", "lag"))
    with pytest.raises(ValueError, match=r"NIR node 'lag' of type 'Delay' has no imcsim equivalent"):
        imcsim.from_nir(g)
    g2, _ = _graph(recurrent=False)
    with pytest.raises(ValueError, match=r"NIR node 'lif' \(LIF\): dt / tau = 3.33 > 1 .*dt = 1e-4"):
        imcsim.from_nir(g2, dt=10.0)
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        imcsim.from_nir(g2, dt=0.0)
    with pytest.raises(ValueError, match="NIR file not found"):
        imcsim.from_nir("nowhere.nir")


def test_zoo_networks_export_or_say_what_nir_cannot_express():
    net = imcsim.mlp(in_shape=(1, 4, 4), hidden=(6,), kind="snn", timesteps=3)
    with pytest.raises(ValueError, match=r"neuron body.3 resets by 'subtract'; NIR neurons reset to v_reset"):
        imcsim.to_nir(net.eval())
    body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 6),
                               imcsim.LIF(leak=0.75, reset="zero", strict=True), torch.nn.Linear(6, 3))
    zoo = imcsim.Network(body, "snn", timesteps=5, arch={"name": "custom", "in_shape": [1, 4, 4]}).eval()
    back = imcsim.from_nir(imcsim.to_nir(zoo), dt=1.0)  # LIF: tau = dt / (1 - leak) = 4, r = 4
    x = torch.rand(7, 1, 4, 4) * 2
    with torch.no_grad():
        torch.testing.assert_close(back(x.unsqueeze(0).expand(5, *x.shape)), zoo(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ every command


def _cli(*args, timeout=600):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "imcsim", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_an_imported_checkpoint_goes_through_every_command(tmp_path):
    """snnTorch -> NIR (docs/frameworks.md's recipe) -> imcsim import -> evaluate, energy,
    timesteps and compare (against a QNN twin on the same events). Before: evaluate and
    energy ended in a TypeError (GraphBody._apply shadowed nn.Module._apply)."""
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    import torch.nn as nn
    from snntorch.export_nir import export_to_nir

    from imcsim.datasets import load_dataset
    from imcsim.training import TrainConfig, train

    ev = load_dataset("event-digits")
    torch.manual_seed(0)

    def leaky(shape, beta, **kw):
        return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), init_hidden=True,
                         reset_mechanism="zero", **kw)

    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), leaky((8, 14, 14), 0.8), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 7 * 7, 10), leaky((10,), 0.7, output=True))
    train(imcsim.Stepwise(net), ev.x_train[:, :400], ev.y_train[:400], TrainConfig(epochs=2, lr=5e-3), progress=False)
    with torch.no_grad():
        nir.write(tmp_path / "m.nir", export_to_nir(net, ev.x_test[0][:1], ignore_dims=[0]))
    assert imcsim.from_nir(tmp_path / "m.nir", dt=1e-4).cpu() is not None  # nn.Module._apply works again

    r = _cli("import", tmp_path / "m.nir", "--dataset", "event-digits", "--dt", "1e-4", "--holdout", "100",
             "--out", tmp_path / "ck")
    assert r.returncode == 0, r.stderr
    assert "reset to v_reset after a spike: NIR has no reset by subtraction" in r.stdout and "dt = 0.0001" in r.stdout
    ck = tmp_path / "ck" / "model.pt"
    small = ["--test-limit", "40", "--quiet"]
    r = _cli("evaluate", "--checkpoint", ck, "--chips", "1", *small, "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "ev" / "evaluate.json").read_text())["accuracy"]
    assert [x["hardware"] for x in rows][-1] == "rram" and all(0 <= x["mean"] <= 100 for x in rows)
    r = _cli("energy", "--checkpoint", ck, *small, "--out", tmp_path / "en")
    assert r.returncode == 0 and json.loads((tmp_path / "en" / "energy.json").read_text())["report"]["energy_J"] > 0
    r = _cli("timesteps", "--checkpoint", ck, "--thetas", "0.3,0.7", *small, "--out", tmp_path / "ts")
    assert r.returncode == 0, r.stderr
    assert {x["T_max"] for x in json.loads((tmp_path / "ts" / "timesteps.json").read_text())["rows"]} == set(range(1, 11))
    r = _cli("train", "--dataset", "event-digits", "--model", "convnet", "--kind", "qnn", "--timesteps", "10",
             "--epochs", "1", "--train-limit", "300", "--quiet", "--out", tmp_path / "qnn")
    assert r.returncode == 0, r.stderr
    r = _cli("compare", "--snn", ck, "--qnn", tmp_path / "qnn" / "model.pt", *small, "--out", tmp_path / "cmp")
    assert r.returncode == 0, r.stderr
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert cmp["timesteps"] == 10 and cmp["qnn_bits"] == 4 and cmp["snn_input"] == "spike"
    assert "direct encoding" not in r.stdout  # an event-fed SNN has no analog input layer to compute once


def test_a_qnn_twin_of_an_event_snn_reads_the_event_rate_as_an_analog_image():
    ev_x = (torch.rand(10, 6, 2, 14, 14, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    q = imcsim.convnet(in_shape=(2, 14, 14), channels=(4,), hidden=16, kind="qnn", timesteps=10, input="sequence")
    q.eval()
    with torch.no_grad():
        assert torch.equal(q(ev_x), q.body(ev_x.mean(0)).unsqueeze(0))
    chip = imcsim.convert(q, imcsim.HardwareConfig.ideal(), calibration=ev_x)
    from imcsim.crossbar import TiledMatrix

    first = next(m for m in chip.modules() if isinstance(m, TiledMatrix))
    assert first.input_spec.kind == "analog"  # not the binary events of the calibration sequences


def test_a_nir_graph_imports_on_nmnist_event_files_and_evaluates(tmp_path):
    """imcsim import --dataset nmnist: a graph taking (2, 34, 34) frames, N-MNIST read from
    its binary event files (generated here in the release's 40-bit format), then evaluate."""
    import numpy as np

    rng = np.random.default_rng(0)
    for split, n in (("Train", 3), ("Test", 2)):
        for d in range(10):
            (tmp_path / "nm" / split / str(d)).mkdir(parents=True)
            for j in range(n):
                k = int(rng.integers(20, 60))
                ev = np.stack([rng.integers(0, 34, k), rng.integers(0, 34, k), rng.integers(0, 2, k),
                               np.sort(rng.integers(0, 300_000, k))], 1)
                raw = bytearray()
                for x, y, p, t in ev.tolist():
                    raw += bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])
                (tmp_path / "nm" / split / str(d) / f"{j:05d}.bin").write_bytes(bytes(raw))
    body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 34 * 34, 16),
                               imcsim.LIF(leak=0.75, reset="zero", strict=True), torch.nn.Linear(16, 10))
    net = imcsim.Network(body, "snn", timesteps=10, arch={"name": "custom", "in_shape": [2, 34, 34]}).eval()
    imcsim.to_nir(net, tmp_path / "m.nir")
    r = _cli("import", tmp_path / "m.nir", "--dataset", "nmnist", "--data-dir", tmp_path / "nm", "--out",
             tmp_path / "ck")
    assert r.returncode == 0, r.stderr
    assert "accuracy on the first 512 test samples of nmnist" in r.stdout
    r = _cli("evaluate", "--checkpoint", tmp_path / "ck" / "model.pt", "--preset", "rram", "--chips", "1",
             "--out", tmp_path / "ev", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "| rram |" in r.stdout
