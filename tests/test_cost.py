"""Cost model: hand-counted events and energies, linearity in T, SpikeSim mode, SNN vs QNN."""

import math

import pytest
import torch
import torch.nn as nn

import imcsim
from imcsim import CrossbarLinear, HardwareConfig, InputSpec
from imcsim.cost import (VGG9_CIFAR10, LayerSpec, analytical_estimate, breakeven_spike_rate, compare_reports, estimate,
                         layer_specs, spikesim_estimate)
from imcsim.errors import ConfigError
from imcsim.models import Network
from imcsim.neurons import IF
from imcsim.cost import Technology

SIMPLE_TECH = """
name = "simple"
description = "round numbers for hand counting"
sources = ["test"]
[crossbar]
read_energy_pJ = 16.0
ref_rows = 4
ref_cols = 4
read_latency_ns = 10.0
[adc]
model = "linear"
ref_bits = 4
energy_pJ = 2.0
latency_ns = 5.0
[mux]
energy_pJ = 0.5
[driver]
energy_pJ = 0.25
dac_energy_pJ = 0.75
[digital]
shift_add_pJ = 0.125
accumulate_pJ = 0.375
neuron_update_pJ = 1.5
quant_update_pJ = 0.5
[buffer]
input_read_pJ_per_bit = 0.1
output_write_pJ_per_bit = 0.3
membrane_access_pJ = 0.2
psum_access_pJ = 0.4
[interconnect]
pJ_per_bit = 0.05
[offchip]
pJ_per_bit = 10.0
"""


@pytest.fixture
def simple_tech(tmp_path):
    p = tmp_path / "simple.toml"
    p.write_text(SIMPLE_TECH)
    return Technology.from_toml(p)


def _tiny_net():
    """Linear(4->3) -> IF -> Linear(3->2) on 4x4 tiles, spike inputs, T = 2."""
    hw = HardwareConfig.ideal(rows=4, cols=4)  # 4-bit weights: 2 slices x 2 polarities = 4 columns each
    l1 = nn.Linear(4, 3, bias=False)
    l2 = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]))
        l2.weight.copy_(torch.tensor([[1.0, -1, 0.5], [0.25, 1, 1]]))
    body = nn.Sequential(CrossbarLinear(l1, hw, InputSpec("spike")), IF(threshold=1.0),
                         CrossbarLinear(l2, hw, InputSpec("spike")))
    # Rate coding of binary pixels is deterministic: a pixel of 1 spikes every timestep.
    return Network(body, "snn", timesteps=2, encoding="rate").eval()


