"""Pricing: event counts x per-event costs, resources x area and static power; the report.

Energy per inference (pJ), per component:

==============  ==============================================================================
crossbar        active row-tile rows x tile columns x read energy / (ref rows x ref cols),
                x conversion steps per read when the array has no sample-and-hold
adc             conversions x E_adc(bits)
mux             conversions x MUX energy (when an ADC is shared by several columns)
drivers         active rows x driver (or DAC) energy
shift_add       shift-and-add operations x E_add(partial-sum bits)
accumulator     partial-sum accumulations across row tiles x E_add(partial-sum bits)
neuron          neuron updates x update energy (+ synaptic-current updates: add + multiply)
digital         operations that stay digital (pooling, residual additions, unfolded BN, layers
                kept digital): MACs, adds, multiplies, comparisons at the word width
buffers         input bits read (by every column tile) + partial-sum accesses + membrane reads /
                writes + outputs written
interconnect    input bits delivered to every column tile x energy per bit
offchip         network input fetched once per inference (dense: values x bits; spike events:
                events x address bits)
programming     tiles rewritten every inference when the network exceeds the chip (time-
                multiplexing): cells x write energy
leakage         static power of every instantiated component x the time it is powered: its
                layer's busy time (``chip.power_gating``, idle layers gated) or the whole
                inference latency
==============  ==============================================================================

Area (um^2) per component from the instantiated resources (:mod:`.architecture`); EDP =
energy x latency, EDAP = EDP x area.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .architecture import LayerGeometry
from .technology import Technology

COMPONENTS = ("crossbar", "adc", "mux", "drivers", "shift_add", "accumulator", "neuron", "digital", "buffers",
              "interconnect", "offchip", "programming", "leakage")
AREA_COMPONENTS = ("crossbar", "adc", "mux", "drivers", "shift_add", "accumulator", "neuron", "digital", "buffers",
                   "interconnect")
LATENCY_MODES = ("sequential", "pipelined")
DIGITAL_PERIPHERY = ("shift_add", "accumulator", "neuron", "digital", "buffers", "interconnect")
KB_BITS = 8192.0


# the event count behind a component's energy, for the report's words
_EVENT_OF = {"adc": ("adc_conversions", "conversions"), "mux": ("adc_conversions", "conversions"),
             "crossbar": ("active_rows", "active rows"), "drivers": ("active_rows", "active rows"),
             "shift_add": ("shift_adds", "shift-adds"), "accumulator": ("accumulations", "accumulations"),
             "buffers": ("input_bits", "input bits, read once per column tile"),
             "interconnect": ("input_bits", "input bits, sent to every column tile"),
             "neuron": ("updates", "neuron updates"), "offchip": ("bits", "bits")}


def zero(keys=COMPONENTS) -> dict:
    return dict.fromkeys(keys, 0.0)


# ------------------------------------------------------------------------------ crossbar layers


def price_crossbar(g: LayerGeometry, c: dict, tech: Technology) -> tuple[dict, float]:
    """(energy pJ per component, read time ns) of a crossbar layer's counts."""
    b = tech.buffer
    conv = c["adc_conversions"]
    steps = 1 if g.sample_and_hold else g.conversions_per_adc_per_read
    v2 = tech.read_voltage_scale(g.v_read)  # cell currents and row charging both go as V^2
    e = zero()
    e["crossbar"] = c["active_rows"] * g.cols * tech.crossbar_energy_per_active_cell_pJ() * steps * v2
    e["adc"] = conv * tech.adc_energy_pJ(g.adc_bits)
    e["mux"] = conv * tech.mux["energy_pJ"] if g.columns_per_adc > 1 else 0.0
    e["drivers"] = c["active_rows"] * tech.driver["dac_energy_pJ" if g.input_mode == "dac" else "energy_pJ"] * v2
    e["shift_add"] = c["shift_adds"] * tech.add_pJ(g.psum_bits)
    e["accumulator"] = c["accumulations"] * tech.add_pJ(g.psum_bits)
    # every column tile reads the input vector from the buffer and receives it over the interconnect
    delivered = c["input_bits"] * g.col_tiles
    e["buffers"] = delivered * b["input_read_pJ_per_bit"] + c["accumulations"] * b["psum_access_pJ"]
    e["interconnect"] = delivered * tech.interconnect["pJ_per_bit"]
    return e, c["vector_reads"] * g.read_ns(tech) / g.replication


