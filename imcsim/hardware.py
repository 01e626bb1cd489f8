"""Hardware configuration: crossbar geometry, weight mapping, devices, wires, ADC, inputs.

A :class:`HardwareConfig` is a frozen, validated dataclass. It loads from TOML (see
``imcsim/presets/hardware/*.toml`` for annotated examples) and has named presets:
``ideal`` (no non-idealities, lossless read-out) and ``rram`` (a realistic RRAM array;
values and sources in its TOML file).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from crossbar_models import DeviceModel, WireModel
from crossbar_models._checks import check_choice, check_int, check_real

from .errors import ConfigError
from .tomlio import load_toml

MAPPINGS = ("differential", "offset")
GRANULARITIES = ("per_channel", "per_layer")
ADC_RANGES = ("calibrated", "fixed")
ADC_PER = ("column", "pair")
INPUT_MODES = ("bit_serial", "dac")
ACCUMULATE = ("digital", "analog")
OVERSIZE = ("refuse", "reprogram")
WIRE_PRECISIONS = ("float64", "float32")
WIRE_SOLVES = ("exact", "nominal")
READ_NOISE_DRAWS = ("stream", "element")
IDEAL_SUFFIX = "-ideal"
CORRECTIONS = ("none", "columns", "moments")
CALIBRATED_AT = ("read", "programming")
MAX_SEED = 2**32 - 1  # chip seeds; layer seeds derived from them stay far below 2**63


@dataclass(frozen=True)
class ADCConfig:
    """Column read-out. bits: 1..16, or None for a lossless read-out (no quantisation).
    range: ``calibrated`` (full scale = ``percentile`` of column currents seen on
    calibration data, per layer) or ``fixed`` (full scale = ``full_scale_fraction`` of the
    largest current a column can carry). per: one conversion per ``column`` or per
    differential ``pair`` (difference current, signed ADC). columns_per_adc: physical
    columns multiplexed onto one ADC (a tile has ceil(cols / columns_per_adc) ADCs; more
    sharing: fewer ADCs, less area, more latency). accumulate: ``digital`` (each row tile's
    columns are converted and the partial sums added digitally) or ``analog`` (the column
    currents of a layer's row tiles are summed before one conversion, as in SpikeSim's
    processing element). sample_and_hold: the column currents are held while the shared ADC
    converts them one after another (the array is read once); without it the array stays
    biased for every conversion step (as SpikeSim prices it). correction: ``columns`` fits,
    after programming, one digital gain and offset per output column (after the shift-add)
    from reference reads of the calibration data against their exact integer products, and
    applies them to every later read (costs: one pass over the calibration data, and one
    multiply and one add per output value); ``moments`` maps each output's mean and spread
    on the calibration data onto those of the exact products instead (a re-estimated
    normalisation); ``none`` (default) corrects nothing. calibrated_at: when a chip read
    ``device.time`` seconds after programming has its ADC ranges (and any correction) set:
    ``read`` (default) on the chip as read then, as if recalibrated just before use;
    ``programming`` on the chip right after programming (time 0, nothing drifted), the
    ranges then kept while the conductances drift -- a chip calibrated once, in the factory
    (costs one more programming pass per chip instance when the chip drifts)."""

    bits: int | None = 4
    range: str = "calibrated"
    percentile: float = 99.9
    full_scale_fraction: float = 1.0
    per: str = "column"
    columns_per_adc: int = 8
    accumulate: str = "digital"
    sample_and_hold: bool = True
    correction: str = "none"
    calibrated_at: str = "read"

    def __post_init__(self):
        if self.bits is not None:
            object.__setattr__(self, "bits", check_int("adc.bits", self.bits, low=1, high=16))
        check_choice("adc.range", self.range, ADC_RANGES)
        object.__setattr__(self, "percentile", check_real("adc.percentile", self.percentile, low=0.0, high=100.0, low_open=True))
        object.__setattr__(
            self, "full_scale_fraction",
            check_real("adc.full_scale_fraction", self.full_scale_fraction, low=0.0, high=1.0, low_open=True),
        )
        check_choice("adc.per", self.per, ADC_PER)
        object.__setattr__(self, "columns_per_adc", check_int("adc.columns_per_adc", self.columns_per_adc, low=1, high=1024))
        check_choice("adc.accumulate", self.accumulate, ACCUMULATE)
        if not isinstance(self.sample_and_hold, bool):
            raise ConfigError(f"adc.sample_and_hold must be true or false, got {self.sample_and_hold!r}")
        if self.correction is None:  # (a sweep's 'none' arrives as None)
            object.__setattr__(self, "correction", "none")
        check_choice("adc.correction", self.correction, CORRECTIONS)
        check_choice("adc.calibrated_at", self.calibrated_at, CALIBRATED_AT)

    @property
    def lossless(self) -> bool:
        return self.bits is None


V_READ_MIN, V_READ_MAX = 0.01, 1.5  # volts


@dataclass(frozen=True)
class InputConfig:
    """How multi-bit (non-spike) inputs drive rows: ``bit_serial`` (one read per bit) or
    ``dac`` (one multi-level read). bits: resolution of analog inputs (e.g. the pixels of
    a first layer). v_read: read voltage (V) of a full-scale input, in [V_READ_MIN,
    V_READ_MAX]: a read must stay below the switching voltages of RRAM / PCM cells (~1-2 V)
    and above the ~10 mV at which the sensed currents vanish in the noise. Spikes always
    drive rows as binary pulses at v_read. Read energies scale with v_read^2
    (:mod:`imcsim.cost.technology`)."""

    mode: str = "bit_serial"
    bits: int = 8
    v_read: float = 0.5

    def __post_init__(self):
        check_choice("inputs.mode", self.mode, INPUT_MODES)
        object.__setattr__(self, "bits", check_int("inputs.bits", self.bits, low=1, high=16))
        object.__setattr__(self, "v_read", check_real("inputs.v_read", self.v_read, low=V_READ_MIN, high=V_READ_MAX))


@dataclass(frozen=True)
class ChipConfig:
    """How the network is laid out on the chip (cost model only; accuracy is simulated on
    one copy). replication: copies of every layer's tiles (reads are shared among them:
    r x area, latency / r). max_tiles: crossbar tiles on the chip (0: as many as needed);
    a network needing more is refused (``oversize = 'refuse'``) or time-multiplexed, its
    tiles reprogrammed for every inference (``'reprogram'``, paying write energy and time).
    neuron_units: neuron update units per layer (0: one per ADC of the layer's column tiles);
    each updates one neuron per ``neuron_update_ns`` (0: the technology's figure), and a
    layer takes as long as its slower stage, reads or neuron updates. power_gating: a
    layer's periphery leaks only while the layer works (idle layers power-gated, NeuroSim's
    accounting: leakage x the layer's own latency); false: every component leaks for the
    whole inference. static_power: false for a chip modelled without static power at all
    (SpikeSim's assumption): estimates then count no leakage unless asked to."""

    replication: int = 1
    max_tiles: int = 0
    oversize: str = "refuse"
    neuron_units: int = 0
    neuron_update_ns: float = 0.0
    power_gating: bool = True
    static_power: bool = True

    def __post_init__(self):
        for name in ("power_gating", "static_power"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"chip.{name} must be true or false, got {getattr(self, name)!r}")
        object.__setattr__(self, "replication", check_int("chip.replication", self.replication, low=1, high=1024))
        object.__setattr__(self, "max_tiles", check_int("chip.max_tiles", self.max_tiles, low=0, high=10**9))
        check_choice("chip.oversize", self.oversize, OVERSIZE)
        object.__setattr__(self, "neuron_units", check_int("chip.neuron_units", self.neuron_units, low=0, high=10**9))
        object.__setattr__(self, "neuron_update_ns", check_real("chip.neuron_update_ns", self.neuron_update_ns, low=0.0,
                                                                high=1e9))


_DRIFT_FIELDS = ("drift", "time", "t0", "nu_mean", "nu_std", "drift_compensation")


def _device_dict(dev: DeviceModel) -> dict:
    """The device section; drift fields only when one differs from its default, so the
    records (and study keys) of chips without drift stay as they were."""
    d = dataclasses.asdict(dev)
    base = DeviceModel()
    if all(d[k] == getattr(base, k) for k in _DRIFT_FIELDS):
        for k in _DRIFT_FIELDS:
            del d[k]
    return d


@dataclass(frozen=True)
class HardwareConfig:
    """Everything about the simulated chip that changes what a layer computes.

    rows x cols: crossbar (tile) size. weight_bits: signed weight resolution including the
    sign (2..16); weights are quantised symmetrically to integers in
    ``[-(2**(b-1) - 1), 2**(b-1) - 1]`` with one scale per output channel or per layer.
    mapping: ``differential`` (G+ / G- column pairs) or ``offset`` (one column per weight
    slice, weight + offset stored, offset removed digitally). skip_zero_reads: tile reads
    whose inputs are all zero are not performed (affects event counts, not outputs).
    seed: seeds device programming and read noise (one seed = one chip instance).
    wire_precision: arithmetic of the IR-drop solve run once per programmed tile --
    ``float64`` (exact) or ``float32`` (3.5-4x faster; every effective conductance within
    2.1e-6 relative of float64 on 64x64 tiles, 1.5e-5 on 128x128, scripts/bench_programming.py).
    wire_solve: how each chip instance gets its IR-drop-loaded conductances -- ``exact``
    (the full solve of its own programmed array) or ``nominal`` (the exact solve of the
    variation- and fault-free array, once per network, then a first-order update per
    instance: ``crossbar_models.perturbed_effective_conductance``; column currents within
    ~3e-4 of the largest output of the exact float64 solve on 64x64 tiles at the rram preset's wires
    (7.7e-4 on 128x128 tiles, scripts/bench_programming.py),
    tests/test_wires.py; a new instance programs in O(cells) instead of O(R C^3) per tile).
    read_noise_draws: how the keyed read noise is drawn -- ``stream`` (one keyed position per
    read in a fixed stream of Gaussian quantiles; ~10x cheaper) or ``element`` (one keyed hash
    per read and column, the draws of imcsim 0.2.0, to reproduce results measured with it).
    Both give the same distribution per column current (crossbar_models.noise states what
    each keeps); they differ in the individual draws.
    """

    name: str = "custom"
    rows: int = 128
    cols: int = 128
    weight_bits: int = 4
    mapping: str = "differential"
    granularity: str = "per_channel"
    device: DeviceModel = field(default_factory=DeviceModel)
    wires: WireModel = field(default_factory=WireModel)
    adc: ADCConfig = field(default_factory=ADCConfig)
    inputs: InputConfig = field(default_factory=InputConfig)
    chip: ChipConfig = field(default_factory=ChipConfig)
    skip_zero_reads: bool = True
    seed: int = 0
    wire_precision: str = "float64"
    wire_solve: str = "exact"
    read_noise_draws: str = "stream"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "rows", check_int("crossbar.rows", self.rows, low=1, high=4096))
        object.__setattr__(self, "cols", check_int("crossbar.cols", self.cols, low=1, high=4096))
        object.__setattr__(self, "weight_bits", check_int("weights.bits", self.weight_bits, low=2, high=16))
        check_choice("weights.mapping", self.mapping, MAPPINGS)
        check_choice("weights.granularity", self.granularity, GRANULARITIES)
        for name, typ in (("device", DeviceModel), ("wires", WireModel), ("adc", ADCConfig), ("inputs", InputConfig),
                          ("chip", ChipConfig)):
            if not isinstance(getattr(self, name), typ):
                raise ConfigError(f"{name} must be a {typ.__name__}, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.skip_zero_reads, bool):
            raise ConfigError(f"skip_zero_reads must be true or false, got {self.skip_zero_reads!r}")
        object.__setattr__(self, "seed", check_int("seed", self.seed, low=0, high=MAX_SEED))
        check_choice("wire_precision", self.wire_precision, WIRE_PRECISIONS)
        check_choice("wire_solve", self.wire_solve, WIRE_SOLVES)
        check_choice("read_noise_draws", self.read_noise_draws, READ_NOISE_DRAWS)
        if self.adc.per == "pair" and self.mapping != "differential":
            raise ConfigError("adc.per = 'pair' needs weights.mapping = 'differential', got 'offset'")
        if self.adc.per == "pair" and self.adc.accumulate == "analog":
            raise ConfigError("adc.accumulate = 'analog' needs adc.per = 'column' (pairs are converted per tile)")
        if self.adc.per == "pair" and self.adc.bits == 1:
            raise ConfigError("adc.bits must be >= 2 for adc.per = 'pair' (a signed ADC), got 1")
        if self.wires.r_max * self.device.g_on > 1e4:
            raise ConfigError(
                f"wires x device.g_on = {self.wires.r_max:g} ohm x {self.device.g_on:g} S = "
                f"{self.wires.r_max * self.device.g_on:.3g} exceeds 1e4: the circuit is too ill-conditioned for an "
                "exact solve; use smaller resistances or conductances")
        if not self.wires.is_ideal and self.device.g_off == 0:
            raise ConfigError(
                "device.g_off must be > 0 S when wire resistance is on (a zero conductance is an "
                "open cell the circuit solve cannot hold); got g_off = 0"
            )

    # ---------------------------------------------------------------- derived quantities
    @property
    def magnitude_bits(self) -> int:
        """Bits stored per weight and polarity: b-1 for differential, b for offset."""
        return self.weight_bits - 1 if self.mapping == "differential" else self.weight_bits

    @property
    def slices(self) -> int:
        """Cells (columns) per weight and polarity: ceil(magnitude_bits / bits_per_cell)."""
        return -(-self.magnitude_bits // self.device.bits_per_cell)

    @property
    def columns_per_weight(self) -> int:
        return self.slices * (2 if self.mapping == "differential" else 1)

    @property
    def weight_qmax(self) -> int:
        return 2 ** (self.weight_bits - 1) - 1

    # ---------------------------------------------------------------- construction
    @classmethod
    def ideal(cls, **overrides) -> "HardwareConfig":
        """No non-idealities: infinite on/off ratio, no variation, noise, faults or wire
        resistance, lossless read-out. Weights are still quantised to ``weight_bits``."""
        base = cls(
            name="ideal",
            device=DeviceModel(g_on=1e-4, g_off=0.0, bits_per_cell=2),
            wires=WireModel(),
            adc=ADCConfig(bits=None),
        )
        return base.replace(**overrides) if overrides else base

    def ideal_counterpart(self, keep_on_off: bool = False) -> "HardwareConfig":
        """The same architecture (tiles, cells, mapping, ADCs, inputs, chip) with ideal
        devices and wires: no variation, read noise, faults, wire resistance, and an infinite
        on/off ratio -- or, with ``keep_on_off``, the device's own g_off (the finite on/off
        ratio then counts as part of the device technology, not as a non-ideality). ADC
        quantisation is part of the architecture and stays, so the two chips cost the same;
        :meth:`ideal` is the lossless reference instead. ``imcsim evaluate --attribution``
        gives the on/off ratio's own effect."""
        d = self.device
        dev = DeviceModel(g_on=d.g_on, g_off=d.g_off if keep_on_off else 0.0, bits_per_cell=d.bits_per_cell)
        name = self.name if self.name.endswith(IDEAL_SUFFIX) else self.name + IDEAL_SUFFIX
        return dataclasses.replace(self, name=name, device=dev, wires=WireModel())

    @classmethod
    def preset(cls, name: str) -> "HardwareConfig":
        """A named preset: ``ideal`` (lossless), one shipped in
        imcsim/presets/hardware/NAME.toml, or ``NAME-ideal``: that preset's
        :meth:`ideal_counterpart`."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"hardware preset name must be a non-empty string, got {name!r}")
        if name == "ideal":
            return cls.ideal()
        names = available_presets()
        if name not in names:
            raise ConfigError(f"unknown hardware preset {name!r}; available: {', '.join(names)}")
        if name.endswith(IDEAL_SUFFIX):
            return cls.preset(name[: -len(IDEAL_SUFFIX)]).ideal_counterpart()
        path = resources.files("imcsim") / "presets" / "hardware" / f"{name}.toml"
        with resources.as_file(path) as p:
            return cls.from_toml(p)

    @classmethod
    def from_toml(cls, path) -> "HardwareConfig":
        path = Path(path)
        data = load_toml(path, what="hardware config")
        if not _has_values(data):
            raise ConfigError(f"hardware config {str(path)!r} sets no field; write the fields that differ from the defaults "
                              "(see imcsim/presets/hardware/rram.toml) or use a preset")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ConfigError(f"hardware config {str(path)!r}: {e}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HardwareConfig":
        data = dict(data)
        top = {"name", "seed", "skip_zero_reads", "wire_precision", "wire_solve", "read_noise_draws", "crossbar", "weights", "device", "wires", "adc", "inputs", "chip"}
        _no_unknown("", data, top)
        kw: dict[str, Any] = {}
        for key in ("name", "seed", "skip_zero_reads", "wire_precision", "wire_solve", "read_noise_draws"):
            if key in data:
                kw[key] = data[key]
        xb = _section(data, "crossbar", {"rows", "cols"})
        kw.update(xb)
        w = _section(data, "weights", {"bits", "mapping", "granularity"})
        if "bits" in w:
            kw["weight_bits"] = w.pop("bits")
        kw.update(w)
        dev = _section(data, "device", {f.name for f in dataclasses.fields(DeviceModel)})
        wires = _section(data, "wires", {f.name for f in dataclasses.fields(WireModel)})
        adc = _section(data, "adc", {f.name for f in dataclasses.fields(ADCConfig)})
        if adc.get("bits") == "lossless":
            adc["bits"] = None
        inputs = _section(data, "inputs", {f.name for f in dataclasses.fields(InputConfig)})
        chip = _section(data, "chip", {f.name for f in dataclasses.fields(ChipConfig)})
        try:
            kw["device"] = DeviceModel(**dev)
            kw["wires"] = WireModel(**wires)
        except ValueError as e:
            raise ConfigError(str(e).replace("DeviceModel.", "device.").replace("WireModel.", "wires.")) from None
        kw["adc"] = ADCConfig(**adc)
        kw["inputs"] = InputConfig(**inputs)
        kw["chip"] = ChipConfig(**chip)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """Nested dict in the TOML layout (round-trips through :meth:`from_dict`)."""
        adc = dataclasses.asdict(self.adc)
        if adc["bits"] is None:
            adc["bits"] = "lossless"
        if adc["correction"] == "none":  # written only when set: records (and study keys) stay as they were
            del adc["correction"]
        if adc["calibrated_at"] == "read":
            del adc["calibrated_at"]
        out = {
            "name": self.name,
            "seed": self.seed,
            "skip_zero_reads": self.skip_zero_reads,
            "wire_precision": self.wire_precision,
            # always written: records (and study keys) made with the 0.2.0 draws never mix with these
            "read_noise_draws": self.read_noise_draws,
            "crossbar": {"rows": self.rows, "cols": self.cols},
            "weights": {"bits": self.weight_bits, "mapping": self.mapping, "granularity": self.granularity},
            "device": _device_dict(self.device),
            "wires": dataclasses.asdict(self.wires),
            "adc": adc,
            "inputs": dataclasses.asdict(self.inputs),
            "chip": dataclasses.asdict(self.chip),
        }
        if self.wire_solve != "exact":  # written only when set: records (and study keys) of exact chips stay as they were
            out = {**dict(list(out.items())[:4]), "wire_solve": self.wire_solve, **dict(list(out.items())[4:])}
        return out

    def replace(self, **changes) -> "HardwareConfig":
        """Copy with top-level fields or dotted sub-fields changed, e.g.
        ``cfg.replace(**{"device.variation": 0.1, "adc.bits": 6, "rows": 64})``."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            if "." in key:
                sec, sub = key.split(".", 1)
                if sec not in ("device", "wires", "adc", "inputs", "chip"):
                    raise ConfigError(f"unknown config section {sec!r} in {key!r}; use device, wires, adc, inputs or chip")
                fields = {f.name for f in dataclasses.fields(getattr(self, sec))}
                if sub not in fields:
                    raise ConfigError(f"unknown field {key!r}; {sec} has: {', '.join(sorted(fields))}")
                nested.setdefault(sec, {})[sub] = value
            else:
                fields = {f.name for f in dataclasses.fields(self)}
                if key not in fields:
                    raise ConfigError(f"unknown config field {key!r}; allowed: {', '.join(sorted(fields))}")
                top[key] = value
        for sec, sub in nested.items():
            try:
                top[sec] = dataclasses.replace(getattr(self, sec), **sub)
            except ValueError as e:
                raise ConfigError(str(e).replace("DeviceModel.", "device.").replace("WireModel.", "wires.")) from None
        return dataclasses.replace(self, **top)

    @classmethod
    def sweepable_fields(cls) -> list[str]:
        """Names accepted by :meth:`replace` (top-level and dotted sub-fields)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("device", "wires", "adc", "inputs", "chip", "name")]
        for sec, typ in (("device", DeviceModel), ("wires", WireModel), ("adc", ADCConfig), ("inputs", InputConfig),
                         ("chip", ChipConfig)):
            names += [f"{sec}.{f.name}" for f in dataclasses.fields(typ)]
        return names

    def architecture(self) -> str:
        """What the chip is built of (what the cost model prices), without its non-idealities."""
        adc = "lossless read-out" if self.adc.lossless else (
            f"{self.adc.bits}-bit ADC per {self.adc.columns_per_adc} column{'s' if self.adc.columns_per_adc > 1 else ''}"
            + (" (converting G+/G- pair differences)" if self.adc.per == "pair" else ""))
        return (f"{self.rows}x{self.cols} tiles, {self.device.bits_per_cell}-bit cells, {self.weight_bits}-bit "
                f"{self.mapping} weights, {adc}")

    def describe(self) -> str:
        d = self.device
        adc = "lossless" if self.adc.lossless else f"{self.adc.bits}-bit {self.adc.range}"
        if self.adc.calibrated_at == "programming" and not self.adc.lossless:
            adc += " (calibrated right after programming)"
        return (
            f"{self.name}: {self.rows}x{self.cols} tiles, {self.weight_bits}-bit weights ({self.mapping}, "
            f"{d.bits_per_cell} bit/cell), g_on/g_off {d.g_on:.3g}/{d.g_off:.3g} S, variation {d.variation:g}, "
            f"read noise {d.read_noise:g}, stuck on/off {d.p_stuck_on:g}/{d.p_stuck_off:g}, wires "
            f"{self.wires.r_row:g}/{self.wires.r_col:g}/{self.wires.r_src:g}/{self.wires.r_sink:g} ohm, ADC {adc}"
        )


def available_presets() -> list[str]:
    folder = resources.files("imcsim") / "presets" / "hardware"
    names = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))
    return ["ideal"] + [n for base in names for n in (base, base + IDEAL_SUFFIX)]


def _has_values(data) -> bool:
    """Whether a parsed TOML document sets at least one field (empty tables do not count)."""
    return any(_has_values(v) if isinstance(v, dict) else True for v in data.values())


def _no_unknown(prefix: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f"[{prefix}] " if prefix else ""
        raise ConfigError(f"{where}unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _section(data: dict, name: str, allowed: set[str]) -> dict:
    sec = data.get(name, {})
    if not isinstance(sec, dict):
        raise ConfigError(f"{name} must be a table ([{name}]), got {type(sec).__name__}")
    _no_unknown(name, sec, allowed)
    return dict(sec)
