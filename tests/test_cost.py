"""Cost model: hand-counted energy, latency, area and leakage; finite periphery; linearity in
T; SpikeSim's released estimator; the SpikeSim-like preset; SNN vs QNN; preset validation."""

import math

import pytest
import torch
import torch.nn as nn

import imcsim
from imcsim import CrossbarLinear, HardwareConfig, InputSpec
from imcsim.cost import (VGG9_CIFAR10, LayerSpec, Technology, analytical_estimate, breakeven_spike_rate,
                         compare_reports, estimate, layer_specs, spikesim_estimate)
from imcsim.cost.scaling import area_scale, energy_scale
from imcsim.errors import ConfigError
from imcsim.models import Network
from imcsim.neurons import IF

SIMPLE_TECH = """
name = "simple"
description = "round numbers for hand counting"
sources = ["test"]
node_nm = 45
[crossbar]
read_energy_pJ = 16.0
ref_rows = 4
ref_cols = 4
ref_v_read = 0.5
read_latency_ns = 10.0
area_um2 = 32.0
write_energy_pJ_per_cell = 2.0
write_latency_ns_per_row = 50.0
[adc]
model = "linear"
ref_bits = 4
energy_pJ = 2.0
latency_ns = 5.0
area_um2 = 100.0
area_model = "linear"
leakage_uW = 8.0
[mux]
energy_pJ = 0.5
area_um2 = 6.0
leakage_uW = 1.0
[driver]
energy_pJ = 0.25
dac_energy_pJ = 0.75
area_um2 = 0.5
leakage_uW = 0.25
[digital]
word_bits = 16
unit_leakage_uW = 2.0
neuron_update_pJ = 1.5
neuron_update_ns = 1.0
neuron_area_um2 = 40.0
neuron_leakage_uW = 3.0
quant_update_pJ = 0.5
[buffer]
input_read_pJ_per_bit = 0.1
output_write_pJ_per_bit = 0.3
membrane_access_pJ = 0.2
psum_access_pJ = 0.4
area_um2_per_kB = 1024.0
leakage_uW_per_kB = 4.0
[interconnect]
pJ_per_bit = 0.05
area_um2_per_tile = 10.0
leakage_uW_per_tile = 0.5
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
    body = nn.Sequential(CrossbarLinear(l1, hw, InputSpec("spike"), name="l1"), IF(threshold=1.0),
                         CrossbarLinear(l2, hw, InputSpec("spike"), name="l2"))
    # Rate coding of binary pixels is deterministic: a pixel of 1 spikes every timestep.
    return Network(body, "snn", timesteps=2, encoding="rate").eval()


def test_scaling_reproduces_its_sources():
    t45 = Technology.from_dict({**_tech_dict(), "node_nm": 45})
    # Horowitz ISSCC 2014 at 45 nm: the published points themselves
    assert t45.add_pJ(8) == pytest.approx(0.03) and t45.add_pJ(32) == pytest.approx(0.1)
    assert t45.mul_pJ(8) == pytest.approx(0.2) and t45.mul_pJ(32) == pytest.approx(3.1)
    assert t45.add_um2(8) == pytest.approx(36) and t45.mul_um2(32) == pytest.approx(3495)
    assert t45.add_pJ(8) < t45.add_pJ(16) < t45.add_pJ(32)
    # Stillmaker & Baas (tabulated): area 45 -> 65 nm x1.5, 32 -> 65 nm x3.3; energy factors > 1 going up in node
    assert area_scale(45, 65) == pytest.approx(1.5) and area_scale(32, 65) == pytest.approx(3.3)
    assert energy_scale(45, 65) == pytest.approx(0.8598 / 0.69302, rel=1e-4)  # (3.755 .64 - 4.398 .8 + 1.975) / (...)
    assert energy_scale(65, 65) == 1.0 and energy_scale(45, 32) < 1 < energy_scale(32, 65)
    t65 = Technology.from_dict({**_tech_dict(), "node_nm": 65})
    assert t65.add_pJ(8) == pytest.approx(0.03 * energy_scale(45, 65))


def _tech_dict():
    import tomllib

    return tomllib.loads(SIMPLE_TECH)


def test_hand_counted_energy_latency_area_and_leakage(simple_tech):
    net = _tiny_net()
    x = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 0]])
    with torch.no_grad():
        net(x)
    ev = imcsim.collect_events(net)
    # Layer 1: 4 vectors (2 samples x 2 steps); sample 2 is all zero -> its reads are skipped.
    # 12 columns -> 3 column tiles, 1 row tile; per non-zero read 2 active rows on 3 tiles.
    assert ev["body.0"] == dict(vectors=4, vector_reads=2, tile_reads=6, active_rows=12, adc_conversions=24,
                                shift_adds=24, accumulations=0, outputs=12, input_bits=16)
    assert ev["body.1"] == dict(updates=12, spikes=4, syn_updates=0)  # IF: 7 x = threshold: spikes every step
    assert ev["body.2"] == dict(vectors=4, vector_reads=2, tile_reads=4, active_rows=8, adc_conversions=16,
                                shift_adds=16, accumulations=0, outputs=8, input_bits=12)
    rep = estimate(net, simple_tech, timesteps=2, leakage=False)
    assert rep.n_inferences == 2  # from the network's input counter
    by = {layer.name: layer for layer in rep.layers}
    t = simple_tech
    # partial sums: 4 inputs x 7 x 1 -> ceil(log2(29)) + 1 = 6 bits; 3 inputs -> ceil(log2(22)) + 1 = 6 bits
    add6 = t.add_pJ(6)
    e1 = dict(crossbar=12 * 4 * 1.0, adc=24 * 2.0, mux=24 * 0.5, drivers=12 * 0.25, shift_add=24 * add6,
              buffers=16 * 3 * 0.1, interconnect=16 * 3 * 0.05)  # 3 column tiles each read the input
    e_if = dict(neuron=12 * 1.5, buffers=12 * (2 * 0.2 + 0.3))
    e2 = dict(crossbar=8 * 4 * 1.0, adc=16 * 2.0, mux=16 * 0.5, drivers=8 * 0.25, shift_add=16 * add6,
              buffers=12 * 2 * 0.1, interconnect=12 * 2 * 0.05)
    for name, expect in (("body.0", e1), ("body.1", e_if), ("body.2", e2)):
        for k, v in expect.items():
            assert by[name].energy_pJ[k] == pytest.approx(v / 2, abs=1e-12), (name, k)
    # off-chip: 2 samples x 4 pixels x 8 bits, once per inference -- the default, no argument needed
    assert by["input"].energy_pJ["offchip"] == pytest.approx(4 * 8 * 10.0)
    # latency: 2 reads per layer per 2 inferences x (10 ns + 4 conversions on the tile's one ADC x 5 ns)
    # (lossless 4-row 2-bit-cell read-out priced as ceil(log2(13)) = 4 bits), neuron stage 12 / 2 updates
    # / 3 units (one per ADC column group: 3 tiles x 1 ADC) x 1 ns is shorter
    assert by["body.0"].latency_ns == pytest.approx(30.0) and by["body.1"].latency_ns == pytest.approx(2.0)
    assert rep.latency_s == pytest.approx((30 + 30) * 1e-9, rel=1e-12)
    # area: per layer arrays x 32 + ADCs x 100 + MUX x 6 + 4 rows x 0.5 per array + shift-add units + tiles x 10
    a1 = by["body.0"].area_um2
    assert a1["crossbar"] == 3 * 32 and a1["adc"] == 3 * 100 and a1["mux"] == 3 * 6 and a1["drivers"] == 3 * 4 * 0.5
    assert a1["shift_add"] == pytest.approx(3 * t.add_um2(6)) and a1["interconnect"] == 30
    assert a1["buffers"] == pytest.approx(4 * 1 / 8192 * 1024)  # 4 input bits of one step
    assert by["body.1"].area_um2["neuron"] == 3 * 40
    assert rep.area_mm2 == pytest.approx(sum(layer.total_area_um2 for layer in rep.layers) * 1e-6)
    assert rep.edap == pytest.approx(rep.energy_J * rep.latency_s * rep.area_mm2)
    # leakage, its own component: static power x the time it is powered. Idle layers power-
    # gated (default): each stage's components leak during the stage's 30 ns; without
    # gating the whole chip leaks for the 60 ns of the inference.
    lk = estimate(net, simple_tech, timesteps=2, leakage=True)
    static_1 = 3 * 8 + 3 * 1 + 12 * 0.25 + 3 * 2 + 4 / 8192 * 4 + 3 * 0.5
    assert by["body.0"].static_uW == pytest.approx(static_1)
    assert lk.power_gating and lk.by_component()["leakage"] == pytest.approx(lk.static_W * 30e-9)
    assert lk.energy_J == pytest.approx(rep.energy_J + lk.static_W * 30e-9)
    for i in (0, 2):
        net.body[i].tiles.hw = net.body[i].tiles.hw.replace(**{"chip.power_gating": False})
    on = estimate(net, simple_tech, timesteps=2, leakage=True)
    assert not on.power_gating and on.by_component()["leakage"] == pytest.approx(on.static_W * 60e-9)
    assert rep.spike_rates()["body.1"] == pytest.approx(4 / 12) and "area mm2" in rep.table()


def test_read_energy_follows_the_read_voltage_squared(simple_tech):
    """Array and driver energies go as (v_read / ref_v_read)^2; nothing else moves; the
    read voltage has a physical range."""
    net = _tiny_net()
    with torch.no_grad():
        net(torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 1]]))
    at = {}
    for v in (0.5, 0.2, 1.5):
        for i in (0, 2):
            net.body[i].tiles.hw = net.body[i].tiles.hw.replace(**{"inputs.v_read": v})
        at[v] = {layer.name: layer.energy_pJ for layer in estimate(net, simple_tech, timesteps=2).layers}
    assert simple_tech.crossbar["ref_v_read"] == 0.5
    for v, scale in ((0.2, 0.16), (1.5, 9.0)):
        for name, e in at[v].items():
            for k, x in e.items():
                want = at[0.5][name][k] * (scale if k in ("crossbar", "drivers") else 1.0)
                assert x == pytest.approx(want, rel=1e-12, abs=1e-15), (v, name, k)
    assert at[0.2]["body.0"]["crossbar"] > 0 and at[0.2]["body.0"]["drivers"] > 0
    for bad in (1e-30, 0.0, 1.6, 1e30):
        with pytest.raises(ConfigError, match=r"inputs\.v_read must be"):
            HardwareConfig.ideal().replace(**{"inputs.v_read": bad})


def _two_layer(hw):
    """Linear(64 -> 8) -> IF -> Linear(8 -> 4) on 64x64 tiles; 4-bit differential weights with
    2-bit cells: 4 columns per weight, 32 and 16 columns used."""
    g = torch.Generator().manual_seed(0)
    l1, l2 = nn.Linear(64, 8, bias=False), nn.Linear(8, 4, bias=False)
    with torch.no_grad():
        l1.weight.copy_(torch.rand(8, 64, generator=g) * 0.2)  # the same (active) network every time
        l2.weight.copy_(torch.randn(4, 8, generator=g))
    body = nn.Sequential(CrossbarLinear(l1, hw, InputSpec("spike")), IF(), CrossbarLinear(l2, hw, InputSpec("spike")))
    net = Network(body, "snn", timesteps=1).eval()
    x = (torch.rand(10, 64, generator=g) < 0.5).float()
    with torch.no_grad():
        net(x)
    return net


@pytest.mark.parametrize("c", [1, 8, 64])
@pytest.mark.parametrize("r", [1, 2])
def test_finite_periphery_by_hand(simple_tech, c, r):
    hw = HardwareConfig.ideal(rows=64, cols=64, **{"adc.columns_per_adc": c, "chip.replication": r})
    rep = estimate(_two_layer(hw), simple_tech, timesteps=1)
    by = {layer.name: layer for layer in rep.layers}
    adcs = {1: 64, 8: 8, 64: 1}[c] * r  # per 64-column tile, times the copies
    conv_per_adc = {"body.0": {1: 1, 8: 4, 64: 32}[c], "body.2": {1: 1, 8: 2, 64: 16}[c]}
    bits = math.ceil(math.log2(64 * 3 + 1))  # lossless read-out of 64 rows of 2-bit cells
    for name in ("body.0", "body.2"):
        layer = by[name]
        assert layer.area_um2["adc"] == pytest.approx(adcs * 100 * bits / 4)
        assert layer.area_um2["mux"] == (adcs * 6 if c > 1 else 0)
        assert layer.area_um2["crossbar"] == pytest.approx(r * 32 * 64 * 64 / 16)
        read_ns = 10 + conv_per_adc[name] * 5 * bits / 4
        assert layer.latency_ns == pytest.approx(layer.counts["vector_reads"] * read_ns / r)
        static = adcs * 8 * bits / 4 + (adcs if c > 1 else 0) * 1 + r * 64 * 0.25 + adcs * 2 + r * 0.5
        buf = r * (64 if name == "body.0" else 8) / 8192 * 4  # input buffer of one inference
        assert layer.static_uW == pytest.approx(static + buf)
        stage = max(other.latency_ns for other in rep.layers if other.stage == layer.stage)
        assert rep.layer_energy_pJ(layer)["leakage"] == pytest.approx(layer.static_uW * stage * 1e-3)


def test_more_sharing_never_lowers_latency_or_raises_adc_area(simple_tech):
    prev = None
    for c in (1, 2, 4, 8, 16, 32, 64):
        hw = HardwareConfig.ideal(rows=64, cols=64, **{"adc.columns_per_adc": c})
        rep = estimate(_two_layer(hw), simple_tech, timesteps=1)
        cur = (rep.latency_s, rep.area_by_component()["adc"])
        if prev is not None:
            assert cur[0] >= prev[0] and cur[1] <= prev[1]
        prev = cur
    hw = HardwareConfig.ideal(rows=64, cols=64)
    one, two = (estimate(_two_layer(hw.replace(**{"chip.replication": r})), simple_tech, timesteps=1) for r in (1, 2))
    assert two.latency_s == pytest.approx(one.latency_s / 2) and two.area_by_component()["crossbar"] == pytest.approx(
        2 * one.area_by_component()["crossbar"])


def test_pair_readout_halves_conversions_per_adc(simple_tech):
    base = HardwareConfig.ideal(rows=64, cols=64, **{"adc.columns_per_adc": 8})
    col = estimate(_two_layer(base), simple_tech, timesteps=1)
    pair = estimate(_two_layer(base.replace(**{"adc.per": "pair"})), simple_tech, timesteps=1)
    by_c = {layer.name: layer for layer in col.layers}
    by_p = {layer.name: layer for layer in pair.layers}
    bits_c = math.ceil(math.log2(64 * 3 + 1))
    # column: 32 conversions per tile on 8 ADCs -> 4 each; pair: 16 pairs -> 2 each (and a signed ADC: +1 bit)
    assert by_c["body.0"].latency_ns == pytest.approx(by_c["body.0"].counts["vector_reads"] * (10 + 4 * 5 * bits_c / 4))
    assert by_p["body.0"].latency_ns == pytest.approx(by_p["body.0"].counts["vector_reads"] * (10 + 2 * 5 * (bits_c + 1) / 4))
    assert by_p["body.0"].counts["adc_conversions"] == by_c["body.0"].counts["adc_conversions"] / 2


def test_tile_budget_refuses_or_time_multiplexes(simple_tech):
    hw = HardwareConfig.ideal(rows=4, cols=4, **{"chip.max_tiles": 3})
    with pytest.raises(ValueError, match="the network needs 5 crossbar tiles but the chip has chip.max_tiles = 3"):
        estimate(_tiny_net_on(hw), simple_tech, timesteps=2)
    rep = estimate(_tiny_net_on(hw.replace(**{"chip.oversize": "reprogram"})), simple_tech, timesteps=2, leakage=False)
    chip = [layer for layer in rep.layers if layer.kind == "chip"][0]
    assert chip.counts["rounds"] == 2 and chip.energy_pJ["programming"] == pytest.approx(5 * 16 * 2.0)
    assert chip.latency_ns == pytest.approx(2 * 4 * 50.0)
    assert rep.area_by_component()["crossbar"] == pytest.approx(3 * 32 * 1e-6)  # only the tiles that exist


def _tiny_net_on(hw):
    net = _tiny_net()
    body = net.body
    l1 = nn.Linear(4, 3, bias=False)
    l2 = nn.Linear(3, 2, bias=False)
    body[0] = CrossbarLinear(l1, hw, InputSpec("spike"))
    body[2] = CrossbarLinear(l2, hw, InputSpec("spike"))
    with torch.no_grad():
        net(torch.tensor([[1.0, 0, 1, 0]]))
    return net


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
        rep = estimate(layer, simple_tech, n_inferences=8, timesteps=T, leakage=False)
        if base is None:
            base = rep
        assert rep.energy_J == pytest.approx(T * base.energy_J, rel=1e-12)
        assert rep.latency_s == pytest.approx(T * base.latency_s, rel=1e-12)
    specs = [LayerSpec("a", "linear", 100, 50, input="spike", activation="spiking"), LayerSpec("b", "linear", 50, 10)]
    a1 = analytical_estimate(specs, hw, simple_tech, 1, 0.2, leakage=False)
    for T in (2, 4, 7):
        aT = analytical_estimate(specs, hw, simple_tech, T, 0.2, leakage=False)
        assert aT.energy_J == pytest.approx(T * a1.energy_J, rel=1e-12)
        assert aT.latency_s == pytest.approx(T * a1.latency_s, rel=1e-12)


def test_analytical_counts_match_simulated_expectation(simple_tech):
    hw = HardwareConfig.ideal(rows=16, cols=16)
    for acc in ("digital", "analog"):
        layer = CrossbarLinear(nn.Linear(40, 6), hw.replace(**{"adc.accumulate": acc}), InputSpec("spike"))
        g = torch.Generator().manual_seed(1)
        x = (torch.rand(20000, 40, generator=g) < 0.05).float()
        with torch.no_grad():
            layer(x)
        sim = estimate(layer, simple_tech, n_inferences=20000).layers[0].counts
        ana = analytical_estimate([LayerSpec("a", "linear", 40, 6, activation="none")],
                                  hw.replace(**{"adc.accumulate": acc}), simple_tech, 1, 0.05, input_rate=0.05).layers[0].counts
        for k in ("vector_reads", "tile_reads", "active_rows", "adc_conversions", "accumulations"):
            assert sim[k] == pytest.approx(ana[k], rel=0.03, abs=1e-9), (acc, k)


def test_measured_activity_includes_what_pooling_does_to_spikes(simple_tech):
    """Max pooling of spikes is an OR: the layer after it sees more activity than the
    neurons' rate; analytical estimates take the measured per-layer input activity."""
    torch.manual_seed(0)
    net = imcsim.convnet(in_shape=(1, 8, 8), channels=(4,), hidden=8, kind="snn", timesteps=2).eval()
    hw = HardwareConfig.ideal()
    chip = imcsim.convert(net, hw, calibration=torch.rand(16, 1, 8, 8))
    imcsim.reset_events(chip)
    with torch.no_grad():
        chip(torch.rand(64, 1, 8, 8))
    run = estimate(chip, simple_tech, timesteps=2)
    specs = layer_specs(net, (1, 8, 8), hw)
    from imcsim.cost import measured_activity

    act = measured_activity(run, specs)
    rates = run.spike_rates()
    neuron_rate = rates["body.2"]
    assert act[1] > neuron_rate  # after 2x2 max pooling
    ana = analytical_estimate(specs, hw, simple_tech, 2, act, input_rate=act[0])
    assert ana.assumed["input_activity"]["body.5"] == pytest.approx(act[1])
    got = [layer.counts["active_rows"] for layer in ana.layers if layer.kind == "crossbar"]
    want = [layer.counts["active_rows"] for layer in run.layers if layer.kind == "crossbar"]
    for a, b in zip(got, want):
        assert a == pytest.approx(b, rel=1e-9)


