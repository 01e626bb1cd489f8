"""Crossbar layers: a trained Linear / Conv2d computed through simulated crossbar tiles.

Per read: the integer inputs of each row tile become driver planes (binary spikes, bit
planes or DAC levels) -> the programmed tiles (effective conductance when wires are on,
read noise if on) give column currents -> one ADC conversion per column (or differential
pair) -> digital shift-add of slices, polarities and planes -> sum over row tiles -> offset
removal, per-channel scale, bias.

Internally currents are kept in *normalised units*: conductance / delta_g (one cell level
step) and voltage / v_read, so an ideal cell of level k passes k units at a full read and an
ideal crossbar computes integer dot products exactly (float32 holds integers below 2**24
exactly). ``amperes = units * v_read * delta_g`` (see :attr:`TiledMatrix.unit_current`).

All tiles of a layer are read by one batched matmul: row tiles are the batch dimension and
the column tiles of a row tile are concatenated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from crossbar_models import ADC, InputDriver, RangeObserver, effective_conductance

from .errors import CalibrationError
from .events import CROSSBAR_EVENTS, EventCounter, counting_enabled
from .hardware import HardwareConfig
from .mapping import TileGrid, level_matrix, quantize_weights, slice_weights, tile

INPUT_KINDS = ("spike", "quantized", "analog")
_CHUNK_ELEMENTS = 1 << 21  # (row_tiles, reads, columns) per chunk: ~8 MB, cache-friendly


@dataclass(frozen=True)
class InputSpec:
    """What a crossbar layer receives. kind: ``spike`` (0/1 spikes), ``quantized`` (integer
    multiples of ``scale`` from a b-bit activation) or ``analog`` (any non-negative value,
    quantised to ``bits`` over [0, max] with ``scale = max / (2**bits - 1)`` set by
    calibration). scale: value of one integer input step, None until calibrated."""

    kind: str = "spike"
    bits: int = 1
    scale: float | None = 1.0

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"InputSpec.kind must be one of {INPUT_KINDS}, got {self.kind!r}")
        if self.kind == "spike" and (self.bits != 1 or self.scale != 1.0):
            raise ValueError("spike inputs have bits=1 and scale=1")
        if not 1 <= int(self.bits) <= 16:
            raise ValueError(f"InputSpec.bits must be in 1..16, got {self.bits}")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"InputSpec.scale must be > 0, got {self.scale}")


class TiledMatrix(nn.Module):
    """One weight matrix (out x in) programmed onto a grid of crossbar tiles.

    ``forward(x)`` with x (V, in) returns (V, out) = quantised(W) @ x as the hardware
    computes it (before bias). Programming (variation, faults) is drawn once here from
    ``seed``; read noise is drawn on every read from a generator seeded from ``seed`` too.
    """

    def __init__(self, weight: torch.Tensor, hw: HardwareConfig, input_spec: InputSpec, *, seed: int, name: str = ""):
        super().__init__()
        if not isinstance(hw, HardwareConfig):
            raise ValueError(f"hw must be a HardwareConfig, got {type(hw).__name__}")
        self.hw = hw
        self.name = name
        self.input_spec = input_spec
        self.out_features, self.in_features = weight.shape
        self.seed = int(seed)
        dev = hw.device
        pair = hw.adc.per == "pair"

        w_int, scale = quantize_weights(weight, hw.weight_bits, hw.granularity)
        levels = level_matrix(w_int, hw)  # (in, out * columns_per_weight)
        self.grid = TileGrid(self.in_features, levels.shape[1], hw.rows, hw.cols)
        lv_tiles = tile(levels, self.grid)  # (Tr, Tc, rows, cols)
        g_prog = torch.Generator().manual_seed(self.seed)
        G = dev.program(dev.level_conductance(lv_tiles.to(torch.float64)), g_prog)
        M = G if hw.wires.is_ideal else effective_conductance(G, hw.wires)
        # Row-tile-major matrix of the real (non-padding) columns, normalised units. The
        # physical column order is (output, polarity, slice); for computing, columns are
        # regrouped as (polarity, slice, output) -- a permutation that changes no current --
        # so the digital shift-add reads whole contiguous blocks.
        Tr, Tc, R, C = M.shape
        out = self.out_features
        Mn = (M / dev.delta_g).permute(0, 2, 1, 3).reshape(Tr, R, Tc * C)[:, :, : self.grid.columns]
        Mn = Mn.reshape(Tr, R, out, 2 if hw.mapping == "differential" else 1, hw.slices)
        cw = slice_weights(hw)
        if pair:  # the ADC sees the difference current of each (G+, G-) column pair
            Mn_sq = (Mn**2).sum(3)
            Mn = Mn[:, :, :, 0] - Mn[:, :, :, 1]
            cw = cw[: hw.slices]
        else:
            Mn = Mn.flatten(3)
            Mn_sq = Mn**2
        def compute_order(t):  # (Tr, R, out, k) -> (Tr, R, k * out)
            return t.permute(0, 1, 3, 2).reshape(Tr, R, -1).to(torch.float32).contiguous()
        self.register_buffer("G", compute_order(Mn))
        # Read noise, per cell and relative, sampled at the column (exact in law for the
        # ideal array; with wires the effective conductances stand in for the cells').
        self.register_buffer("G_sq", compute_order(Mn_sq) if dev.read_noise > 0 else None)
        self._col_weights = [float(w) for w in cw]  # digital weight of each column block
        self.register_buffer("w_scale", scale.to(torch.float32))
        self.register_buffer("w_int", w_int.to(torch.int32))
        self.g_off_units = dev.g_off / dev.delta_g  # leakage of one active g_off cell, units
        # Digital removal of input-proportional terms: the offset of offset mapping, and
        # the nominal g_off leakage of every column (cancels in differential pairs).
        col_sum = float(cw.sum())
        self.input_offset = self.g_off_units * col_sum + (hw.weight_qmax if hw.mapping == "offset" else 0)
        # Integer partial sums stay exact in float32 below 2**24; beyond, sum in float64.
        bound = self.grid.padded_rows * (2**dev.bits_per_cell - 1 + self.g_off_units) * float(cw.abs().sum())
        self._exact32 = bound < 2**24
        self.adc_full_scale: float | None = None
        if not hw.adc.lossless and hw.adc.range == "fixed":
            self.adc_full_scale = hw.adc.full_scale_fraction * self.max_column_current()
        self.events = EventCounter(*CROSSBAR_EVENTS)
        self._observer: RangeObserver | None = None
        self._input_max: float | None = None
        self._observe_inputs = False
        self._digital = False
        self._adc_G: tuple[float, torch.Tensor] | None = None  # G / lsb for the fast ADC path
        self._ws: torch.Tensor | None = None  # reusable read-out buffer of the fast path
        self._read_gens: dict[str, torch.Generator] = {}

    def programmed_levels(self) -> torch.Tensor:
        """Cell levels read back from the programmed (effective) conductances, as the level
        matrix (in, out * columns_per_weight) of :mod:`imcsim.mapping` -- the inverse of
        programming, exact for an ideal chip (pass it to ``mapping.reconstruct_weights``)."""
        if self.hw.adc.per == "pair":
            raise ValueError("programmed_levels needs per-column read-out (adc.per = 'column')")
        Tr, R, _ = self.G.shape
        k = self.hw.columns_per_weight
        G = self.G.double().view(Tr, R, k, self.out_features).permute(0, 1, 3, 2)  # back to (o, p, s) order
        G = G.reshape(Tr * R, self.out_features * k)[: self.in_features]
        return torch.round(G - self.g_off_units).to(torch.int64)

    # ----------------------------------------------------------------- geometry and units
    @property
    def conversion_columns(self) -> int:
        """ADC conversions per row-tile read: real columns, or column pairs."""
        return self.G.shape[-1]

    @property
    def unit_current(self) -> float:
        """Amperes per normalised current unit (v_read * delta_g)."""
        return self.hw.inputs.v_read * self.hw.device.delta_g

    def max_column_current(self) -> float:
        """Largest current (normalised units) a column can carry: all rows on at full level."""
        L = 2**self.hw.device.bits_per_cell - 1
        per_row = L if self.hw.adc.per == "pair" else L + self.g_off_units
        return self.hw.rows * per_row

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

    def _read_generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._read_gens:
            self._read_gens[key] = torch.Generator(device=device).manual_seed(self.seed + 7919)
        return self._read_gens[key]

    def reseed_reads(self, seed: int | None = None) -> None:
        """Restart the read-noise sequence (same seed, same noisy outputs)."""
        if seed is not None:
            self.seed = int(seed)
        self._read_gens.clear()

    # ----------------------------------------------------------------- input encoding
    def encode_observe(self, x: torch.Tensor) -> None:
        if self._observe_inputs and x.numel():
            m = float(x.detach().max())
            self._input_max = m if self._input_max is None else max(self._input_max, m)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Integer-valued inputs (same shape) and the value of one integer step."""
        spec = self.input_spec
        self.encode_observe(x)
        if spec.kind == "spike":  # one pass when all is well
            if not torch.equal(x * x, x):  # x * x == x exactly for 0 and 1 only (one fused pass)
                self._check_nonnegative(x)
                bad = x[(x != 0) & (x != 1)].reshape(-1)[0].item()
                raise ValueError(
                    f"crossbar layer {self.name!r} expects binary spikes (0 or 1) from the neuron before it, got {bad:.4g}"
                )
            return x, 1.0
        self._check_nonnegative(x)
        if spec.scale is None:
            raise CalibrationError(
                f"crossbar layer {self.name!r} takes analog inputs whose range is not calibrated yet; "
                "pass calibration data to imcsim.convert(..., calibration=x) or call imcsim.calibrate(model, x)"
            )
        top = 2**spec.bits - 1
        return torch.clamp(torch.round(x / spec.scale), 0, top), spec.scale

    def _check_nonnegative(self, x: torch.Tensor) -> None:
        if x.numel() and bool((x < 0).any()):
            raise ValueError(
                f"crossbar layer {self.name!r}: inputs must be >= 0 (a row can only be driven with a "
                f"non-negative voltage), got min {x.min().item():.4g}; rescale the data to [0, 1] or keep "
                "this layer digital (convert(..., exclude=[name]))"
            )

    # ----------------------------------------------------------------- the read
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"crossbar layer {self.name!r} expects inputs (vectors, {self.in_features}), got {tuple(x.shape)}"
            )
        if self._digital:  # calibration pass: exact digital product, inputs observed
            self.encode_observe(x)
            return x @ (self.w_int.to(x.dtype) * self.w_scale.to(x.dtype).unsqueeze(1)).t()
        x_int, step = self.encode(x.to(torch.float32))
        return self._compute(x_int, self.w_scale * step).to(x.dtype)

    def integer_product(self, x_int: torch.Tensor) -> torch.Tensor:
        """(V, out) float64 hardware result of ``w_int @ x_int`` for integer inputs (V, in).

        With an ideal configuration this equals the integer matrix product exactly."""
        return self._compute(x_int, None)

    def _compute(self, x_int: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        """Hardware product for integer inputs; float64 integers, or float32 times ``scale``
        (per output; rounded once, exactly as scaling the float64 result would)."""
        drv = self.driver()
        planes = drv.planes(x_int, validate=False)  # (P, V, in)
        P, V = planes.shape[0], planes.shape[1]
        offset = self.input_offset != 0
        dtype = torch.float64 if scale is None or offset else torch.float32
        y = torch.empty(V, self.out_features, dtype=dtype, device=x_int.device)
        if V == 0:
            return y
        pw = [float(w) for w in drv.plane_weights(dtype=torch.float64)]
        adc = None if self._observer is not None else self.adc()
        chunk = max(1, _CHUNK_ELEMENTS // max(1, self.grid.row_tiles * P * self.G.shape[-1]))
        direct = None if dtype == torch.float64 else scale
        tally = [] if counting_enabled() else None
        for s in range(0, V, chunk):
            self._read(planes[:, s : s + chunk], pw, adc, y[s : s + chunk], direct, tally)
        if tally is not None:
            tally = torch.stack(tally).sum(0).tolist() if tally else [0.0] * 4
        if offset:
            y -= self.input_offset * x_int.sum(dim=1, dtype=torch.float64).unsqueeze(1)
        if scale is not None and direct is None:
            y = (y * scale.double()).float()
        if tally is None:
            return y
        conversions = tally[1] * self.conversion_columns
        Tc = self.grid.col_tiles
        self.events.add(
            vectors=V,
            vector_reads=tally[3],
            tile_reads=tally[1] * Tc,
            active_rows=tally[0] * Tc,  # every column tile drives its own copy of a row
            adc_conversions=conversions,
            shift_adds=conversions,
            accumulations=tally[2] * self.out_features,
            outputs=V * self.out_features,
            input_bits=V * self.in_features * drv.bits,
        )
        return y

    def _read(self, planes, pw, adc, dest, scale=None, tally=None):
        """One chunk of reads: (P, V, in) planes -> ``dest`` (V, out): float64 integer-unit
        results, or float32 results times ``scale`` when given."""
        P, V = planes.shape[0], planes.shape[1]
        Tr, R = self.grid.row_tiles, self.grid.rows
        pad = Tr * R - self.in_features
        X = F.pad(planes, (0, pad)) if pad else planes
        Xt = X.reshape(P * V, Tr, R).transpose(0, 1)  # (Tr, P*V, R)
        if Tr > 1:
            Xt = Xt.contiguous()
        if tally is not None:
            tally.append(self._tally(Xt))
        # Without autograd the ADC runs in place on output codes: the conductances are
        # pre-divided by the ADC step, and the step is applied in the shift-add.
        fast_adc = adc is not None and not (torch.is_grad_enabled() and Xt.requires_grad)
        G, unit = (self._adc_matrix(adc), adc.lsb) if fast_adc else (self.G, 1.0)
        if fast_adc:  # reuse one output buffer across chunks and calls (no page faults)
            Y = torch.bmm(Xt, G, out=self._workspace(Xt.shape[0], Xt.shape[1], G.shape[-1], G))
        else:
            Y = torch.bmm(Xt, G)  # (Tr, P*V, columns): column currents, in units of `unit`
        if self.G_sq is not None:
            var = torch.bmm(Xt * Xt, self.G_sq)
            eps = torch.randn(var.shape, generator=self._read_generator(var.device), device=var.device, dtype=var.dtype)
            Y = Y + (self.hw.device.read_noise / unit) * var.sqrt_() * eps
        if self._observer is not None:
            self._observer.update(Y)
        elif fast_adc:
            Y = Y.round_().clamp_(adc.code_min, adc.code_max)
        elif adc is not None:
            Y = adc(Y)
        # Digital accumulation over row tiles, then shift-add of the (polarity, slice) blocks
        # (both linear, so in this order; integer codes stay exact within the bound).
        out = self.out_features
        dtype = torch.float32 if self._exact32 else torch.float64
        S = (Y[0] if Tr == 1 else Y.sum(0, dtype=dtype)).view(P * V, -1, out)
        w = self._col_weights
        Z = S[:, 0].to(dtype) * (w[0] * unit)
        for j in range(1, len(w)):
            Z.add_(S[:, j], alpha=w[j] * unit)
        Z = Z.view(P, V, out)
        if scale is not None and P == 1 and pw[0] == 1 and Z.dtype == torch.float32:
            torch.mul(Z[0], scale, out=dest)  # exact product rounded once, as via float64
            return
        y = Z[0].double() if pw[0] == 1 else Z[0].double() * pw[0]
        for p in range(1, P):  # shift-add of bit planes
            y.add_(Z[p], alpha=pw[p])
        dest.copy_(y if scale is None else y * scale.double())

    @torch.no_grad()
    def _tally(self, Xt) -> torch.Tensor:
        """Counts of one chunk of reads Xt (row tiles, reads, rows), as a tensor (no sync):
        active rows, row-tile reads performed, partial-sum accumulations, reads in time."""
        Tr, PV = Xt.shape[0], Xt.shape[1]
        dac = self.input_spec.kind != "spike" and self.hw.inputs.mode == "dac"
        active = torch.count_nonzero(Xt) if dac else Xt.sum()  # planes hold 0/1 except with a DAC
        if self.hw.skip_zero_reads:
            reads = (Xt.amax(-1) > 0).sum(0)  # (PV,) row tiles with any active row
            counts = [reads.sum(), (reads - 1).clamp(min=0).sum(), (reads > 0).sum()]
        else:
            counts = [torch.tensor(Tr * PV), torch.tensor((Tr - 1) * PV), torch.tensor(PV)]
        return torch.stack([active.double()] + [c.double().to(active.device) for c in counts])

    def _workspace(self, a: int, b: int, c: int, like: torch.Tensor) -> torch.Tensor:
        ws = self._ws
        if ws is None or ws.device != like.device or ws.dtype != like.dtype or ws.numel() < a * b * c:
            ws = self._ws = torch.empty(a * b * c, dtype=like.dtype, device=like.device)
        return ws[: a * b * c].view(a, b, c)

    def _adc_matrix(self, adc: ADC) -> torch.Tensor:
        if self._adc_G is None or self._adc_G[0] != adc.lsb or self._adc_G[1].device != self.G.device:
            self._adc_G = (adc.lsb, self.G / adc.lsb)
        return self._adc_G[1]

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}->{self.out_features}, tiles {self.grid.row_tiles}x{self.grid.col_tiles} of "
            f"{self.grid.rows}x{self.grid.cols}, input {self.input_spec.kind}"
        )


