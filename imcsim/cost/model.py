"""Cost model: energy, latency and EDP per inference from event counts and a technology table.

The model never runs the network. Two ways to get counts, one way to price them:

* :func:`estimate` prices the events that a real run recorded (sparse spikes, skipped
  all-zero reads and early exits are all in the counts);
* :func:`analytical_estimate` computes the expected counts of a layer list for assumed spike
  rates (no simulation), for fast sweeps over T, crossbar size or ADC bits.

Energy per event (pJ; names in :mod:`imcsim.technology`), per component of the breakdown:

==============  ==============================================================================
crossbar        active row-tile rows x tile columns x (read energy / (ref rows x ref cols))
adc             conversions x E_adc(bits)
mux             conversions x mux energy (when an ADC is shared by several columns)
drivers         active rows x driver (or DAC) energy per row activation
shift_add       shift-and-add operations x shift-add energy
accumulator     row-tile partial-sum accumulations x (adder energy)
neuron          neuron updates x LIF/IF (or quantised-activation) update energy
buffers         input bits read + output bits written (per bit) + membrane reads/writes and
                partial-sum accesses (per access)
interconnect    input bits delivered to the tiles x energy per bit
offchip         network input bits fetched once per inference x energy per bit
==============  ==============================================================================

Latency: all tiles of a layer read in parallel; one read (one input plane of one vector)
takes ``t_read + n x t_adc(bits)`` where n = conversions per ADC per read (columns sharing
an ADC). A layer's time is its number of reads in time (``vector_reads``) times that;
digital work is assumed to overlap with the reads. ``sequential`` (default): layers and
timesteps one after another, so latency is exactly linear in the number of timesteps.
``pipelined``: layers overlap at timestep granularity, latency = sum_l(t_l / T) + (T - 1) *
max_l(t_l / T) for T timesteps (affine in T). EDP = energy x latency per inference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from ..crossbar import TiledMatrix
from ..events import collect_events, counting_modules
from ..hardware import HardwareConfig
from ..neurons import QuantAct, SpikingNeuron
from .technology import Technology

__all__ = ["COMPONENTS", "LATENCY_MODES", "LayerGeometry", "LayerCost", "CostReport", "LayerSpec", "VGG9_CIFAR10",
           "analytical_counts", "analytical_estimate", "breakeven_spike_rate", "compare_reports", "estimate",
           "geometry_of", "layer_specs", "lossless_adc_bits", "price_crossbar", "price_neuron", "spikesim_estimate"]

COMPONENTS = ("crossbar", "adc", "mux", "drivers", "shift_add", "accumulator", "neuron", "buffers", "interconnect", "offchip")
LATENCY_MODES = ("sequential", "pipelined")


@dataclass(frozen=True)
class LayerGeometry:
    """What the cost model needs to know about one crossbar layer."""

    rows: int
    cols: int
    row_tiles: int
    col_tiles: int
    in_features: int
    out_features: int
    conversion_columns: int  # ADC conversions per row-tile read (all column tiles)
    adc_bits: int  # priced resolution (the lossless equivalent when the read-out is lossless)
    columns_per_adc: int
    input_mode: str  # binary | bit_serial | dac
    input_bits: int

    @property
    def conversions_per_adc_per_read(self) -> int:
        per_tile = math.ceil(self.conversion_columns / self.col_tiles)
        return min(self.columns_per_adc, per_tile)


def lossless_adc_bits(hw: HardwareConfig) -> int:
    """Bits an ADC needs to read a column without loss: every row at the top level."""
    return math.ceil(math.log2(hw.rows * (2**hw.device.bits_per_cell - 1) + 1)) + (1 if hw.adc.per == "pair" else 0)


def geometry_of(tm: TiledMatrix) -> LayerGeometry:
    hw = tm.hw
    drv = tm.driver()
    return LayerGeometry(
        rows=hw.rows, cols=hw.cols, row_tiles=tm.grid.row_tiles, col_tiles=tm.grid.col_tiles,
        in_features=tm.in_features, out_features=tm.out_features, conversion_columns=tm.conversion_columns,
        adc_bits=lossless_adc_bits(hw) if hw.adc.lossless else hw.adc.bits,
        columns_per_adc=hw.adc.columns_per_adc, input_mode=drv.mode, input_bits=drv.bits,
    )


# ------------------------------------------------------------------------------ pricing


def price_crossbar(g: LayerGeometry, c: dict, tech: Technology) -> tuple[dict, float]:
    """(energy pJ per component, busy time ns) of a crossbar layer's counts."""
    d, b = tech.digital, tech.buffer
    conv = c["adc_conversions"]
    e = dict.fromkeys(COMPONENTS, 0.0)
    e["crossbar"] = c["active_rows"] * g.cols * tech.crossbar_energy_per_active_cell_pJ()
    e["adc"] = conv * tech.adc_energy_pJ(g.adc_bits)
    e["mux"] = conv * tech.mux["energy_pJ"] if g.columns_per_adc > 1 else 0.0
    e["drivers"] = c["active_rows"] * tech.driver["dac_energy_pJ" if g.input_mode == "dac" else "energy_pJ"]
    e["shift_add"] = c["shift_adds"] * d["shift_add_pJ"]
    e["accumulator"] = c["accumulations"] * d["accumulate_pJ"]
    e["buffers"] = c["input_bits"] * b["input_read_pJ_per_bit"] + c["accumulations"] * b["psum_access_pJ"]
    e["interconnect"] = c["input_bits"] * tech.interconnect["pJ_per_bit"]
    t_read = tech.crossbar["read_latency_ns"] + g.conversions_per_adc_per_read * tech.adc_latency_ns(g.adc_bits)
    return e, c["vector_reads"] * t_read


