"""Technology presets: energy (pJ), latency (ns), area (um^2) and static power (uW) per
hardware event or component, as data.

A preset is a TOML file (``imcsim/presets/technology/NAME.toml``, or any path) with the
sections below; every field is required, every number must be >= 0, and a missing, extra or
negative field is an error that names the file and the field. Each file lists its sources
and says which family its ADC model follows.

* ``[crossbar]``: read energy of a ref_rows x ref_cols array at the read voltage ref_v_read
  (V) (scaled by active rows x columns, and by (v_read / ref_v_read)^2 for the hardware's
  ``inputs.v_read``: cell currents and row-line charging both go as V^2; the row drivers'
  energy scales the same way), read latency, array area (scaled by rows x cols), write energy
  per cell and write time per row (programming, weight loading).
* ``[adc]``: energy per conversion by ``model`` -- ``linear`` (``energy_pJ * bits /
  ref_bits``, a SAR ADC: one comparison per bit), ``neurosim_sar`` (``(a_uW * bits + c_uW) *
  (bits + 1)`` fJ, NeuroSim's SarADC), ``walden`` (``fom_fJ_per_step * 2**bits`` fJ) or
  ``points`` (measured ``bits``/``energies_pJ``, linear interpolation); latency
  ``latency_ns * bits / ref_bits``; area at ref_bits scaled ``linear`` in bits, ``exponential``
  (2**bits, flash) or ``constant``; static power ``leakage_uW * bits / ref_bits``.
* ``[mux]``, ``[driver]``: per column multiplexer of one ADC, per row driver.
* ``[digital]``: adders and multipliers from Horowitz (45 nm) scaled in bit width and to
  ``node_nm`` (:mod:`.scaling`); the width of digital words; the static power of one digital
  unit; the neuron update (energy, time, area, static power of one neuron unit) and the
  quantised-activation update.
* ``[buffer]``: SRAM energies per bit / access, area and static power per KB.
* ``[interconnect]``: energy per bit moved, area and static power per crossbar tile.
* ``[offchip]``: energy per bit fetched from off-chip memory.
* ``[spikesim]`` (optional): SpikeSim's raw constants for the compatible mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..tomlio import load_toml
from .scaling import HOROWITZ_45NM, area_scale, energy_scale, power_law

ADC_MODELS = ("linear", "neurosim_sar", "walden", "points")
AREA_MODELS = ("linear", "exponential", "constant")

SECTIONS = {
    "crossbar": ("read_energy_pJ", "ref_rows", "ref_cols", "ref_v_read", "read_latency_ns", "area_um2",
                 "write_energy_pJ_per_cell", "write_latency_ns_per_row"),
    "mux": ("energy_pJ", "area_um2", "leakage_uW"),
    "driver": ("energy_pJ", "dac_energy_pJ", "area_um2", "leakage_uW"),
    "digital": ("word_bits", "unit_leakage_uW", "neuron_update_pJ", "neuron_update_ns", "neuron_area_um2",
                "neuron_leakage_uW", "quant_update_pJ"),
    "buffer": ("input_read_pJ_per_bit", "output_write_pJ_per_bit", "membrane_access_pJ", "psum_access_pJ",
               "area_um2_per_kB", "leakage_uW_per_kB"),
    "interconnect": ("pJ_per_bit", "area_um2_per_tile", "leakage_uW_per_tile"),
    "offchip": ("pJ_per_bit",),
}
ADC_COMMON = ("ref_bits", "latency_ns", "area_um2", "leakage_uW")
ADC_FIELDS = {
    "linear": ("energy_pJ",),
    "neurosim_sar": ("a_uW", "c_uW"),
    "walden": ("fom_fJ_per_step",),
    "points": (),
}
SPIKESIM_FIELDS = ("xbar_read_pJ", "adc_pJ", "mux_pJ", "tile_buffer_pJ", "temp_buffer_pJ", "sub_pJ", "htree_pJ",
                   "mem_fetch_pJ", "neuron_pJ_per_4", "clock_MHz", "pe_cycle_clocks", "pipeline_start_fraction",
                   "xbar_area_um2", "adc_area_um2", "mux_area_um2", "sub_area_um2", "temp_buffer_area_um2",
                   "tile_buffer_area_um2", "htree_area_um2", "value_memory_area_um2")


@dataclass(frozen=True)
class Technology:
    name: str
    description: str
    sources: tuple[str, ...]
    node_nm: float
    crossbar: dict
    adc: dict
    mux: dict
    driver: dict
    digital: dict
    buffer: dict
    interconnect: dict
    offchip: dict
    spikesim: dict | None = None  # SpikeSim's raw constants, for the compatible mode
    path: str = ""

    # ------------------------------------------------------------------ crossbar
    def crossbar_energy_per_active_cell_pJ(self) -> float:
        """Energy of one active row crossing one column, pJ (read energy / (rows x cols))."""
        c = self.crossbar
        return c["read_energy_pJ"] / (c["ref_rows"] * c["ref_cols"])

    def read_voltage_scale(self, v_read: float) -> float:
        """(v_read / ref_v_read)^2: how a read's array and driver energies follow the read
        voltage (1 for v_read = 0, i.e. at the reference)."""
        return (v_read / self.crossbar["ref_v_read"]) ** 2 if v_read else 1.0

    def scaling_notes(self, hw) -> list[str]:
        """One line for each way this technology's reference figures are scaled to ``hw``
        (crossbar size, ADC resolution, read voltage), so that no report applies them
        silently to a chip they were not taken on."""
        c, a = self.crossbar, self.adc
        notes = []
        ref = (int(c["ref_rows"]), int(c["ref_cols"]))
        if (hw.rows, hw.cols) != ref:
            notes.append(f"technology {self.name}: crossbar figures are for {ref[0]}x{ref[1]} arrays, scaled to this "
                         f"chip's {hw.rows}x{hw.cols} tiles (read energy per active row x column, array area per cell)")
        if hw.adc.lossless or hw.adc.bits != a["ref_bits"]:
            to = "each layer's lossless resolution" if hw.adc.lossless else f"{hw.adc.bits} bits"
            area = {"linear": "linear in bits", "exponential": "x2 per bit", "constant": "the same at every "
                    "resolution"}[a["area_model"]]
            notes.append(f"technology {self.name}: ADC figures are for {a['ref_bits']:g}-bit ADCs, scaled to {to} by "
                         f"its model '{a['model']}' ({self.adc_family}; latency and static power linear in bits, area "
                         f"{area})")
        v = hw.inputs.v_read
        if v != c["ref_v_read"]:
            notes.append(f"technology {self.name}: read energies are for {c['ref_v_read']:g} V, scaled to inputs.v_read "
                         f"= {v:g} V by (v / {c['ref_v_read']:g} V)^2 = {self.read_voltage_scale(v):.4g}")
        return notes

    def crossbar_area_um2(self, rows: int, cols: int) -> float:
        c = self.crossbar
        return c["area_um2"] * rows * cols / (c["ref_rows"] * c["ref_cols"])

    # ------------------------------------------------------------------ ADC
    @property
    def adc_family(self) -> str:
        return {"linear": "SAR, linear in bits", "neurosim_sar": "SAR, NeuroSim model", "walden": "Walden figure of merit",
                "points": "measured points"}[self.adc["model"]]

    def adc_energy_pJ(self, bits: int) -> float:
        a = self.adc
        if a["model"] == "linear":
            return a["energy_pJ"] * bits / a["ref_bits"]
        if a["model"] == "neurosim_sar":
            return (a["a_uW"] * bits + a["c_uW"]) * (bits + 1) * 1e-3
        if a["model"] == "walden":
            return a["fom_fJ_per_step"] * 2.0**bits * 1e-3
        xs, ys = a["bits"], a["energies_pJ"]
        if bits <= xs[0]:
            return ys[0] * bits / xs[0]
        for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
            if bits <= x1:
                return y0 + (y1 - y0) * (bits - x0) / (x1 - x0)
        return ys[-1] + (ys[-1] - ys[-2]) * (bits - xs[-1]) / (xs[-1] - xs[-2])

    def adc_latency_ns(self, bits: int) -> float:
        return self.adc["latency_ns"] * bits / self.adc["ref_bits"]

    def adc_area_um2(self, bits: int) -> float:
        a = self.adc
        if a["area_model"] == "linear":
            return a["area_um2"] * bits / a["ref_bits"]
        if a["area_model"] == "exponential":
            return a["area_um2"] * 2.0 ** (bits - a["ref_bits"])
        return a["area_um2"]

    def adc_leakage_uW(self, bits: int) -> float:
        return self.adc["leakage_uW"] * bits / self.adc["ref_bits"]

    # ------------------------------------------------------------------ digital logic
    def _digital(self, key: str, bits: float) -> float:
        v = power_law(HOROWITZ_45NM[key], max(1.0, float(bits)))
        return v * (energy_scale(45, self.node_nm) if key.endswith("pJ") else area_scale(45, self.node_nm))

    def add_pJ(self, bits: float) -> float:
        """Energy of one b-bit integer addition (or comparison) at this node, pJ."""
        return self._digital("add_pJ", bits)

    def mul_pJ(self, bits: float) -> float:
        return self._digital("mul_pJ", bits)

    def add_um2(self, bits: float) -> float:
        return self._digital("add_um2", bits)

    def mul_um2(self, bits: float) -> float:
        return self._digital("mul_um2", bits)

    # ------------------------------------------------------------------ loading
    @classmethod
    def preset(cls, name: str) -> "Technology":
        names = available_technologies()
        if name not in names:
            raise ConfigError(f"unknown technology preset {name!r}; available: {', '.join(names)}")
        with resources.as_file(resources.files("imcsim") / "presets" / "technology" / f"{name}.toml") as p:
            return cls.from_toml(p)

    @classmethod
    def load(cls, name_or_path: str) -> "Technology":
        """A preset name, or a path to a TOML file."""
        if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
            raise ConfigError(f"technology must be a preset name or a .toml path, got {name_or_path!r}")
        p = Path(name_or_path)
        if p.suffix == ".toml" or p.exists():
            return cls.from_toml(p)
        return cls.preset(str(name_or_path))

    @classmethod
    def from_toml(cls, path) -> "Technology":
        path = Path(path)
        data = load_toml(path, what="technology preset")
        try:
            return cls.from_dict(data, path=str(path))
        except ConfigError as e:
            raise ConfigError(f"technology preset {str(path)!r}: {e}") from None

    @classmethod
    def from_dict(cls, data: dict, path: str = "") -> "Technology":
        allowed = {"name", "description", "sources", "node_nm", "adc", "spikesim", *SECTIONS}
        extra = sorted(set(data) - allowed)
        if extra:
            raise ConfigError(f"unknown key {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")
        for key in ("name", "description"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ConfigError(f"field {key!r} is missing (a non-empty string)")
        sources = data.get("sources")
        if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
            raise ConfigError("field 'sources' is missing (a non-empty list of strings naming where the numbers come from)")
        node = data.get("node_nm")
        if isinstance(node, bool) or not isinstance(node, (int, float)) or not 7 <= node <= 130:
            raise ConfigError(f"field 'node_nm' must be a technology node in [7, 130] nm, got {node!r}")
        kw = {k: _numbers(data, k, SECTIONS[k]) for k in SECTIONS}
        adc = data.get("adc")
        if not isinstance(adc, dict):
            raise ConfigError("section [adc] is missing")
        model = adc.get("model")
        if model not in ADC_MODELS:
            raise ConfigError(f"adc.model must be one of {', '.join(ADC_MODELS)}, got {model!r}")
        area_model = adc.get("area_model")
        if area_model not in AREA_MODELS:
            raise ConfigError(f"adc.area_model must be one of {', '.join(AREA_MODELS)}, got {area_model!r}")
        numeric = {k: v for k, v in adc.items() if k not in ("model", "area_model", "bits", "energies_pJ")}
        kw["adc"] = {"model": model, "area_model": area_model,
                     **_numbers({"adc": numeric}, "adc", ADC_COMMON + ADC_FIELDS[model])}
        if model == "points":
            kw["adc"].update(_points(adc))
        elif "bits" in adc or "energies_pJ" in adc:
            raise ConfigError("adc.bits / adc.energies_pJ belong to model = 'points'")
        if kw["adc"]["ref_bits"] <= 0:
            raise ConfigError("adc.ref_bits must be > 0")
        for f in ("ref_rows", "ref_cols", "ref_v_read"):
            if kw["crossbar"][f] <= 0:
                raise ConfigError(f"crossbar.{f} must be > 0")
        if kw["crossbar"]["read_latency_ns"] + kw["adc"]["latency_ns"] <= 0:
            raise ConfigError("crossbar.read_latency_ns and adc.latency_ns are both 0: a read must take some time "
                              "(latency, EDP and every ratio of them would be undefined)")
        if not 1 <= kw["digital"]["word_bits"] <= 64:
            raise ConfigError(f"digital.word_bits must be in 1..64, got {kw['digital']['word_bits']:g}")
        spikesim = _numbers(data, "spikesim", SPIKESIM_FIELDS) if "spikesim" in data else None
        return cls(name=data["name"], description=data["description"], sources=tuple(sources), node_nm=float(node),
                   spikesim=spikesim, path=path, **kw)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("path",)}
        d["sources"] = list(self.sources)
        if d["spikesim"] is None:
            del d["spikesim"]
        return d


def _points(adc: dict) -> dict:
    xs, ys = adc.get("bits"), adc.get("energies_pJ")
    ok = isinstance(xs, list) and isinstance(ys, list) and len(xs) == len(ys) >= 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in xs + ys)
    if not ok or sorted(set(xs)) != list(xs):
        raise ConfigError("adc model 'points' needs bits = [...] (increasing) and energies_pJ = [...] of equal "
                          "length >= 2, all > 0")
    return {"bits": [float(x) for x in xs], "energies_pJ": [float(y) for y in ys]}


# No per-event energy (pJ), latency (ns), area (um^2) or static power (uW) of one component
# comes near 1e12 (1 J, 1000 s, 1 m^2, 1 MW); larger values are typos, and they could overflow
# the products (events x figure) to inf.
MAX_FIGURE = 1e12


def _numbers(data: dict, section: str, names) -> dict:
    sec = data.get(section)
    if not isinstance(sec, dict):
        raise ConfigError(f"section [{section}] is missing")
    extra = sorted(set(sec) - set(names))
    if extra:
        raise ConfigError(f"unknown field {section}.{extra[0]!r}; allowed: {', '.join(names)}")
    out = {}
    for n in names:
        if n not in sec:
            raise ConfigError(f"field {section}.{n} is missing")
        v = sec[n]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"field {section}.{n} must be a finite number, got {v!r}")
        if not 0 <= v <= MAX_FIGURE:
            raise ConfigError(f"field {section}.{n} must be in [0, {MAX_FIGURE:g}] (its unit is in its name), got {v!r}")
        out[n] = float(v)
    return out


def available_technologies() -> list[str]:
    folder = resources.files("imcsim") / "presets" / "technology"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))