def test_hand_counted_events_and_energy(simple_tech):
    net = _tiny_net()
    x = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 0]])
    with torch.no_grad():
        net(x)
    ev = imcsim.collect_events(net)
    # Layer 1: 4 vectors (2 samples x 2 steps); sample 2 is all zero -> its reads are skipped.
    # 12 columns -> 3 column tiles, 1 row tile; per non-zero read 2 active rows on 3 tiles.
    assert ev["body.0"] == dict(vectors=4, vector_reads=2, tile_reads=6, active_rows=12, adc_conversions=24,
                                shift_adds=24, accumulations=0, outputs=12, input_bits=16)
    # IF: w_int rows 1, 2 are 7 * x -> exactly the threshold -> spike every step for sample 1.
    assert ev["body.1"] == dict(updates=12, spikes=4, syn_updates=0)
    # Layer 2: spikes [1, 1, 0] twice; 8 columns -> 2 column tiles.
    assert ev["body.2"] == dict(vectors=4, vector_reads=2, tile_reads=4, active_rows=8, adc_conversions=16,
                                shift_adds=16, accumulations=0, outputs=8, input_bits=12)
    rep = estimate(net, simple_tech, n_inferences=2, timesteps=2, input_bits_per_inference=4 * 8)
    by = {layer.name: layer for layer in rep.layers}
    # lossless ideal read-out of a 4-row, 2-bit-cell column is priced as ceil(log2(13)) = 4 bits
    e1 = dict(crossbar=12 * 4 * 1.0, adc=24 * 2.0, mux=24 * 0.5, drivers=12 * 0.25, shift_add=24 * 0.125,
              accumulator=0.0, neuron=0.0, buffers=16 * 0.1, interconnect=16 * 0.05, offchip=0.0)
    e_if = dict.fromkeys(e1, 0.0) | dict(neuron=12 * 1.5, buffers=12 * (2 * 0.2 + 0.3))
    e2 = dict(crossbar=8 * 4 * 1.0, adc=16 * 2.0, mux=16 * 0.5, drivers=8 * 0.25, shift_add=16 * 0.125,
              accumulator=0.0, neuron=0.0, buffers=12 * 0.1, interconnect=12 * 0.05, offchip=0.0)
    for name, expect in (("body.0", e1), ("body.1", e_if), ("body.2", e2)):
        for k, v in expect.items():
            assert by[name].energy_pJ[k] == pytest.approx(v / 2, abs=1e-12), (name, k)
    assert by["input"].energy_pJ["offchip"] == pytest.approx(32 * 10.0)
    total = (sum(e1.values()) + sum(e_if.values()) + sum(e2.values())) / 2 + 320.0
    assert rep.energy_J == pytest.approx(total * 1e-12, rel=1e-12)
    # latency: 2 reads in time per layer x (10 ns + 4 conversions per ADC x 5 ns), per 2 inferences
    assert rep.latency_s == pytest.approx((2 * 30 + 2 * 30) / 2 * 1e-9, rel=1e-12)
    assert rep.edp_Js == pytest.approx(rep.energy_J * rep.latency_s)
    assert rep.spike_rates()["body.1"] == pytest.approx(4 / 12)
    assert "total pJ" in rep.table()


def test_energy_and_latency_exactly_linear_in_T(simple_tech):
    hw = HardwareConfig.preset("rram").replace(**{"adc.range": "fixed"})
    g = torch.Generator().manual_seed(0)
    layer = CrossbarLinear(nn.Linear(150, 70), hw, InputSpec("spike"))
    step = (torch.rand(8, 150, generator=g) < 0.1).float()  # identical activity every timestep
    base = None
    for T in (1, 2, 3, 5, 8):
        imcsim.reset_events(layer)
        with torch.no_grad():
            layer(step.repeat(T, 1))
        rep = estimate(layer, simple_tech, n_inferences=8, timesteps=T)
        if base is None:
            base = rep
        assert rep.energy_J == pytest.approx(T * base.energy_J, rel=1e-12)
        assert rep.latency_s == pytest.approx(T * base.latency_s, rel=1e-12)
    # analytical estimates are linear in T too
    specs = [LayerSpec("a", "linear", 100, 50, input="spike", activation="spiking"), LayerSpec("b", "linear", 50, 10)]
    a1 = analytical_estimate(specs, hw, simple_tech, 1, 0.2)
    for T in (2, 4, 7):
        aT = analytical_estimate(specs, hw, simple_tech, T, 0.2)
        assert aT.energy_J == pytest.approx(T * a1.energy_J, rel=1e-12)
        assert aT.latency_s == pytest.approx(T * a1.latency_s, rel=1e-12)


def test_analytical_counts_match_simulated_expectation(simple_tech):
    hw = HardwareConfig.ideal(rows=16, cols=16)
    layer = CrossbarLinear(nn.Linear(40, 6), hw, InputSpec("spike"))
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(20000, 40, generator=g) < 0.05).float()
    with torch.no_grad():
        layer(x)
    sim = estimate(layer, simple_tech, n_inferences=20000).layers[0].counts
    ana = analytical_estimate([LayerSpec("a", "linear", 40, 6, activation="none")], hw, simple_tech, 1, 0.05,
                              input_rate=0.05).layers[0].counts
    for k in ("vector_reads", "tile_reads", "active_rows", "adc_conversions", "accumulations"):
        assert sim[k] == pytest.approx(ana[k], rel=0.03), k


