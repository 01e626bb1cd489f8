"""Models from snnTorch, SpikingJelly and Norse: the adapters reproduce each framework's own
simulation, NIR round trips are spike-for-spike exact, and conversion keeps predictions.

The frameworks are test dependencies (installed by .ci/run); a test skips, saying so, only
where its framework is not installed."""

import itertools

import pytest
import torch
import torch.nn as nn

import imcsim
from imcsim.convert.frameworks import adapt
from imcsim.datasets import load_dataset
from imcsim.training import TrainConfig, train

snn = pytest.importorskip("snntorch", reason="snnTorch is not installed (pip install snntorch)")


def _seq(T=9, shape=(5, 7), seed=0, scale=0.8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, *shape, generator=g) * scale + 0.4


# ------------------------------------------------------------------------------ adapters


@pytest.mark.parametrize("reset, delay", list(itertools.product(["subtract", "zero", "none"], [True, False])))
def test_snntorch_leaky_adapter_equals_snntorch(reset, delay):
    x = _seq()
    beta = torch.rand(7, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.5
    ref = snn.Leaky(beta=beta, threshold=0.9, reset_mechanism=reset, reset_delay=delay)
    mine = adapt(ref)
    mem_r, mem_m = ref.init_leaky(), mine.init_leaky()
    for t in range(x.shape[0]):
        s_r, mem_r = ref(x[t], mem_r)
        s_m, mem_m = mine(x[t], mem_m)
        assert torch.equal(s_r, s_m) and torch.allclose(mem_r, mem_m, atol=1e-6), t
    assert mine.events.counts["updates"] == x.numel()


@pytest.mark.parametrize("reset, delay", list(itertools.product(["subtract", "zero"], [True, False])))
def test_snntorch_synaptic_adapter_equals_snntorch_stateful(reset, delay):
    x = _seq(seed=3)
    ref = snn.Synaptic(alpha=0.6, beta=0.85, reset_mechanism=reset, reset_delay=delay, init_hidden=True, output=True)
    mine = adapt(ref)
    for t in range(x.shape[0]):
        out_r, out_m = ref(x[t]), mine(x[t])
        for a, b in zip(out_r, out_m):
            assert torch.allclose(a, b, atol=1e-6), t


def test_spikingjelly_nodes_equal_spikingjelly():
    sj = pytest.importorskip("spikingjelly.activation_based.neuron", reason="SpikingJelly is not installed")
    x = _seq(seed=5, scale=1.2)
    cases = [sj.IFNode(), sj.IFNode(v_reset=None), sj.LIFNode(tau=3.0), sj.LIFNode(tau=2.5, v_reset=None),
             sj.LIFNode(tau=4.0, decay_input=False, v_reset=0.1), sj.ParametricLIFNode(init_tau=3.0)]
    for ref in cases:
        mine = adapt(ref)
        ref.reset()
        r = torch.stack([ref(x[t]) for t in range(x.shape[0])])
        m = torch.stack([mine(x[t]) for t in range(x.shape[0])])
        assert torch.equal(r, m), type(ref).__name__
        ref.reset()
        ref.step_mode, mine.step_mode, mine.v = "m", "m", None  # multi-step: the whole sequence in one call
        assert torch.equal(ref(x), mine(x))


def test_norse_cells_equal_norse():
    norse = pytest.importorskip("norse.torch", reason="Norse is not installed")
    x = _seq(seed=7, scale=30.0)
    p = norse.LIFParameters(tau_syn_inv=torch.tensor(150.0), tau_mem_inv=torch.tensor(90.0), v_th=torch.tensor(0.6))
    for ref in (norse.LIFCell(p), norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(80.0),
                                                                          v_th=torch.tensor(0.4)))):
        mine = adapt(ref)
        sr = sm = None
        spikes = 0
        for t in range(x.shape[0]):
            zr, sr = ref(x[t], sr)
            zm, sm = mine(x[t], sm)
            assert torch.equal(zr, zm) and torch.allclose(sr.v, sm.v, atol=1e-5), (type(ref).__name__, t)
            spikes += int(zr.sum())
        assert spikes > 0


def test_unsupported_parameters_are_refused_by_name():
    with pytest.raises(ValueError, match="graded_spikes_factor=2.0"):
        adapt(snn.Leaky(beta=0.9, graded_spikes_factor=2.0))
    with pytest.raises(ValueError, match="inhibition=True"):
        adapt(snn.Leaky(beta=0.9, inhibition=True))
    with pytest.raises(ValueError, match=r"snntorch.Alpha has no imcsim equivalent yet \(supported: Leaky, Synaptic"):
        adapt(snn.Alpha(alpha=0.9, beta=0.8))
    model = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, graded_spikes_factor=3.0, init_hidden=True))
    with pytest.raises(ValueError, match="graded_spikes_factor=3.0"):
        imcsim.convert(imcsim.Stepwise(model), imcsim.HardwareConfig.ideal())