def crossbar_resources(g: LayerGeometry, tech: Technology) -> tuple[dict, float]:
    """(area um^2 per component, static power uW) of what a crossbar layer instantiates."""
    a = zero(AREA_COMPONENTS)
    a["crossbar"] = g.arrays * tech.crossbar_area_um2(g.rows, g.cols)
    a["adc"] = g.adcs * tech.adc_area_um2(g.adc_bits)
    a["mux"] = g.muxes * tech.mux["area_um2"]
    a["drivers"] = g.drivers * tech.driver["area_um2"]
    a["shift_add"] = g.adcs * tech.add_um2(g.psum_bits)
    a["accumulator"] = g.accumulators * tech.add_um2(g.psum_bits)
    buf_kB = g.replication * g.input_numel * g.input_bits / KB_BITS
    a["buffers"] = buf_kB * tech.buffer["area_um2_per_kB"]
    a["interconnect"] = g.arrays * tech.interconnect["area_um2_per_tile"]
    d = tech.digital
    static = (g.adcs * tech.adc_leakage_uW(g.adc_bits) + g.muxes * tech.mux["leakage_uW"]
              + g.drivers * tech.driver["leakage_uW"] + (g.adcs + g.accumulators) * d["unit_leakage_uW"]
              + buf_kB * tech.buffer["leakage_uW_per_kB"] + g.arrays * tech.interconnect["leakage_uW_per_tile"])
    return a, static


# ------------------------------------------------------------------------------ neurons


def price_neuron(kind: str, c: dict, tech: Technology, out_bits: int = 1, state_bits: int = 16) -> dict:
    """Energy (pJ per component) of a neuron layer's counts; kind 'spiking' or 'quant'."""
    d, b = tech.digital, tech.buffer
    e = zero()
    if kind == "spiking":
        e["neuron"] = c["updates"] * d["neuron_update_pJ"] + c.get("syn_updates", 0.0) * (
            tech.add_pJ(state_bits) + tech.mul_pJ(state_bits))
        e["buffers"] = c["updates"] * (2 * b["membrane_access_pJ"] + b["output_write_pJ_per_bit"])
    else:
        e["neuron"] = c["updates"] * d["quant_update_pJ"]
        e["buffers"] = c["updates"] * out_bits * b["output_write_pJ_per_bit"]
    return e


def neuron_resources(units: int, neurons: float, state_bits: int, tech: Technology) -> tuple[dict, float]:
    """Neuron update units and the memory holding the neurons' state (membranes)."""
    a = zero(AREA_COMPONENTS)
    d = tech.digital
    kB = neurons * state_bits / KB_BITS
    a["neuron"] = units * d["neuron_area_um2"]
    a["buffers"] = kB * tech.buffer["area_um2_per_kB"]
    return a, units * d["neuron_leakage_uW"] + kB * tech.buffer["leakage_uW_per_kB"]


# ------------------------------------------------------------------------------ digital operations


def price_digital(c: dict, tech: Technology) -> dict:
    w = tech.digital["word_bits"]
    e = zero()
    e["digital"] = (c.get("macs", 0.0) * (tech.mul_pJ(8) + tech.add_pJ(w)) + c.get("adds", 0.0) * tech.add_pJ(w)
                    + c.get("muls", 0.0) * tech.mul_pJ(w) + c.get("compares", 0.0) * tech.add_pJ(w))
    e["buffers"] = c.get("values", 0.0) * w * tech.buffer["output_write_pJ_per_bit"]
    return e


def digital_resources(tech: Technology, mac: bool) -> tuple[dict, float]:
    """One arithmetic unit (an adder, and a multiplier where the op multiplies)."""
    w = tech.digital["word_bits"]
    a = zero(AREA_COMPONENTS)
    a["digital"] = tech.add_um2(w) + (tech.mul_um2(w) if mac else 0.0)
    return a, tech.digital["unit_leakage_uW"]


# ------------------------------------------------------------------------------ the report


