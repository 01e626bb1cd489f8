"""convert(): any traceable model; exact on ideal hardware for weights on the grid; input
kinds inferred from the graph; BatchNorm folding; digital ops counted; clear refusals."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import imcsim
from imcsim import IF, HardwareConfig, QuantAct
from imcsim.digital import DigitalModule, DigitalOp

IDEAL = HardwareConfig.ideal()


def _on_grid(model, seed=0):
    """Weights on the 4-bit grid with power-of-two scales (so float and crossbar sums are
    both exact): w = k / 8, |k| <= 7, each output channel reaching 7; biases k / 16."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            w = torch.randint(-7, 8, m.weight.shape, generator=g).float()
            w.view(w.shape[0], -1)[:, 0] = 7
            m.weight.data = w / 8
            if m.bias is not None:
                m.bias.data = torch.randint(-8, 8, m.bias.shape, generator=g).float() / 16
    return model


def _images(n=48, shape=(1, 8, 8), seed=1):
    """Inputs on the 8-bit grid k/256 whose largest value is 255/256 (input step 1/256)."""
    x = torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(seed)).float() / 256
    x.view(n, -1)[0, 0] = 255 / 256
    return x


class ResidualSNN(nn.Module):
    """SEW-style residual block (spikes + spikes), functional pooling and flatten."""

    def __init__(self):
        super().__init__()
        self.stem, self.n0 = nn.Conv2d(1, 4, 3, padding=1), IF(time_flat=True)
        self.c1, self.n1 = nn.Conv2d(4, 4, 3, padding=1), IF(time_flat=True)
        self.c2, self.n2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), IF(time_flat=True)
        self.c3, self.n3 = nn.Conv2d(4, 6, 3, padding=1), IF(time_flat=True)
        self.fc = nn.Linear(6 * 4 * 4, 10)

    def forward(self, x):
        s0 = self.n0(self.stem(x))
        s2 = self.n2(self.c2(self.n1(self.c1(s0))))
        h = self.n3(self.c3(s0 + s2))
        return self.fc(torch.flatten(F.avg_pool2d(h, 2), 1))


class ResidualQNN(nn.Module):
    """Spiking-ResNet-style residual (analog add before the activation), with QuantAct."""

    def __init__(self):
        super().__init__()
        self.stem, self.q0 = nn.Conv2d(1, 4, 3, padding=1), QuantAct(2, clip=0.75)
        self.c1, self.q1 = nn.Conv2d(4, 4, 3, padding=1), QuantAct(2, clip=0.75)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.q2 = QuantAct(2, clip=0.75)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        a = self.q0(self.stem(x))
        h = self.q2(self.c2(self.q1(self.c1(a))) + a)  # residual added before the activation
        return self.fc(h.flatten(1))


class RecurrentSNN(nn.Module):
    """A time loop in forward: one recurrent weight matrix fed back every timestep."""

    def __init__(self, T=5):
        super().__init__()
        self.T = T
        self.inp, self.rec, self.out = nn.Linear(12, 16), nn.Linear(16, 16, bias=False), nn.Linear(16, 4)
        self.lif = IF()

    def forward(self, x):  # x: (T, B, 12)
        s = x.new_zeros(x.shape[1], 16)
        outs = []
        for t in range(self.T):
            i = self.inp(x[t]) + self.rec(s)
            s = self.lif(i.unsqueeze(0))[0]
            outs.append(self.out(s))
        return torch.stack(outs)


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3, padding=1)
        self.n1 = IF(time_flat=True)
        self.g = nn.Conv2d(4, 8, 3, padding=1, groups=2)  # grouped
        self.n2 = IF(time_flat=True)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise
        self.n3 = IF(time_flat=True)
        self.fc = nn.Linear(8 * 4 * 4, 5, bias=False)

    def forward(self, x):  # x: (N, 2, 16)
        h = self.n1(self.c1(x)).view(-1, 4, 4, 4)
        h = self.n3(self.dw(self.n2(self.g(h))))
        return self.fc(h.flatten(1))


def _kinds(model):
    return model.conversion_report.input_kinds()