def price_neuron(kind: str, c: dict, tech: Technology, out_bits: int = 1) -> dict:
    """Energy (pJ per component) of a neuron layer's counts; kind 'spiking' or 'quant'."""
    d, b = tech.digital, tech.buffer
    e = dict.fromkeys(COMPONENTS, 0.0)
    if kind == "spiking":
        e["neuron"] = c["updates"] * d["neuron_update_pJ"]
        e["buffers"] = c["updates"] * (2 * b["membrane_access_pJ"] + b["output_write_pJ_per_bit"])
    else:
        e["neuron"] = c["updates"] * d["quant_update_pJ"]
        e["buffers"] = c["updates"] * out_bits * b["output_write_pJ_per_bit"]
    return e


@dataclass
class LayerCost:
    name: str
    kind: str  # crossbar | spiking | quant | input
    energy_pJ: dict
    latency_ns: float
    counts: dict

    @property
    def total_pJ(self) -> float:
        return float(sum(self.energy_pJ.values()))


@dataclass
class CostReport:
    """Cost of one inference (averages over the inferences that were counted)."""

    technology: str
    hardware: str
    latency_mode: str
    n_inferences: float
    timesteps: float
    layers: list[LayerCost] = field(default_factory=list)
    source: str = "events"  # events | analytical

    @property
    def energy_J(self) -> float:
        return sum(layer.total_pJ for layer in self.layers) * 1e-12

    @property
    def latency_s(self) -> float:
        busy = [layer.latency_ns for layer in self.layers if layer.latency_ns > 0]
        if not busy:
            return 0.0
        if self.latency_mode == "sequential" or self.timesteps <= 1:
            return sum(busy) * 1e-9
        T = self.timesteps
        return (sum(t / T for t in busy) + (T - 1) * max(busy) / T) * 1e-9

    @property
    def edp_Js(self) -> float:
        return self.energy_J * self.latency_s

    def by_component(self) -> dict:
        out = dict.fromkeys(COMPONENTS, 0.0)
        for layer in self.layers:
            for k, v in layer.energy_pJ.items():
                out[k] += v * 1e-12
        return out

    def spike_rates(self) -> dict:
        """Per layer: fraction of neuron updates that spiked / of non-zero activations, and
        for crossbar layers the fraction of row activations among all possible."""
        rates = {}
        for layer in self.layers:
            c = layer.counts
            if layer.kind == "spiking" and c.get("updates"):
                rates[layer.name] = c["spikes"] / c["updates"]
            elif layer.kind == "quant" and c.get("updates"):
                rates[layer.name] = c["nonzero"] / c["updates"]
            elif layer.kind == "crossbar" and c.get("possible_rows"):
                rates[layer.name] = c["active_rows"] / c["possible_rows"]
        return rates

    def to_dict(self) -> dict:
        return {
            "technology": self.technology, "hardware": self.hardware, "source": self.source,
            "latency_mode": self.latency_mode, "n_inferences": self.n_inferences, "timesteps": self.timesteps,
            "energy_J": self.energy_J, "latency_s": self.latency_s, "edp_Js": self.edp_Js,
            "energy_by_component_J": self.by_component(), "spike_rates": self.spike_rates(),
            "layers": [dict(asdict(layer), total_pJ=layer.total_pJ) for layer in self.layers],
        }

    def table(self) -> str:
        """Breakdown per layer x component (pJ per inference), with totals."""
        cols = [c for c in COMPONENTS if any(layer.energy_pJ.get(c, 0) for layer in self.layers)]
        w = max([len(layer.name) for layer in self.layers] + [8])
        head = f"{'layer':<{w}} " + " ".join(f"{c:>12}" for c in cols) + f" {'total':>12} {'latency_us':>11}"
        lines = [head, "-" * len(head)]
        for layer in self.layers:
            vals = " ".join(f"{layer.energy_pJ.get(c, 0.0):12.4g}" for c in cols)
            lines.append(f"{layer.name:<{w}} {vals} {layer.total_pJ:12.4g} {layer.latency_ns * 1e-3:11.4g}")
        comp = self.by_component()
        lines.append("-" * len(head))
        lines.append(f"{'total pJ':<{w}} " + " ".join(f"{comp[c] * 1e12:12.4g}" for c in cols)
                     + f" {self.energy_J * 1e12:12.4g} {self.latency_s * 1e6:11.4g}")
        lines.append(f"energy {self.energy_J:.4g} J, latency {self.latency_s:.4g} s ({self.latency_mode}), "
                     f"EDP {self.edp_Js:.4g} J*s per inference; {self.timesteps:g} timesteps; {self.technology}")
        return "\n".join(lines)

    def plot(self, path, title: str | None = None):
        """Stacked bars: energy per layer, split by component. Writes a PNG; returns the path."""
        from ..app.plots import stacked_energy_bars

        return stacked_energy_bars(self, path, title)


