"""Neuron dynamics by hand, the SNN/QNN equivalence, surrogate gradients, QuantAct."""

import math

import pytest
import torch

from imcsim import IF, LIF, QuantAct
from imcsim.models import qnn_bits_for
from imcsim.neurons import if_spike_count, set_persistent


def _seq(values):
    return torch.tensor(values, dtype=torch.float64).view(-1, 1)


def test_if_reset_by_subtraction_by_hand():
    # threshold 1: v = 0.6, 1.2->spike->0.2, 0.8, 1.4->spike->0.4, 0.4+0.0
    s = IF(threshold=1.0)(_seq([0.6, 0.6, 0.6, 0.6, 0.0]))
    assert s.view(-1).tolist() == [0, 1, 0, 1, 0]


def test_if_reset_to_zero_by_hand():
    # v = 0.6, 1.2->spike->0, 0.6, 1.2->spike->0, 0
    s = IF(threshold=1.0, reset="zero")(_seq([0.6, 0.6, 0.6, 0.6, 0.0]))
    assert s.view(-1).tolist() == [0, 1, 0, 1, 0]
    # a large input: subtraction keeps the excess, zero-reset loses it
    sub = IF(threshold=1.0)(_seq([1.7, 0.4, 0.0])).view(-1).tolist()
    zero = IF(threshold=1.0, reset="zero")(_seq([1.7, 0.4, 0.0])).view(-1).tolist()
    assert sub == [1, 1, 0] and zero == [1, 0, 0]


def test_lif_by_hand():
    # leak 0.5, threshold 1: v = 0.8 ; 0.4+0.8=1.2 spike -> 0.2 ; 0.1+0.5=0.6 ; 0.3+0.5=0.8 ; 0.4
    lif = LIF(threshold=1.0, leak=0.5)
    s = lif(_seq([0.8, 0.8, 0.5, 0.5, 0.0]))
    assert s.view(-1).tolist() == [0, 1, 0, 0, 0]
    lif.persistent = True
    lif(_seq([0.8]))
    assert lif.v.item() == pytest.approx(0.8)
    assert LIF(tau=2.0).leak == pytest.approx(math.exp(-0.5))


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 7, 8, 15])
def test_if_spike_count_is_a_T_plus_1_level_quantizer(T):
    """Convention tested: IF, reset by subtraction, threshold 1, membrane starting at half the
    threshold (v_init = 0.5), constant input c in [0, 1) for T steps. The spike count is
    floor(T c + 1/2): c quantised to the T + 1 levels {0, 1/T, ..., 1} rounding half up."""
    cs = torch.cat([torch.linspace(0, 0.999, 1001, dtype=torch.float64), torch.arange(T, dtype=torch.float64) / T])
    # dyadic ties (k + 1/2) / T are exact in binary floating point for T a power of two
    if T & (T - 1) == 0:
        cs = torch.cat([cs, (torch.arange(T, dtype=torch.float64) + 0.5) / T])
    neuron = IF(threshold=1.0, v_init=0.5)
    counts = neuron(cs.unsqueeze(0).expand(T, -1).contiguous()).sum(0)
    expect = torch.tensor([if_spike_count(c.item(), T, 1.0, 0.5) for c in cs], dtype=torch.float64)
    assert torch.equal(counts, expect)
    assert set(counts.unique().tolist()) <= set(range(T + 1))
    assert counts.unique().numel() == T + 1  # every level is reached
    # ...which a ceil(log2(T+1))-bit QNN activation can represent: for T + 1 = 2**b the
    # b-bit QuantAct over [0, 1] gives the same level (away from exact ties, where it
    # rounds half to even).
    b = qnn_bits_for(T)
    assert 2**b >= T + 1
    if T + 1 == 2**b:
        frac = (cs * T) % 1
        away = (frac - 0.5).abs() > 1e-9
        q = QuantAct(b, clip=1.0)(cs) * T
        assert torch.equal(torch.round(q[away]), counts[away])


def test_if_with_v_init_zero_floors():
    T = 4
    cs = torch.tensor([0.0, 0.24, 0.25, 0.49, 0.5, 0.99], dtype=torch.float64)
    counts = IF(v_init=0.0)(cs.unsqueeze(0).expand(T, -1).contiguous()).sum(0)
    assert counts.tolist() == [math.floor(T * c) for c in cs.tolist()]


def test_surrogate_gradient_flows_and_peaks_at_threshold():
    for surrogate in ("atan", "sigmoid", "triangle"):
        u = torch.tensor([[0.0, 0.9, 1.0, 1.1, 3.0]], requires_grad=True)
        IF(surrogate=surrogate)(u).sum().backward()
        g = u.grad.view(-1)
        assert g[2] == g.max() and g[2] > 0 and g[4] < g[2]


def test_quantact_levels_clip_and_gradients():
    q = QuantAct(2, clip=3.0)  # levels 0, 1, 2, 3
    x = torch.tensor([-1.0, 0.4, 0.6, 1.5, 2.5, 2.9, 7.0], requires_grad=True)
    y = q(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 3.0]  # 1.5 and 2.5 round half to even
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]
    assert q.clip.grad.item() == pytest.approx(1.0)  # PACT: from the one clipped input
    assert q.scale == pytest.approx(1.0)


def test_persistent_state_matches_one_long_run():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 5, generator=g)
    full = LIF(leak=0.8)(x)
    lif = LIF(leak=0.8)
    set_persistent(lif, True)
    steps = torch.cat([lif(x[t : t + 1]) for t in range(6)])
    assert torch.equal(full, steps)