@dataclass
class LayerCost:
    name: str
    kind: str  # crossbar | spiking | quant | digital | input | chip
    energy_pJ: dict
    latency_ns: float
    counts: dict
    area_um2: dict = field(default_factory=lambda: zero(AREA_COMPONENTS))
    static_uW: float = 0.0
    stage: int = -1  # the crossbar layer whose pipeline stage this belongs to (-1: none)
    units: int = 0  # neuron update units of a neuron layer (its busy time: updates / units x update time)

    @property
    def dynamic_pJ(self) -> float:
        return float(sum(v for k, v in self.energy_pJ.items() if k != "leakage"))

    @property
    def total_area_um2(self) -> float:
        return float(sum(self.area_um2.values()))


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
    leakage: bool = True
    notes: list[str] = field(default_factory=list)
    assumed: dict = field(default_factory=dict)  # e.g. the activity rates an analytical figure assumed
    power_gating: bool = True  # leakage over each layer's busy time (True) or the whole latency

    # ------------------------------------------------------------------ latency
    def stage_times_ns(self) -> list[float]:
        stages: dict[int, float] = {}
        for layer in self.layers:
            if layer.latency_ns > 0 and layer.kind != "chip":
                key = layer.stage if layer.stage >= 0 else 10**9 + id(layer)
                stages[key] = max(stages.get(key, 0.0), layer.latency_ns)
        return list(stages.values())

    @property
    def latency_s(self) -> float:
        busy = self.stage_times_ns()
        extra = sum(layer.latency_ns for layer in self.layers if layer.kind == "chip")
        if not busy:
            return extra * 1e-9
        if self.latency_mode == "sequential" or self.timesteps <= 1:
            return (sum(busy) + extra) * 1e-9
        T = self.timesteps
        return (sum(t / T for t in busy) + (T - 1) * max(busy) / T + extra) * 1e-9

    # ------------------------------------------------------------------ energy
    @property
    def static_W(self) -> float:
        return sum(layer.static_uW for layer in self.layers) * 1e-6

    def powered_ns(self, layer: LayerCost) -> float:
        """How long ``layer``'s components leak per inference: its pipeline stage's busy time
        (the slower of reads and neuron updates) when idle layers are power-gated, else the
        whole latency."""
        if not self.power_gating:
            return self.latency_s * 1e9
        if layer.stage < 0:
            return layer.latency_ns
        return max(other.latency_ns for other in self.layers if other.stage == layer.stage and other.kind != "chip")

    def layer_energy_pJ(self, layer: LayerCost) -> dict:
        e = dict(layer.energy_pJ)
        e["leakage"] = layer.static_uW * 1e-6 * self.powered_ns(layer) * 1e3 if self.leakage and layer.static_uW else 0.0
        return e

    @property
    def energy_J(self) -> float:
        return sum(sum(self.layer_energy_pJ(layer).values()) for layer in self.layers) * 1e-12

    @property
    def edp_Js(self) -> float:
        return self.energy_J * self.latency_s

    def by_component(self) -> dict:
        out = zero()
        for layer in self.layers:
            for k, v in self.layer_energy_pJ(layer).items():
                out[k] += v * 1e-12
        return out

    def digital_share(self) -> float:
        """Fraction of the energy spent in the digital periphery (shift-add, accumulators,
        neurons, digital ops, buffers, interconnect)."""
        comp = self.by_component()
        total = sum(comp.values())
        return sum(comp[k] for k in DIGITAL_PERIPHERY) / total if total else 0.0

    # ------------------------------------------------------------------ area
    @property
    def area_mm2(self) -> float:
        return sum(layer.total_area_um2 for layer in self.layers) * 1e-6

    def area_by_component(self) -> dict:
        out = zero(AREA_COMPONENTS)
        for layer in self.layers:
            for k, v in layer.area_um2.items():
                out[k] += v * 1e-6
        return out

    @property
    def edap(self) -> float:
        """Energy x delay x area per inference (J s mm^2)."""
        return self.edp_Js * self.area_mm2

    # ------------------------------------------------------------------ views
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

    def findings(self) -> list[str]:
        """What dominates the energy, in words: a component over half of it, where it is
        spent and why (for static power: which layers leak, how long, and what keeps them
        busy that long)."""
        comp = self.by_component()
        total = sum(comp.values())
        if total <= 0:
            return []
        key, value = max(comp.items(), key=lambda kv: kv[1])
        if value <= 0.5 * total:
            return []
        share = f"{key} is {100 * value / total:.0f} % of the energy ({value * 1e6:.4g} uJ of {total * 1e6:.4g} uJ)"
        ranked = sorted(((self.layer_energy_pJ(layer)[key], i) for i, layer in enumerate(self.layers)), reverse=True)
        top = [self.layers[i] for e, i in ranked[:3] if e > 0]
        if key != "leakage":
            event = _EVENT_OF.get(key)
            return [f"{share}, most in " + ", ".join(
                f"{layer.name} ({100 * self.layer_energy_pJ(layer)[key] / (value * 1e12):.0f} %"
                + (f", {layer.counts[event[0]]:,.0f} {event[1]} per inference" if event and layer.counts.get(event[0])
                   else "") + ")" for layer in top)]
        how = ("each layer leaks while its pipeline stage is busy (power gating)" if self.power_gating
               else "every component leaks for the whole inference (no power gating)")
        parts = [f"{layer.name}: {layer.static_uW * 1e-3:.3g} mW for {self.powered_ns(layer) * 1e-6:.3g} ms"
                 + self._busy_reason(layer) for layer in top]
        return [f"{share}: {how}; largest: " + "; ".join(parts)]

    def _busy_reason(self, layer: LayerCost) -> str:
        """What sets the busy time of ``layer``'s pipeline stage."""
        if not self.power_gating or layer.stage < 0:
            return ""
        slow = max((x for x in self.layers if x.stage == layer.stage and x.kind != "chip"), key=lambda x: x.latency_ns)
        if slow.kind in ("spiking", "quant") and slow.units:
            return (f" (set by {slow.name}'s {slow.counts.get('updates', 0):,.0f} neuron updates per inference on "
                    f"{slow.units} unit{'s' if slow.units > 1 else ''}: chip.neuron_units)")
        return f" (set by {slow.name}'s crossbar reads)"

    def to_dict(self) -> dict:
        return {
            "technology": self.technology, "hardware": self.hardware, "source": self.source,
            "latency_mode": self.latency_mode, "n_inferences": self.n_inferences, "timesteps": self.timesteps,
            "energy_J": self.energy_J, "latency_s": self.latency_s, "edp_Js": self.edp_Js,
            "area_mm2": self.area_mm2, "edap_Jsmm2": self.edap, "static_W": self.static_W, "leakage": self.leakage,
            "power_gating": self.power_gating,
            "digital_share": self.digital_share(),
            "energy_by_component_J": self.by_component(), "area_by_component_mm2": self.area_by_component(),
            "spike_rates": self.spike_rates(), "assumed": self.assumed, "notes": self.notes,
            "findings": self.findings(),
            "layers": [dict(asdict(layer), leakage_pJ=self.layer_energy_pJ(layer)["leakage"],
                            total_pJ=sum(self.layer_energy_pJ(layer).values()), total_area_um2=layer.total_area_um2)
                       for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CostReport":
        """The report :meth:`to_dict` wrote (layers' dynamic energies, resources, counts)."""
        names = set(LayerCost.__dataclass_fields__)
        layers = [LayerCost(**{k: v for k, v in layer.items() if k in names}) for layer in d["layers"]]
        return cls(d["technology"], d["hardware"], d["latency_mode"], d["n_inferences"], d["timesteps"], layers,
                   d.get("source", "events"), d.get("leakage", True), list(d.get("notes", [])),
                   dict(d.get("assumed", {})), d.get("power_gating", True))

    def table(self) -> str:
        """Breakdown per layer x component (pJ per inference), area, with totals."""
        energies = [self.layer_energy_pJ(layer) for layer in self.layers]
        cols = [c for c in COMPONENTS if any(e.get(c, 0) for e in energies)]
        w = max([len(layer.name) for layer in self.layers] + [8])
        head = (f"{'layer':<{w}} " + " ".join(f"{c:>12}" for c in cols)
                + f" {'total pJ':>12} {'latency us':>11} {'area mm2':>10}")
        lines = [head, "-" * len(head)]
        for layer, e in zip(self.layers, energies):
            vals = " ".join(f"{e.get(c, 0.0):12.4g}" for c in cols)
            lines.append(f"{layer.name:<{w}} {vals} {sum(e.values()):12.4g} {layer.latency_ns * 1e-3:11.4g} "
                         f"{layer.total_area_um2 * 1e-6:10.4g}")
        comp = self.by_component()
        lines.append("-" * len(head))
        lines.append(f"{'total':<{w}} " + " ".join(f"{comp[c] * 1e12:12.4g}" for c in cols)
                     + f" {self.energy_J * 1e12:12.4g} {self.latency_s * 1e6:11.4g} {self.area_mm2:10.4g}")
        lines.append(f"energy {self.energy_J:.4g} J, latency {self.latency_s:.4g} s ({self.latency_mode}), "
                     f"EDP {self.edp_Js:.4g} J*s, area {self.area_mm2:.4g} mm^2, EDAP {self.edap:.4g} J*s*mm^2 per "
                     f"inference; {self.timesteps:g} timesteps; {self.technology}"
                     + ("" if self.leakage else "; static power not counted"))
        for n in self.notes:
            lines.append(f"note: {n}")
        for f in self.findings():
            lines.append(f"dominant: {f}")
        return "\n".join(lines)

    def plot(self, path, title: str | None = None):
        """Energy and area per layer, stacked by component. Writes a PNG; returns the path."""
        from ..plots import cost_breakdown

        return cost_breakdown(self, path, title)
