"""Crossbar layers: a trained Linear / Conv1d / Conv2d computed through simulated crossbar tiles.

Per read: the integer inputs of each row tile become driver planes (binary spikes, bit
planes or DAC levels) -> the programmed tiles (effective conductance when wires are on) give
column currents, plus keyed read noise -> one ADC conversion per column (or differential
pair) -> digital shift-add of slices, polarities and planes -> sum over row tiles -> offset
removal, per-channel scale, bias.

Internally currents are kept in *normalised units*: conductance / delta_g (one cell level
step) and voltage / v_read, so an ideal cell of level k passes k units at a full read and an
ideal crossbar computes integer dot products exactly (float32 holds integers below 2**24
exactly; larger sums are formed in float64). ``amperes = units * v_read * delta_g``.

Two read-outs, chosen automatically (``TiledMatrix.path``):

* ``reads``: every (plane, tile) read is simulated -- needed whenever the ADC quantises or
  read noise perturbs a read. All-zero reads are skipped in the computation (their result is
  exactly zero whatever the hardware does; the *events* still follow ``skip_zero_reads``).
* ``linear``: with a lossless read-out and no read noise, the planes, slices, polarities
  and row tiles recombine linearly, so the layer is one matmul with the effective weights
  (programming variation, faults and IR drop included) -- exactly the same numbers.

Groups (grouped and depthwise convolutions) are mapped group by group: each group's weights
on tiles of their own, never sharing a tile with another group's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from crossbar_models import ADC, InputDriver, RangeObserver

from .allocator import release_freed
from .context import current_context, vector_keys
from .correction import CorrectionFit, apply_correction
from .errors import CalibrationError
from .events import CROSSBAR_EVENTS, EventCounter, counting_enabled
from .hardware import HardwareConfig
from .mapping import TileGrid, quantize_weights
from .surrogate import straight_through_weight, with_surrogate_gradient
from .tiles import fused
from .tiles.counting import conv_tile_counts, count_reads, new_tally, tally_events
from .tiles.programming import ProgrammedArray, program_matrices, read_variances
from .tiles.readout import adc_scale, add_read_noise, code_unit, combine_reads, quantize, read_keys, read_offsets, shift_add
from .tiles.timing import stage

INPUT_KINDS = ("spike", "quantized", "analog")
PATHS = ("auto", "reads", "linear")
_CHUNK_ELEMENTS = 1 << 22  # elements of one read-chunk's column-current buffer (16 MB; 4 MB starved small products,
#   64 MB left the cache: scripts/bench_scale.py on VGG9)
_OBSERVE_CHUNK_ELEMENTS = 1 << 21  # the same for calibration's reads (8 MB): the peak of converting full-width VGG9
#   on rram and a forward at batch 8, 607 -> 571 MB for the SNN, in about 4 % more calibration time (1 % for its QNN)
_CHECK_ELEMENTS = 1 << 20  # elements per piece of the spike-input check (4 MB of float32)
_CONV_CHUNK_ELEMENTS = 1 << 20  # patch-row elements per chunk of images (4 MB: read again while still cached;
#   64 MB chunks were 1.3x slower on VGG9 rram-ideal)


@dataclass(frozen=True)
class InputSpec:
    """What a crossbar layer receives. kind: ``spike`` (0/1), ``quantized`` (integer
    multiples of ``scale``: a b-bit activation, or integer counts of summed spikes with
    ``levels`` distinct values 0..levels-1) or ``analog`` (any non-negative value,
    quantised to ``bits`` over [0, max] with ``scale = max / (2**bits - 1)`` set by
    calibration). scale: value of one integer input step, None until calibrated."""

    kind: str = "spike"
    bits: int = 1
    scale: float | None = 1.0
    levels: int | None = None

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"InputSpec.kind must be one of {INPUT_KINDS}, got {self.kind!r}")
        if self.kind == "spike" and (self.bits != 1 or self.scale != 1.0):
            raise ValueError("spike inputs have bits=1 and scale=1")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
            raise ValueError(f"InputSpec.bits must be an integer in 1..16, got {self.bits!r}")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"InputSpec.scale must be > 0, got {self.scale}")
        if self.levels is not None and not 2 <= self.levels <= 2**self.bits:
            raise ValueError(f"InputSpec.levels must be in [2, 2**bits = {2 ** self.bits}], got {self.levels}")

    @property
    def max_int(self) -> int:
        """Largest integer input."""
        return (self.levels - 1) if self.levels else 2**self.bits - 1

    def describe(self, hw: HardwareConfig | None = None) -> str:
        if self.kind == "spike":
            return "spikes"
        mode = f" {hw.inputs.mode}" if hw is not None else ""
        step = f" x {self.scale:.4g}" if self.scale not in (None, 1.0) else ""
        if self.kind == "quantized" and self.levels and self.levels != 2**self.bits:
            return f"counts 0..{self.levels - 1}{step} ({self.bits}-bit{mode})"
        if self.kind == "quantized":
            return f"{self.bits}-bit activations{mode and ' (' + mode.strip() + ')'}"
        return f"analog, {self.bits}-bit{mode}"


class TiledMatrix(nn.Module):
    """One weight matrix programmed onto a grid of crossbar tiles.

    weight: (out, in_g); with ``groups`` G, output rows ``g*out/G ...`` take input columns
    ``g*in_g ...`` (a block-diagonal matrix, each block on its own tiles).
    ``forward(x, keys)`` with x (V, G*in_g) returns (V, out) = quantised(W) @ x as the
    hardware computes it (before bias). Programming (variation, faults) is drawn once here
    from ``seed``; read noise is keyed by ``seed`` and the vectors' ``keys``
    (see :mod:`imcsim.context`).
    """

    def __init__(self, weight: torch.Tensor, hw: HardwareConfig, input_spec: InputSpec, *, seed: int, name: str = "",
                 groups: int = 1):
        super().__init__()
        if not isinstance(hw, HardwareConfig):
            raise ValueError(f"hw must be a HardwareConfig, got {type(hw).__name__}")
        if not isinstance(input_spec, InputSpec):
            raise ValueError(f"input_spec must be an InputSpec, got {type(input_spec).__name__}")
        out, in_g = weight.shape
        if groups < 1 or out % groups:
            raise ValueError(f"groups must divide the {out} outputs, got {groups}")
        self.hw, self.name, self.input_spec, self.seed = hw, name, input_spec, int(seed)
        self.groups, self.in_group, self.out_group = groups, in_g, out // groups
        self.register_buffer("col_gain", None)  # adc.correction = 'columns': per-output digital gain and offset (units)
        self.register_buffer("col_offset", None)
        self._fit: CorrectionFit | None = None  # the correction fit while it runs
        self.out_features, self.in_features = out, groups * in_g
        self.path = "auto"
        pair = hw.adc.per == "pair"

        # as held (programming computes levels in int32 anyway)
        w_int, scale = quantize_weights(weight, hw.weight_bits, hw.granularity, dtype=_int_dtype(hw))
        cpw = hw.columns_per_weight
        self.grid = TileGrid(in_g, self.out_group * cpw, hw.rows, hw.cols, unit=cpw if pair else 1)
        self._program(w_int, scale)
        self.events = EventCounter(*CROSSBAR_EVENTS)
        self.adc_full_scale: float | None = None
        if not hw.adc.lossless and hw.adc.range == "fixed":
            self.adc_full_scale = hw.adc.full_scale_fraction * self.max_column_current()
        self._observer: RangeObserver | None = None
        self._input_max: float | None = None
        self._observe_inputs = False
        self._digital = False
        self.chip_training = False  # chip-in-the-loop training: keep clipped shares (last_gate) and grad_gain
        self.last_gate: torch.Tensor | None = None

    def load_weight(self, weight: torch.Tensor, seed: int | None = None) -> None:
        """Quantise and program new float weights (out, in_g) onto the same tiles, as chip
        ``seed`` (default: this layer's seed); a calibrated ADC range must be set again.
        Equals building the layer from ``weight`` with that seed."""
        if tuple(weight.shape) != (self.out_features, self.in_group):
            raise ValueError(f"crossbar layer {self.name!r}: weight must be ({self.out_features}, {self.in_group}), "
                             f"got {tuple(weight.shape)}")
        if seed is not None:
            self.seed = int(seed)
        device = self.w_int.device
        self._nominal = None  # the nominal array changed with the weights
        w_int, scale = quantize_weights(weight.detach().cpu(), self.hw.weight_bits, self.hw.granularity,
                                        dtype=_int_dtype(self.hw))
        self._program(w_int, scale)
        self.to(device)
        if self.hw.adc.range == "calibrated":
            self.adc_full_scale = None

    def _program(self, w_int: torch.Tensor, scale: torch.Tensor, time: float | None = None) -> None:
        """Draw this instance's programmed conductances (variation, faults) from ``self.seed``
        and install the matrices of the read (:mod:`imcsim.tiles.programming`), as read
        ``time`` seconds after programming (default: ``hw.device.time``)."""
        hw = self._hw_at(time)
        self.read_time = hw.device.time  # seconds since programming of the installed matrices
        with stage("program"):
            arrays, self._nominal = self._draw(w_int, hw, want_attenuation=getattr(self, "chip_training", False),
                                               keep_mats=False)
            self._install(arrays, w_int, scale)
        release_freed(8 * math.prod(arrays.mats_shape))  # this layer's float64 cells and draws, freed

    def _hw_at(self, time: float | None) -> HardwareConfig:
        """The hardware read ``time`` seconds after programming (None: ``hw.device.time``)."""
        return self.hw if time is None or time == self.hw.device.time else \
            self.hw.replace(**{"device.time": float(time)})

    def _draw(self, w_int: torch.Tensor, hw: HardwareConfig, want_attenuation: bool = False, keep_mats: bool = True):
        """This instance's programmed matrices on ``hw`` (``self.seed``'s draws):
        (ProgrammedArray, nominal array) of :func:`imcsim.tiles.programming.program_matrices`."""
        spec = self.input_spec
        max_in = spec.max_int if spec.kind != "analog" else 2**spec.bits - 1
        return program_matrices(w_int, hw, self.grid, self.groups, self.seed, self.in_group, max_in,
                                getattr(self, "_nominal", None), want_attenuation=want_attenuation,
                                keep_mats=keep_mats)

    def reprogram(self, seed: int, time: float | None = None) -> None:
        """Program the same integer weights as another chip instance: new variation, faults
        and read-noise key from ``seed``; the ADC range must be calibrated again (a fixed
        range stays). Equals building the layer with that seed. time: read the instance this
        many seconds after programming instead of at ``hw.device.time`` (see :meth:`read_at`)."""
        self.seed = int(seed)
        self._reprogram_same(time)
        if self.hw.adc.range == "calibrated":
            self.adc_full_scale = None

    def read_at(self, time: float | None = None) -> None:
        """Read this same chip instance ``time`` seconds after programming (default:
        ``hw.device.time``): the same programming draws, then the drift draws of that time.
        The ADC range, input range and column correction are kept -- they were set on the
        chip as it was then (``adc.calibrated_at = "programming"``)."""
        keep = self.adc_full_scale, self.col_gain, self.col_offset
        self._reprogram_same(time)
        self.adc_full_scale, self.col_gain, self.col_offset = keep

    def _reprogram_same(self, time: float | None) -> None:
        device = self.w_int.device
        self._program(self.w_int.cpu(), self.w_scale.to(torch.float64).cpu(), time)
        self.to(device)

    def _install(self, p: ProgrammedArray, w_int: torch.Tensor, scale: torch.Tensor) -> None:
        """Hold a programmed array's matrices as buffers (they move with ``.to(device)``)."""
        self._conv_w = None
        self.col_gain = self.col_offset = None  # a new programming: any column correction is fitted again
        self.register_buffer("grad_gain", p.grad_gain, persistent=False)
        # A chip read out linearly (lossless, noise-free: W_lin below) never reads its conductances; it
        # holds none (for VGG9 four times its float weights) and draws them again, the same bits, the
        # first time something asks for them (:attr:`mats`).
        self._mats_shape = p.mats_shape
        self.register_buffer("_mats", p.mats)
        self._noisy = p.noisy  # read noise: every read needs its variances and keys
        self._sq_cache = None  # (key, the conductances' squares) for products in torch (_torch_mats)
        self._byte_cache = None  # (key, the conductances as bytes or None) for noise-free plane reads (_byte_mats)
        # the linear read-out's weights, there only where that read-out can run (lossless, noise-free)
        self.register_buffer("W_lin", p.W_lin)
        self.register_buffer("w_scale", scale.to(torch.float32))
        self.register_buffer("w_int", w_int.to(_int_dtype(self.hw)))
        self._col_weights, self.g_off_units, self.input_offset = p.col_weights, p.g_off_units, p.input_offset
        self._lin_exact32, self._code_bound = p.lin_exact32, p.code_bound

    @property
    def mats(self) -> torch.Tensor:
        """(1|2, G*Tr, rows, KO) the reads' matrices in normalised units: the effective
        conductances and, for column pairs with read noise, their variances
        (:func:`imcsim.tiles.programming.read_matrices`). Where the chip was installed without
        them (linear read-out) they are drawn again from this instance's seed and read time
        -- the same bits as at programming -- and kept."""
        if self._mats is None:
            arrays, _ = self._draw(self.w_int.cpu(), self._hw_at(self.read_time))
            self._mats = arrays.mats.to(device=self.w_int.device, dtype=self.w_scale.dtype)
        return self._mats

    @property
    def G(self) -> torch.Tensor:
        """(G*Tr, rows, KO) effective conductances in compute order (normalised units)."""
        return self.mats[0]

    @property
    def G_sq(self) -> torch.Tensor | None:
        """Read-noise variance of each cell per unit sigma**2, or None without read noise
        (:func:`imcsim.tiles.programming.read_variances`: computed, for per-column read-out)."""
        return read_variances(self.mats, True) if self._noisy else None

    # ----------------------------------------------------------------- geometry and units
    @property
    def conversion_columns(self) -> int:
        """ADC conversions per row-tile read (real columns or column pairs, all column tiles)."""
        return self._mats_shape[-1]

    @property
    def unit_current(self) -> float:
        """Amperes per normalised current unit (v_read * delta_g)."""
        return self.hw.inputs.v_read * self.hw.device.delta_g

    @property
    def read_path(self) -> str:
        """``linear`` (lossless read-out, no read noise) or ``reads``; see the module doc."""
        if self.path == "linear" and self.W_lin is None:
            raise ValueError(f"crossbar layer {self.name!r}: path 'linear' needs a lossless ADC and no read noise "
                             f"(adc.bits = {self.hw.adc.bits}, device.read_noise = {self.hw.device.read_noise:g})")
        if self.path != "auto":
            return self.path
        lossless = self.hw.adc.lossless and self._observer is None
        return "linear" if lossless and not self._noisy else "reads"

    def max_column_current(self) -> float:
        """Largest current (normalised units) a converted column can carry: all rows on at full
        level (of every row tile, when their currents are summed before conversion)."""
        L = 2**self.hw.device.bits_per_cell - 1
        per_row = L if self.hw.adc.per == "pair" else L + self.g_off_units
        tiles = self.grid.row_tiles if self.analog_sum else 1
        return tiles * self.hw.rows * per_row

    def driver(self) -> InputDriver:
        spec = self.input_spec
        if spec.kind == "spike":
            return InputDriver("binary", 1, self.hw.inputs.v_read)
        return InputDriver(self.hw.inputs.mode, spec.bits, self.hw.inputs.v_read)

    def adc(self) -> ADC | None:
        cfg = self.hw.adc
        if cfg.lossless:
            return None
        if self.adc_full_scale is None:
            raise CalibrationError(
                f"crossbar layer {self.name!r} has a calibrated ADC range but saw no calibration data; "
                "pass calibration data to imcsim.convert(..., calibration=x) or call imcsim.calibrate(model, x)"
            )
        return ADC(cfg.bits, self.adc_full_scale, signed=cfg.per == "pair")

    @property
    def analog_sum(self) -> bool:
        """Row tiles summed in the analog domain before one conversion per column."""
        return self.hw.adc.accumulate == "analog" and self.grid.row_tiles > 1

    @property
    def needs_keys(self) -> bool:
        return self._noisy

    def programmed_levels(self) -> torch.Tensor:
        """Cell levels read back from the programmed (effective) conductances, as the level
        matrix (in, out * columns_per_weight) of :mod:`imcsim.mapping` (one group) -- the
        inverse of programming, exact for an ideal chip."""
        if self.hw.adc.per == "pair" or self.groups != 1:
            raise ValueError("programmed_levels needs one group and per-column read-out (adc.per = 'column')")
        GT, R, _ = self.G.shape
        k = self.hw.columns_per_weight
        G = self.G.double().view(GT, R, k, self.out_features).permute(0, 1, 3, 2)  # back to (o, p, s) order
        G = G.reshape(GT * R, self.out_features * k)[: self.in_features]
        return torch.round(G - self.g_off_units).to(torch.int64)

    # ----------------------------------------------------------------- input encoding
    def encode_observe(self, x: torch.Tensor) -> None:
        if self._observe_inputs and x.numel():
            m = float(x.detach().max())
            self._input_max = m if self._input_max is None else max(self._input_max, m)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the first value that cannot drive this layer's rows:
        anything but 0 / 1 for spike inputs; non-finite or negative values otherwise."""
        if self.input_spec.kind == "spike":  # one pass when all is well: x * x == x only for 0 and 1
            flat = x.reshape(-1)  # (in pieces: a copy of a VGG9 layer's spikes at batch 256 is 256 MB)
            if not all(torch.equal(c * c, c) for c in flat.split(_CHECK_ELEMENTS)):
                self._check_values(x)
                bad = x[(x != 0) & (x != 1)].reshape(-1)[0].item()
                raise ValueError(f"crossbar layer {self.name!r} expects binary spikes (0 or 1) from the neuron "
                                 f"before it, got {bad:.4g}")
        else:
            self._check_values(x)

    def encode(self, x: torch.Tensor, checked: bool = False) -> tuple[torch.Tensor, float]:
        """Integer-valued float32 inputs (same shape) and the value of one integer step;
        ``checked``: the caller has already run :meth:`check_input` on these values."""
        spec = self.input_spec
        self.encode_observe(x)
        if not checked:
            self.check_input(x)
        if spec.kind == "spike":
            return x, 1.0
        if spec.scale is None:
            raise CalibrationError(
                f"crossbar layer {self.name!r} takes analog inputs whose range is not calibrated yet; "
                "pass calibration data to imcsim.convert(..., calibration=x) or call imcsim.calibrate(model, x)"
            )
        return torch.clamp(torch.round(x / spec.scale), 0, spec.max_int), spec.scale

    def _check_values(self, x: torch.Tensor) -> None:
        if not x.numel():
            return
        if x.is_floating_point():  # one min/max pass (NaN propagates into both); the passes below name a bad value
            lo, hi = (float(v) for v in torch.aminmax(x.detach()))
            if 0.0 <= lo and hi < float("inf"):
                return
        if not bool(torch.isfinite(x).all()):
            bad = x[~torch.isfinite(x)].reshape(-1)[0].item()
            raise ValueError(f"crossbar layer {self.name!r}: inputs must be finite, got {bad}")
        if bool((x < 0).any()):
            raise ValueError(
                f"crossbar layer {self.name!r}: inputs must be >= 0 (a row can only be driven with a "
                f"non-negative voltage), got min {x.min().item():.4g}; rescale the data to [0, 1] or keep "
                "this layer digital (convert(..., exclude=[name]))"
            )

    # ----------------------------------------------------------------- the read
    def digital_product(self, x: torch.Tensor) -> torch.Tensor:
        """Exact digital ``x @ (w_int * scale).T`` (block-diagonal over groups), x's dtype."""
        V = x.shape[0]
        # scaled in place: one float copy of the weights (VGG9's fc: 17 MB), not two
        w = self.w_int.to(x.dtype, copy=True).mul_(self.w_scale.to(x.dtype).unsqueeze(1))
        w = w.view(self.groups, self.out_group, self.in_group)
        return torch.einsum("vgi,goi->vgo", x.view(V, self.groups, self.in_group), w).reshape(V, self.out_features)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, keys: torch.Tensor | None = None, repeat: int = 1,
                checked: bool = False) -> torch.Tensor:
        """x (V, in) -> (repeat * V, out); ``repeat`` r: the same inputs read in r consecutive
        steps (a direct-encoded input), results step-major; keys (r * V,) or None;
        ``checked``: x's values already passed :meth:`check_input` (e.g. before unfolding)."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"crossbar layer {self.name!r} expects inputs (vectors, {self.in_features}), got {tuple(x.shape)}"
            )
        out_dtype = x.dtype if x.is_floating_point() else torch.float32
        xf = x.to(torch.float32) if x.dtype != torch.float64 else x
        self.last_gate = None
        if self._digital:  # calibration pass: exact digital product, inputs observed
            self._check_values(xf)
            self.encode_observe(xf)
            y = self.digital_product(xf)
            return y.repeat(repeat, 1) if repeat > 1 else y
        with stage("encode", xf):
            x_int, step = self.encode(xf.to(torch.float32), checked)
        return self.forward_int(x_int, step, keys, repeat).to(out_dtype)

    @torch.no_grad()
    def forward_int(self, x_int: torch.Tensor, step: float, keys: torch.Tensor | None = None,
                    repeat: int = 1) -> torch.Tensor:
        """The read of already encoded inputs x_int (V, in), integer-valued float32 from
        :meth:`encode` (or uint8 holding the same integers) with one integer step = ``step``
        (a convolution encodes its feature map once, before unfolding it into patches).
        Returns (repeat * V, out) float32 or float64."""
        units = self._compute(x_int, keys, repeat)
        if self._fit is not None:
            self._fit_update(x_int, units, repeat)
        units = self.correct(units)
        scale = self.w_scale * step
        # in place: units is this read's own new tensor (a first layer read T times at batch
        # 64 holds 40 MB of them per copy)
        return units.mul_(scale.double() if units.dtype == torch.float64 else scale)

    # ----------------------------------------------------------------- column correction
    def correct(self, units: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Apply the fitted per-output correction (:mod:`imcsim.correction`), outputs along
        ``dim``; unchanged without one."""
        if self.col_gain is None:
            if self.hw.adc.correction != "none" and self._fit is None and self._observer is None:
                raise CalibrationError(
                    f"crossbar layer {self.name!r} has adc.correction = {self.hw.adc.correction!r} but was never "
                    "fitted; pass calibration data to imcsim.convert(..., calibration=x) or call "
                    "imcsim.calibrate(model, x)")
            return units
        return apply_correction(units, self.col_gain, self.col_offset, dim)

    def start_correction_fit(self) -> None:
        self.col_gain = self.col_offset = None
        self._fit = CorrectionFit(self.hw.adc.correction, self.out_features, self.w_int.device)

    def _fit_update(self, x_int: torch.Tensor, units: torch.Tensor, repeat: int) -> None:
        exact = self.digital_product_int(x_int)
        self._fit.add(exact.repeat(repeat, 1) if repeat > 1 else exact, units)

    def finish_correction_fit(self) -> int:
        """Install the fit's gain and offset; returns the number of outputs corrected."""
        self.col_gain, self.col_offset, n = self._fit.result()
        self._fit = None
        return n

    def digital_product_int(self, x_int: torch.Tensor) -> torch.Tensor:
        """Exact integer product ``x_int @ w_int.T`` (block-diagonal over groups), float64."""
        V = x_int.shape[0]
        w = self.w_int.double().view(self.groups, self.out_group, self.in_group)
        return torch.einsum("vgi,goi->vgo", x_int.double().view(V, self.groups, self.in_group), w).reshape(V, -1)

    def integer_product(self, x_int: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """(V, out) float64 hardware result of ``w_int @ x_int`` for integer inputs (V, in),
        in integer units (no scale). With an ideal configuration this equals the integer
        matrix product exactly, on either read-out path."""
        with torch.no_grad():
            return self._compute(x_int.to(torch.float32), keys).double()

    def _compute(self, x_int: torch.Tensor, keys: torch.Tensor | None, repeat: int = 1) -> torch.Tensor:
        V = x_int.shape[0]
        drv = self.driver()
        tally = new_tally(x_int.device) if counting_enabled() else None
        if self.read_path == "linear":
            y = self._linear(x_int, drv, tally)
            y = y.repeat(repeat, 1) if repeat > 1 else y
        else:
            if keys is None and self.needs_keys:
                keys = vector_keys(self.seed, repeat * V, 1, self.name)
            y = self._reads_all(x_int, keys, drv, tally, repeat)
        if tally is not None:
            self._add_events(tally, V, repeat, drv)
        return y

    def _add_events(self, tally: torch.Tensor, V: int, repeat: int, drv: InputDriver) -> None:
        """Events of V vectors read in ``repeat`` steps, from their tally (:mod:`imcsim.tiles.counting`)."""
        with stage("events"):
            self.events.add(**tally_events(
                tally, V, repeat, col_tiles=self.grid.col_tiles, conversion_columns=self.conversion_columns,
                out_group=self.out_group, out_features=self.out_features, in_features=self.in_features,
                input_bits=drv.bits, analog_sum=self.analog_sum))

    # ---------------------------------------------------------------- counting
    def _tile_view(self, X: torch.Tensor) -> torch.Tensor:
        """(..., G*in_g) -> (..., G, Tr, rows_per_tile) (zero-padded rows when Tr > 1)."""
        Tr = self.grid.row_tiles
        R = self.in_group if Tr == 1 else self.hw.rows
        Xg = X.reshape(*X.shape[:-1], self.groups, self.in_group)
        if Tr * R > self.in_group:
            Xg = F.pad(Xg, (0, Tr * R - self.in_group))
        return Xg.reshape(*X.shape[:-1], self.groups, Tr, R)

    def _count(self, any_read: torch.Tensor, active: torch.Tensor, tally: torch.Tensor) -> None:
        """Add reads to ``tally`` (no sync; :func:`imcsim.tiles.counting.count_reads`)."""
        with stage("events"):
            count_reads(any_read, active, tally, self.hw.skip_zero_reads)

    def _planes(self, x_int: torch.Tensor, drv: InputDriver) -> tuple[torch.Tensor, list[float]]:
        """(P, V, in) float32 plane values and the digital weight of each plane."""
        pw = [float(w) for w in drv.plane_weights(dtype=torch.float64)]
        return self.driver_planes(x_int, drv), pw

    def driver_planes(self, x_int: torch.Tensor, drv: InputDriver | None = None) -> torch.Tensor:
        """Integer inputs of any shape -> (P, *shape) float32 values the driver puts on the rows
        in each of its P reads: the inputs (binary), one bit each (bit-serial), or the level
        as a fraction of the largest (DAC)."""
        drv = drv or self.driver()
        if drv.mode == "binary":
            return x_int.unsqueeze(0)
        if drv.mode == "dac":
            return (x_int / drv.max_input).unsqueeze(0)
        xi = x_int.to(torch.int32)
        shifts = torch.arange(drv.bits, dtype=torch.int32, device=x_int.device).view(-1, *([1] * x_int.dim()))
        return ((xi.unsqueeze(0) >> shifts) & 1).to(torch.float32)

    # ---------------------------------------------------------------- linear read-out
    def _linear(self, x_int: torch.Tensor, drv: InputDriver, tally) -> torch.Tensor:
        V = x_int.shape[0]
        W = self.W_lin
        xs = x_int.to(W.dtype)
        if tally is not None and V:
            if drv.mode == "bit_serial":
                xi = x_int.to(torch.int32)
                for b in range(drv.bits):
                    bit = (xi >> b) & 1
                    self._count((self._tile_view(bit).amax(-1) > 0).unsqueeze(0), bit.sum(), tally)
            else:
                active = x_int.sum() if drv.mode == "binary" else torch.count_nonzero(x_int)
                self._count((self._tile_view(x_int).amax(-1) > 0).unsqueeze(0), active, tally)
        with stage("matmul", xs):
            if self.groups == 1:
                return xs @ W[0]
            return torch.einsum("vgi,gio->vgo", xs.view(V, self.groups, self.in_group), W).reshape(V, self.out_features)

    # ---------------------------------------------------------------- whole convolutions
    def exact_conv_ready(self, x: torch.Tensor) -> bool:
        """Whether a whole convolution can run as one ``F.conv2d`` with the mapped weights
        and give the same bits (and events) as the tile reads: the linear read-out
        (lossless, noise-free) with float32-exact sums, float32 inputs, one group, no
        calibration pass."""
        return (self.read_path == "linear" and self._lin_exact32 and x.dtype == torch.float32 and not self._digital
                and self._observer is None and self._fit is None and self.groups == 1)

    def conv_units(self, x_int: torch.Tensor, kernel, stride, padding, dilation, repeat: int = 1) -> torch.Tensor:
        """(N, C, H, W) integer inputs -> (N, out, Ho, Wo) integer units, one ``F.conv2d``
        with the effective integer weights (exact: every sum < 2**24, see exact_conv_ready).
        Events are counted as the tile reads of the unfolded patches would count them."""
        conv = dict(stride=stride, padding=padding, dilation=dilation)
        if self._conv_w is None or self._conv_w.device != self.W_lin.device:
            W = self.W_lin.permute(0, 2, 1).reshape(self.out_features, self.in_group)
            self._conv_w = W.reshape(self.out_features, -1, *kernel).contiguous()
            # one copy of the weights: the linear read-out's (1, in, out) becomes a view of the
            # convolution's (out, in) (exact float32 sums: any order of the products is the same)
            self.W_lin = self._conv_w.view(1, self.out_features, self.in_group).transpose(1, 2)
        with stage("matmul", x_int):
            units = F.conv2d(x_int, self._conv_w, None, **conv)
        if counting_enabled():
            drv = self.driver()
            tally = new_tally(x_int.device)
            # every plane is 0/1 where it is driven (spikes, bits) or counted by its nonzero
            # entries (DAC levels): all planes' per-tile counts, a few images at a time (the
            # planes and channel sums of a whole batch would outweigh the layer's outputs)
            step = max(1, _CONV_CHUNK_ELEMENTS // max(1, drv.n_planes * x_int[0].numel()))
            reads, active = [], 0
            for a in range(0, max(1, x_int.shape[0]), step):
                xc = x_int[a: a + step]
                nz = self.driver_planes(xc, drv).flatten(0, 1) if drv.mode == "bit_serial" \
                    else xc if drv.mode == "binary" else (xc != 0).to(xc.dtype)
                counts = conv_tile_counts(nz, self.hw.rows, kernel, stride, padding, dilation)  # (P*n, Tr, Ho, Wo)
                P, Tr = nz.shape[0] // max(1, xc.shape[0]), counts.shape[1]
                reads.append((counts > 0).view(P, xc.shape[0], Tr, -1).permute(0, 1, 3, 2).reshape(P, -1, 1, Tr))
                active = active + counts.sum(dtype=torch.float64)  # (integers: exact in any order)
            self._count(torch.cat(reads, 1), active, tally)
            self._add_events(tally, int(units.shape[0] * units.shape[2] * units.shape[3]), repeat, drv)
        return units

    # ---------------------------------------------------------------- simulated reads
    def _reads_all(self, x_int: torch.Tensor, keys, drv: InputDriver, tally, repeat: int = 1) -> torch.Tensor:
        """Simulated reads of x_int (V, in); with ``repeat`` r the same inputs are read in r
        consecutive steps (keys and results for r*V vectors, step-major): the currents are
        computed once, the noise, conversions and events r times."""
        V, dev = x_int.shape[0], x_int.device
        P = drv.n_planes
        adc = None if self._observer is not None else self.adc()
        mats = self.mats  # (1|2, G*Tr, rows, KO) normalised units
        exact32 = adc is not None or self._code_bound * sum(2.0**b for b in range(P)) < 2**24
        dtype = torch.float32 if exact32 else torch.float64
        y = torch.empty(repeat * V, self.out_features, dtype=dtype, device=dev)
        if V == 0:
            return y
        per_vector = self.G.shape[0] * P * (2 if self._noisy else 1) * mats.shape[-1]
        chunk = max(1, (_CHUNK_ELEMENTS if self._observer is None else _OBSERVE_CHUNK_ELEMENTS) // per_vector)
        offsets = read_offsets(self.G.shape[0] * P, device=dev)
        yv = y.view(repeat, V, -1)
        kv = None if keys is None else keys.view(repeat, V)
        clip = torch.zeros_like(yv) if self.chip_training and adc is not None else None
        # The compiled plane loop keeps nothing per read, so it takes every vector at once (each
        # tile's conductances then stay in cache for all of them); the other paths go in chunks.
        if not self._plane_reads(x_int, kv, drv, adc, mats, yv, tally, offsets, clip):
            # one buffer for every chunk's column currents: a fresh 16 MB block per chunk, with the
            # chunk's smaller temporaries carved from the last one's hole, grew the heap chunk by chunk
            work = torch.empty(chunk * per_vector, dtype=torch.float32, device=dev) if V > chunk else None
            for s in range(0, V, chunk):
                self._reads(x_int[s: s + chunk], None if kv is None else kv[:, s: s + chunk], drv, adc, mats,
                            yv[:, s: s + chunk], tally, offsets, None if clip is None else clip[:, s: s + chunk], work)
        if adc is not None:  # the digital shift-add and accumulation summed integer codes: now their value
            y.mul_(code_unit(adc, y.dtype))
        if clip is not None:  # clipped share of each output's conversions, weighted by their digital weight
            full = float(sum(abs(w) for w in drv.plane_weights(dtype=torch.float64)) * self._col_weights.abs().sum())
            full *= 1 if self.analog_sum else self.grid.row_tiles
            self.last_gate = (1.0 - clip.view(repeat * V, -1) / full).clamp_(min=0.0)
        if self.input_offset:
            off = x_int.view(V, self.groups, self.in_group).sum(-1, dtype=torch.float64) * self.input_offset
            yv -= off.repeat_interleave(self.out_group, dim=1).to(dtype)
        return y

    def _reads(self, x_int, keys, drv, adc, mats, dest, tally, offsets, clip=None, work=None) -> None:
        """One chunk of vectors: (Vc, in) integer inputs read in r steps -> ``dest``
        (r, Vc, out) in units; keys (r, Vc) or None; ``mats``: the layer's read matrices.
        ``clip`` (r, Vc, out) or None: adds the digital weight (|slice| x |plane|) of each
        output's conversions that clipped. ``work``: float32 buffer for the column currents
        (:func:`imcsim.tiles.fused.row_products`), or None. (The compiled plane loop, where it
        runs, has already taken the whole batch: :meth:`_reads_all`.)"""
        x_int = x_int if x_int.is_floating_point() else x_int.to(torch.float32)
        with stage("encode", x_int):
            X, pw = self._planes(x_int, drv)  # (P, Vc, in)
            P, Vc = X.shape[0], X.shape[1]
            r = dest.shape[0]
            Xt = self._tile_view(X)  # (P, Vc, G, Tr, R)
            G_, Tr, R = Xt.shape[2], Xt.shape[3], Xt.shape[4]
            GT = G_ * Tr
            # row tiles are the batch: a strided view, read by the batched product as fast as a copy
            Xt = Xt.permute(2, 3, 0, 1, 4).reshape(GT, P * Vc, R)
            rowany = Xt.amax(-1) > 0  # (GT, P*Vc)
        if tally is not None:
            active = torch.count_nonzero(Xt) if drv.mode == "dac" else Xt.sum()
            self._count(rowany.view(G_, Tr, P, Vc).permute(2, 3, 0, 1), active, tally)
        KO, og = self.G.shape[-1], self.out_group
        K = KO // og
        observe = self._observer is not None
        dest.zero_()
        n_active = int(rowany.sum())
        if observe and not self.hw.skip_zero_reads:  # performed all-zero reads see zero current
            self._observer.update_zeros((GT * P * Vc - n_active) * KO * r)
        if n_active == 0:
            return
        acc = dest.view(r, Vc, G_, og)
        plane_w = torch.tensor(pw, dtype=dest.dtype, device=X.device)
        cw = [float(w) for w in self._col_weights]
        if clip is not None:
            clip.zero_()
            cacc, cw_abs, pw_abs = clip.view(r, Vc, G_, og), [abs(w) for w in cw], plane_w.abs()
        if self.analog_sum:  # the row tiles' currents add on the column lines: convert the sums
            Y = self._matmul(Xt, mats, drv, work).view(-1, G_, Tr, P * Vc, KO).sum(2)  # (1|2, G, P*Vc, KO)
            gany = rowany.view(G_, Tr, P * Vc).any(1)
            tiles = torch.arange(G_, device=X.device) * Tr  # the noise of a summed read: keyed by its first tile
            mask = gany if self.hw.skip_zero_reads else None
            p_all = torch.arange(P, device=X.device).repeat_interleave(Vc)
            v_all = torch.arange(Vc, device=X.device).repeat(P)
            summed = self._can_sum_codes(Y, keys, adc, clip, dest, pw, cw, 1)
            if summed:  # rows (group, plane, vector)
                dst, row_w = _grid_rows(G_, 1, Vc, plane_w)
            for j in range(r):
                rk = None if keys is None else self._row_keys(keys[j], tiles, p_all, v_all, offsets)
                if summed:
                    self._sum_codes(Y, rk, adc, dst, row_w, cw, acc[j].view(Vc * G_, og))
                    continue
                Yj = self._convert(Y, KO, rk, adc, mask=mask, keep=j < r - 1)
                with stage("shift_add", Yj):
                    acc[j] += combine_reads(Yj.view(G_, P, Vc, KO), plane_w, cw, og)
                if clip is not None:
                    cacc[j] += combine_reads(self._clipped.view(G_, P, Vc, KO), pw_abs, cw_abs, og)
        elif n_active < 0.5 * GT * P * Vc:  # simulate only the reads with some input (the others give exactly 0)
            # The active reads of all tiles at once, ordered by tile then read: one product per
            # tile (the rows it reads), then noise, conversion and shift-add in a few whole-layer ops.
            with stage("encode", Xt):
                t_a, i_a = rowany.nonzero(as_tuple=True)
                Xa = Xt[t_a, i_a]  # (n, R)
            p_a, v_a = i_a // Vc, i_a % Vc
            w_row = None if all(w == 1.0 for w in pw) else plane_w[p_a].unsqueeze(1)  # spikes: one plane of weight 1
            dest_rows = v_a * G_ + t_a // Tr  # row of acc[j] viewed as (Vc * G, og)
            if self._fuse_products(r, drv, mats, keys, adc, clip, dest, pw, cw, Tr):  # products and codes in one loop
                rk = None if keys is None else self._row_keys(keys[0], t_a, p_a, v_a, offsets, paired=True)
                row_w = torch.ones(n_active) if w_row is None else w_row.view(-1)
                if self._products_codes(Xa, t_a, mats, rk, adc, dest_rows, row_w, cw, acc[0].view(Vc * G_, og)):
                    return
            with stage("matmul", Xa):  # each tile's products written in place (mats[m, t] and Y0[m, rows] are contiguous)
                Y0 = None if drv.mode == "dac" else fused.row_products(Xa, t_a, mats, self._square, work)
                if Y0 is None:
                    ms = self._torch_mats(mats)
                    Y0 = Xa.new_empty(len(ms), n_active, KO)
                    start = 0
                    for t, c in enumerate(torch.bincount(t_a, minlength=GT).tolist()):
                        if c:
                            Xc = Xa[start:start + c]
                            for m, Mm in enumerate(ms):
                                torch.mm(Xc * Xc if m and drv.mode == "dac" else Xc, Mm[t], out=Y0[m, start:start + c])
                            start += c
            summed = self._can_sum_codes(Y0, keys, adc, clip, dest, pw, cw, Tr)
            if summed:
                row_w = torch.ones(n_active, device=X.device) if w_row is None else w_row.view(-1)
            for j in range(r):
                rk = None if keys is None else self._row_keys(keys[j], t_a, p_a, v_a, offsets, paired=True)
                if summed:
                    self._sum_codes(Y0, rk, adc, dest_rows, row_w, cw, acc[j].view(Vc * G_, og))
                    continue
                Y = self._convert(Y0, KO, rk, adc, keep=j < r - 1)
                z = self._slice_sum(Y, K, og, cw, dest.dtype)
                with stage("shift_add", z):
                    acc[j].view(Vc * G_, og).index_add_(0, dest_rows, z if w_row is None else z.mul_(w_row))
                if clip is not None:
                    c = self._slice_sum(self._clipped, K, og, cw_abs, dest.dtype).mul_(pw_abs[p_a].unsqueeze(1))
                    cacc[j].view(Vc * G_, og).index_add_(0, dest_rows, c)
        else:
            tiles = torch.arange(GT, device=X.device)
            p_all = torch.arange(P, device=X.device).repeat_interleave(Vc)
            v_all = torch.arange(Vc, device=X.device).repeat(P)
            if self._fuse_products(r, drv, mats, keys, adc, clip, dest, pw, cw, Tr):
                rk = None if keys is None else self._row_keys(keys[0], tiles, p_all, v_all, offsets)
                dst, row_w = _grid_rows(GT, Tr, Vc, plane_w)
                if self._products_codes(Xt.reshape(GT * P * Vc, R), tiles.repeat_interleave(P * Vc), mats,
                                        None if rk is None else rk.reshape(-1), adc, dst, row_w, cw,
                                        acc[0].view(Vc * G_, og)):
                    return
            Y0 = self._matmul(Xt, mats, drv, work)  # (1|2, GT, P*Vc, KO)
            mask = rowany if self.hw.skip_zero_reads else None
            summed = self._can_sum_codes(Y0, keys, adc, clip, dest, pw, cw, Tr)
            if summed:  # rows (row tile, plane, vector)
                dst, row_w = _grid_rows(GT, Tr, Vc, plane_w)
            for j in range(r):
                rk = None if keys is None else self._row_keys(keys[j], tiles, p_all, v_all, offsets)
                if summed:
                    self._sum_codes(Y0, rk, adc, dst, row_w, cw, acc[j].view(Vc * G_, og))
                    continue
                Y = self._convert(Y0, KO, rk, adc, mask=mask, keep=j < r - 1)
                with stage("shift_add", Y):  # row tiles and planes accumulated, slices shifted and added
                    acc[j] += combine_reads(Y.view(G_, Tr * P, Vc, KO), plane_w.repeat(Tr), cw, og)
                if clip is not None:
                    cacc[j] += combine_reads(self._clipped.view(G_, Tr * P, Vc, KO), pw_abs.repeat(Tr), cw_abs, og)

    def _plane_reads(self, x_int, keys, drv, adc, mats, dest, tally, offsets, clip) -> bool:
        """All reads of one step of 0/1 planes (spikes or bits) in one compiled loop from the
        inputs themselves (:func:`imcsim.tiles.fused.plane_reads_readout_sum`: the same sums
        and events as building the planes and the list of active reads, below). False,
        with nothing done, where it cannot run."""
        if dest.shape[0] != 1 or self.analog_sum or drv.mode == "dac" or x_int.device.type != "cpu":
            return False
        pw = [float(w) for w in drv.plane_weights(dtype=torch.float64)]
        cw = [float(w) for w in self._col_weights]
        if not self._can_sum_codes(mats[0, :1, :1], keys, adc, clip, dest, pw, cw, self.grid.row_tiles):
            return False
        dest.zero_()
        with stage("readout", x_int):  # encoding, products and read-out together: timed as one stage
            done = fused.plane_reads_readout_sum(
                x_int, drv.mode == "bit_serial", drv.n_planes, self.groups, mats, self._square,
                None if keys is None else keys[0], offsets.view(self.G.shape[0], -1), self.seed,
                self.hw.device.read_noise, adc_scale(adc), pw, cw, dest[0].view(-1, self.out_group),
                None if keys is not None else self._byte_mats(mats))
        if done is None:
            return False
        if tally is not None:
            self._count(done[0], torch.tensor(float(done[1]), dtype=torch.float64), tally)
        return True

    @staticmethod
    def _slice_sum(Y, K, og, cw, dtype):
        """Shift-add of the (polarity, slice) column blocks: (..., K*og) -> (..., og)."""
        with stage("shift_add"):
            return shift_add(Y, K, og, cw, dtype)

    def _matmul(self, X, mats, drv, work=None):
        """Column currents (and, with read noise, their variances) of reads X (T, n, rows) of
        T row tiles: (1|2, T, n, KO) = X @ mats, one batched product per matrix written
        straight into its slot (a broadcast X @ mats would first copy X twice); 0/1 planes
        reuse X for the squares (x**2 == x), DAC levels multiply x**2 with them. ``work``: as
        :func:`imcsim.tiles.fused.row_products`."""
        with stage("matmul", X):
            if drv.mode != "dac":  # 0/1 inputs: only the driven rows added, in one compiled loop where numba runs
                T, n = X.shape[0], X.shape[1]
                t = torch.arange(T).repeat_interleave(n) if X.device.type == "cpu" else None
                out = None if t is None else fused.row_products(X.reshape(T * n, -1), t, mats, self._square, work)
                if out is not None:
                    return out.view(out.shape[0], T, n, mats.shape[-1])
            ms = self._torch_mats(mats)
            out = X.new_empty(len(ms), X.shape[0], X.shape[1], mats.shape[-1])
            for m, Mm in enumerate(ms):
                torch.bmm(X * X if m and drv.mode == "dac" else X, Mm, out=out[m])
            return out

    @property
    def _square(self) -> bool:
        """Whether a read's noise variances are the squares of the conductances it drives,
        computed as it reads (read noise, per-column read-out), not a stored matrix."""
        return self._noisy and self._mats_shape[0] == 1

    def _byte_mats(self, mats: torch.Tensor) -> torch.Tensor | None:
        """The conductances as bytes for noise-free reads, where they are small integers
        (:func:`imcsim.tiles.fused.byte_matrices`; an ideal array's levels), built once per
        programming and kept beside ``mats`` (a quarter of its size); else None."""
        key = (mats.data_ptr(), mats._version, mats.device, mats.dtype)
        if self._byte_cache is None or self._byte_cache[0] != key:
            self._byte_cache = (key, fused.byte_matrices(mats))
        return self._byte_cache[1]

    def _torch_mats(self, mats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The matrices torch's products multiply with (DAC levels, a GPU, no numba): the
        conductances ``mats[0]`` and, with read noise, the variances -- stored (column pairs)
        or the conductances' float32 squares as the compiled products compute them, built
        once per programming and device and kept beside ``mats``."""
        if not self._square:
            return tuple(mats)
        key = (mats.data_ptr(), mats._version, mats.device, mats.dtype)
        if self._sq_cache is None or self._sq_cache[0] != key:
            self._sq_cache = (key, mats[0] * mats[0])
        return mats[0], self._sq_cache[1]

    def _row_keys(self, keys, t, p, v, row_offsets, paired: bool = False) -> torch.Tensor:
        """int32 noise keys of the reads (plane p, vector v) of row tile t, of every tile in
        the 1-d tensor t at once ((len(t), len(v)) keys), or (``paired``) of the reads
        (t[k], p[k], v[k])."""
        with stage("noise"):
            offs = row_offsets.view(self.G.shape[0], -1)  # one offset per (tile, plane)
            if not isinstance(t, int):  # one compiled loop where numba runs (the same keys)
                k = fused.row_keys(keys.to(v.device), offs, self.seed, t, p, v, paired)
                if k is not None:
                    return k
            tile = offs[t][p] if isinstance(t, int) else offs[t, p] if paired else offs[t][:, p]
            return read_keys(keys.to(v.device)[v], tile, self.seed)

    def _can_sum_codes(self, Y, keys, adc, clip, dest, pw, cw, tiles: int) -> bool:
        """Whether the reads' codes can go straight into the layer's sums in one fused pass
        (:func:`imcsim.tiles.fused.readout_sum`): an ADC (not calibrating), float32 sums that
        stay exact integers (the largest |code| x plane weights x ``tiles`` summed row tiles
        x column weights below 2**24, so the order of the sums does not matter), no clipping
        record (chip training), and the fused pass available."""
        if adc is None or self._observer is not None or clip is not None or self.chip_training:
            return False
        bound = max(abs(adc.code_min), adc.code_max) * sum(abs(w) for w in pw) * tiles * sum(abs(w) for w in cw)
        return (bound < 2**24 and dest.dtype == torch.float32
                and fused.available(Y, keys is not None, self.hw.read_noise_draws))

    def _fuse_products(self, r, drv, mats, keys, adc, clip, dest, pw, cw, tiles: int) -> bool:
        """Whether the products of 0/1 reads and their codes' sums can be one compiled loop
        (:meth:`_products_codes`): one step (``r == 1``; repeated steps reuse one product),
        inputs of 0 and 1 (not DAC levels), and codes summed in the fused pass."""
        return (r == 1 and drv.mode != "dac" and mats.device.type == "cpu"
                and self._can_sum_codes(mats[0, :1, :1], keys, adc, clip, dest, pw, cw, tiles))

    def _products_codes(self, X, t, mats, row_keys, adc, dst, row_w, cw, acc) -> bool:
        """Reads X (n, rows) of tiles t: their products, noise, codes and digital sums in one
        loop (:func:`imcsim.tiles.fused.products_readout_sum`, the same bits as
        :meth:`_matmul` then :meth:`_sum_codes`)."""
        with stage("readout", X):  # products and read-out together: timed as one stage
            return fused.products_readout_sum(X, t, mats, row_keys, self.hw.device.read_noise, adc_scale(adc), dst,
                                              row_w, cw, acc, square=self._square)

    def _sum_codes(self, Y, row_keys, adc, dst, row_w, cw, acc) -> None:
        """Codes of reads Y (1|2, ..., n, KO) (noisy when row_keys is given) added to the
        sums ``acc`` (rows, og): read i adds row_w[i] * sum_k cw[k] * code to row dst[i]."""
        with stage("readout", Y):
            fused.readout_sum(Y[0], Y[1] if row_keys is not None else None, row_keys, self.hw.device.read_noise,
                              adc_scale(adc), dst, row_w, cw, acc)

    def _convert(self, Y, KO, row_keys, adc, mask=None, keep: bool = False):
        """Column currents (and noise variances) (1|2, ..., n, KO) -> noisy, observed or
        quantised currents (..., n, KO) -- with an ADC its integer codes (:func:`quantize`), valued
        once per layer call in :meth:`_reads_all`; row_keys (..., n): each read's noise key.
        ``keep``: leave Y as it is (it is read again) and return a new tensor."""
        quantise = self._observer is None and adc is not None
        if (row_keys is not None or quantise) and not (quantise and self.chip_training) \
                and fused.available(Y, row_keys is not None, self.hw.read_noise_draws):
            # noise and ADC in one pass (bit-identical to the stages below)
            with stage("readout", Y):
                scale = adc_scale(adc) if quantise else None
                Y = fused.readout(Y[0], Y[1] if row_keys is not None else None, row_keys,
                                  self.hw.device.read_noise, scale, keep=keep)
            if self._observer is not None:
                with stage("adc", Y):
                    self._observe(Y, mask)
            return Y
        if keep:
            Y = Y.clone()
        if row_keys is not None:
            with stage("noise", Y):
                Y = add_read_noise(Y[0], Y[1], row_keys, self.hw.device.read_noise, self.hw.read_noise_draws)
        else:
            Y = Y[0]
        with stage("adc", Y):
            if self._observer is not None:
                self._observe(Y, mask)
            elif adc is not None:
                Y, clipped = quantize(Y, adc, keep_clipped=self.chip_training, codes=True)
                if clipped is not None:
                    self._clipped = clipped
        return Y

    def _observe(self, Y: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Calibration: the column currents of reads Y (..., n, KO) (those where ``mask``) to the range observer."""
        if not fused.observe(self._observer, Y, mask):
            self._observer.update(Y[mask] if mask is not None else Y)

    def extra_repr(self) -> str:
        g = f", {self.groups} groups" if self.groups > 1 else ""
        return (f"{self.in_features}->{self.out_features}{g}, tiles {self.grid.row_tiles}x{self.grid.col_tiles} of "
                f"{self.grid.rows}x{self.grid.cols}, input {self.input_spec.kind}")


_KEEP = object()


def _grid_rows(n_tiles: int, per_group: int, Vc: int, plane_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For reads ordered (tile, plane, vector) -- n_tiles tiles, ``per_group`` consecutive
    tiles per group, planes weighted ``plane_w`` -- each read's output row v * groups + group
    (the layer's sums viewed as (Vc * groups, og)) and its plane weight, both (n_tiles * P * Vc,)."""
    P, dev = plane_w.shape[0], plane_w.device
    group = (torch.arange(n_tiles, device=dev) // per_group).view(n_tiles, 1, 1)
    dst = torch.arange(Vc, device=dev).view(1, 1, Vc) * (n_tiles // per_group) + group
    return dst.expand(n_tiles, P, Vc).reshape(-1), plane_w.view(1, P, 1).expand(n_tiles, P, Vc).reshape(-1)


def _repeated_steps(x: torch.Tensor) -> int:
    """r > 1 when the leading dimension of ``x`` is r identical blocks of the active read
    context's batch (a direct-encoded input seen at every timestep), else 1."""
    ctx = current_context()
    n = x.shape[0] if x.dim() else 0
    if ctx is None or ctx.batch == 0 or n <= ctx.batch or n % ctx.batch:
        return 1
    blocks = x.reshape(n // ctx.batch, ctx.batch, -1)
    first = blocks[:, :1]  # a cheap first test on one sample per block: most inputs differ there
    if not torch.equal(first[1:], first[:1].expand_as(first[1:])):
        return 1
    return blocks.shape[0] if torch.equal(blocks[1:], blocks[:1].expand_as(blocks[1:])) else 1


class _NoFloatWeight:
    """A crossbar layer keeps its weights as conductances, not as a float ``weight``: a model
    whose forward reads one (``F.linear(x, self.fc.weight)``, in a model the converter could
    not trace) gets an error that says so and how to keep that layer digital."""

    def __getattr__(self, name: str):
        if name == "weight":
            layer = self.__dict__.get("source") or "?"
            raise AttributeError(f"crossbar layer {layer!r} holds no float weight (it is programmed onto tiles); "
                                 f"a forward that reads {layer}.weight needs that layer digital: "
                                 f"convert(..., exclude=[{layer!r}])")
        return super().__getattr__(name)


class CrossbarLinear(_NoFloatWeight, nn.Module):
    """Crossbar twin of ``nn.Linear``: y = hardware(W x) + b, for inputs (..., in).

    ``weight`` / ``bias`` override the module's (e.g. after BatchNorm folding)."""

    def __init__(self, linear: nn.Linear, hw: HardwareConfig, input_spec: InputSpec = InputSpec(), *, seed: int = 0,
                 name: str = "", weight=None, bias=_KEEP):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight if weight is None else weight
        bias = linear.bias if bias is _KEEP else bias
        self.tiles = TiledMatrix(weight.detach(), hw, input_spec, seed=seed, name=name)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.events = self.tiles.events
        self.source, self.folded_bn = name, None  # the float module (and BatchNorm folded in) it was made from
        self.weight_link = None  # chip-in-the-loop training: () -> (float weight, bias) with gradients

    def forward(self, x):
        if self.weight_link is None:
            return self._chip_forward(x)
        y = self._chip_forward(x.detach())
        w_eff, b = straight_through_weight(self.tiles, self.weight_link)
        return with_surrogate_gradient(y, F.linear(x, w_eff.view(self.out_features, self.in_features)), b,
                                       self.tiles.last_gate, channel_dim=-1)

    def _chip_forward(self, x):
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"crossbar layer {self.tiles.name!r} expects inputs (..., {self.in_features}), "
                             f"got {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        keys = None
        n = lead[0] if len(lead) else 1
        if self.tiles.needs_keys and flat.shape[0]:
            keys = vector_keys(self.tiles.seed, n, flat.shape[0] // max(1, n), self.tiles.name).to(x.device)
        r = _repeated_steps(x) if len(lead) else 1
        per = max(1, flat.shape[0] // max(1, n))  # vectors per leading element (sample and step)
        self.tiles.input_numel, self.tiles.output_numel = per * self.in_features, per * self.out_features
        y = self.tiles(flat[: flat.shape[0] // r], keys, repeat=r)
        if self.bias is not None:
            y = y + self.bias
        release_freed(y.numel() * y.element_size())  # the reads' temporaries scale with their outputs
        return y.reshape(*lead, self.out_features)


class CrossbarConv(_NoFloatWeight, nn.Module):
    """Crossbar twin of ``nn.Conv1d`` / ``nn.Conv2d`` (any groups, zero padding):
    unfold -> tiles (one set per group) -> fold, in chunks of samples to bound memory."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, hw: HardwareConfig, input_spec: InputSpec = InputSpec(), *,
                 seed: int = 0, name: str = "", weight=None, bias=_KEEP):
        super().__init__()
        problem = unsupported_conv(conv)
        if problem:
            raise ValueError(f"cannot map {type(conv).__name__} {name!r} onto crossbars: {problem}")
        self.nd = 1 if isinstance(conv, nn.Conv1d) else 2
        self.in_channels, self.out_channels, self.groups = conv.in_channels, conv.out_channels, conv.groups
        as2 = (lambda t, one=1: (one, t[0])) if self.nd == 1 else (lambda t, one=1: tuple(t))
        self.kernel_size, self.stride, self.dilation = as2(conv.kernel_size), as2(conv.stride), as2(conv.dilation)
        self.padding = as2(_explicit_padding(conv), 0)
        weight = conv.weight if weight is None else weight
        bias = conv.bias if bias is _KEEP else bias
        self.tiles = TiledMatrix(weight.detach().reshape(conv.out_channels, -1), hw, input_spec, seed=seed, name=name,
                                 groups=conv.groups)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.events = self.tiles.events
        self.weight_shape = tuple(conv.weight.shape)
        self.source, self.folded_bn = name, None  # the float module (and BatchNorm folded in) it was made from
        self.weight_link = None  # chip-in-the-loop training: () -> (float weight, bias) with gradients

    def forward(self, x):
        if self.weight_link is None:
            return self._chip_forward(x)
        y = self._chip_forward(x.detach())
        w_eff, b = straight_through_weight(self.tiles, self.weight_link)
        w_eff = w_eff.view(self.weight_shape)
        if self.nd == 1:
            ys = F.conv1d(x, w_eff, None, self.stride[1], self.padding[1], self.dilation[1], self.groups)
        else:
            ys = F.conv2d(x, w_eff, None, self.stride, self.padding, self.dilation, self.groups)
        gate = self._gate
        if gate is not None:  # (N, L, out) -> the output's layout
            gate = gate.transpose(1, 2).reshape(ys.shape)
        return with_surrogate_gradient(y, ys, b, gate, channel_dim=1)

    def _chip_forward(self, x):
        want = 3 if self.nd == 1 else 4
        if x.dim() != want or x.shape[1] != self.in_channels:
            shape = "(N, C, L)" if self.nd == 1 else "(N, C, H, W)"
            raise ValueError(f"crossbar layer {self.tiles.name!r} expects input {shape} with C={self.in_channels}, "
                             f"got {tuple(x.shape)}")
        x4 = x.unsqueeze(2) if self.nd == 1 else x
        N, _, H, W = x4.shape
        self._gate = None
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        Ho = (H + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        Wo = (W + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        L, K = Ho * Wo, self.in_channels * k[0] * k[1]
        keys = vector_keys(self.tiles.seed, N, L, self.tiles.name).to(x.device) if self.tiles.needs_keys and N else None
        dtype = x.dtype if x.is_floating_point() else torch.float32
        xf = x4 if x4.is_floating_point() else x4.to(torch.float32)
        if N == 0:  # no samples: nothing to read
            out = torch.zeros(0, self.out_channels, Ho, Wo, dtype=dtype, device=x.device)
            return out.squeeze(2) if self.nd == 1 else out
        self.tiles.input_numel, self.tiles.output_numel = x[0].numel(), self.out_channels * L
        r = _repeated_steps(xf)  # the same images at every step: unfold and read them once per step
        N1 = N // r
        if self.tiles.exact_conv_ready(xf):  # lossless and noise-free: the reads are one exact convolution
            x_int, step = self.tiles.encode(xf[:N1])
            units = self.tiles.correct(self.tiles.conv_units(x_int, k, s, p, d, repeat=r), dim=1)
            # (in place on the fresh products: a layer's outputs are held once, not three times)
            sc = (self.tiles.w_scale * step).view(1, -1, 1, 1)
            y = (units.mul_(sc) if torch.result_type(units, sc) == units.dtype else units * sc).to(dtype)
            if self.bias is not None:
                y.add_(self.bias.view(1, -1, 1, 1))
            y = y.unsqueeze(0).expand(r, *y.shape).reshape(N, *y.shape[1:]) if r > 1 else y
            return y.squeeze(2) if self.nd == 1 else y
        chunk = max(1, _CONV_CHUNK_ELEMENTS // max(1, K * L))
        # Written in the output's own layout (N, out, L), so no transposed copy follows.
        y = torch.empty(N, self.out_channels, L, dtype=dtype, device=x.device)
        yr, kr = y.view(r, N1, -1, L), None if keys is None else keys.view(r, N1 * L)
        if not self.tiles._digital:  # the values once here, not in every patch that holds them
            self.tiles.check_input(xf[:N1])
        encoded = not self.tiles._digital
        written = 0  # bytes of outputs read since the heap was last trimmed
        for a in range(0, N1, chunk):
            xc = xf[a: min(a + chunk, N1)]
            n = xc.shape[0]
            kc = None if kr is None else kr[:, a * L: (a + n) * L].reshape(-1)
            if encoded:  # encode once per feature map, not once per patch that holds a value
                with stage("encode", xc):
                    x_int, step = self.tiles.encode(xc.to(torch.float32), checked=True)
                    # (uint8 patches are read as they are by the compiled plane reads; other reads convert them)
                    x_int = patch_rows(_narrow_int(x_int, self.tiles.input_spec.max_int), k, s, p, d)
                    x_int = x_int if x_int.dtype == torch.uint8 else x_int.to(torch.float32)
                out = self.tiles.forward_int(x_int, step, kc, repeat=r)
            else:
                with stage("encode", xc):
                    rows = patch_rows(xc, k, s, p, d)  # (n * L, K)
                out = self.tiles(rows, kc, repeat=r, checked=True)
            yr[:, a: a + n] = out.view(r, n, L, -1).transpose(2, 3)
            written += out.numel() * out.element_size()
            del out
            if release_freed(written):  # the chunks' temporaries, every few MB of outputs (not only at the end)
                written = 0
            if self.tiles.last_gate is not None:
                if self._gate is None:
                    self._gate = torch.ones(N, L, self.out_channels, dtype=y.dtype, device=y.device)
                self._gate.view(r, N1, L, -1)[:, a: a + n] = self.tiles.last_gate.view(r, n, L, -1)
        y = y.view(N, self.out_channels, Ho, Wo)
        if self.bias is not None:
            y.add_(self.bias.view(1, -1, 1, 1))
        return y.squeeze(2) if self.nd == 1 else y


CrossbarConv2d = CrossbarConv  # one class for Conv1d and Conv2d


def patch_rows(x: torch.Tensor, kernel, stride, padding, dilation) -> torch.Tensor:
    """(n, C, H, W) -> (n * Ho * Wo, C * kh * kw): one row per output position, its patch in
    ``F.unfold``'s (channel, kernel row, kernel column) order -- the transposed unfold, written
    as one strided copy per kernel offset (unfold then transpose is 1.5-2x slower)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
    n, C, H, W = xp.shape
    Ho, Wo = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
    out = torch.empty(n, Ho, Wo, C, kh, kw, dtype=x.dtype, device=x.device)
    for i in range(kh):
        for j in range(kw):
            src = xp[:, :, i * dh: i * dh + sh * (Ho - 1) + 1: sh, j * dw: j * dw + sw * (Wo - 1) + 1: sw]
            out[..., i, j].copy_(src.permute(0, 2, 3, 1))
    return out.view(n * Ho * Wo, C * kh * kw)


def _int_dtype(hw: HardwareConfig) -> torch.dtype:
    """The integer type that holds a layer's quantised weights (weights.bits <= 16)."""
    return torch.int8 if hw.weight_qmax <= 127 else torch.int16


def _narrow_int(x_int: torch.Tensor, max_int: int) -> torch.Tensor:
    """Integer-valued float inputs in [0, max_int] in the narrowest integer dtype that holds
    them: unfolding copies every value kh*kw times with scattered writes, 2-2.5x faster on
    bytes than on float32 (values unchanged)."""
    if max_int <= 255:
        return x_int.to(torch.uint8)
    if max_int <= 32767:
        return x_int.to(torch.int16)
    return x_int


def _explicit_padding(conv) -> tuple:
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0,) * len(conv.kernel_size)
        return tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation))  # 'same', odd kernels
    return tuple(conv.padding)


def unsupported_conv(conv) -> str | None:
    """Why a Conv1d / Conv2d cannot be mapped, or None."""
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d)):
        return f"{type(conv).__name__} is not a Conv1d or Conv2d"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r} (only 'zeros' is supported)"
    if conv.padding == "same" and any(d * (k - 1) % 2 for k, d in zip(conv.kernel_size, conv.dilation)):
        return "padding='same' with an even effective kernel (asymmetric padding)"
    return None