def test_spikesim_mode_equals_the_released_estimator():
    # Printed by SpikeSim's released ela_spikesim.py (commit c2627bc) for these layer lists:
    # compute_area (um^2), compute_energy (pJ), latency_gen (ns).
    cases = [
        (VGG9_CIFAR10, 5, dict(xbar=64, kernel=3, pe_per_tile=8), 48, 6, 8425528.755833998, 15906934.026240002, 62832640.0),
        ([(1, 32, 28, 28), (32, 64, 28, 14), (64, 64, 14, 14), (64, 128, 14, 7)], 4,
         dict(xbar=64, kernel=3, pe_per_tile=4), 5, 2, 2890674.452478, 4221965.4061312, 18264064.0),
        ([(3, 128, 32, 32), (128, 128, 32, 16), (128, 256, 16, 16), (256, 256, 16, 8), (256, 512, 8, 8)], 2,
         dict(xbar=128, kernel=3, pe_per_tile=8), 16, 2, 10077638.375358, 6989451.132928001, 45154304.0),
    ]
    for layers, T, kw, pes, tiles, area_um2, energy_pJ, latency_ns in cases:
        r = spikesim_estimate(layers, T, **kw)
        assert r["pes"] == pes and r["tiles"] == tiles
        assert r["area_mm2"] * 1e6 == pytest.approx(area_um2, rel=1e-12)
        assert r["energy_J"] * 1e12 == pytest.approx(energy_pJ, rel=1e-12)
        assert r["latency_s"] * 1e9 == pytest.approx(latency_ns, rel=1e-12)  # halts[-1] x PE cycle, no start offset
    r = spikesim_estimate(VGG9_CIFAR10, 5)
    assert r["pe_cycle_energy_pJ"] == pytest.approx(828.486, rel=1e-5) and not r["warnings"]
    assert spikesim_estimate(list(reversed(VGG9_CIFAR10)), 5)["warnings"]  # SpikeSim refuses: layers out of order
    with pytest.raises(ValueError, match="every layer rounds to 0 PEs"):
        spikesim_estimate([(3, 16, 8, 8), (16, 32, 8, 8)], 2)
    with pytest.raises(ValueError, match=r"has no \[spikesim\] section"):
        spikesim_estimate(VGG9_CIFAR10, 5, Technology.preset("puma-32nm"))