def test_spikesim_compatible_mode():
    r = spikesim_estimate(VGG9_CIFAR10, 5)
    assert r["pe_cycle_energy_pJ"] == pytest.approx(828.49, rel=1e-3)
    assert r["energy_J"] == pytest.approx(15.91e-6, rel=1e-3)
    r1 = spikesim_estimate(VGG9_CIFAR10, 1)
    assert r1["energy_J"] == pytest.approx(3.18e-6, rel=2e-3)
    assert r1["latency_s"] == pytest.approx(12.6e-3, rel=5e-3)
    assert r["energy_J"] == pytest.approx(5 * r1["energy_J"], rel=1e-12)
    with pytest.raises(ValueError, match="has no \\[spikesim\\] section"):
        spikesim_estimate(VGG9_CIFAR10, 5, Technology.preset("puma-32nm"))


@pytest.mark.parametrize("T", [1, 3, 4, 5, 7, 10])
def test_dense_limit_read_ratio_is_T_over_bits(T, simple_tech):
    hw = HardwareConfig.preset("rram")
    b = imcsim.qnn_bits_for(T)
    assert b == math.ceil(math.log2(T + 1))
    snn = layer_specs(imcsim.mlp(in_shape=(1, 8, 8), hidden=(96, 80), kind="snn", timesteps=T), (1, 8, 8), hw)
    qnn = layer_specs(imcsim.mlp(in_shape=(1, 8, 8), hidden=(96, 80), kind="qnn", timesteps=T), (1, 8, 8), hw)
    rs = analytical_estimate(snn, hw, simple_tech, T, 1.0, input_rate=1.0)
    rq = analytical_estimate(qnn, hw, simple_tech, T, 1.0, input_rate=1.0)
    for ls, lq in zip(rs.layers, rq.layers):
        if ls.kind == "crossbar" and ls.name != "1":  # layers fed by spikes / b-bit activations
            assert ls.counts["vector_reads"] / lq.counts["vector_reads"] == pytest.approx(T / b, rel=1e-12)
            assert ls.counts["tile_reads"] / lq.counts["tile_reads"] == pytest.approx(T / b, rel=1e-12)


def test_breakeven_spike_rate_matches_brute_force():
    hw = HardwareConfig.preset("rram")
    tech = Technology.preset("spikesim-65nm-rram")
    T = 6
    snn = layer_specs(imcsim.mlp(in_shape=(1, 16, 16), hidden=(256, 128), kind="snn", timesteps=T), (1, 16, 16), hw)
    qnn = layer_specs(imcsim.mlp(in_shape=(1, 16, 16), hidden=(256, 128), kind="qnn", timesteps=T), (1, 16, 16), hw)
    e_qnn = analytical_estimate(qnn, hw, tech, T, 0.3).energy_J
    # With direct encoding the 8-bit first layer is read every timestep, and that alone
    # costs more than the whole QNN: no spike rate makes the SNN cheaper.
    assert breakeven_spike_rate(snn, hw, tech, T, e_qnn) is None
    # Computing the static first layer once (static_input_once) gives a break-even rate.
    snn = layer_specs(imcsim.mlp(in_shape=(1, 16, 16), hidden=(256, 128), kind="snn", timesteps=T), (1, 16, 16), hw)
    r_star = breakeven_spike_rate(snn, hw, tech, T, e_qnn, static_input_once=True)
    assert r_star is not None and 0 < r_star < 1
    grid = [i / 2000 for i in range(2001)]
    costs = [analytical_estimate(snn, hw, tech, T, r, static_input_once=True).energy_J for r in grid]
    first_above = next(r for r, c in zip(grid, costs) if c >= e_qnn)
    assert abs(first_above - r_star) <= 1 / 2000 + 1e-6
    assert all(c < e_qnn for r, c in zip(grid, costs) if r < r_star - 1e-6)
    # an impossible target: the SNN cannot beat a QNN that costs nothing
    assert breakeven_spike_rate(snn, hw, tech, T, 0.0, static_input_once=True) is None


