"""Hardware-aware training through the simulated chip (imcsim.chip_training).

References: the converted chip's own forward (convert with the same chip seed), the wire
solver's effective weights, and the ADC's clipping recomputed from the column currents."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import imcsim
from imcsim import convert
from imcsim.app.cli import main
from imcsim.chip_training import TRAIN_SEED_BASE, ChipInTheLoop, check_evaluation_seeds, weights_only
from imcsim.context import read_context
from imcsim.crossbar import CrossbarLinear
from imcsim.errors import ConfigError
from imcsim.hardware import HardwareConfig
from imcsim.models import convnet, mlp
from imcsim.training import TrainConfig, _output_logits, train


def _net(kind, seed=0):
    torch.manual_seed(seed)
    net = convnet(in_shape=(1, 8, 8), channels=(4, 8), hidden=16, kind=kind, timesteps=3,
                  bits=2 if kind == "qnn" else None)
    with torch.no_grad():  # BatchNorm statistics away from the identity, so folding matters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(1.5, 2.5)  # and strong enough that every layer spikes
    return net.eval()


@pytest.mark.parametrize("kind", ["snn", "qnn"])
def test_training_forward_is_the_converted_chip(kind):
    """The model trains on what it is evaluated on: same chip seed, same logits, bit for bit."""
    net = _net(kind)
    x = torch.rand(12, 1, 8, 8)
    hw = HardwareConfig.preset("rram")
    loop = ChipInTheLoop(net, hw, x, seed_base=1000)
    for step in (0, 3):
        loop.program(step, x)
        ref = convert(net, hw, seed=1000 + step, calibration=x)
        with read_context(torch.arange(12), read_seed=0):
            got = _output_logits(loop(x))
        with torch.no_grad(), read_context(torch.arange(12), read_seed=0):
            want = _output_logits(ref(x))
        assert got.requires_grad
        assert torch.equal(got.detach(), want)
    # a different step is a different chip
    loop.program(1, x)
    with read_context(torch.arange(12), read_seed=0):
        other = _output_logits(loop(x)).detach()
    assert not torch.equal(other, want)
    # every weight, BatchNorm affine parameter and clip of the float model gets a gradient
    _output_logits(loop(x)).sum().backward()
    for name, p in net.named_parameters():
        if p.requires_grad and name.endswith(("weight", "bias")):
            assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def _one_layer(hw, n_in=20, n_out=6, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(n_in, n_out, bias=False)
    model = nn.Sequential(lin)
    x = (torch.rand(30, n_in) < 0.4).float()
    loop = ChipInTheLoop(model, hw, x, seed_base=77)
    loop.program(0, x)
    twin = loop.layers[0][0]
    return lin, twin, loop, x


def test_gradient_through_the_wires_is_the_ir_drop_attenuation():
    """Lossless read-out with wire resistance: the forward is the wire-loaded effective
    weight matrix, the gradient of each weight is the float gradient times that weight's
    attenuation, and attenuation x integer weight reproduces the solver's effective weight."""
    hw = HardwareConfig.ideal().replace(**{"device.g_off": 1e-10, "wires.r_row": 20.0, "wires.r_col": 20.0,
                                           "rows": 32, "cols": 32, "device.bits_per_cell": 3})
    lin, twin, loop, x = _one_layer(hw)
    tiles = twin.tiles
    gain = tiles.grad_gain
    assert gain is not None and float(gain.min()) < 0.999 and float(gain.max()) <= 1.0 + 1e-6
    # independent: the solver's effective weights (W_lin) against integer weights x attenuation
    W_lin = tiles.W_lin[0].T.double()  # (out, in) in units
    w_int = tiles.w_int.double()
    err = (W_lin - gain.double() * w_int).abs().max()
    assert err < 0.01 * (W_lin - w_int).abs().max()  # the attenuation explains >= 99 % of the IR drop
    c = torch.randn(30, 6)
    y = loop(x)
    (y * c).sum().backward()
    want = (c.T @ x) * gain  # d/dW of sum(c * x W_eff^T) with dW_eff/dW = gain
    assert torch.allclose(lin.weight.grad, want, rtol=1e-5, atol=1e-6)