def test_spikesim_like_preset_lands_within_1_5x_of_spikesim():
    hw = HardwareConfig.preset("spikesim")
    tech = Technology.preset("spikesim-65nm-rram")
    specs = [LayerSpec(f"conv{i + 1}", "conv", ci * 9, co, do * do, "analog" if i == 0 else "spike", 8 if i == 0 else 1,
                       "spiking", 1, ci, do, 1, co * do * do, ci * di * di, co * do * do, di)
             for i, (ci, co, di, do) in enumerate(VGG9_CIFAR10)]
    ours = analytical_estimate(specs, hw, tech, 5, 1.0, input_rate=1.0, leakage=False)  # dense, as SpikeSim
    ss = spikesim_estimate(VGG9_CIFAR10, 5)
    assert 1 / 1.5 <= ours.energy_J / ss["energy_J"] <= 1.5
    assert 1 / 1.5 <= ours.latency_s / ss["latency_s"] <= 1.5


def _script(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def vgg9_snntorch():
    """SpikeSim's VGG9 written in snnTorch (Leaky, BatchNorm), untrained; two random inputs."""
    pytest.importorskip("snntorch", reason="snnTorch is not installed (pip install 'imcsim[frameworks]')")
    model = _script("spikesim_compare").snntorch_vgg9(5)
    return model, torch.rand(5, 2, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def _priced(model, x, preset, **kw):
    chip = imcsim.convert(model, HardwareConfig.preset(preset), calibration=x)
    imcsim.reset_events(chip)
    with torch.no_grad():
        chip(x)
    return chip, estimate(chip, Technology.preset("spikesim-65nm-rram"), timesteps=5, **kw)


def test_a_converted_vgg9_on_the_spikesim_preset_is_priced_like_spikesim(vgg9_snntorch):
    """The issue: priced at the defaults it was 31x SpikeSim's energy, 93 % of it static
    power that SpikeSim does not have."""
    from imcsim.cost import compare_with_spikesim, spikesim_layers

    model, x = vgg9_snntorch
    chip, rep = _priced(model, x, "spikesim")
    assert not rep.leakage and rep.by_component()["leakage"] == 0  # the preset states SpikeSim's: no static power
    specs = layer_specs(chip, (3, 32, 32))
    assert spikesim_layers(specs, pooled=True) == VGG9_CIFAR10  # SpikeSim's own list, from the network
    cmp = compare_with_spikesim(rep, specs, 5)
    ss = spikesim_estimate(spikesim_layers(specs), 5)
    assert cmp["spikesim"] == ss  # the report's SpikeSim line is the estimator itself
    assert cmp["spikesim_pooled_dims"]["energy_J"] == spikesim_estimate(VGG9_CIFAR10, 5)["energy_J"]
    for k in ("energy", "latency", "area"):
        assert 1 / 1.5 <= cmp["ratio"][k] <= 1.5, (k, cmp["ratio"])
    assert sum(ss["energy_by_component_J"].values()) == pytest.approx(ss["energy_J"], rel=1e-12)
    # itemised: SpikeSim's components of the conv layers, and what only imcsim prices, add up to imcsim's total
    itemised = sum(v["imcsim"] for v in cmp["conv_layers_by_component_J"].values()) + sum(cmp["not_in_spikesim_J"].values())
    assert itemised == pytest.approx(rep.energy_J, rel=1e-9)
    # with static power, as the issue priced it: the report says what dominates and why
    on = estimate(chip, Technology.preset("spikesim-65nm-rram"), timesteps=5, leakage=True)
    assert on.by_component()["leakage"] > 0.5 * on.energy_J
    text = on.findings()[0]
    assert text.startswith("leakage is ") and "set by module.2's 327,680 neuron updates per inference on 1 unit" in text  # 64 x 32 x 32 x T


def test_the_report_names_what_dominates_on_rram(vgg9_snntorch):
    model, x = vgg9_snntorch
    _, rep = _priced(model, x, "rram")
    assert rep.leakage and rep.by_component()["leakage"] > 0
    comp = rep.by_component()
    top = max(comp, key=comp.get)
    f = rep.findings()
    assert comp[top] > 0.5 * rep.energy_J and f and f[0].startswith(f"{top} is ") and "per inference" in f[0]
    assert "dominant: " + f[0] in rep.table()


def test_a_technology_is_never_applied_silently_to_another_geometry():
    net = imcsim.mlp(in_shape=(1, 8, 8), hidden=(32,), kind="snn", timesteps=2)
    chip = imcsim.convert(net, HardwareConfig.preset("rram"), calibration=torch.rand(8, 1, 8, 8))
    imcsim.reset_events(chip)
    with torch.no_grad():
        chip(torch.rand(4, 1, 8, 8))
    assert estimate(chip, Technology.preset("spikesim-65nm-rram"), timesteps=2).notes == []  # 64x64, 4-bit, 0.5 V
    notes = estimate(chip, Technology.preset("puma-32nm"), timesteps=2).notes
    assert any("crossbar figures are for 128x128 arrays, scaled to this chip's 64x64 tiles" in n for n in notes)
    assert any("ADC figures are for 8-bit ADCs, scaled to 4 bits by its model 'linear'" in n for n in notes)
    specs = layer_specs(net, (1, 8, 8), HardwareConfig.preset("rram"))
    ana = analytical_estimate(specs, HardwareConfig.preset("rram").replace(**{"inputs.v_read": 0.2}),
                              Technology.preset("puma-32nm"), 2, 0.2)
    assert any("scaled to inputs.v_read = 0.2 V by (v / 0.5 V)^2 = 0.16" in n for n in ana.notes)
    assert all(f"note: {n}" in ana.table() for n in ana.notes)


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
        if ls.kind == "crossbar" and ls.name != "body.1":  # layers fed by spikes / b-bit activations
            assert ls.counts["vector_reads"] / lq.counts["vector_reads"] == pytest.approx(T / b, rel=1e-12)
            assert ls.counts["tile_reads"] / lq.counts["tile_reads"] == pytest.approx(T / b, rel=1e-12)


def test_breakeven_is_self_consistent_and_matches_brute_force():
    hw = HardwareConfig.preset("rram")
    tech = Technology.preset("spikesim-65nm-rram")
    T = 6
    snn = layer_specs(imcsim.mlp(in_shape=(1, 16, 16), hidden=(256, 128), kind="snn", timesteps=T), (1, 16, 16), hw)
    qnn = layer_specs(imcsim.mlp(in_shape=(1, 16, 16), hidden=(256, 128), kind="qnn", timesteps=T), (1, 16, 16), hw)
    e_qnn = analytical_estimate(qnn, hw, tech, T, [0.5, 0.3, 0.3]).energy_J  # the same model for the QNN
    # With direct encoding the 8-bit first layer is read every timestep, and that alone
    # costs more than the whole QNN: no spike rate makes the SNN cheaper.
    assert breakeven_spike_rate(snn, hw, tech, T, e_qnn) is None
    profile = [0.5, 0.2, 0.1]  # a measured-like profile: the rate found is activity-weighted
    r_star = breakeven_spike_rate(snn, hw, tech, T, e_qnn, profile=profile, static_input_once=True)
    assert r_star is not None and 0 < r_star < 1
    from imcsim.cost import activity_weighted_rate

    w0 = activity_weighted_rate(snn, profile)
    at = analytical_estimate(snn, hw, tech, T, [p * r_star / w0 for p in profile], static_input_once=True)
    assert at.energy_J == pytest.approx(e_qnn, rel=1e-5)  # equal cost at the break-even activity
    grid = [i / 400 * w0 / max(profile) for i in range(401)]
    costs = [analytical_estimate(snn, hw, tech, T, [p * a / w0 for p in profile], static_input_once=True).energy_J
             for a in grid]
    first_above = next(a for a, c in zip(grid, costs) if c >= e_qnn)
    assert abs(first_above - r_star) <= grid[1] + 1e-9
    assert breakeven_spike_rate(snn, hw, tech, T, 0.0, static_input_once=True) is None


def test_compare_reports_ratios(simple_tech):
    hw = HardwareConfig.preset("rram")
    snn = layer_specs(imcsim.mlp(in_shape=(1, 8, 8), hidden=(64,), kind="snn", timesteps=4), (1, 8, 8), hw)
    qnn = layer_specs(imcsim.mlp(in_shape=(1, 8, 8), hidden=(64,), kind="qnn", timesteps=4), (1, 8, 8), hw)
    rs, rq = analytical_estimate(snn, hw, simple_tech, 4, 0.1), analytical_estimate(qnn, hw, simple_tech, 4, 0.1)
    c = compare_reports(rs, rq)
    assert c["energy_ratio"] == pytest.approx(rs.energy_J / rq.energy_J)
    assert c["edp_ratio"] == pytest.approx(rs.edp_Js / rq.edp_Js)
    assert c["area_ratio"] == pytest.approx(rs.area_mm2 / rq.area_mm2)
    # same arrays and periphery: only the neuron units differ (membrane vs. quantiser)
    assert rs.area_by_component()["crossbar"] == pytest.approx(rq.area_by_component()["crossbar"])
    assert c["area_ratio"] == pytest.approx(1.0, rel=1e-2)


def test_bad_arguments_are_refused(simple_tech):
    net = _tiny_net()
    with torch.no_grad():
        net(torch.ones(1, 4))
    for kw, match in ((dict(n_inferences=float("nan")), "n_inferences must be a finite number > 0"),
                      (dict(n_inferences=float("inf")), "n_inferences must be a finite number > 0"),
                      (dict(input_bits_per_inference=-3), "input_bits_per_inference must be a finite number >= 0"),
                      (dict(timesteps=0), "timesteps must be a finite number > 0"),
                      (dict(replication={"nope": 2}), "replication names 'nope'")):
        with pytest.raises(ValueError, match=match):
            estimate(net, simple_tech, **{"timesteps": 2, **kw})
    specs = [LayerSpec("a", "linear", 4, 2)]
    with pytest.raises(ValueError, match="timesteps must be >= 1"):
        analytical_estimate(specs, HardwareConfig.ideal(), simple_tech, 0.5, 0.1)
    with pytest.raises(ValueError, match="timesteps must be a finite number > 0"):
        analytical_estimate(specs, HardwareConfig.ideal(), simple_tech, -3, 0.1)
    with pytest.raises(ValueError, match=r"rates must be numbers in \[0, 1\], got nan"):
        analytical_estimate(specs, HardwareConfig.ideal(), simple_tech, 2, float("nan"))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.replace("energy_pJ = 0.5\n", ""), r"field mux.energy_pJ is missing"),
        (lambda t: t.replace("unit_leakage_uW = 2.0", "unit_leakage_uW = -2.0"), r"field digital.unit_leakage_uW must be in \[0, 1e\+12\]"),
        (lambda t: t.replace('model = "linear"', 'model = "flash"'), r"adc.model must be one of"),
        (lambda t: t.replace('area_model = "linear"', 'area_model = "huge"'), r"adc.area_model must be one of"),
        (lambda t: t.replace('sources = ["test"]', ""), r"field 'sources' is missing"),
        (lambda t: t.replace("node_nm = 45", "node_nm = 3"), r"field 'node_nm' must be a technology node in \[7, 130\]"),
        (lambda t: t.replace("[offchip]\npJ_per_bit = 10.0", ""), r"section \[offchip\] is missing"),
        (lambda t: t + "[extra]\nx = 1\n", r"unknown key 'extra'"),
        (lambda t: t.replace("ref_bits = 4", 'ref_bits = "four"'), r"field adc.ref_bits must be a finite number"),
        (lambda t: t.replace("read_latency_ns = 10.0", "read_latency_ns = 0.0").replace("latency_ns = 5.0", "latency_ns = 0.0"),
         r"read_latency_ns and adc.latency_ns are both 0"),
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
        assert t.sources and t.adc_energy_pJ(8) > t.adc_energy_pJ(4) > 0 and t.adc_family
        assert t.adc_area_um2(4) > 0 and t.crossbar_area_um2(64, 64) > 0
    s = Technology.preset("spikesim-65nm-rram")
    assert s.adc_energy_pJ(4) == pytest.approx(2.03084) and s.adc_area_um2(4) == pytest.approx(693.633)
    assert s.crossbar_energy_per_active_cell_pJ() * 64 * 64 == pytest.approx(1.76423)
    assert s.add_pJ(8) > 1000 * 1.15e-6  # a real adder, not SpikeSim's 1.15e-6 pJ "Sub"
    body = SIMPLE_TECH.replace('model = "linear"\nref_bits = 4\nenergy_pJ = 2.0', 'model = "neurosim_sar"\nref_bits = 4\na_uW = 0.538\nc_uW = 4.3753')
    p = tmp_path / "ns.toml"
    p.write_text(body)
    t = Technology.from_toml(p)
    # NeuroSim 22 nm LP SAR: about 32.6 / 42.4 / 53.2 / 78.1 fJ at 4 / 5 / 6 / 8 bits
    for bits, fj in ((4, 32.6), (5, 42.4), (6, 53.2), (8, 78.1)):
        assert t.adc_energy_pJ(bits) * 1e3 == pytest.approx(fj, abs=0.1)
    p.write_text(SIMPLE_TECH.replace('model = "linear"\nref_bits = 4\nenergy_pJ = 2.0', 'model = "walden"\nref_bits = 4\nfom_fJ_per_step = 20.0'))
    assert Technology.from_toml(p).adc_energy_pJ(6) == pytest.approx(20.0 * 64 * 1e-3)
    p.write_text(SIMPLE_TECH.replace('model = "linear"\nref_bits = 4\nenergy_pJ = 2.0',
                                     'model = "points"\nref_bits = 4\nbits = [4, 8]\nenergies_pJ = [1.0, 5.0]'))
    assert Technology.from_toml(p).adc_energy_pJ(6) == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="unknown technology preset 'nope'"):
        Technology.preset("nope")