def test_compare_reports_ratios(simple_tech):
    hw = HardwareConfig.preset("rram")
    snn = layer_specs(imcsim.mlp(in_shape=(1, 8, 8), hidden=(64,), kind="snn", timesteps=4), (1, 8, 8), hw)
    qnn = layer_specs(imcsim.mlp(in_shape=(1, 8, 8), hidden=(64,), kind="qnn", timesteps=4), (1, 8, 8), hw)
    rs, rq = analytical_estimate(snn, hw, simple_tech, 4, 0.1), analytical_estimate(qnn, hw, simple_tech, 4, 0.1)
    c = compare_reports(rs, rq)
    assert c["energy_ratio"] == pytest.approx(rs.energy_J / rq.energy_J)
    assert c["edp_ratio"] == pytest.approx(rs.edp_Js / rq.edp_Js)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.replace("energy_pJ = 0.5\n", ""), r"field mux.energy_pJ is missing"),
        (lambda t: t.replace("shift_add_pJ = 0.125", "shift_add_pJ = -0.125"), r"field digital.shift_add_pJ must be >= 0, got -0.125"),
        (lambda t: t.replace('model = "linear"', 'model = "flash"'), r"adc.model must be one of"),
        (lambda t: t.replace('sources = ["test"]', ""), r"field 'sources' is missing"),
        (lambda t: t.replace("[offchip]\npJ_per_bit = 10.0", ""), r"section \[offchip\] is missing"),
        (lambda t: t + "[extra]\nx = 1\n", r"unknown key 'extra'"),
        (lambda t: t.replace("ref_bits = 4", 'ref_bits = "four"'), r"field adc.ref_bits must be a finite number"),
    ],
)
def test_presets_validate_on_load(tmp_path, edit, match):
    p = tmp_path / "broken.toml"
    p.write_text(edit(SIMPLE_TECH))
    with pytest.raises(ConfigError, match=match) as e:
        Technology.from_toml(p)
    assert "broken.toml" in str(e.value)


def test_shipped_presets_and_adc_models(tmp_path):
    for name in ("spikesim-65nm-rram", "puma-32nm"):
        t = Technology.preset(name)
        assert t.sources and t.adc_energy_pJ(8) > t.adc_energy_pJ(4) > 0
    s = Technology.preset("spikesim-65nm-rram")
    assert s.adc_energy_pJ(4) == pytest.approx(2.03084)
    assert s.crossbar_energy_per_active_cell_pJ() * 64 * 64 == pytest.approx(1.76423)
    ns = SIMPLE_TECH.replace('model = "linear"\nref_bits = 4\nenergy_pJ = 2.0', 'model = "neurosim_sar"\nref_bits = 4\na_uW = 0.538\nc_uW = 4.3753')
    p = tmp_path / "ns.toml"
    p.write_text(ns)
    t = Technology.from_toml(p)
    # NeuroSim 22 nm LP SAR: about 32.6 / 42.4 / 53.2 / 78.1 fJ at 4 / 5 / 6 / 8 bits
    for bits, fj in ((4, 32.6), (5, 42.4), (6, 53.2), (8, 78.1)):
        assert t.adc_energy_pJ(bits) * 1e3 == pytest.approx(fj, abs=0.1)
    w = SIMPLE_TECH.replace('model = "linear"\nref_bits = 4\nenergy_pJ = 2.0', 'model = "walden"\nref_bits = 4\nfom_fJ_per_step = 20.0')
    p.write_text(w)
    assert Technology.from_toml(p).adc_energy_pJ(6) == pytest.approx(20.0 * 64 * 1e-3)
    with pytest.raises(ConfigError, match="unknown technology preset 'nope'"):
        Technology.preset("nope")