# ------------------------------------------------------------------------------ whole models


def _on_grid(model, bits=4):
    """Post-training quantisation on the framework side: each output channel's weights onto
    the b-bit grid imcsim maps (what a user deploying to b-bit hardware does)."""
    q = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                w = m.weight.view(m.weight.shape[0], -1)
                s = w.abs().amax(1, keepdim=True) / q
                w.copy_(torch.round(w / s) * s)
    return model


@pytest.fixture(scope="module")
def events():
    return load_dataset("event-digits")


def test_snntorch_model_through_nir_and_directly(events):
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)

    def leaky(shape, beta, **kw):  # per-neuron parameters so snnTorch's export records the shapes (snnTorch #410)
        return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), init_hidden=True,
                         reset_mechanism="zero", **kw)

    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), leaky((8, 14, 14), 0.8), nn.AvgPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), leaky((16, 7, 7), 0.9),
                        nn.Flatten(), nn.Linear(16 * 7 * 7, 10), leaky((10,), 0.7, output=True))
    model = imcsim.Stepwise(net)  # output spikes
    train(model, events.x_train, events.y_train, TrainConfig(epochs=3, batch_size=32, lr=5e-3), progress=False)
    _on_grid(net)
    x = events.x_test[:, :100]  # 100 test sequences (T=10, 2 x 14 x 14)
    utils.reset(net)
    with torch.no_grad():
        ref = torch.stack([net(x[t])[0] for t in range(x.shape[0])])  # snnTorch's own simulation
        graph = export_to_nir(net, x[0], ignore_dims=[0])
    assert ref.mean() > 0.01  # the output layer is active
    imported = imcsim.from_nir(graph, dt=1e-4)
    with torch.no_grad():
        assert torch.equal(imported(x), ref)  # spike for spike, before conversion
    cls_ref = ref.sum(0).argmax(-1)
    for m in (imported, model):  # through NIR, and the snnTorch model passed to convert directly
        chip = imcsim.convert(m, imcsim.HardwareConfig.ideal(), calibration=events.x_train[:, :64])
        with torch.no_grad():
            out = chip(x)
        assert (out.sum(0).argmax(-1) == cls_ref).float().mean() >= 0.99
    assert "snntorch.Leaky" in str(chip.conversion_report)


def test_spikingjelly_model_through_nir_and_directly(events):
    pytest.importorskip("spikingjelly", reason="SpikingJelly is not installed")
    from spikingjelly.activation_based import functional, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), neuron.LIFNode(tau=2.0), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 7 * 7, 10), neuron.IFNode())
    model = imcsim.Stepwise(net)
    train(model, events.x_train, events.y_train, TrainConfig(epochs=3, batch_size=32, lr=5e-3), progress=False)
    _on_grid(net)
    x = events.x_test[:, :100]
    functional.reset_net(net)
    with torch.no_grad():
        ref = torch.stack([net(x[t]) for t in range(x.shape[0])])
        functional.reset_net(net)
        graph = export_to_nir(net, x[0])
    assert ref.mean() > 0.01
    imported = imcsim.from_nir(graph, dt=1e-4)
    with torch.no_grad():
        assert torch.equal(imported(x), ref)
    cls_ref = ref.sum(0).argmax(-1)
    for m in (imported, model):
        chip = imcsim.convert(m, imcsim.HardwareConfig.ideal(), calibration=events.x_train[:, :64])
        with torch.no_grad():
            assert (chip(x).sum(0).argmax(-1) == cls_ref).float().mean() >= 0.99


def test_a_model_converts_right_after_training_with_its_states_in_the_autograd_graph():
    """snnTorch's init_hidden neurons keep ``mem`` from the last training step, attached to
    the autograd graph; torch refuses to deep-copy such tensors. convert copies them detached."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 4), snn.Leaky(beta=0.9, init_hidden=True))
    model = imcsim.Stepwise(net)
    x = (torch.rand(3, 5, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    model(x).sum().backward()  # the last step's mem now has a grad_fn
    assert net[2].mem.grad_fn is not None
    chip = imcsim.convert(model, imcsim.HardwareConfig.ideal(), calibration=x)
    with torch.no_grad():
        assert chip(x).shape == (3, 5, 4)