@pytest.mark.parametrize("preset", ["rram", "spikesim"])
def test_ideal_counterpart_is_the_same_chip_at_the_same_price(preset):
    """rram-ideal is rram's architecture with ideal devices and wires: on the same workload
    it costs exactly what rram does (never more, as the lossless 'ideal' chip would)."""
    hw = HardwareConfig.preset(preset)
    twin = HardwareConfig.preset(f"{preset}-ideal")
    assert twin == hw.ideal_counterpart() and twin.architecture() == hw.architecture()
    assert twin.device.variation == twin.device.read_noise == 0 and twin.wires.is_ideal
    tech = Technology.preset("spikesim-65nm-rram")
    net = imcsim.convnet(in_shape=(1, 12, 12), channels=(8,), hidden=16, kind="snn", timesteps=3)
    a = analytical_estimate(layer_specs(net, (1, 12, 12), hw), hw, tech, 3, 0.2)
    b = analytical_estimate(layer_specs(net, (1, 12, 12), twin), twin, tech, 3, 0.2)
    assert b.energy_J == a.energy_J and b.latency_s == a.latency_s and b.area_mm2 == a.area_mm2
    lossless = HardwareConfig.ideal()
    c = analytical_estimate(layer_specs(net, (1, 12, 12), lossless), lossless, tech, 3, 0.2)
    assert c.energy_J != a.energy_J  # the lossless reference is another chip