_KEEP = object()


class CrossbarLinear(nn.Module):
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

    def forward(self, x):
        lead = x.shape[:-1]
        y = self.tiles(x.reshape(-1, x.shape[-1]))
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)


class CrossbarConv2d(nn.Module):
    """Crossbar twin of ``nn.Conv2d`` (groups=1, zero padding): unfold -> tiles -> fold."""

    def __init__(self, conv: nn.Conv2d, hw: HardwareConfig, input_spec: InputSpec = InputSpec(), *, seed: int = 0,
                 name: str = "", weight=None, bias=_KEEP):
        super().__init__()
        problem = unsupported_conv(conv)
        if problem:
            raise ValueError(f"cannot map Conv2d {name!r} onto crossbars: {problem}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        weight = conv.weight if weight is None else weight
        bias = conv.bias if bias is _KEEP else bias
        self.tiles = TiledMatrix(weight.detach().reshape(conv.out_channels, -1), hw, input_spec, seed=seed, name=name)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.events = self.tiles.events

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        N, _, H, W = x.shape
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        L = cols.shape[-1]
        y = self.tiles(cols.transpose(1, 2).reshape(N * L, -1))
        Ho = (H + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        Wo = (W + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        y = y.view(N, L, self.out_channels).transpose(1, 2).reshape(N, self.out_channels, Ho, Wo)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y


def unsupported_conv(conv: nn.Conv2d) -> str | None:
    """Why a Conv2d cannot be mapped, or None."""
    if conv.groups != 1:
        return f"groups={conv.groups} (only groups=1 is supported)"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r} (only 'zeros' is supported)"
    if isinstance(conv.padding, str):
        return f"padding={conv.padding!r} (give explicit integers)"
    return None