# ------------------------------------------------------------------------------ event-driven


def _positive(name: str, value, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with allow_zero), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)



def estimate(model: nn.Module, tech: Technology, n_inferences: float, *, timesteps: float = 1.0,
             latency_mode: str = "sequential", input_bits_per_inference: float = 0.0) -> CostReport:
    """Price the events recorded in ``model`` since the last :func:`~imcsim.reset_events`.

    n_inferences: how many inferences those events cover (samples run). timesteps: average
    timesteps per inference (1 for a QNN). input_bits_per_inference: network input fetched
    from off-chip memory once per inference (numel x input bits).
    """
    if not isinstance(tech, Technology):
        raise ValueError(f"tech must be a Technology, got {type(tech).__name__}")
    _positive("n_inferences", n_inferences)
    _positive("timesteps", timesteps)
    _positive("input_bits_per_inference", input_bits_per_inference, allow_zero=True)
    if latency_mode not in LATENCY_MODES:
        raise ValueError(f"latency_mode must be one of {LATENCY_MODES}, got {latency_mode!r}")
    hw_desc = ""
    layers = []
    events = collect_events(model)
    for name, m in counting_modules(model):
        c = {k: v / n_inferences for k, v in events[name].items()}
        tm = m if isinstance(m, TiledMatrix) else getattr(m, "tiles", None)
        if isinstance(tm, TiledMatrix):
            g = geometry_of(tm)
            e, busy = price_crossbar(g, c, tech)
            c["possible_rows"] = c["vectors"] * g.in_features * (g.input_bits if g.input_mode == "bit_serial" else 1) * g.col_tiles
            layers.append(LayerCost(name, "crossbar", e, busy, c))
            hw_desc = tm.hw.describe()
        elif isinstance(m, SpikingNeuron):
            layers.append(LayerCost(name, "spiking", price_neuron("spiking", c, tech), 0.0, c))
        elif isinstance(m, QuantAct):
            layers.append(LayerCost(name, "quant", price_neuron("quant", c, tech, m.bits), 0.0, c))
    if input_bits_per_inference:
        e = dict.fromkeys(COMPONENTS, 0.0)
        e["offchip"] = input_bits_per_inference * tech.offchip["pJ_per_bit"]
        layers.insert(0, LayerCost("input", "input", e, 0.0, {"bits": input_bits_per_inference}))
    return CostReport(tech.name, hw_desc, latency_mode, float(n_inferences), float(timesteps), layers)


# ------------------------------------------------------------------------------ analytical


@dataclass(frozen=True)
class LayerSpec:
    """Shape-only description of a mapped layer. in_features = C*k*k for a conv;
    positions = output pixels per sample (1 for linear); input: spike | analog | quantized;
    activation: what follows (spiking | quant | none); act_bits: bits of a quant activation."""

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