def test_bad_neuron_parameters():
    with pytest.raises(ValueError, match="threshold must be > 0.0, got 0"):
        IF(threshold=0.0)
    with pytest.raises(ValueError, match="threshold must be finite"):
        IF(threshold=float("nan"))
    with pytest.raises(ValueError, match=r"leak must be <= 1.0, got 1.5"):
        LIF(leak=1.5)
    with pytest.raises(ValueError, match="reset must be one of subtract, zero, none, got 'soft'"):
        IF(reset="soft")
    with pytest.raises(ValueError, match=r"bits must be an integer in 1..16, got 0"):
        QuantAct(0)


def _run(neuron, xs):
    return neuron(torch.tensor(xs, dtype=torch.float64).view(-1, 1)).view(-1).tolist()


def test_general_neuron_variants_by_hand():
    from imcsim.neurons import SpikingNeuron

    # strict threshold: v = 1.0 exactly does not fire with '>' but does with '>='
    assert _run(SpikingNeuron(strict=True), [1.0, 0.0]) == [0, 0]  # v stays exactly 1.0: never > 1
    assert _run(SpikingNeuron(strict=True), [1.0, 0.5]) == [0, 1]
    assert _run(SpikingNeuron(), [1.0, 0.5]) == [1, 0]
    # delayed subtract reset (snnTorch): v1 = 1.5 -> spike; v2 = 0.5*1.5 + 0.2 - 1 = -0.05
    n = SpikingNeuron(leak=0.5, reset_delay=True)
    n.persistent = True
    assert _run(n, [1.5, 0.2]) == [1, 0] and n.v.item() == pytest.approx(-0.05)
    # immediate subtract for comparison: v2 = 0.5*(1.5-1) + 0.2 = 0.45
    n = SpikingNeuron(leak=0.5)
    n.persistent = True
    _run(n, [1.5, 0.2])
    assert n.v.item() == pytest.approx(0.45)
    # reset to v_reset = -0.2, then integrate
    n = SpikingNeuron(reset="zero", v_reset=-0.2)
    n.persistent = True
    assert _run(n, [1.2, 0.3]) == [1, 0] and n.v.item() == pytest.approx(0.1)
    # current-based synapse: i = 0.5 i + x; v = v + i: x = 1, 0, 0 -> i = 1, .5, .25 -> v = 1, 1.5, 1.75
    n = SpikingNeuron(threshold=10.0, syn_decay=0.5)
    n.persistent = True
    _run(n, [1.0, 0.0, 0.0])
    assert n.v.item() == pytest.approx(1.75) and n.events.counts["syn_updates"] == 3
    # leaky integrator read-out: membrane out, v = 0.5 v + x; with v_rest 1: v += (1 - 0.5) * 1
    assert _run(SpikingNeuron(leak=0.5, spiking=False), [1.0, 1.0, 0.0]) == [1.0, 1.5, 0.75]
    assert _run(SpikingNeuron(leak=0.5, v_rest=1.0, spiking=False), [0.0, 0.0]) == [0.5, 0.75]
    # per-neuron parameters broadcast over the trailing dimension
    n = SpikingNeuron(threshold=torch.tensor([0.5, 2.0]))
    out = n(torch.ones(2, 1, 2))
    assert out[:, 0].tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_inference_path_gives_the_same_bits_as_the_autograd_loop():
    """The no-gradient path (in-place membrane, spikes written into one tensor) against the
    loop that keeps the graph, over thresholds on the spike edge, tensor parameters, leaks,
    gains, resting potentials, resets, strict spikes, v_init, float64 and a membrane carried
    over between calls (the dynamic-timestep runner)."""
    from imcsim.neurons import SpikingNeuron

    g = torch.Generator().manual_seed(5)
    thr_t = torch.rand(6, 1, 1, generator=g) + 0.5
    configs = [dict(), dict(threshold=0.75, v_init=0.5), dict(threshold=thr_t), dict(threshold=thr_t, v_init=0.5),
               dict(leak=0.8, gain=1.5, v_rest=0.1), dict(leak=thr_t / 2, strict=True), dict(reset="zero"),
               dict(reset="zero", v_reset=0.2, leak=0.9), dict(reset="none", threshold=0.5)]
    for cfg in configs:
        for dtype in (torch.float32, torch.float64):
            x = (torch.randint(-4, 9, (5, 3, 6, 4, 4), generator=g) * 0.125).to(dtype)  # exact sums that hit thresholds
            x[1] += torch.rand(x[1].shape, generator=g, dtype=dtype)
            for persistent in (False, True):
                outs = []
                for grad in (False, True):
                    n = SpikingNeuron(**cfg)
                    n.persistent = persistent
                    xi = x.clone().requires_grad_(grad)
                    with torch.set_grad_enabled(grad):
                        assert n._inference_path(xi) is not grad
                        ys = [n(xi[:2]), n(xi[2:])] if persistent else [n(xi)]
                    outs.append((torch.cat([y.detach() for y in ys]), None if n.v is None else n.v.detach()))
                (a, va), (b, vb) = outs
                assert a.dtype == b.dtype and torch.equal(a, b), cfg
                assert (va is None) == (vb is None) and (va is None or torch.equal(va, vb)), cfg
                if cfg.get("v_init") == 0.5 and not isinstance(cfg.get("threshold"), torch.Tensor):
                    assert 0 < a.mean() < 1  # the spike edge is reached