def test_residual_snn_exact_and_every_input_kind_inferred():
    net = imcsim.Network(_on_grid(ResidualSNN()), "snn", timesteps=4).eval()
    x = _images()
    chip = imcsim.convert(net, IDEAL, calibration=x)
    with torch.no_grad():
        assert torch.equal(chip(x), net(x))
    k = _kinds(chip)
    assert k["body.stem"] == "analog, 8-bit bit_serial" and k["body.c1"] == "spikes"
    assert k["body.c3"] == "counts 0..2 (2-bit bit_serial)"  # spikes + spikes
    assert k["body.fc"] == "counts 0..4 x 0.25 (3-bit bit_serial)"  # 2x2 average of spikes
    rep = {e.name: e for e in chip.conversion_report.entries}
    assert rep["body.add"].status == "digital" and rep["body.avg_pool2d"].status == "digital"
    assert rep["body.flatten"].status == "free"
    assert isinstance(chip.body, torch.fx.GraphModule)


def test_residual_qnn_exact_with_b_bit_inputs():
    net = imcsim.Network(_on_grid(ResidualQNN(), seed=2), "qnn").eval()
    x = _images(seed=3)
    chip = imcsim.convert(net, IDEAL, calibration=x)
    with torch.no_grad():
        assert torch.equal(chip(x), net(x))
    k = _kinds(chip)
    assert k["body.c1"] == "2-bit activations (bit_serial)" and k["body.fc"] == "2-bit activations (bit_serial)"


def test_recurrent_snn_exact_and_its_recurrent_weights_on_crossbars():
    net = _on_grid(RecurrentSNN(), seed=4).eval()
    x = (torch.rand(5, 30, 12, generator=torch.Generator().manual_seed(5)) < 0.4).float()
    chip = imcsim.convert(net, IDEAL, calibration=x, batch_dim=1)
    with torch.no_grad():
        assert torch.equal(chip(x), net(x))
    assert chip.conversion_report.traced
    rep = {e.name: e for e in chip.conversion_report.entries}
    assert rep["rec"].status == "crossbar" and "used 5 times" in rep["rec"].detail and "input spikes" in rep["rec"].detail
    assert rep["inp"].status == "crossbar" and "input spikes" in rep["inp"].detail  # inferred from the data


def test_grouped_depthwise_and_conv1d_exact():
    net = imcsim.Network(_on_grid(Grouped(), seed=6), "snn", timesteps=3).eval()
    x = torch.randint(0, 3, (20, 2, 16), generator=torch.Generator().manual_seed(7)).float()  # integer counts
    chip = imcsim.convert(net, IDEAL, calibration=x)
    with torch.no_grad():
        assert torch.equal(chip(x), net(x))
    rep = {e.name: e for e in chip.conversion_report.entries}
    assert "2 groups on their own tiles" in rep["body.g"].detail and "8 groups" in rep["body.dw"].detail
    assert rep["body.c1"].status == "crossbar" and "counts 0..2" in rep["body.c1"].detail
    assert chip.body.dw.tiles.grid.n_tiles == 1 and chip.body.dw.tiles.groups == 8  # one tile per group


def test_batchnorm_folds_into_the_layer_it_follows_anywhere_in_the_graph():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.lif = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), IF(time_flat=True)
            self.bn_free = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 8 * 8, 3)

        def forward(self, x):
            s = self.lif(self.bn(self.conv(x)))
            return self.fc(F.relu(self.bn_free(s + s)).flatten(1))  # this BN follows an add: stays digital

    torch.manual_seed(0)
    m = Net()
    for bn in (m.bn, m.bn_free):
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    net = imcsim.Network(m, "snn", timesteps=2).eval()
    x = _images()
    hw = HardwareConfig.ideal(weight_bits=16, **{"inputs.bits": 16})
    chip = imcsim.convert(net, hw, calibration=x)
    rep = {e.name: (e.status, e.detail) for e in chip.conversion_report.entries}
    assert rep["body.bn"] == ("folded", "into body.conv") and "body.bn folded in" in rep["body.conv"][1]
    assert rep["body.bn_free"][0] == "digital"
    with torch.no_grad():  # the folded layer computes conv + BN (16-bit weights and inputs: to ~1e-4)
        torch.testing.assert_close(chip.body.conv(x), m.bn(m.conv(x)), rtol=1e-3, atol=1e-3)


