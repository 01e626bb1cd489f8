"""Weights -> integer levels -> cell slices -> conductance tiles, and back.

Pipeline (all integer arithmetic until the conductances):

1. ``quantize_weights``: symmetric uniform quantisation to integers in [-q, q],
   q = 2**(weight_bits-1) - 1, one scale per output channel or per layer.
2. ``weight_levels``: signed integers -> non-negative magnitudes per polarity
   (``differential``: w+ = max(w, 0), w- = max(-w, 0); ``offset``: u = w + q) -> slices of
   ``bits_per_cell`` bits, least significant first.
3. ``level_matrix``: (in_features, columns) with columns ordered (output, polarity, slice),
   so each output's cells sit in adjacent columns.
4. ``tile``: zero-pad to whole tiles and cut into (row_tiles, col_tiles, rows, cols). Padding
   cells are level 0 (g_off) and are never read out.

``reconstruct_weights`` inverts 2-4 for tests: it recovers the integer weights exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .hardware import HardwareConfig


def quantize_weights(W: torch.Tensor, bits: int, granularity: str, dtype: torch.dtype = torch.float64):
    """Return (w_int, scale): ``W ~= w_int * scale[:, None]``, w_int integer-valued in
    ``dtype`` (float64 unless asked; an integer dtype must hold +-(2**(bits-1) - 1)).

    W: (out, in). scale: (out,) float64, equal across rows for ``per_layer``; an all-zero
    row gets scale 1 (its integers are all zero). Computed in float64 a few rows at a time
    (about 2**18 weights): the float64 copies of a whole large layer are many times the
    integers kept (VGG9's 4096 x 1024 fc layer: 34 MB each, against 4 MB of int8).
    """
    if W.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(W.shape)}")
    W = W.detach()
    step = max(1, (1 << 18) // max(1, W.shape[1]))
    pieces = range(0, W.shape[0], step)
    for a in pieces:
        if not bool(torch.isfinite(W[a:a + step]).all()):
            bad = torch.nonzero(~torch.isfinite(W))[0].tolist()
            raise ValueError(f"weight must be finite, got {W[tuple(bad)].item()} at index {tuple(bad)}")
    q = 2 ** (bits - 1) - 1
    # |W|'s maximum per row as max(max W, -min W), exact in any dtype and piece by piece
    amax = torch.cat([torch.maximum(W[a:a + step].amax(dim=1), -W[a:a + step].amin(dim=1)) for a in pieces]
                     ).to(torch.float64) if W.shape[0] else torch.zeros(0, dtype=torch.float64)
    if granularity != "per_channel":
        amax = amax.amax().expand(W.shape[0])
    scale = torch.where(amax > 0, amax / q, torch.ones_like(amax))
    w_int = torch.empty(W.shape, dtype=dtype, device=W.device)
    for a in pieces:
        w_int[a:a + step] = (W[a:a + step].to(torch.float64) / scale[a:a + step, None]).round_().clamp_(-q, q)
    return w_int, scale.clone()


def slice_weights(hw: HardwareConfig) -> torch.Tensor:
    """Digital weight of each of a weight's columns, ordered (polarity, slice): +-2**(k*bpc)."""
    bpc = hw.device.bits_per_cell
    mags = 2.0 ** (bpc * torch.arange(hw.slices, dtype=torch.float64))
    if hw.mapping == "differential":
        return torch.cat([mags, -mags])
    return mags


def weight_levels(w_int: torch.Tensor, hw: HardwareConfig) -> torch.Tensor:
    """(out, in, polarities, slices) int32 cell levels in [0, 2**bits_per_cell - 1] (int32:
    weights have at most 16 bits, and a large layer's copies stay half the size)."""
    w = w_int.to(torch.int32)
    q = hw.weight_qmax
    if hw.mapping == "differential":
        mags = torch.stack([w.clamp(min=0), (-w).clamp(min=0)], dim=-1)
    else:
        mags = (w + q).unsqueeze(-1)
    bpc = hw.device.bits_per_cell
    shifts = bpc * torch.arange(hw.slices, dtype=torch.int32)
    return (mags.unsqueeze(-1) >> shifts) & (2**bpc - 1)


def level_matrix(w_int: torch.Tensor, hw: HardwareConfig) -> torch.Tensor:
    """(in, out * columns_per_weight) int32 levels; column index = (o * P + p) * S + s."""
    lv = weight_levels(w_int, hw)  # (out, in, P, S)
    out, inp = lv.shape[:2]
    return lv.permute(1, 0, 2, 3).reshape(inp, out * hw.columns_per_weight)


def level_matrix_u8(w_int: torch.Tensor, hw: HardwareConfig) -> torch.Tensor:
    """:func:`level_matrix` as uint8 (levels < 256), built about 2**18 weights at a time: the
    int32 intermediates of a whole large layer are many times its size (the 4096 x 1024 fc
    layer of VGG9: ~170 MB at once)."""
    n_out, n_in = w_int.shape
    out = torch.empty(n_in, n_out * hw.columns_per_weight, dtype=torch.uint8, device=w_int.device)
    step = max(1, (1 << 18) // max(1, n_out))
    for a in range(0, n_in, step):
        out[a: a + step] = level_matrix(w_int[:, a: a + step], hw)
    return out


@dataclass(frozen=True)
class TileGrid:
    """How a (in_features x columns) matrix is cut into rows x cols tiles.

    unit: columns that must share a tile (a weight's G+/G- columns when the ADC converts
    their difference); a tile then holds ``used_cols = (cols // unit) * unit`` columns and
    leaves the rest empty, so no group straddles two tiles."""

    in_features: int
    columns: int
    rows: int
    cols: int
    unit: int = 1

    def __post_init__(self):
        if self.unit > self.cols:
            raise ValueError(f"{self.unit} columns must share one tile, but a tile has only {self.cols} columns")

    @property
    def used_cols(self) -> int:
        return (self.cols // self.unit) * self.unit

    @property
    def row_tiles(self) -> int:
        return -(-self.in_features // self.rows)

    @property
    def col_tiles(self) -> int:
        return -(-self.columns // self.used_cols)

    @property
    def padded_rows(self) -> int:
        return self.row_tiles * self.rows

    @property
    def padded_cols(self) -> int:
        return self.col_tiles * self.cols

    @property
    def n_tiles(self) -> int:
        return self.row_tiles * self.col_tiles


def tile(matrix: torch.Tensor, grid: TileGrid, fill=0) -> torch.Tensor:
    """(..., in, columns) -> (..., row_tiles, col_tiles, rows, cols), padded with ``fill``."""
    lead = matrix.shape[:-2]
    u = grid.used_cols
    padded = torch.full((*lead, grid.padded_rows, grid.col_tiles, grid.cols), fill, dtype=matrix.dtype, device=matrix.device)
    body = torch.full((*lead, grid.in_features, grid.col_tiles * u), fill, dtype=matrix.dtype, device=matrix.device)
    body[..., : grid.columns] = matrix
    padded[..., : grid.in_features, :, :u] = body.view(*lead, grid.in_features, grid.col_tiles, u)
    t = padded.view(*lead, grid.row_tiles, grid.rows, grid.col_tiles, grid.cols)
    return t.movedim(-3, -2).contiguous()


def untile(tiles: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """Inverse of :func:`tile`: (..., row_tiles, col_tiles, rows, cols) -> (..., in, columns)."""
    lead = tiles.shape[:-4]
    full = tiles.movedim(-2, -3).reshape(*lead, grid.padded_rows, grid.col_tiles, grid.cols)[..., : grid.used_cols]
    return full.reshape(*lead, grid.padded_rows, -1)[..., : grid.in_features, : grid.columns]


def reconstruct_weights(levels: torch.Tensor, out_features: int, hw: HardwareConfig) -> torch.Tensor:
    """Integer weights (out, in) from a level matrix (in, out * columns_per_weight)."""
    inp = levels.shape[0]
    lv = levels.to(torch.float64).view(inp, out_features, hw.columns_per_weight)
    w = lv @ slice_weights(hw)  # (in, out)
    if hw.mapping == "offset":
        w = w - hw.weight_qmax
    return w.t()
