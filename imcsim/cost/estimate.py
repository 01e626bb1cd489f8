"""Estimates: the events a run recorded, or expected events for assumed activity, priced.

* :func:`estimate` prices what a real run recorded (sparse spikes, skipped all-zero reads,
  early exits and digital operations are all in the counts);
* :func:`analytical_estimate` prices expected counts of a layer list (:func:`layer_specs`,
  any convertible model) for assumed per-layer input activity -- measured activities where
  a run exists -- without simulation, for fast sweeps over T, tiles or ADC bits;
* :func:`breakeven_spike_rate` finds the SNN activity at which it costs what its QNN twin
  does, with the same analytical model for both networks.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from ..crossbar import InputSpec, TiledMatrix
from ..digital import DigitalModule, DigitalOp
from ..errors import ConfigError
from ..events import collect_events, counting_modules
from ..hardware import HardwareConfig
from .architecture import LayerGeometry, geometry_of, lossless_adc_bits, psum_bits
from .pricing import (LATENCY_MODES, CostReport, LayerCost, crossbar_resources, digital_resources,
                      neuron_resources, price_crossbar, price_digital, price_neuron, zero)
from .technology import Technology


def _positive(name: str, value, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with allow_zero), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


def neuron_ns(hw: HardwareConfig | None, tech: Technology) -> float:
    """Time of one neuron update on one unit: the architecture's figure, else the technology's."""
    if hw is not None and hw.chip.neuron_update_ns > 0:
        return hw.chip.neuron_update_ns
    return tech.digital["neuron_update_ns"]


def _state_bits(g: LayerGeometry | None) -> int:
    return g.psum_bits if g is not None else 16


def offchip_bits(counts: dict, hw: HardwareConfig | None) -> float:
    """Off-chip input bits per inference from a model's input counter: dense values x input
    bits, or for spike inputs (event data) events x address bits."""
    if not counts or not counts.get("samples"):
        return 0.0
    n = counts["samples"]
    if counts.get("spike_calls") and counts["spike_calls"] == counts.get("calls"):
        frame = max(1.0, counts["frame_values"])
        return counts["nonzero"] / n * math.ceil(math.log2(frame + 1))
    return counts["values"] / n * (hw.inputs.bits if hw is not None else 8)


def _refuse_oversize(need: int, hw: HardwareConfig) -> None:
    cap = hw.chip.max_tiles
    if cap and need > cap and hw.chip.oversize == "refuse":
        raise ConfigError(f"the network needs {need} crossbar tiles but the chip has chip.max_tiles = {cap}; raise "
                          "it, use bigger tiles, or set chip.oversize = 'reprogram' to time-multiplex (tiles are "
                          "rewritten every inference)")


def check_fits(specs: list[LayerSpec], hw: HardwareConfig) -> None:
    """Before any simulation: a network that needs more tiles than ``chip.max_tiles`` (with
    ``oversize = 'refuse'``) is a ConfigError naming both numbers."""
    _refuse_oversize(sum(_geometry_for(s, hw).arrays for s in specs), hw)


def _chip_limits(layers: list[LayerCost], geos: list[LayerGeometry], hw: HardwareConfig, tech: Technology) -> None:
    """Refuse or time-multiplex a network that needs more tiles than the chip has."""
    need = sum(g.arrays for g in geos)
    cap = hw.chip.max_tiles
    if not cap or need <= cap:
        return
    _refuse_oversize(need, hw)
    rounds = math.ceil(need / cap)
    cells = sum(g.arrays * g.rows * g.cols for g in geos)
    e = zero()
    e["programming"] = cells * tech.crossbar["write_energy_pJ_per_cell"]
    lat = rounds * hw.rows * tech.crossbar["write_latency_ns_per_row"]
    layers.append(LayerCost("chip (time-multiplexed)", "chip", e, lat, {"rounds": rounds, "tiles_needed": need,
                                                                         "tiles_on_chip": cap, "cells_written": cells}))
    # only max_tiles tiles exist: scale the crossbar-side area to what is instantiated
    for layer in layers:
        if layer.kind == "crossbar":
            for k in ("crossbar", "adc", "mux", "drivers", "shift_add", "accumulator", "interconnect"):
                layer.area_um2[k] *= cap / need
            layer.static_uW *= cap / need


# ------------------------------------------------------------------------------ event-driven


def estimate(model: nn.Module, tech: Technology, n_inferences: float | None = None, *, timesteps: float = 1.0,
             latency_mode: str = "sequential", input_bits_per_inference: float | None = None,
             leakage: bool | None = None,
             replication: dict | None = None, events: dict | None = None,
             input_counts: dict | None = None) -> CostReport:
    """Price the events recorded in ``model`` since the last :func:`~imcsim.reset_events`.

    n_inferences: how many inferences those events cover (default: the samples the model's
    input counter saw). timesteps: average timesteps per inference (1 for a QNN).
    input_bits_per_inference: off-chip input per inference (default: from the model's input
    counter -- dense values x input bits, or spike events x address bits -- the same number
    the command line prints). leakage: add static power x latency (default: as the hardware's
    ``chip.static_power`` says; a chip without static power, SpikeSim's, counts none). replication: copies per
    layer name, overriding ``chip.replication``. events / input_counts: price these counts
    ({module name: counts} and the input counter's counts) instead of the model's counters.
    """
    if not isinstance(tech, Technology):
        raise ValueError(f"tech must be a Technology, got {type(tech).__name__}")
    if latency_mode not in LATENCY_MODES:
        raise ValueError(f"latency_mode must be one of {LATENCY_MODES}, got {latency_mode!r}")
    inp = getattr(model, "input_events", None)
    inp_counts = dict(inp.counts) if input_counts is None and inp is not None else input_counts
    seen = (inp_counts or {}).get("samples", 0.0)
    if n_inferences is None:
        if not seen:
            raise ValueError("n_inferences is needed: the model recorded no input samples (pass n_inferences=...)")
        n_inferences = seen
    n = _positive("n_inferences", n_inferences)
    _positive("timesteps", timesteps)
    replication = dict(replication or {})
    events = collect_events(model) if events is None else events
    layers, geos, hw_any = [], [], None
    stage, last = -1, None
    for name, m in counting_modules(model):
        c = {k: v / n for k, v in events.get(name, {k: 0.0 for k in m.events.counts}).items()}
        tm = m if isinstance(m, TiledMatrix) else getattr(m, "tiles", None)
        kind = getattr(m, "neuron_kind", None)
        if isinstance(tm, TiledMatrix):
            g = geometry_of(tm, replication.pop(name, None))
            e, busy = price_crossbar(g, c, tech)
            area, static = crossbar_resources(g, tech)
            c["possible_rows"] = c["vectors"] * g.in_features * (g.input_bits if g.input_mode == "bit_serial" else 1) * g.col_tiles
            stage += 1
            layers.append(LayerCost(name, "crossbar", e, busy, c, area, static, stage))
            geos.append(g)
            hw_any, last = tm.hw, g
        elif kind in ("spiking", "quant"):
            units = (hw_any.chip.neuron_units if hw_any is not None and hw_any.chip.neuron_units else
                     last.column_groups if last is not None else 1)
            bits = getattr(m, "bits", 1)
            e = price_neuron(kind, c, tech, bits, _state_bits(last))
            neurons = c.get("updates", 0.0) / max(1.0, float(timesteps))
            area, static = neuron_resources(units, neurons, _state_bits(last) if kind == "spiking" else 0, tech)
            busy = c.get("updates", 0.0) / units * neuron_ns(hw_any, tech)
            layers.append(LayerCost(name, kind, e, busy, c, area, static, stage, units))
        elif isinstance(m, (DigitalOp, DigitalModule)):
            area, static = digital_resources(tech, bool(c.get("macs") or c.get("muls")))
            layers.append(LayerCost(name, "digital", price_digital(c, tech), 0.0, c, area, static, stage))
    if replication:
        raise ValueError(f"replication names {sorted(replication)[0]!r}, which is not a crossbar layer of the model")
    hw_desc = hw_any.describe() if hw_any is not None else ""
    notes = []
    if input_bits_per_inference is None:
        input_bits_per_inference = offchip_bits(inp_counts or {}, hw_any)
        if inp_counts is None:
            notes.append("off-chip input not counted: the model records no input (pass input_bits_per_inference)")
    _positive("input_bits_per_inference", input_bits_per_inference, allow_zero=True)
    if input_bits_per_inference:
        e = zero()
        e["offchip"] = input_bits_per_inference * tech.offchip["pJ_per_bit"]
        layers.insert(0, LayerCost("input", "input", e, 0.0, {"bits": input_bits_per_inference}))
    if hw_any is not None:
        _chip_limits(layers, geos, hw_any, tech)
        notes += tech.scaling_notes(hw_any)
    if leakage is None:
        leakage = hw_any.chip.static_power if hw_any is not None else True
    return CostReport(tech.name, hw_desc, latency_mode, n, float(timesteps), layers, "events", bool(leakage), notes,
                      power_gating=hw_any.chip.power_gating if hw_any is not None else True)


def per_sample_cost(model: nn.Module, tech: Technology, run, **kw) -> dict:
    """Energy and latency of every sample of a dynamic-timestep run, each at its own exit.

    ``run``: a :class:`~imcsim.dynamic.DynamicRun` made with ``record_steps=True``. Each
    timestep's events are priced per sample that ran it (E_t, L_t: sequential latency of
    one step); a sample exiting at t costs E = sum(E_1..E_t), L = sum(L_1..L_t). Costs of
    the whole chip (time-multiplexed reprogramming) are charged once, in step 1. Returns
    per-sample tensors and the two EDP definitions: ``edp_of_means_Js`` = mean(E) x mean(L)
    (what a :class:`CostReport` of the run gives) and ``edp_per_sample_Js`` = mean(E x L)
    (at least as large, since E and L both grow with the exit step)."""
    if getattr(run, "step_events", None) is None:
        raise ValueError("per_sample_cost needs a run_dynamic(..., record_steps=True) run")
    e_step, l_step = [], []
    for k, rec in enumerate(run.step_events):
        if not rec["samples"]:
            e_step.append(0.0)
            l_step.append(0.0)
            continue
        rep = estimate(model, tech, rec["samples"], timesteps=1.0, latency_mode="sequential", events=rec["layers"],
                       input_counts=rec["input"], **kw)
        if k > 0:
            rep.layers = [layer for layer in rep.layers if layer.kind != "chip"]
        e_step.append(rep.energy_J)
        l_step.append(rep.latency_s)
    E = torch.tensor(e_step, dtype=torch.float64).cumsum(0)
    L = torch.tensor(l_step, dtype=torch.float64).cumsum(0)
    idx = run.exit_steps - 1
    e, lat = E[idx], L[idx]
    return {"energy_J": e, "latency_s": lat, "mean_energy_J": float(e.mean()), "mean_latency_s": float(lat.mean()),
            "edp_of_means_Js": float(e.mean() * lat.mean()), "edp_per_sample_Js": float((e * lat).mean()),
            "energy_per_step_J": e_step, "latency_per_step_s": l_step}


# ------------------------------------------------------------------------------ analytical


@dataclass(frozen=True)
class LayerSpec:
    """Shape-only description of a mapped layer (per sample and timestep).

    in_features = C k k / groups-per-group x groups for a conv; positions = output pixels
    (1 for linear); input: spike | quantized | analog with input_bits planes (bit-serial) and
    ``input_levels`` integer values; activation: what follows (spiking | quant | none) with
    ``neurons`` of it per sample and step; in/out numel: activations (for buffers)."""

    name: str
    kind: str
    in_features: int
    out_features: int
    positions: int = 1
    input: str = "spike"
    input_bits: int = 1
    activation: str = "spiking"
    act_bits: int = 1
    in_channels: int = 0
    out_dim: int = 0
    groups: int = 1
    neurons: int = 0
    input_numel: int = 0
    output_numel: int = 0
    in_dim: int = 0

    def static_input(self) -> bool:
        return self.input == "analog"


def _structural(hw: HardwareConfig) -> HardwareConfig:
    """The same architecture with nothing to program or calibrate (geometry only)."""
    from crossbar_models import DeviceModel, WireModel

    return hw.replace(device=DeviceModel(g_on=hw.device.g_on, g_off=0.0, bits_per_cell=hw.device.bits_per_cell),
                      wires=WireModel(), **{"adc.bits": None, "adc.correction": "none"})


def layer_specs(model: nn.Module, input_shape=None, hw: HardwareConfig | None = None,
                input_kind: str | None = None) -> list[LayerSpec]:
    """Describe the crossbar layers of any convertible model (float or converted): its
    structure is mapped onto ``hw`` (default: the ideal chip) and one sample traced.
    input_kind: what the network input is, ``analog`` or ``spike`` (default: spikes for a
    sequence SNN -- imcsim's sequences are event streams -- else analog)."""
    from ..convert import convert
    from ..models import Network

    hw = hw or HardwareConfig.ideal()
    if input_shape is None:
        input_shape = getattr(model, "arch", {}).get("in_shape")
        if not input_shape:
            raise ValueError("layer_specs needs input_shape (the model has no architecture record)")
    seq = isinstance(model, Network) and model.input == "sequence" or getattr(model, "batch_dim", 0) == 1
    if input_kind is None:
        input_kind = "spike" if seq and getattr(model, "kind", "snn") == "snn" else "analog"
    if input_kind not in ("analog", "spike"):
        raise ValueError(f"input_kind must be 'analog' or 'spike', got {input_kind!r}")
    x = torch.zeros(1, 1, *input_shape) if seq else torch.zeros(1, *input_shape)
    was = model.training
    model.eval()
    try:
        chip = convert(copy.deepcopy(model), _structural(hw), input_kind=input_kind)
    finally:
        model.train(was)
    for _, m in chip.named_modules():
        if isinstance(m, TiledMatrix) and m.input_spec.kind == "analog":
            m.input_spec = InputSpec("analog", m.input_spec.bits, 1.0)
    from ..events import reset_events

    reset_events(chip)
    with torch.no_grad():
        kw = {"timesteps": 1} if isinstance(chip, Network) and chip.input == "static" and chip.kind == "snn" else {}
        chip(x, **kw)
    events = collect_events(chip)
    specs, pending = [], None
    for name, m in counting_modules(chip):
        tm = m if isinstance(m, TiledMatrix) else getattr(m, "tiles", None)
        kind = getattr(m, "neuron_kind", None)
        if isinstance(tm, TiledMatrix):
            s = tm.input_spec
            conv = hasattr(m, "kernel_size")
            in_ch = getattr(m, "in_channels", 0)
            positions = int(events[name]["vectors"])
            in_numel = int(getattr(tm, "input_numel", tm.in_features))
            in_dim = int(round(math.sqrt(in_numel / in_ch))) if conv and in_ch else 0
            spec = LayerSpec(name, "conv" if conv else "linear", tm.in_features, tm.out_features, positions,
                             s.kind, s.bits if s.kind != "spike" else 1, "none", 1, in_ch,
                             int(round(math.sqrt(positions))) if conv else 0, tm.groups, 0, in_numel,
                             int(getattr(tm, "output_numel", tm.out_features)), in_dim)
            specs.append(spec)
            pending = len(specs) - 1
        elif kind in ("spiking", "quant") and pending is not None:
            specs[pending] = replace(specs[pending], activation=kind, act_bits=getattr(m, "bits", 1),
                                     neurons=int(events[name]["updates"]))
            pending = None
    if not specs:
        raise ValueError("layer_specs: the model has no Linear or Conv layer to map")
    return specs


def _geometry_for(spec: LayerSpec, hw: HardwareConfig, replication: int | None = None) -> LayerGeometry:
    from ..mapping import TileGrid

    cpw = hw.columns_per_weight
    in_g, out_g = spec.in_features // spec.groups, spec.out_features // spec.groups
    grid = TileGrid(in_g, out_g * cpw, hw.rows, hw.cols, unit=cpw if hw.adc.per == "pair" else 1)
    conv_cols = out_g * (hw.slices if hw.adc.per == "pair" else cpw)
    mode = "binary" if spec.input == "spike" else hw.inputs.mode
    max_in = 2**spec.input_bits - 1
    return LayerGeometry(
        name=spec.name, rows=hw.rows, cols=hw.cols, used_cols=grid.used_cols, row_tiles=grid.row_tiles,
        col_tiles=grid.col_tiles, groups=spec.groups, in_features=spec.in_features, out_features=spec.out_features,
        conversion_columns=conv_cols,
        adc_bits=lossless_adc_bits(hw, grid.row_tiles) if hw.adc.lossless else hw.adc.bits,
        columns_per_adc=hw.adc.columns_per_adc, per=hw.adc.per, accumulate=hw.adc.accumulate,
        sample_and_hold=hw.adc.sample_and_hold, input_mode=mode, input_bits=spec.input_bits,
        psum_bits=psum_bits(in_g, hw, max_in), replication=replication or hw.chip.replication,
        input_numel=spec.input_numel or spec.in_features, output_numel=spec.output_numel or spec.out_features,
        v_read=hw.inputs.v_read)


def analytical_counts(spec: LayerSpec, hw: HardwareConfig, timesteps: float, rate: float, out_rate: float,
                      static: bool = False) -> tuple[dict, dict]:
    """Expected per-inference counts of a crossbar layer and the activation after it.

    rate: probability that an input plane entry is non-zero (fraction of active rows: the
    spike rate at this layer's input, or the bit density of its bit planes); entries
    independent. out_rate: the same for the activation's outputs. static: the layer's input
    is the same every timestep and it is computed once."""
    g = _geometry_for(spec, hw)
    T = timesteps if (spec.input == "spike" or spec.activation == "spiking") and not static else 1.0
    P = spec.input_bits if g.input_mode == "bit_serial" else 1
    vectors = spec.positions * T
    reads = vectors * P
    in_g = spec.in_features // spec.groups
    sizes = [min(hw.rows, in_g - t * hw.rows) for t in range(g.row_tiles)]
    p_tile = [1.0 - (1.0 - rate) ** n for n in sizes] if hw.skip_zero_reads else [1.0] * len(sizes)
    p_any = 1.0 - math.prod(1.0 - p for p in p_tile)
    G = spec.groups
    row_reads = reads * sum(p_tile) * G
    group_reads = reads * p_any * G
    conv_reads = group_reads if g.analog_sum else row_reads
    c = dict(
        vectors=vectors,
        vector_reads=reads * (1.0 - (1.0 - p_any) ** G),
        tile_reads=row_reads * g.col_tiles,
        active_rows=reads * spec.in_features * rate * g.col_tiles,
        adc_conversions=conv_reads * g.conversion_columns,
        shift_adds=conv_reads * g.conversion_columns,
        accumulations=0.0 if g.analog_sum else reads * G * (sum(p_tile) - p_any) * (spec.out_features // G),
        outputs=vectors * spec.out_features,
        input_bits=vectors * spec.in_features * spec.input_bits,
        possible_rows=reads * spec.in_features * g.col_tiles,
    )
    updates = (spec.neurons or spec.positions * spec.out_features) * T
    n = dict(updates=updates, spikes=updates * out_rate, nonzero=updates * out_rate, syn_updates=0.0)
    return c, n


def analytical_estimate(specs: list[LayerSpec], hw: HardwareConfig, tech: Technology, timesteps: float, rate,
                        *, input_rate: float = 0.5, latency_mode: str = "sequential", input_numel: int | None = None,
                        static_input_once: bool = False, leakage: bool | None = None) -> CostReport:
    """Expected cost of one inference of a layer list, without simulation.

    rate: activity at each crossbar layer's input -- one float for all spike- or count-fed
    layers, or one per layer (measured ``active_rows / possible_rows`` where a run exists,
    which includes what pooling does to spikes). input_rate: bit density of the analog
    network input's bit planes. input_numel: network input values fetched off-chip (default:
    the first layer's input). static_input_once: layers fed by the constant network input run
    once per inference. leakage: as in :func:`estimate`. The rates used are recorded in the
    report's ``assumed``."""
    if latency_mode not in LATENCY_MODES:
        raise ValueError(f"latency_mode must be one of {LATENCY_MODES}, got {latency_mode!r}")
    if _positive("timesteps", timesteps) < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps!r}")
    if not specs:
        raise ValueError("analytical_estimate needs at least one layer spec")
    rates = [rate] * len(specs) if isinstance(rate, (int, float)) and not isinstance(rate, bool) else list(rate)
    if len(rates) != len(specs):
        raise ValueError(f"rate must be one number or one per layer ({len(specs)}), got {len(rates)}")
    for r in rates + [input_rate]:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0:
            raise ValueError(f"rates must be numbers in [0, 1], got {r!r}")
    layers, geos = [], []
    used = {}
    for i, spec in enumerate(specs):
        in_rate = input_rate if spec.input == "analog" else rates[i]
        used[spec.name] = in_rate
        static = static_input_once and spec.input == "analog" and i == 0
        c, n = analytical_counts(spec, hw, timesteps, in_rate, rates[i + 1] if i + 1 < len(rates) else rates[i], static)
        g = _geometry_for(spec, hw)
        e, busy = price_crossbar(g, c, tech)
        area, static_uW = crossbar_resources(g, tech)
        layers.append(LayerCost(spec.name, "crossbar", e, busy, c, area, static_uW, i))
        geos.append(g)
        if spec.activation in ("spiking", "quant"):
            units = hw.chip.neuron_units or g.column_groups
            T = timesteps if spec.activation == "spiking" else 1.0
            e2 = price_neuron(spec.activation, n, tech, spec.act_bits, g.psum_bits)
            a2, s2 = neuron_resources(units, n["updates"] / T, g.psum_bits if spec.activation == "spiking" else 0, tech)
            layers.append(LayerCost(f"{spec.name}.act", spec.activation, e2,
                                    n["updates"] / units * neuron_ns(hw, tech), n, a2, s2, i, units))
    numel = specs[0].input_numel if input_numel is None else input_numel
    _positive("input_numel", numel, allow_zero=True)
    if numel and specs[0].input == "analog":
        e = zero()
        e["offchip"] = numel * hw.inputs.bits * tech.offchip["pJ_per_bit"]
        layers.insert(0, LayerCost("input", "input", e, 0.0, {"bits": numel * hw.inputs.bits}))
    _chip_limits(layers, geos, hw, tech)
    is_snn = any(s.activation == "spiking" or s.input == "spike" for s in specs)
    leakage = hw.chip.static_power if leakage is None else bool(leakage)
    return CostReport(tech.name, hw.describe(), latency_mode, 1.0, float(timesteps if is_snn else 1), layers,
                      "analytical", leakage, tech.scaling_notes(hw),
                      {"input_activity": used, "analog_input_bit_density": input_rate},
                      power_gating=hw.chip.power_gating)


# ------------------------------------------------------------------------------ SNN vs QNN


def compare_reports(snn: CostReport, qnn: CostReport) -> dict:
    """SNN / QNN ratios of energy, latency, EDP, area and crossbar reads (per inference)."""
    def reads(r):
        return sum(layer.counts.get("vector_reads", 0.0) for layer in r.layers if layer.kind == "crossbar")

    def ratio(a, b):
        return a / b if b else None

    return {
        "energy_ratio": ratio(snn.energy_J, qnn.energy_J),
        "latency_ratio": ratio(snn.latency_s, qnn.latency_s),
        "edp_ratio": ratio(snn.edp_Js, qnn.edp_Js),
        "area_ratio": ratio(snn.area_mm2, qnn.area_mm2),
        "read_ratio": ratio(reads(snn), reads(qnn)),
        "snn": {"energy_J": snn.energy_J, "latency_s": snn.latency_s, "edp_Js": snn.edp_Js, "area_mm2": snn.area_mm2},
        "qnn": {"energy_J": qnn.energy_J, "latency_s": qnn.latency_s, "edp_Js": qnn.edp_Js, "area_mm2": qnn.area_mm2},
    }


def activity_weighted_rate(specs: list[LayerSpec], rates) -> float:
    """Mean input activity of the spike-fed layers weighted by their possible row
    activations (positions x inputs): the rate that sets the crossbar energy."""
    w = [(s.positions * s.in_features, r) for s, r in zip(specs, rates) if s.input != "analog"]
    tot = sum(a for a, _ in w)
    return sum(a * r for a, r in w) / tot if tot else 0.0


def breakeven_spike_rate(snn_specs, hw: HardwareConfig, tech: Technology, timesteps: int, qnn_energy_J: float,
                         *, profile=None, input_rate: float = 0.5, metric: str = "energy",
                         qnn_latency_s: float | None = None, static_input_once: bool = False,
                         tol: float = 1e-7) -> float | None:
    """Activity-weighted SNN input activity below which the SNN costs less than
    ``qnn_energy_J`` (or the QNN's EDP with ``metric='edp'``), by bisection on the analytical
    SNN cost, which grows with activity. ``profile``: the SNN's per-layer input activities
    (measured), scaled together (uniform when None); pass the QNN cost from the same
    analytical model (see :func:`snn_vs_qnn_breakeven`). None when the SNN costs more even
    with no spikes; 1.0 when it costs less even at full activity."""
    if metric not in ("energy", "edp"):
        raise ValueError(f"metric must be 'energy' or 'edp', got {metric!r}")
    target = qnn_energy_J if metric == "energy" else qnn_energy_J * (qnn_latency_s or 0.0)
    base = list(profile) if profile is not None else [1.0] * len(snn_specs)
    if len(base) != len(snn_specs) or any(not 0 <= b <= 1 for b in base):
        raise ValueError(f"profile must hold one activity in [0, 1] per layer ({len(snn_specs)})")
    w0 = activity_weighted_rate(snn_specs, base)
    if w0 <= 0:
        base, w0 = [1.0] * len(snn_specs), activity_weighted_rate(snn_specs, [1.0] * len(snn_specs)) or 1.0
    a_max = min(1.0, w0 / max(base))  # where the most active layer reaches 1

    def cost(a):  # a: activity-weighted rate; every layer's profile scaled by a / w0
        rates = [min(1.0, b * a / w0) for b in base]
        rep = analytical_estimate(snn_specs, hw, tech, timesteps, rates, input_rate=input_rate,
                                  static_input_once=static_input_once)
        return rep.energy_J if metric == "energy" else rep.edp_Js

    if cost(0.0) >= target:
        return None
    if cost(a_max) <= target:
        return a_max
    lo, hi = 0.0, a_max
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if cost(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def measured_activity(report: CostReport, specs: list[LayerSpec]) -> list[float]:
    """Per-layer input activity (active rows / possible rows) measured in a run, in the
    order of ``specs`` (layers matched by order)."""
    crossbar = [layer for layer in report.layers if layer.kind == "crossbar"]
    if len(crossbar) != len(specs):
        raise ValueError(f"the run has {len(crossbar)} crossbar layers, the specs {len(specs)}")
    return [layer.counts["active_rows"] / layer.counts["possible_rows"] if layer.counts.get("possible_rows") else 0.0
            for layer in crossbar]
