"""Programming stage: integer weights -> one chip instance's effective conductances -> the
matrices a read multiplies with, in compute order.

Units: conductances in siemens until :func:`read_matrices`, which divides by ``delta_g`` (one
cell level step), so an ideal cell of level k holds k normalised units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crossbar_models import effective_conductance, nominal_wire_base, perturbed_effective_conductance

from ..allocator import release_freed
from ..hardware import HardwareConfig
from ..mapping import TileGrid, level_matrix_u8, slice_weights, tile


@dataclass
class ProgrammedArray:
    """One programmed weight matrix, ready to read (normalised units, float32 unless noted).

    mats: (1 or 2, groups * row tiles, rows, K * out_group) float32: the effective
    conductance G of every cell, the K (polarity, slice) columns of an output next to each
    other (K = 1 per slice for column pairs read by one ADC: their difference). The
    read-noise variance of a driven cell is read_noise**2 * G**2: with read noise
    (``noisy``) a read computes G**2 from G (float32 squares, :func:`read_variances`), except
    for column pairs, whose variance G+**2 + G-**2 is not a function of their difference
    and is held in mats[1] -- so a per-column chip holds one float32 number per cell. None
    where the caller did not keep them (``keep_mats=False``) and the read-out is linear;
    ``mats_shape`` is their shape either way.
    W_lin: (groups, in_group, out_group) effective integer weights of the linear read-out
    (float64 where float32 sums could be inexact; ``lin_exact32`` says which), or None where
    that read-out cannot run (a lossy ADC or read noise).
    col_weights: (K,) float64 digital weight of each column (slice significance x polarity).
    input_offset: digital offset per unit of input (offset mapping, g_off leakage).
    code_bound: the largest |shift-added code| one plane can produce (float32 exactness).
    grad_gain: (out, in_group) IR-drop attenuation of each weight for chip-in-the-loop
    training, or None.
    """

    mats: torch.Tensor | None
    mats_shape: tuple[int, ...]
    noisy: bool
    W_lin: torch.Tensor | None
    lin_exact32: bool
    col_weights: torch.Tensor
    g_off_units: float
    input_offset: float
    code_bound: float
    grad_gain: torch.Tensor | None



def read_variances(mats: torch.Tensor, noisy: bool) -> torch.Tensor | None:
    """(G*Tr, rows, KO) read-noise variance of each driven cell per unit sigma**2 (normalised
    units squared) from the read matrices ``mats`` (:class:`ProgrammedArray`): the stored
    mats[1] of column pairs, else the float32 square of each conductance (a new tensor);
    None without read noise."""
    if not noisy:
        return None
    return mats[1] if mats.shape[0] > 1 else mats[0] * mats[0]


@dataclass
class NominalArray:
    """What every chip instance of one weight matrix shares (``wire_solve = "nominal"``):
    the cell levels of its tiles (uint8, (groups, Tr, Tc, rows, cols)) and the nominal
    array's exact IR-drop solution in the form :func:`perturbed_effective_conductance` takes
    (float32, same shape). Computed once per weight matrix; a new instance then only draws
    its deviations and applies the first-order update."""

    levels: torch.Tensor
    wire_base: torch.Tensor


def programmed_conductances(w_int: torch.Tensor, hw: HardwareConfig, grid: TileGrid, groups: int, seed: int,
                            nominal: NominalArray | None = None, want_attenuation: bool = False):
    """Draw chip ``seed``'s programmed conductances of integer weights w_int (out, in_group)
    and load them with the wires. Returns (M, nominal, att): M (groups, Tr, Tc, rows, cols)
    effective conductances in siemens; nominal the :class:`NominalArray` for
    ``wire_solve = "nominal"`` (computed when None is given, else reused; it must belong to
    these weights), or None; att = (per-cell IR-drop attenuation M / G, cell levels) when
    asked for, else None."""
    dev = hw.device
    reuse = nominal is not None and hw.wire_solve == "nominal" and not hw.wires.is_ideal
    if reuse:
        lv_tiles = nominal.levels
    else:
        og = w_int.shape[0] // groups
        # levels < 256: uint8 before stacking and tiling (int64 copies of a large layer cost GBs)
        levels = torch.stack([level_matrix_u8(w_int[g * og:(g + 1) * og], hw) for g in range(groups)])
        lv_tiles = tile(levels, grid)  # (G, Tr, Tc, rows, cols)
        del levels
    G0 = dev.level_conductance(lv_tiles.to(torch.float64), in_place=True)
    if hw.wire_solve == "nominal" and not hw.wires.is_ideal and not reuse:
        base = nominal_wire_base(G0, hw.wires, precision=hw.wire_precision).to(torch.float32)
        nominal = NominalArray(lv_tiles, base)
    # The targets are programmed over in place: a layer's float64 cells are held once.
    G = dev.program(G0, torch.Generator().manual_seed(seed), in_place=True)
    del G0
    if hw.wires.is_ideal:
        M, nominal = G, None
    elif hw.wire_solve == "nominal":  # the nominal array solved once; each instance a first-order update
        M = perturbed_effective_conductance(G, nominal.wire_base, hw.wires)
    else:
        # (in place unless the attenuation M / G is wanted)
        M, nominal = effective_conductance(G, hw.wires, precision=hw.wire_precision, in_place=not want_attenuation), None
    att = None
    if want_attenuation and not hw.wires.is_ideal:
        att = (torch.where(G > 0, M / G.clamp(min=1e-30), torch.ones_like(M)), lv_tiles.to(M.dtype))
    return M, nominal, att


def row_tile_step(grid: TileGrid, groups: int) -> int:
    """Row tiles per block of :func:`read_matrices` and :func:`program_matrices`: about
    2**19 cells (4 MB in float64), at least one row tile. A block's draws, wire solve and
    reordering hold a few float64 copies of it at once: on VGG9's 4096 x 1024 fc layer
    (64 MB of float32 matrices) the peak above them is 15 MB with blocks of 2**19 cells
    (and tiled levels per block), 27 MB with 2**20, in the same time."""
    return max(1, (1 << 19) // max(1, groups * grid.col_tiles * grid.rows * grid.cols))


def program_matrices(w_int: torch.Tensor, hw: HardwareConfig, grid: TileGrid, groups: int, seed: int, in_group: int,
                     max_input: int, nominal: NominalArray | None = None, want_attenuation: bool = False,
                     keep_mats: bool = True):
    """:func:`programmed_conductances` then :func:`read_matrices`: (ProgrammedArray, nominal).
    ``keep_mats``: as :func:`read_matrices`.

    Where it gives the same bits, a few row tiles at a time (:func:`row_tile_step`): their
    cells' levels, draws (:meth:`DeviceModel.program_pieces`), wire solve and read matrices,
    so a layer's float64 conductances are never held whole (the 4096 x 1024 fc layer of
    VGG9: 134 MB per float64 copy). Not for grouped layers (a block of row tiles is not one
    run of the draws), drifting devices, chip-in-the-loop training (the attenuation M / G
    is wanted) or tiles of other than a multiple of 64 cells: those take the whole layer."""
    dev = hw.device
    if groups != 1 or want_attenuation or dev.drifting or (grid.rows * grid.cols) % 64:
        M, nominal, att = programmed_conductances(w_int, hw, grid, groups, seed, nominal, want_attenuation)
        return read_matrices(lambda a, b: M[:, a:b], hw, grid, groups, in_group, max_input, att, keep_mats), nominal
    wired = not hw.wires.is_ideal
    solve_nominal = wired and hw.wire_solve == "nominal"
    fresh = solve_nominal and nominal is None
    if fresh:
        levels = tile(level_matrix_u8(w_int, hw).unsqueeze(0), grid)  # (1, Tr, Tc, rows, cols)
        nominal = NominalArray(levels, torch.empty(levels.shape, dtype=torch.float32))
    elif solve_nominal:
        levels = nominal.levels
    else:  # each block's levels are tiled as it is programmed (VGG9's fc layer: 17 MB, and 3 copies while tiling)
        levels, nominal = None, None
    program = dev.program_pieces(grid.n_tiles * grid.rows * grid.cols, torch.Generator().manual_seed(seed))

    def block_levels(a: int, b: int) -> torch.Tensor:  # levels[:, a:b] of the whole layer's tiles, uint8
        if levels is not None:
            return levels[:, a:b]
        r0, r1 = a * grid.rows, min(b * grid.rows, grid.in_features)
        rows = TileGrid(r1 - r0, grid.columns, grid.rows, grid.cols, grid.unit)
        return tile(level_matrix_u8(w_int[:, r0:r1], hw).unsqueeze(0), rows)

    def block(a: int, b: int) -> torch.Tensor:  # M[:, a:b] in siemens, float64
        G = dev.level_conductance(block_levels(a, b).to(torch.float64), in_place=True)
        if fresh:
            nominal.wire_base[:, a:b] = nominal_wire_base(G, hw.wires, precision=hw.wire_precision)
        G = program(G)
        if not wired:
            return G
        if solve_nominal:
            return perturbed_effective_conductance(G, nominal.wire_base[:, a:b], hw.wires)
        return effective_conductance(G, hw.wires, precision=hw.wire_precision, in_place=True)

    return read_matrices(block, hw, grid, groups, in_group, max_input, keep_mats=keep_mats), nominal


def read_matrices(blocks, hw: HardwareConfig, grid: TileGrid, groups: int, in_group: int, max_input: int,
                  att=None, keep_mats: bool = True) -> ProgrammedArray:
    """The compute-order matrices of effective conductances M (groups, Tr, Tc, rows, cols)
    in siemens, given as ``blocks(a, b)`` -> ``M[:, a:b]`` (called for consecutive row-tile
    ranges, in order, so M may be computed as it is read); ``max_input``: the largest integer
    input (float32 exactness of the linear read-out); att: (per-cell attenuation, cell
    levels) shaped like M, or None. ``keep_mats=False``: where the read-out is linear
    (lossless, noise-free) the conductance matrices are not built (``mats`` None; the linear
    read-out never reads them, and for a differential chip of two slices they are four
    float32 numbers per weight)."""
    dev = hw.device
    pair = hw.adc.per == "pair"
    Tr, S = grid.row_tiles, hw.slices
    pols = 2 if hw.mapping == "differential" else 1
    og = grid.columns // (pols * S)

    def weight_order(t):  # (G, Tr', Tc, rows, cols) -> (G, Tr', R, og, polarities, slices)
        t = t.movedim(-2, -3)[..., : grid.used_cols]
        n = t.shape[1]
        return t.reshape(groups, n, hw.rows, -1)[..., : grid.columns].reshape(groups, n, hw.rows, og, pols, S)

    cw = slice_weights(hw)
    gain = None if att is None else _gradient_gain(weight_order(att[0]), weight_order(att[1]), cw.abs().view(pols, S),
                                                   in_group)
    noisy = dev.read_noise > 0
    stored = noisy and pair  # a pair's variance G+**2 + G-**2 is held; a column's is G**2, computed when read
    K = S if pair else pols * S
    rows = in_group if Tr == 1 else hw.rows  # a single row tile: undriven rows dropped
    linear = hw.adc.lossless and not noisy  # only then is the linear read-out's matrix used
    shape = (2 if stored else 1, groups * Tr, rows, K * og)
    mats = torch.empty(shape, dtype=torch.float32) if keep_mats or not linear else None
    dest = None if mats is None else mats.view(shape[0], groups, Tr, rows, K, og)
    Wl = torch.empty(groups, Tr, hw.rows, og, dtype=torch.float64) if linear else None
    cw_k = cw[:S] if pair else cw
    # Row tiles a few at a time (about 2**19 cells): the float64 intermediates stay small
    # beside M and mats, and every value is computed as it would be in one pass.
    step = row_tile_step(grid, groups)
    freed = 0  # bytes of float64 blocks since the heap was last trimmed
    for t0 in range(0, Tr, step):
        blk = weight_order(blocks(t0, min(t0 + step, Tr))) / dev.delta_g  # normalised units (a new tensor)
        sq = None
        if pair:  # the ADC sees the difference current of each (G+, G-) column pair
            sq = blk[..., 0, :] ** 2 + blk[..., 1, :] ** 2 if stored else None
            blk = blk[..., 0, :] - blk[..., 1, :]
        else:
            blk = blk.reshape(*blk.shape[:4], pols * S)
        n = blk.shape[1]
        if dest is not None:
            dest[0, :, t0:t0 + n].copy_(blk[:, :, :rows].permute(0, 1, 2, 4, 3))
        if sq is not None:
            dest[1, :, t0:t0 + n].copy_(sq[:, :, :rows].permute(0, 1, 2, 4, 3))
        del sq
        if linear:
            Wl[:, t0:t0 + n] = torch.einsum("gtrok,k->gtro", blk, cw_k)
        freed += 8 * blk.numel()
        del blk
        if release_freed(freed):  # the blocks' float64 intermediates, a few at a time
            freed = 0
    cw = cw_k

    g_off_units = dev.g_off / dev.delta_g
    # Digital removal of input-proportional terms: the offset of offset mapping, and the
    # nominal g_off leakage of every column (cancels in differential pairs and pair ADCs).
    leak = 0.0 if pair else g_off_units * float(cw.sum())
    input_offset = leak + (hw.weight_qmax if hw.mapping == "offset" else 0)
    # Effective weights for the linear read-out: sum_k cw_k Mn_k - offset, (G, in_g, og).
    exact32 = False
    if linear:
        Wl = Wl.reshape(groups, Tr * hw.rows, og)[:, :in_group].sub_(input_offset)  # (in place: one float64 copy)
        step_o = max(1, (1 << 18) // max(1, Wl.shape[0] * Wl.shape[1]))  # |Wl| a few outputs at a time
        l1 = max((float(Wl[..., a:a + step_o].abs().sum(1).max()) for a in range(0, og, step_o)), default=0.0)
        exact32 = l1 * max_input < 2**24
        Wl = Wl.to(torch.float32 if exact32 else torch.float64).contiguous()
    L = 2**dev.bits_per_cell - 1
    return ProgrammedArray(
        mats=mats, mats_shape=shape, noisy=noisy,
        W_lin=Wl, lin_exact32=exact32,
        col_weights=cw.to(torch.float64), g_off_units=g_off_units, input_offset=input_offset,
        code_bound=Tr * (L * rows + g_off_units * rows) * float(cw.abs().sum()), grad_gain=gain)


def _gradient_gain(a_cell, lv, cwa, in_group: int) -> torch.Tensor:
    """(out, in_group) gradient gain of each weight: the attenuation of the cells that hold
    it, weighted by level and slice significance; a zero weight (no cell carries current)
    takes its output's mean gain. Inputs in weight order (G, Tr, R, og, polarities, slices)."""
    G_, Tr, R, og = a_cell.shape[:4]
    num = torch.einsum("gtrops,ps->gtro", a_cell * lv, cwa)
    den = torch.einsum("gtrops,ps->gtro", lv, cwa)
    a = (num / den.clamp(min=1e-30)).reshape(G_, Tr * R, og)[:, :in_group].permute(0, 2, 1)
    held = (den > 0).reshape(G_, Tr * R, og)[:, :in_group].permute(0, 2, 1)
    mean = (a * held).sum(-1, keepdim=True) / held.sum(-1, keepdim=True).clamp(min=1)
    mean = torch.where(held.any(-1, keepdim=True), mean, torch.ones_like(mean))
    return torch.where(held, a, mean).reshape(G_ * og, in_group).to(torch.float32)