def test_sequential_bodies_stay_sequential_and_original_is_untouched():
    net = imcsim.convnet(in_shape=(1, 12, 12), channels=(4, 8), hidden=16, kind="snn", timesteps=2).eval()
    before = copy.deepcopy(net.state_dict())
    xnet = imcsim.convert(net, IDEAL, calibration=torch.rand(3, 1, 12, 12))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert isinstance(xnet.body, nn.Sequential)
    assert not any(type(m) in (nn.Linear, nn.Conv2d) for m in xnet.modules())
    rep = xnet.conversion_report
    assert rep.crossbar_layers == ["body.0", "body.4", "body.9", "body.12"]
    assert rep.digital_layers == ["body.3", "body.7"]  # max pooling: counted comparisons
    assert [m.input_spec.kind for _, m in imcsim.crossbar_layers(xnet)] == ["analog", "spike", "spike", "spike"]


def test_digital_layers_are_counted_and_reported_with_reasons():
    body = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3), nn.BatchNorm1d(3))
    model = nn.Sequential(body, nn.Linear(3, 2))
    xm = imcsim.convert(model, IDEAL, exclude=["1"], calibration=torch.rand(5, 2, 6, 6))
    rep = {e.name: (e.status, e.detail) for e in xm.conversion_report.entries}
    assert rep["0.0"][0] == "digital" and rep["0.0"][1].startswith("padding_mode='circular' (only 'zeros' is supported)")
    assert rep["0.3"][0] == "crossbar" and "0.4 folded in" in rep["0.3"][1]
    assert rep["1"][0] == "digital" and rep["1"][1].startswith("excluded by the user")
    assert isinstance(xm[0][0], DigitalModule) and isinstance(xm[1], DigitalModule)
    imcsim.reset_events(xm)
    with torch.no_grad():
        xm(torch.rand(2, 2, 6, 6))
    ev = imcsim.collect_events(xm)
    assert ev["0.0"]["macs"] == 2 * 4 * 6 * 6 * (2 * 9)  # the digital conv's multiply-accumulates
    assert ev["0.1"]["compares"] == 2 * 4 * 6 * 6  # ReLU on analog values
    assert ev["1"]["macs"] == 2 * 2 * 3
    with pytest.raises(ValueError, match="exclude names 'nope', which is not a module"):
        imcsim.convert(model, IDEAL, exclude=["nope"])
    with pytest.raises(ValueError, match="hw must be a HardwareConfig"):
        imcsim.convert(model, "rram")
    with pytest.raises(ValueError, match=r"convert: seed must be an integer, got 1.7"):
        imcsim.convert(model, IDEAL, seed=1.7)