def test_gradient_stops_at_clipping_adc_outputs():
    """An output whose ADC conversion clips passes no gradient; the others pass the
    straight-through one. One conversion per output (column pairs, one slice, one tile)."""
    hw = HardwareConfig.ideal().replace(**{"device.g_off": 1e-7, "device.bits_per_cell": 3, "rows": 32, "cols": 32,
                                           "adc.bits": 4, "adc.per": "pair", "adc.range": "fixed",
                                           "adc.full_scale_fraction": 0.05})
    lin, twin, loop, x = _one_layer(hw)
    tiles = twin.tiles
    adc = tiles.adc()
    current = x.double() @ tiles.G[0].double() / adc.lsb  # the pair currents in ADC steps, (V, out)
    clipped = (current < adc.code_min - 0.5) | (current > adc.code_max + 0.5)
    assert 0 < int(clipped.sum()) < clipped.numel()
    c = torch.randn(30, 6)
    (loop(x) * c).sum().backward()
    want = ((c * (~clipped).float()).T @ x)
    assert torch.allclose(lin.weight.grad, want.float(), rtol=1e-5, atol=1e-6)


def test_train_through_a_chip_and_seed_ranges():
    net = mlp(in_shape=(1, 8, 8), hidden=(16,), kind="snn", timesteps=2)
    x, y = torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))
    hw = HardwareConfig.preset("rram")
    loop = ChipInTheLoop(net, hw, x[:8])
    before = [p.detach().clone() for p in net.parameters()]
    stats = [b.detach().clone() for n, b in net.named_buffers() if "running" in n]
    assert stats
    hist = train(net, x, y, TrainConfig(epochs=1, batch_size=16, lr=1e-2), progress=False, chip=loop)
    assert len(hist) == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    # BatchNorm statistics stay as they are (folded into the chip's weights, as on the chip)
    assert all(torch.equal(a, b) for a, b in zip(stats, [b for n, b in net.named_buffers() if "running" in n]))
    assert loop.step_seed == TRAIN_SEED_BASE + 2  # three steps: chips base, base+1, base+2
    rec = loop.record(3, "chip")
    assert rec["chip_seeds"] == [TRAIN_SEED_BASE, TRAIN_SEED_BASE + 2]
    check_evaluation_seeds({"hardware_training": rec}, range(0, 8))
    with pytest.raises(ConfigError, match="trained on"):
        check_evaluation_seeds({"hardware_training": rec}, [TRAIN_SEED_BASE + 1])


def test_weights_only_is_the_quantiser_on_ideal_hardware():
    hw = HardwareConfig.preset("rram")
    q = weights_only(hw)
    assert q.weight_bits == hw.weight_bits and q.granularity == hw.granularity
    assert q.adc.lossless and q.wires.is_ideal and q.device.variation == 0 and q.device.read_noise == 0
    lin, twin, loop, x = _one_layer(q)
    # the forward is x @ (w_int * scale) exactly: quantisation-aware training of the weights
    w_q = twin.tiles.w_int.float() * twin.tiles.w_scale.unsqueeze(1)
    assert torch.allclose(loop(x), x @ w_q.T, atol=1e-5)
    assert isinstance(twin, CrossbarLinear)


