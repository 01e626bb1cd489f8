"""Technology presets: energy (pJ) and latency (ns) per hardware event, as data.

A preset is a TOML file (``imcsim/presets/technology/NAME.toml``, or any path) with the
sections below; every field is required and must be >= 0, and a missing, extra or negative
field is an error that names the file and the field. Each file lists its sources.

ADC energy per conversion follows one of three stated models:

* ``linear``: ``energy_pJ * bits / ref_bits`` (a SAR ADC: one comparison per bit);
* ``neurosim_sar``: ``(a_uW * bits + c_uW) * (bits + 1)`` fJ (NeuroSim's SarADC power
  ``a*b + c`` microwatts over ``b + 1`` one-nanosecond cycles);
* ``walden``: ``fom_fJ_per_step * 2**bits`` fJ (Walden figure of merit).

ADC latency is ``latency_ns * bits / ref_bits`` in every model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..tomlio import load_toml

ADC_MODELS = ("linear", "neurosim_sar", "walden")

# section -> fields (all floats >= 0). The adc section is handled on its own.
SECTIONS = {
    "crossbar": ("read_energy_pJ", "ref_rows", "ref_cols", "read_latency_ns"),
    "mux": ("energy_pJ",),
    "driver": ("energy_pJ", "dac_energy_pJ"),
    "digital": ("shift_add_pJ", "accumulate_pJ", "neuron_update_pJ", "quant_update_pJ"),
    "buffer": ("input_read_pJ_per_bit", "output_write_pJ_per_bit", "membrane_access_pJ", "psum_access_pJ"),
    "interconnect": ("pJ_per_bit",),
    "offchip": ("pJ_per_bit",),
}
ADC_FIELDS = {
    "linear": ("ref_bits", "energy_pJ", "latency_ns"),
    "neurosim_sar": ("ref_bits", "a_uW", "c_uW", "latency_ns"),
    "walden": ("ref_bits", "fom_fJ_per_step", "latency_ns"),
}
SPIKESIM_FIELDS = ("xbar_read_pJ", "adc_pJ", "mux_pJ", "tile_buffer_pJ", "temp_buffer_pJ", "sub_pJ", "htree_pJ",
                   "mem_fetch_pJ", "neuron_pJ_per_4", "clock_MHz", "pe_cycle_clocks", "pipeline_start_fraction")


@dataclass(frozen=True)
class Technology:
    name: str
    description: str
    sources: tuple[str, ...]
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

    # ------------------------------------------------------------------ per-event costs
    def crossbar_energy_per_active_cell_pJ(self) -> float:
        """Energy of one active row crossing one column, pJ (read energy / (rows x cols))."""
        c = self.crossbar
        return c["read_energy_pJ"] / (c["ref_rows"] * c["ref_cols"])

    def adc_energy_pJ(self, bits: int) -> float:
        a = self.adc
        if a["model"] == "linear":
            return a["energy_pJ"] * bits / a["ref_bits"]
        if a["model"] == "neurosim_sar":
            return (a["a_uW"] * bits + a["c_uW"]) * (bits + 1) * 1e-3
        return a["fom_fJ_per_step"] * 2.0**bits * 1e-3

    def adc_latency_ns(self, bits: int) -> float:
        return self.adc["latency_ns"] * bits / self.adc["ref_bits"]

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
        p = Path(name_or_path)
        if p.suffix == ".toml" or p.exists():
            return cls.from_toml(p)
        return cls.preset(name_or_path)

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
        allowed = {"name", "description", "sources", "adc", "spikesim", *SECTIONS}
        extra = sorted(set(data) - allowed)
        if extra:
            raise ConfigError(f"unknown key {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")
        for key in ("name", "description"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ConfigError(f"field {key!r} is missing (a non-empty string)")
        sources = data.get("sources")
        if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
            raise ConfigError("field 'sources' is missing (a non-empty list of strings naming where the numbers come from)")
        kw = {k: _numbers(data, k, SECTIONS[k]) for k in SECTIONS}
        adc = data.get("adc")
        if not isinstance(adc, dict):
            raise ConfigError("section [adc] is missing")
        model = adc.get("model")
        if model not in ADC_MODELS:
            raise ConfigError(f"adc.model must be one of {', '.join(ADC_MODELS)}, got {model!r}")
        kw["adc"] = {"model": model, **_numbers({"adc": {k: v for k, v in adc.items() if k != "model"}}, "adc", ADC_FIELDS[model])}
        if kw["adc"]["ref_bits"] <= 0:
            raise ConfigError("adc.ref_bits must be > 0")
        for f in ("ref_rows", "ref_cols"):
            if kw["crossbar"][f] <= 0:
                raise ConfigError(f"crossbar.{f} must be > 0")
        if kw["crossbar"]["read_latency_ns"] + kw["adc"]["latency_ns"] <= 0:
            raise ConfigError("crossbar.read_latency_ns and adc.latency_ns are both 0: a read must take some time "
                              "(latency, EDP and every ratio of them would be undefined)")
        spikesim = _numbers(data, "spikesim", SPIKESIM_FIELDS) if "spikesim" in data else None
        return cls(name=data["name"], description=data["description"], sources=tuple(sources), spikesim=spikesim,
                   path=path, **kw)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("path",)}
        d["sources"] = list(self.sources)
        if d["spikesim"] is None:
            del d["spikesim"]
        return d


def _numbers(data: dict, section: str, names) -> dict:
    sec = data.get(section)
    if not isinstance(sec, dict):
        raise ConfigError(f"section [{section}] is missing")
    extra = sorted(set(sec) - set(names))
    if extra:
        raise ConfigError(f"unknown field {section}.{extra[0]}; allowed: {', '.join(names)}")
    out = {}
    for n in names:
        if n not in sec:
            raise ConfigError(f"field {section}.{n} is missing")
        v = sec[n]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"field {section}.{n} must be a finite number, got {v!r}")
        if v < 0:
            raise ConfigError(f"field {section}.{n} must be >= 0, got {v!r}")
        out[n] = float(v)
    return out


def available_technologies() -> list[str]:
    folder = resources.files("imcsim") / "presets" / "technology"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))