def test_untraceable_model_falls_back_and_says_why():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.lif, self.fc2 = nn.Linear(6, 5), IF(), nn.Linear(5, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = x * 1.0
            return self.fc2(self.lif(self.fc1(x).unsqueeze(0))[0])

    xm = imcsim.convert(Branchy(), IDEAL, calibration=torch.rand(4, 6))
    rep = xm.conversion_report
    assert not rep.traced and "not traceable by torch.fx" in rep.note and "walking its submodules" in rep.note
    assert rep.input_kinds() == {"fc1": "analog, 8-bit bit_serial", "fc2": "spikes"}


def test_unknown_weighted_layer_is_an_error_naming_it():
    model = nn.Sequential(nn.Linear(4, 4), nn.Embedding(10, 4))
    with pytest.raises(ValueError, match=r"node '1' \(torch.nn.modules.sparse.Embedding\) has weights but no crossbar"):
        imcsim.convert(model, IDEAL)


def test_calibration_sets_ranges_and_same_seed_same_outputs():
    net = imcsim.mlp(in_shape=(1, 8, 8), hidden=(32,), kind="snn", timesteps=3).eval()
    with torch.no_grad():
        net.body[2].running_var.fill_(0.05)  # make the hidden layer spike
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


@pytest.mark.parametrize("kind", ["snn", "qnn"])
def test_calibration_gives_the_same_ranges_whatever_its_batch(kind, monkeypatch):
    """Calibration reads its images a few at a time (its memory grows with the batch): the
    input and ADC ranges, and so the chip's outputs, are the same bits in one pass, the
    default passes, passes of CALIBRATION_BATCH or 7 images (read noise keyed per image), or
    with each layer's calibration reads split into chunks of a few vectors."""
    import imcsim.crossbar as xb
    from imcsim.convert.core import CALIBRATION_BATCH

    torch.manual_seed(0)
    net = imcsim.convnet(in_shape=(1, 10, 10), channels=(6,), hidden=12, kind=kind, timesteps=3).eval()
    with torch.no_grad():  # an untrained net, made to spike
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(4.0)
    hw = HardwareConfig.preset("rram").replace(rows=16, cols=16)
    x = torch.rand(2 * CALIBRATION_BATCH + 5, 1, 10, 10, generator=torch.Generator().manual_seed(3))
    chips, ranges = [], []
    for batch, chunk in ((x.shape[0], None), (None, None), (7, None), (CALIBRATION_BATCH, None), (None, 64)):
        if chunk:  # a layer's calibration reads in chunks of ~64 / (2 x columns) vectors
            monkeypatch.setattr(xb, "_OBSERVE_CHUNK_ELEMENTS", chunk)
        chip = imcsim.calibrate(imcsim.convert(net, hw), x, batch_size=batch)
        layers = [m for _, m in imcsim.crossbar_layers(chip)]
        ranges.append([(m.input_spec.scale, m.adc_full_scale) for m in layers])
        chips.append(chip)
    assert all(s > 0 for s, _ in ranges[0][1:] if s) and all(f and f > 0 for _, f in ranges[0])
    assert all(r == ranges[0] for r in ranges[1:])
    with torch.no_grad():
        y = [c(x[:9]) for c in chips]
    assert all(torch.equal(v, y[0]) for v in y[1:])
    with pytest.raises(ValueError, match="calibrate: batch_size must be >= 1, got 0"):
        imcsim.calibrate(chips[0], x, batch_size=0)


def test_calibration_pass_size_follows_the_size_of_a_sample():
    from imcsim.convert.core import CALIBRATION_BATCH, CALIBRATION_BATCH_MAX, CALIBRATION_PASS_VALUES, calibration_batch

    assert (CALIBRATION_BATCH, CALIBRATION_BATCH_MAX, CALIBRATION_PASS_VALUES) == (8, 128, 16384)
    assert calibration_batch(torch.zeros(128, 3, 32, 32)) == 8  # 3,072 values a sample: 5, at least 8
    assert calibration_batch(torch.zeros(128, 1, 28, 28)) == 16384 // 784 == 20
    assert calibration_batch(torch.zeros(128, 1, 8, 8)) == 128  # 256, at most 128
    assert calibration_batch(torch.zeros(10, 128, 2, 34, 34), batch_dim=1) == 8  # (T, B, ...) event frames
    assert calibration_batch(torch.zeros(4, 128, 16), batch_dim=1) == 128  # 64 values a sample (4 steps x 16)
    assert calibration_batch(torch.zeros(4, 128, 64), batch_dim=1) == 16384 // 256 == 64
    assert calibration_batch([torch.zeros(4, 64)]) == 8 and calibration_batch(torch.zeros(0, 5)) == 8


def test_events_collected_per_layer():
    net = imcsim.mlp(in_shape=(1, 4, 4), hidden=(8,), kind="snn", timesteps=2).eval()
    xnet = imcsim.convert(net, IDEAL, calibration=torch.rand(4, 1, 4, 4))
    imcsim.reset_events(xnet)
    with torch.no_grad():
        xnet(torch.rand(5, 1, 4, 4))
    ev = imcsim.collect_events(xnet)
    assert list(ev) == ["body.1", "body.3", "body.4"]  # crossbar, neuron, crossbar
    assert ev["body.1"]["vectors"] == 10 and ev["body.3"]["updates"] == 2 * 5 * 8
    assert ev["body.4"]["active_rows"] == ev["body.3"]["spikes"]  # one column tile


def test_functional_ops_are_counted():
    net = imcsim.Network(_on_grid(ResidualSNN()), "snn", timesteps=2).eval()
    chip = imcsim.convert(net, IDEAL, calibration=_images())
    imcsim.reset_events(chip)
    with torch.no_grad():
        chip(_images(n=3))
    ev = imcsim.collect_events(chip)
    assert ev["body.digital.add"]["adds"] == 2 * 3 * 4 * 8 * 8
    assert ev["body.digital.avg_pool2d"]["adds"] == 2 * 3 * 6 * 4 * 4 * 3 and isinstance(chip.body.digital.add, DigitalOp)


def test_reprogram_equals_a_fresh_conversion_with_that_seed():
    torch.manual_seed(0)
    net = imcsim.convnet(in_shape=(1, 10, 10), channels=(6,), hidden=12, kind="snn", timesteps=3).eval()
    with torch.no_grad():  # an untrained net, made to spike
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(4.0)
    hw = HardwareConfig.preset("rram")
    cal = torch.rand(24, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    x = torch.rand(16, 1, 10, 10, generator=torch.Generator().manual_seed(2))
    chip0 = imcsim.convert(net, hw, calibration=cal, seed=0)
    chip5 = imcsim.reprogram(chip0, 5, calibration=cal)
    fresh = imcsim.convert(net, hw, calibration=cal, seed=5)
    from imcsim.training import predict_logits

    assert torch.equal(predict_logits(chip5, x), predict_logits(fresh, x))
    for (_, a), (_, b) in zip(imcsim.crossbar_layers(chip5), imcsim.crossbar_layers(fresh)):
        assert a.seed == b.seed and torch.equal(a.G, b.G) and a.adc_full_scale == b.adc_full_scale
    # from a reprogrammed instance too (study workers reprogram whichever instance they kept)
    chip7 = imcsim.reprogram(chip5, 7, calibration=cal)
    assert torch.equal(predict_logits(chip7, x),
                       predict_logits(imcsim.convert(net, hw, calibration=cal, seed=7), x))
    # the original chip is untouched, and another seed is another chip
    assert torch.equal(predict_logits(chip0, x), predict_logits(imcsim.convert(net, hw, calibration=cal, seed=0), x))
    assert not torch.equal(predict_logits(chip0, x), predict_logits(chip5, x))
    with pytest.raises(imcsim.errors.CalibrationError, match="pass calibration data"):
        imcsim.reprogram(chip0, 6)
    with pytest.raises(ValueError, match="made by imcsim.convert"):
        imcsim.reprogram(net, 1)


def test_reprogram_of_a_plain_user_model_runs_its_own_chip():
    """A converted nn.Sequential (not a Network) wraps its forward; the reprogrammed copy
    must run the copy's layers, not the original's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 12), nn.ReLU(), nn.Linear(12, 4))
    hw = HardwareConfig.preset("rram")
    x = torch.rand(20, 30, generator=torch.Generator().manual_seed(1))
    chip0 = imcsim.convert(model, hw, calibration=x, seed=0)
    chip3 = imcsim.reprogram(chip0, 3, calibration=x)
    fresh = imcsim.convert(model, hw, calibration=x, seed=3)
    with torch.no_grad():
        assert torch.equal(chip3(x), fresh(x))
        assert not torch.equal(chip3(x), chip0(x))


@pytest.mark.parametrize("style, after_add", [("sew", "counts 0..2 (2-bit bit_serial)"), ("spiking", "spikes")])
@pytest.mark.parametrize("kind", ["snn", "qnn"])
def test_zoo_resnet_converts_with_the_inputs_of_its_style(style, after_add, kind):
    net = imcsim.resnet(in_shape=(1, 12, 12), channels=(4, 8), blocks=(2, 1), style=style, kind=kind,
                        timesteps=3).eval()
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    chip = imcsim.convert(net, IDEAL, calibration=x)
    k = _kinds(chip)
    assert k["body.stem"] == "analog, 8-bit bit_serial"
    if kind == "snn":
        assert k["body.blocks.0.conv1"] == "spikes"
        assert k["body.blocks.1.conv1"] == after_add  # fed by block 0's output (its skip sum for SEW)
        assert k["body.fc"].startswith("counts")  # 2x2 average of spikes (or of SEW counts)
    else:
        assert k["body.blocks.0.conv1"] == "2-bit activations (bit_serial)"
    with torch.no_grad():
        out, ref = chip(x), net(x)
    assert out.shape == ref.shape == ((3 if kind == "snn" else 1), 6, 10)


def _storages(model):
    return {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()] if t.numel()}


class _Tied(nn.Module):
    """fc2 on crossbars; fc3 and fc4 kept digital (excluded), their weights tied to fc2's;
    a BatchNorm folded into fc1."""

    def __init__(self, branchy=False):
        super().__init__()
        self.fc1, self.bn = nn.Linear(6, 6), nn.BatchNorm1d(6)
        self.fc2, self.fc3, self.fc4 = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6)
        self.fc3.weight = self.fc4.weight = self.fc2.weight
        self.branchy = branchy

    def forward(self, x):
        if self.branchy and x.sum() > 0:  # torch.fx cannot trace this: the module walk converts it
            x = x * 1.0
        return self.fc4(self.fc3(self.fc2(F.relu(self.bn(self.fc1(x))))))


@pytest.mark.parametrize("branchy", [False, True])
def test_converted_model_owns_its_tensors(branchy):
    """The converter takes the float layers it maps without copying them (converting_copy),
    then copies what the converted model still holds of them (unshare): afterwards no
    tensor is shared with the original, tied weights stay tied, and changing the original
    changes nothing in the converted model."""
    model = _Tied(branchy).eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
    x = torch.rand(5, 6)
    xm = imcsim.convert(model, IDEAL, exclude=["fc3", "fc4"], calibration=x)
    assert xm.conversion_report.traced is not branchy
    assert not _storages(xm) & _storages(model)
    assert isinstance(xm.fc3, DigitalModule) and isinstance(xm.fc4, DigitalModule)
    assert xm.fc3.module.weight is xm.fc4.module.weight  # still tied to each other
    torch.testing.assert_close(xm.fc3.module.weight, model.fc2.weight, rtol=0, atol=0)
    with torch.no_grad():
        y = xm(x)
        for p in model.parameters():
            p.add_(1.0)
        torch.testing.assert_close(xm(x), y, rtol=0, atol=0)


class _ReadsItsWeights(nn.Module):
    """fc is called and its weight read directly; bn follows fc and its bias is read too."""

    def __init__(self, branchy=False):
        super().__init__()
        self.a, self.fc, self.bn, self.branchy = nn.Linear(6, 6), nn.Linear(6, 4), nn.BatchNorm1d(4), branchy

    def forward(self, x):
        if self.branchy and x.sum() > 0:  # data-dependent control flow: not traceable
            x = x * 1.0
        h = self.bn(self.fc(torch.relu(self.a(x))))
        return F.linear(h, self.fc.weight[:, :4]) + self.bn.bias


def test_layers_whose_tensors_the_forward_reads_stay_digital():
    model = _ReadsItsWeights().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.bias.uniform_(-0.5, 0.5)
    xm = imcsim.convert(model, IDEAL, calibration=torch.rand(8, 6))
    rep = {e.name: (e.status, e.detail) for e in xm.conversion_report.entries}
    assert rep["a"][0] == "crossbar"
    assert rep["fc"] == ("digital", "fc.weight is read directly by the forward; priced as digital MACs")
    assert rep["bn"][0] == "digital" and rep["bn"][1].startswith("not folded: bn.bias is read directly")
    x = torch.rand(3, 6)
    with torch.no_grad():  # the reference: the chip's own first layer, then the float model's operations
        h = model.bn(model.fc(torch.relu(xm.a(x))))
        want = F.linear(h, model.fc.weight[:, :4]) + model.bn.bias
        assert torch.equal(xm(x), want)
    assert not any(k.startswith(("fc.weight", "bn.bias")) for k in xm.state_dict())  # no second copy registered
    assert torch.equal(copy.deepcopy(xm.fc).weight, model.fc.weight)  # copies hand the wrapped tensors out too
    with pytest.raises(AttributeError):  # a bare instance (as unpickling makes one) has nothing to hand out
        DigitalModule.__new__(DigitalModule).weight


def test_an_untraced_forward_reading_a_crossbar_layers_weight_is_told_how_to_keep_it_digital():
    model = _ReadsItsWeights(branchy=True).eval()
    with pytest.raises(AttributeError, match=r"crossbar layer 'fc' holds no float weight .* exclude=\['fc'\]"):
        imcsim.convert(model, IDEAL, calibration=torch.rand(8, 6))
    xm = imcsim.convert(model, IDEAL, exclude=["fc"], calibration=torch.rand(8, 6))
    assert not xm.conversion_report.traced
    x = torch.rand(3, 6)
    with torch.no_grad():
        h = model.bn(model.fc(torch.relu(xm.a(x))))
        assert torch.equal(xm(x), F.linear(h, model.fc.weight[:, :4]) + model.bn.bias)