def layer_specs(model: nn.Module, input_shape, hw: HardwareConfig | None = None) -> list[LayerSpec]:
    """Trace a float model (zoo :class:`~imcsim.models.Network` or Sequential) on a dummy
    input and describe its Linear / Conv2d layers for :func:`analytical_estimate`."""
    from ..models import Network

    body = model.body if isinstance(model, Network) else model
    mods = list(body) if isinstance(body, nn.Sequential) else [m for m in body.modules() if not list(m.children())]
    x = torch.zeros(1, *input_shape)
    in_bits = hw.inputs.bits if hw else 8
    was_training = model.training
    model.eval()
    try:
        return _trace_specs(mods, x, in_bits)
    finally:
        model.train(was_training)


def _trace_specs(mods, x, in_bits):
    specs, prev_act, pending = [], None, None
    with torch.no_grad():
        for name, m in zip(range(len(mods)), mods):
            if isinstance(m, (SpikingNeuron, QuantAct)):
                if pending is not None:
                    kind = "spiking" if isinstance(m, SpikingNeuron) else "quant"
                    specs[-1] = LayerSpec(**{**asdict(specs[-1]), "activation": kind,
                                             "act_bits": 1 if kind == "spiking" else m.bits})
                    pending = None
                prev_act = m
                continue
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                if isinstance(prev_act, SpikingNeuron):
                    inp, bits = "spike", 1
                elif isinstance(prev_act, QuantAct):
                    inp, bits = "quantized", prev_act.bits
                else:
                    inp, bits = "analog", in_bits
                y = m(x)
                if isinstance(m, nn.Conv2d):
                    spec = LayerSpec(f"{name}", "conv", m.in_channels * m.kernel_size[0] * m.kernel_size[1], m.out_channels,
                                     y.shape[-1] * y.shape[-2], inp, bits, "none", 1, m.in_channels, y.shape[-1])
                else:
                    spec = LayerSpec(f"{name}", "linear", m.in_features, m.out_features, 1, inp, bits, "none", 1)
                specs.append(spec)
                pending = spec
                x = y
                continue
            x = m(x)
    if not specs:
        raise ValueError("layer_specs: the model has no Linear or Conv2d layers")
    return specs