def test_finetune_cli_records_the_chip_and_evaluate_refuses_its_seeds(tmp_path, capsys):
    base = tmp_path / "snn"
    assert main(["train", "--model", "mlp", "--hidden", "16", "--epochs", "1", "--train-limit", "200",
                 "--test-limit", "50", "--quiet", "--out", str(base)]) == 0
    qat = tmp_path / "qat"
    assert main(["train", "--model", "mlp", "--kind", "qnn", "--hidden", "16", "--epochs", "1", "--train-limit", "100",
                 "--test-limit", "50", "--hardware", "rram", "--hardware-mode", "weights", "--quiet",
                 "--out", str(qat)]) == 0
    rec = json.loads((qat / "train.json").read_text())["hardware_training"]
    assert rec["mode"] == "weights" and rec["hardware"]["adc"]["bits"] == "lossless"
    assert rec["hardware"]["weights"]["bits"] == 4
    hat = tmp_path / "hat"
    assert main(["finetune", "--checkpoint", str(base / "model.pt"), "--hardware", "rram", "--epochs", "1",
                 "--quiet", "--out", str(hat)]) == 0
    meta = json.loads((hat / "train.json").read_text())
    rec = meta["hardware_training"]
    assert rec["mode"] == "chip" and rec["hardware"]["name"] == "rram"
    lo, hi = rec["chip_seeds"]
    assert lo == TRAIN_SEED_BASE and hi == lo + 2  # 175 fit samples in batches of 64
    assert "training chip seeds" in (hat / "report.md").read_text()
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(hat / "model.pt"), "--chips", "1", "--seed", str(lo + 1),
                 "--quiet", "--out", str(tmp_path / "ev")]) == 2
    assert "trained on" in capsys.readouterr().err
    assert main(["finetune", "--checkpoint", str(base / "model.pt"), "--hardware", "no-such-chip", "--quiet",
                 "--out", str(tmp_path / "bad")]) != 0
    assert "unknown hardware preset" in capsys.readouterr().err


def test_a_converted_user_model_trains_through_the_chip():
    """A plain nn.Module (Conv -> BatchNorm -> ReLU -> Linear): the folded BatchNorm is
    linked back to its float parameters, the forward is the converted chip's, and training
    through the chip moves the float weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 10)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.1, 0.1)
        model[1].running_var.uniform_(0.5, 2.0)
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    hw = HardwareConfig.preset("rram")
    loop = ChipInTheLoop(model, hw, x, seed_base=500)
    assert loop.layers[0][0].folded_bn == "1"
    loop.program(0, x)
    ref = convert(model, hw, seed=500, calibration=x)
    with torch.no_grad():
        want = ref(x)
    got = loop(x)
    assert torch.equal(got.detach(), want)
    got.sum().backward()
    assert model[1].weight.grad is not None and bool(model[1].weight.grad.abs().sum() > 0)
    w0 = model[0].weight.detach().clone()
    train(model, x, y, TrainConfig(epochs=1, batch_size=16, lr=1e-2), progress=False, chip=loop)
    assert not torch.equal(w0, model[0].weight)


def test_training_through_a_chip_with_a_column_correction(tmp_path):
    """A hardware file with ``adc.correction`` trains (each training chip fits its
    correction on the step's batch); the tile check before training maps the network's
    structure only and must not ask for a fitted correction."""
    from imcsim.cost import layer_specs

    net = _net("qnn")
    hw = HardwareConfig.preset("rram").replace(**{"adc.correction": "moments"})
    plain = layer_specs(net, (1, 8, 8), HardwareConfig.preset("rram"))
    assert layer_specs(net, (1, 8, 8), hw) == plain
    base = tmp_path / "base"
    assert main(["train", "--model", "convnet", "--kind", "qnn", "--epochs", "1", "--train-limit", "100",
                 "--test-limit", "20", "--quiet", "--out", str(base)]) == 0
    toml = tmp_path / "moments.toml"
    rram = (Path(imcsim.__file__).parent / "presets" / "hardware" / "rram.toml").read_text()
    toml.write_text(rram.replace("[adc]\n", '[adc]\ncorrection = "moments"\n', 1))
    out = tmp_path / "hat"
    assert main(["finetune", "--checkpoint", str(base / "model.pt"), "--hardware", str(toml), "--epochs", "1",
                 "--quiet", "--out", str(out)]) == 0
    rec = json.loads((out / "train.json").read_text())["hardware_training"]
    assert rec["hardware"]["adc"]["correction"] == "moments"
