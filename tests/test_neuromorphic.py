"""The analytical neuromorphic core: hand-counted terms, the closed-form break-even against
bisection, the 1-bit consistency of SNN and QNN accounting, and settings / errors."""

import math

import pytest

from imcsim.cost import neuromorphic as N
from imcsim.errors import ConfigError


def test_hand_counted_terms():
    hw = N.NeuromorphicHW(name="t", e_acc=1.0, e_cmp=2.0, e_sub=3.0, e_mem_bit=0.5, e_sparse_bit_hop=4.0,
                          e_dense_bit_hop=0.25, e_event=10.0, hops=2.0, spike_bits=1, membrane_bits=8)
    L = N.Layer(fan_in=3, targets=2, sources=5)
    s = N.snn_terms(L, 4, 0.25, hw, weight_bits=4, out_rate=0.5)
    S = 2 * 3 * 4 * 0.25  # 6 synaptic events
    assert s["compute"] == S * 1.0 + 2 * 4 * 2.0 + 2 * 4 * 0.5 * 3.0
    assert s["weights"] == S * 4 * 0.5
    assert s["state"] == 2 * 4 * 2 * 8 * 0.5
    assert s["movement"] == S * 1 * 2.0 * 4.0 + 5 * 4 * 0.25 * 10.0
    q = N.qnn_terms(L, 3, 0.5, hw, weight_bits=4)
    macs = 2 * 3 * 0.5
    assert q["compute"] == macs * 3 * 1.0 + 2 * 2.0
    assert q["weights"] == macs * 4 * 0.5
    assert q["movement"] == 2 * 3 * 3 * 2.0 * 0.25


def test_one_bit_qnn_costs_one_snn_step_of_synaptic_work():
    """Compute only: a 1-bit QNN with a fraction r of nonzero inputs does the accumulations
    of one SNN step at spike rate r."""
    hw = N.setting("minimum")
    L = N.Layer(64, 10, 64)
    for r in (0.0, 0.1, 0.37, 1.0):
        s = N.snn_terms(L, 1, r, hw, out_rate=0.0)["compute"] - L.targets * hw.e_cmp
        q = N.qnn_terms(L, 1, 1.0 - r, hw)["compute"] - L.targets * hw.e_cmp
        assert s == pytest.approx(q, rel=1e-12)


@pytest.mark.parametrize("name", ["minimum", "typical", "worst-sparse"])
def test_breakeven_is_where_the_energies_meet(name):
    hw = N.setting(name)
    layers = [N.Layer(4096, 4096, 4096), N.Layer(512, 100, 4096)]
    for T in (4, 5, 8, 10):
        for gamma in (0.0, 0.5):
            r = N.breakeven_rate(layers, T, hw, qnn_zero_fraction=gamma)
            q = sum(sum(N.qnn_terms(L, N.qnn_bits(T), gamma, hw).values()) for L in layers)

            def snn(x):
                return sum(sum(N.snn_terms(L, T, x, hw).values()) for L in layers)
            lo, hi = 0.0, 1.0  # bisection, independent of the closed form
            if snn(1.0) <= q:
                assert r == 1.0
                continue
            for _ in range(80):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if snn(mid) < q else (lo, mid)
            assert r == pytest.approx(lo, abs=1e-9)


def test_qnn_bits_follow_the_rate_code():
    assert [N.qnn_bits(T) for T in (1, 2, 3, 4, 5, 7, 8, 15, 16)] == [1, 2, 2, 3, 3, 3, 4, 4, 5]


def test_breakeven_at_the_papers_settings_is_reported_not_tuned():
    """Yan et al. report 5.7 % (T = 5, 4-bit weights, 4096 sources, typical) and 6.4 % for
    T in [5, 10]; this model, with its own SRAM figure, gives what it gives -- pinned here so
    a change to the model is a visible change (see docs/cost_model.md for the comparison)."""
    hw = N.setting("typical")
    L = [N.Layer(4096, 4096, 4096)]
    at5 = N.breakeven_rate(L, 5, hw, weight_bits=4)
    over = [N.breakeven_rate(L, T, hw, weight_bits=4) for T in range(5, 11)]
    assert 0.05 < at5 < 0.10
    assert 0.04 < sum(over) / len(over) < 0.08


def test_settings_and_errors(tmp_path):
    assert {"minimum", "typical", "worst-sparse"} <= set(N.available_settings())
    p = tmp_path / "mine.toml"
    p.write_text("e_sparse_bit_hop = 1.5\nhops = 2.0\n")
    hw = N.setting(str(p))
    assert hw.e_sparse_bit_hop == 1.5 and hw.hops == 2.0 and hw.e_acc == N.setting("typical").e_acc
    p.write_text("e_sparse = 1.5\n")
    with pytest.raises(ConfigError, match="unknown field"):
        N.setting(str(p))
    p.write_text("hops = -1\n")
    with pytest.raises(ConfigError, match="hops must be a finite number >= 0"):
        N.setting(str(p))
    with pytest.raises(ConfigError, match="unknown neuromorphic setting"):
        N.setting("loihi")
    with pytest.raises(ConfigError, match="spike rate"):
        N.snn_terms(N.Layer(2, 2, 2), 2, 1.5, N.setting("typical"))
    assert math.isfinite(N.setting("worst-sparse").e_event)