def _geometry_for(spec: LayerSpec, hw: HardwareConfig) -> LayerGeometry:
    cols = spec.out_features * hw.columns_per_weight
    rt, ct = -(-spec.in_features // hw.rows), -(-cols // hw.cols)
    conv_cols = cols // 2 if hw.adc.per == "pair" else cols
    mode = "binary" if spec.input == "spike" else hw.inputs.mode
    return LayerGeometry(hw.rows, hw.cols, rt, ct, spec.in_features, spec.out_features, conv_cols,
                         lossless_adc_bits(hw) if hw.adc.lossless else hw.adc.bits,
                         hw.adc.columns_per_adc, mode, spec.input_bits)


def analytical_counts(spec: LayerSpec, hw: HardwareConfig, timesteps: float, rate: float, out_rate: float,
                      static: bool = False) -> tuple[dict, dict]:
    """Expected per-inference counts of a crossbar layer and the activation after it.

    rate: probability that an input plane entry is non-zero (spike rate, or bit density of
    bit planes); entries independent. out_rate: the same for this layer's outputs.
    static: the layer's input is the same every timestep and it is computed once."""
    g = _geometry_for(spec, hw)
    T = timesteps if (spec.input == "spike" or spec.activation == "spiking") and not static else 1.0
    P = spec.input_bits if g.input_mode == "bit_serial" else 1
    vectors = spec.positions * T
    reads = vectors * P
    sizes = [min(hw.rows, spec.in_features - t * hw.rows) for t in range(g.row_tiles)]
    p_tile = [1.0 - (1.0 - rate) ** n for n in sizes] if hw.skip_zero_reads else [1.0] * len(sizes)
    p_any = 1.0 - math.prod(1.0 - p for p in p_tile)
    row_reads = reads * sum(p_tile)
    c = dict(
        vectors=vectors,
        vector_reads=reads * p_any,
        tile_reads=row_reads * g.col_tiles,
        active_rows=reads * spec.in_features * rate * g.col_tiles,
        adc_conversions=row_reads * g.conversion_columns,
        shift_adds=row_reads * g.conversion_columns,
        accumulations=reads * (sum(p_tile) - p_any) * spec.out_features,
        outputs=vectors * spec.out_features,
        input_bits=vectors * spec.in_features * spec.input_bits,
        possible_rows=reads * spec.in_features * g.col_tiles,
    )
    updates = spec.positions * T * spec.out_features
    n = dict(updates=updates, spikes=updates * out_rate, nonzero=updates * out_rate)
    return c, n


def analytical_estimate(specs: list[LayerSpec], hw: HardwareConfig, tech: Technology, timesteps: float, rate,
                        *, input_rate: float = 0.5, latency_mode: str = "sequential",
                        input_numel: int = 0, static_input_once: bool = False) -> CostReport:
    """Expected cost of one inference of a layer list, without simulation.

    rate: activity of hidden activations (spike rate for SNN layers, bit density of bit
    planes for QNN layers): one float for all, or one per layer's *output*. input_rate:
    bit density of the analog network input's bit planes. static_input_once: layers fed by
    the (direct-encoded, constant) network input are computed once, not every timestep
    (see :class:`~imcsim.models.Network`)."""
    if latency_mode not in LATENCY_MODES:
        raise ValueError(f"latency_mode must be one of {LATENCY_MODES}, got {latency_mode!r}")
    if _positive("timesteps", timesteps) < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps!r}")
    _positive("input_numel", input_numel, allow_zero=True)
    rates = [rate] * len(specs) if isinstance(rate, (int, float)) else list(rate)
    if len(rates) != len(specs):
        raise ValueError(f"rate must be one number or one per layer ({len(specs)}), got {len(rates)}")
    for r in rates + [input_rate]:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0:
            raise ValueError(f"rates must be numbers in [0, 1], got {r!r}")
    layers = []
    static = static_input_once
    for i, spec in enumerate(specs):
        in_rate = input_rate if spec.input == "analog" else rates[i - 1] if i else input_rate
        static = static and spec.input == "analog"  # only the prefix before the first neuron
        c, n = analytical_counts(spec, hw, timesteps, in_rate, rates[i], static)
        e, busy = price_crossbar(_geometry_for(spec, hw), c, tech)
        layers.append(LayerCost(spec.name, "crossbar", e, busy, c))
        if spec.activation == "spiking":
            layers.append(LayerCost(f"{spec.name}.act", "spiking", price_neuron("spiking", n, tech), 0.0, n))
        elif spec.activation == "quant":
            layers.append(LayerCost(f"{spec.name}.act", "quant", price_neuron("quant", n, tech, spec.act_bits), 0.0, n))
    if input_numel:
        e = dict.fromkeys(COMPONENTS, 0.0)
        e["offchip"] = input_numel * hw.inputs.bits * tech.offchip["pJ_per_bit"]
        layers.insert(0, LayerCost("input", "input", e, 0.0, {"bits": input_numel * hw.inputs.bits}))
    is_snn = any(s.activation == "spiking" or s.input == "spike" for s in specs)
    return CostReport(tech.name, hw.describe(), latency_mode, 1.0, float(timesteps if is_snn else 1), layers, "analytical")


# ------------------------------------------------------------------------------ SNN vs QNN


def compare_reports(snn: CostReport, qnn: CostReport) -> dict:
    """SNN / QNN ratios of energy, latency, EDP and crossbar reads (per inference)."""
    def reads(r):
        return sum(layer.counts.get("vector_reads", 0.0) for layer in r.layers if layer.kind == "crossbar")

    return {
        "energy_ratio": snn.energy_J / qnn.energy_J,
        "latency_ratio": snn.latency_s / qnn.latency_s if qnn.latency_s else math.inf,
        "edp_ratio": snn.edp_Js / qnn.edp_Js if qnn.edp_Js else math.inf,
        "read_ratio": reads(snn) / reads(qnn) if reads(qnn) else math.inf,
        "snn": {"energy_J": snn.energy_J, "latency_s": snn.latency_s, "edp_Js": snn.edp_Js},
        "qnn": {"energy_J": qnn.energy_J, "latency_s": qnn.latency_s, "edp_Js": qnn.edp_Js},
    }


