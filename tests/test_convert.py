"""convert(): copies, folds BatchNorm, infers input kinds, reports digital layers, calibrates."""

import copy

import pytest
import torch
import torch.nn as nn

import imcsim
from imcsim import HardwareConfig


def _trained_like(net, seed=0):
    """Give BatchNorm layers non-trivial statistics, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net.eval()


def test_original_untouched_and_layers_replaced():
    net = _trained_like(imcsim.convnet(in_shape=(1, 12, 12), channels=(4, 8), hidden=16, kind="snn", timesteps=2))
    before = copy.deepcopy(net.state_dict())
    x = torch.rand(3, 1, 12, 12)
    xnet = imcsim.convert(net, HardwareConfig.ideal(), calibration=x)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert not any(isinstance(m, (nn.Linear, nn.Conv2d)) for m in xnet.modules())
    rep = xnet.conversion_report
    assert rep.crossbar_layers == ["body.0", "body.4", "body.9", "body.12"]
    assert rep.digital_layers == []
    specs = [m.input_spec.kind for _, m in imcsim.crossbar_layers(xnet)]
    assert specs == ["analog", "spike", "spike", "spike"]


def test_batchnorm_folding_matches_float_model_at_high_precision():
    net = _trained_like(imcsim.mlp(in_shape=(1, 6, 6), hidden=(24,), kind="qnn", bits=8), seed=1)
    x = torch.rand(64, 1, 6, 6)
    hw = HardwareConfig.ideal(weight_bits=16, **{"inputs.bits": 16})
    xnet = imcsim.convert(net, hw, calibration=x)
    assert "folded" in [e.status for e in xnet.conversion_report.entries]
    specs = [m.input_spec for _, m in imcsim.crossbar_layers(xnet)]
    assert specs[1].kind == "quantized" and specs[1].bits == 8
    with torch.no_grad():
        ref, out = net(x), xnet(x)
    # 16-bit weights and inputs: the only differences are tiny quantisation errors, except
    # where an activation sits at a rounding boundary of the 8-bit QuantAct.
    close = (out - ref).abs() < 1e-2
    assert close.float().mean() > 0.97


def test_digital_layers_are_reported_with_reasons():
    body = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3), nn.BatchNorm1d(5))
    body[4] = nn.BatchNorm1d(3)
    model = nn.Sequential(body, nn.Linear(3, 2))
    xm = imcsim.convert(model, HardwareConfig.ideal(), exclude=["1"])
    rep = {e.name: (e.status, e.detail) for e in xm.conversion_report.entries}
    assert rep["0.0"] == ("digital", "padding_mode='circular' (only 'zeros' is supported)")
    assert rep["0.3"][0] == "crossbar" and "0.4 folded in" in rep["0.3"][1]
    assert rep["1"] == ("digital", "excluded by the user")
    assert isinstance(xm[0][0], nn.Conv2d) and isinstance(xm[1], nn.Linear)
    with pytest.raises(ValueError, match="exclude names 'nope', which is not a module"):
        imcsim.convert(model, HardwareConfig.ideal(), exclude=["nope"])
    with pytest.raises(ValueError, match="hw must be a HardwareConfig"):
        imcsim.convert(model, "rram")


def test_calibration_sets_ranges_and_same_seed_same_outputs():
    net = _trained_like(imcsim.mlp(in_shape=(1, 8, 8), hidden=(32,), kind="snn", timesteps=3), seed=2)
    x = torch.rand(40, 1, 8, 8)
    hw = HardwareConfig.preset("rram")
    a = imcsim.convert(net, hw, calibration=x)
    layers = [m for _, m in imcsim.crossbar_layers(a)]
    assert layers[0].input_spec.scale == pytest.approx(x.max().item() / 255)
    assert all(m.adc_full_scale and m.adc_full_scale > 0 for m in layers)
    b = imcsim.convert(net, hw, calibration=x)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        c = imcsim.convert(net, hw, calibration=x, seed=1)
        assert not torch.equal(a(x), c(x))


def test_events_collected_per_layer():
    net = _trained_like(imcsim.mlp(in_shape=(1, 4, 4), hidden=(8,), kind="snn", timesteps=2), seed=3)
    xnet = imcsim.convert(net, HardwareConfig.ideal(), calibration=torch.rand(4, 1, 4, 4))
    imcsim.reset_events(xnet)
    with torch.no_grad():
        xnet(torch.rand(5, 1, 4, 4))
    ev = imcsim.collect_events(xnet)
    assert list(ev) == ["body.1", "body.3", "body.4"]  # crossbar, neuron, crossbar
    assert ev["body.1"]["vectors"] == 10 and ev["body.3"]["updates"] == 2 * 5 * 8
    assert ev["body.4"]["active_rows"] == ev["body.3"]["spikes"]  # one column tile