def breakeven_spike_rate(snn_specs, hw: HardwareConfig, tech: Technology, timesteps: int, qnn_energy_J: float,
                         *, input_rate: float = 0.5, metric: str = "energy", qnn_latency_s: float | None = None,
                         static_input_once: bool = False, tol: float = 1e-7) -> float | None:
    """Average spike rate below which the SNN costs less than ``qnn_energy_J`` (or the QNN's
    EDP with ``metric='edp'``), found by bisection on the analytical SNN cost, which grows
    with the spike rate. None when the SNN costs more even with no spikes at all; 1.0 when
    it costs less even when every neuron spikes every timestep."""
    if metric not in ("energy", "edp"):
        raise ValueError(f"metric must be 'energy' or 'edp', got {metric!r}")
    target = qnn_energy_J if metric == "energy" else qnn_energy_J * (qnn_latency_s or 0.0)

    def cost(r):
        rep = analytical_estimate(snn_specs, hw, tech, timesteps, r, input_rate=input_rate,
                                  static_input_once=static_input_once)
        return rep.energy_J if metric == "energy" else rep.edp_Js

    if cost(0.0) >= target:
        return None
    if cost(1.0) <= target:
        return 1.0
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if cost(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------------------ SpikeSim mode


def spikesim_estimate(layers, timesteps: int, tech: Technology | None = None, *, xbar: int = 64, kernel: int = 3,
                      columns_per_adc: int = 8) -> dict:
    """SpikeSim's released energy / latency estimator (dense, per PE cycle), for comparison.

    layers: (in_channels, out_channels, out_dim) of each conv layer, in order. One PE holds
    kernel**2 crossbars of xbar x xbar; a layer needs ceil(out/xbar) * ceil(in/xbar) PEs,
    each running out_dim**2 PE cycles per timestep. Energy of one PE cycle (pJ):

        PE   = k^2 E_xbar + (xbar / 8) (E_adc + E_mux)
        E_pe = E_htree + E_mem_fetch + E_neuron(4) + (xbar / 8) PE + (xbar / 8) 16 E_sub
               + (xbar / 8) E_temp_buffer + E_tile_buffer

    Total energy = sum over layers of PE cycles x E_pe x T. Latency: layer i handles
    out_dim^2 * out_ch * T units of one PE cycle each and starts when a fraction
    (0.75) of layer i-1's units are done; latency = (end of last layer - start of first) x
    PE cycle. (SpikeSim's script prints per-layer latencies multiplied by T once more; we
    keep the latency linear in T.) The figure ``xbar / 8`` is SpikeSim's: 8 columns per ADC.
    """
    tech = tech or Technology.preset("spikesim-65nm-rram")
    s = tech.spikesim
    if s is None:
        raise ValueError(f"technology {tech.name!r} has no [spikesim] section of SpikeSim's constants")
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps!r}")
    g = xbar / columns_per_adc
    pe_ar = kernel**2 * s["xbar_read_pJ"] + g * (s["adc_pJ"] + s["mux_pJ"])
    e_pe = (s["htree_pJ"] + s["mem_fetch_pJ"] + s["neuron_pJ_per_4"] + g * pe_ar + g * 16 * s["sub_pJ"]
            + g * s["temp_buffer_pJ"] + s["tile_buffer_pJ"])
    per_layer, cycles = [], []
    for in_ch, out_ch, out_dim in layers:
        n = math.ceil(out_ch / xbar) * math.ceil(in_ch / xbar) * out_dim * out_dim
        cycles.append(n)
        per_layer.append(n * e_pe * timesteps)
    pe_cycle_ns = s["pe_cycle_clocks"] * 1000.0 / s["clock_MHz"]
    f = s["pipeline_start_fraction"]
    work = [out_dim * out_dim * out_ch * timesteps for _, out_ch, out_dim in layers]
    head = [int(f * out_dim * out_dim * out_ch) * timesteps for _, out_ch, out_dim in layers]
    starts, done = [1], 0
    for h in head[:-1]:
        done += h
        starts.append(1 + done)
    halts = [w + (st - 1) for w, st in zip(work, starts)]
    latency_ns = (halts[-1] - starts[0]) * pe_cycle_ns
    energy_pJ = sum(per_layer)
    return {
        "pe_cycle_energy_pJ": e_pe,
        "pe_cycle_ns": pe_cycle_ns,
        "pe_cycles_per_timestep": cycles,
        "energy_per_layer_pJ": per_layer,
        "energy_J": energy_pJ * 1e-12,
        "latency_s": latency_ns * 1e-9,
        "edp_Js": energy_pJ * 1e-12 * latency_ns * 1e-9,
        "timesteps": timesteps,
    }


VGG9_CIFAR10 = [(3, 64, 32), (64, 64, 16), (64, 128, 16), (128, 128, 8), (128, 256, 8), (256, 256, 8), (256, 256, 4)]
"""SpikeSim's shipped VGG9 / CIFAR-10 example: (in_channels, out_channels, out_dim)."""
