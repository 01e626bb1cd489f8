"""Read noise, the ADC and the digital shift-add in one pass over a batch of column currents
on the CPU, compiled with numba when it is installed.

:func:`imcsim.tiles.readout.add_read_noise` followed by :func:`imcsim.tiles.readout.quantize`
writes the reads' normal draws, their noise scales and three ADC passes to memory one after
the other (about a quarter of a noisy VGG9 read's time). The kernels here do the same float32
operations in the same order, element by element, in one pass:

    y    = fma(float32(sigma * eps), sqrt(var), current)     # torch's CPU addcmul_
    code = clamp(rint(float32(y * (1 / lsb))), code_min, code_max)

``eps`` the read's window of the keyed noise stream (:func:`crossbar_models.noise.keyed_stream_normal`),
``sqrt`` correctly rounded (as :func:`imcsim.tiles.readout.sqrt_`), ``rint`` half to even
(as ``torch.round``). :func:`readout_sum` goes on to add each read's codes, times its plane
and slice weights, to its output (the shift-add and accumulation of
:func:`imcsim.tiles.readout.combine_reads`: integer sums, exact in any order). So the results
are bit-identical to the torch stages (tests/test_fused_readout.py compares them); without
numba, on a GPU, in float64 or with the "element" draws the torch stages run.

:func:`row_products` computes the reads' column currents themselves where the inputs are 0
or 1 (:func:`products_readout_sum`: and goes straight on to their codes and sums): the conductance rows a read drives, added in row order (a BLAS product with fused
multiply-adds along the rows gives the same bits: x = 1 adds exactly, x = 0 adds nothing;
equal to torch's products on this machine, tests/test_fused_readout.py).

Units: currents and variances in normalised units (one level step x v_read; variance per
unit sigma**2), codes as integers stored in float32.
"""

from __future__ import annotations

import numpy as np
import torch

from crossbar_models.noise import _WINDOW, normal_stream

_KERNELS: dict | None = None


def _load() -> dict:
    """The numba kernels of :mod:`imcsim.tiles._kernels` ({} when numba does not import or
    cannot compile: the torch stages do the same, slower). Compiled on first use and cached
    on disk by numba (``__pycache__``), so later processes load them (about a second with
    numba's own start-up) instead of compiling them again."""
    try:
        from . import _kernels
    except Exception:  # numba missing, or no writable cache location: the torch stages do the same
        return {}
    return {"noisy": _kernels.noisy, "noisy_codes": _kernels.noisy_codes, "codes": _kernels.codes,
            "codes_sum": _kernels.codes_sum, "grid_keys": _kernels.grid_keys, "paired_keys": _kernels.paired_keys,
            "bin_rows": _kernels.bin_rows, "row_products": _kernels.row_products,
            "products_codes_sum": _kernels.products_codes_sum, "plane_reads_codes_sum": _kernels.plane_reads_codes_sum}


def kernels() -> dict:
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _load()
    return _KERNELS


def available(Y: torch.Tensor, noise: bool, draws: str) -> bool:
    """Whether the fused pass can take these reads: float32 on the CPU, no gradient, numba
    importable, and (with noise) the default stream draws in one window."""
    return (Y.device.type == "cpu" and Y.dtype == torch.float32 and not Y.requires_grad
            and (not noise or (draws == "stream" and Y.shape[-1] <= _WINDOW)) and bool(kernels()))


def _rows(t: torch.Tensor) -> np.ndarray:
    """(..., KO) contiguous float32 tensor as a 2-d NumPy view (rows, KO)."""
    return t.reshape(-1, t.shape[-1]).numpy()


def readout(cur: torch.Tensor, var: torch.Tensor | None, keys: torch.Tensor | None, sigma: float,
            adc_scale: tuple[float, float, float] | None, keep: bool = False) -> torch.Tensor:
    """Noisy (when ``keys`` is given) and quantised (when ``adc_scale`` = (1/lsb as float32,
    code_min, code_max) is given) currents of reads ``cur`` (..., n, KO) with noise variances
    ``var`` (same shape) keyed per read by int32 ``keys`` (..., n). In place on ``cur``
    (returned), or on a copy with ``keep``. Call only where :func:`available` says so."""
    k = kernels()
    y = cur.clone(memory_format=torch.contiguous_format) if keep else cur.contiguous()
    Y = _rows(y)
    if keys is not None:
        kk = keys.contiguous().reshape(-1).numpy()
        st = normal_stream(cur.device).numpy()
        v = _rows(var.contiguous())
        if adc_scale is None:
            k["noisy"](Y, v, kk, st, np.float32(sigma))
        else:
            inv, lo, hi = adc_scale
            k["noisy_codes"](Y, v, kk, st, np.float32(sigma), np.float32(inv), np.float32(lo), np.float32(hi))
    elif adc_scale is not None:
        inv, lo, hi = adc_scale
        k["codes"](Y, np.float32(inv), np.float32(lo), np.float32(hi))
    return y


def readout_sum(cur: torch.Tensor, var: torch.Tensor | None, keys: torch.Tensor | None, sigma: float,
                adc_scale: tuple[float, float, float], dst: torch.Tensor, row_w: torch.Tensor,
                col_w: list[float], acc: torch.Tensor) -> None:
    """The ADC codes of reads ``cur`` (..., n, KO) (noisy when ``keys`` is given, as
    :func:`readout`) summed straight into ``acc`` (rows, og) float32: read i adds
    row_w[i] * sum_k col_w[k] * code[i, k*og:(k+1)*og] to row dst[i] -- the digital
    shift-add and accumulation (:func:`imcsim.tiles.readout.combine_reads`) without writing
    the codes to memory; ``cur`` is left unchanged. The caller makes sure every sum stays
    an integer below 2**24 (exact in float32), so the result equals summing in any other
    order."""
    k = kernels()
    inv, lo, hi = adc_scale
    c = _rows(cur.contiguous())
    noisy = keys is not None
    v = _rows(var.contiguous()) if noisy else c
    kk = keys.contiguous().reshape(-1).numpy() if noisy else np.zeros(1, np.int32)
    k["codes_sum"](c, v, kk, normal_stream(cur.device).numpy(), np.float32(sigma), noisy, np.float32(inv),
                   np.float32(lo), np.float32(hi), dst.contiguous().numpy(), row_w.to(torch.float32).contiguous().numpy(),
                   np.asarray(col_w, dtype=np.float32), acc.numpy())


def observe(observer, Y: torch.Tensor, mask: torch.Tensor | None = None) -> bool:
    """Add the magnitudes of reads ``Y`` (..., n, KO) -- only the reads where ``mask``
    (..., n) is set, when given -- to a :class:`crossbar_models.adc.RangeObserver`: the
    largest magnitude from each read's largest and smallest current (two vectorised
    reductions; NaN propagates), then one compiled binning pass. The same counts as
    ``observer.update(Y[mask])`` without its five temporary copies. False, with nothing
    added, where the binning cannot run (not float32 / float64 on the CPU, or no numba):
    then the caller uses ``observer.update``."""
    k = kernels()
    if not k or Y.device.type != "cpu" or Y.dtype not in (torch.float32, torch.float64) or Y.requires_grad \
            or observer.histogram.device.type != "cpu":
        return False
    if not Y.numel():
        return True
    rows = Y.reshape(-1, Y.shape[-1])
    keep = None if mask is None else mask.reshape(-1).contiguous()
    hi, lo = rows.amax(-1), rows.amin(-1)
    if keep is not None:
        hi, lo = hi[keep], lo[keep]
    if not hi.numel():
        return True
    top = hi.max().item()  # NaN when any kept read has one (amax and max propagate it)
    if top == top:
        top = abs(max(top, -lo.min().item()))
    if observer.admit(top, hi.numel() * rows.shape[1]):
        R = rows.contiguous().numpy()
        k["bin_rows"](R, np.zeros(0, np.bool_) if keep is None else keep.numpy(), R.dtype.type(observer.bin_scale),
                      observer.histogram.numpy())
    return True


def row_keys(vector_keys: torch.Tensor, offsets: torch.Tensor, seed: int, t: torch.Tensor, p: torch.Tensor,
             v: torch.Tensor, paired: bool) -> torch.Tensor | None:
    """:func:`imcsim.tiles.readout.read_keys` of the reads (tile t, plane p, vector v) in one
    compiled loop: ``offsets`` (tiles, planes) int64, ``vector_keys`` (vectors,); (len(t),
    len(p)) int32 keys, or (``paired``) (len(t),) for reads (t[k], p[k], v[k]). None where
    the loop cannot run (not on the CPU, or no numba): then read_keys does it."""
    k = kernels()
    if not k or offsets.device.type != "cpu":
        return None
    vk = vector_keys.to(torch.int64).contiguous().numpy()
    offs = offsets.to(torch.int64).contiguous().numpy()
    ti, pi, vi = (a.to(torch.int64).contiguous().numpy() for a in (t, p, v))
    s = np.int64(seed & 0xFFFFFFFF)
    if paired:
        out = torch.empty(len(ti), dtype=torch.int32)
        k["paired_keys"](vk, offs, s, ti, pi, vi, out.numpy())
    else:
        out = torch.empty(len(ti), len(pi), dtype=torch.int32)
        k["grid_keys"](vk, offs, s, ti, pi, vi, out.numpy())
    return out


def _product_kernels(X: torch.Tensor, mats: torch.Tensor, x_dtypes=(torch.float32,)) -> dict | None:
    """The kernels, where the compiled products can take reads X (of ``x_dtypes``) and
    matrices mats (float32; both on the CPU, no gradient to keep, numba there); else None."""
    k = kernels()
    if (not k or X.device.type != "cpu" or mats.device.type != "cpu" or X.dtype not in x_dtypes
            or mats.dtype != torch.float32 or X.requires_grad or mats.requires_grad):
        return None
    return k


def row_products(X: torch.Tensor, t: torch.Tensor, mats: torch.Tensor, square: bool = False,
                 work: torch.Tensor | None = None) -> torch.Tensor | None:
    """Column currents (and their read-noise variances) of the reads ``X`` (n, rows)
    float32, read n on tile t[n]: (M, n, KO) with ``mats`` (1|2, tiles, rows, KO) -- the
    conductances and, in mats[1], stored variances; ``square``: mats holds the conductances
    only and the variances are their float32 squares (M = 2). One compiled loop that adds,
    in row order, only the rows a read drives -- a spiking layer's reads drive ~10-20 % of
    them, which a dense product multiplies by zero. None where it cannot run (not float32
    on the CPU, a gradient to keep, or no numba): then the caller multiplies with torch.
    ``work``: a float32 buffer the result is written into (a view of its start) where it is
    large enough, so a caller reading in chunks reuses one block."""
    k = _product_kernels(X, mats)
    if k is None:
        return None
    shape = (mats.shape[0] + int(square), X.shape[0], mats.shape[-1])
    n = shape[0] * shape[1] * shape[2]
    fits = work is not None and work.dtype == torch.float32 and work.is_contiguous() and work.numel() >= n
    out = work[:n].view(shape) if fits else torch.empty(shape, dtype=torch.float32)
    if X.shape[0]:
        k["row_products"](X.contiguous().numpy(), t.to(torch.int64).contiguous().numpy(), mats.contiguous().numpy(),
                          square, out.numpy())
    return out


def products_readout_sum(X: torch.Tensor, t: torch.Tensor, mats: torch.Tensor, keys: torch.Tensor | None,
                         sigma: float, adc_scale: tuple[float, float, float], dst: torch.Tensor,
                         row_w: torch.Tensor, col_w: list[float], acc: torch.Tensor, square: bool = False) -> bool:
    """:func:`row_products` and :func:`readout_sum` in one loop: each read's currents (and
    variances) stay in a scratch row instead of a (2, n, KO) buffer written and read back.
    Bit-identical to the two calls. ``keys`` (n,) int32 or None (no read noise; then
    ``mats`` may hold only the conductances); ``square`` as :func:`row_products`. False, with
    nothing done, where it cannot run (as :func:`row_products`): then the caller takes the
    two steps."""
    k = _product_kernels(X, mats)
    if k is None or acc.dtype != torch.float32:
        return False
    if not X.shape[0]:
        return True
    inv, lo, hi = adc_scale
    noisy = keys is not None
    if noisy and mats.shape[0] < 2 and not square:
        raise ValueError("products_readout_sum: read noise needs the variances (mats[1], or square=True)")
    kk = keys.contiguous().reshape(-1).numpy() if noisy else np.zeros(1, np.int32)
    k["products_codes_sum"](X.contiguous().numpy(), t.to(torch.int64).contiguous().numpy(), mats.contiguous().numpy(),
                            square, kk, normal_stream(X.device).numpy(), np.float32(sigma), noisy, np.float32(inv),
                            np.float32(lo), np.float32(hi), dst.to(torch.int64).contiguous().numpy(),
                            row_w.to(torch.float32).contiguous().numpy(), np.asarray(col_w, dtype=np.float32),
                            acc.numpy())
    return True



_NO_BYTES = np.zeros((0, 0, 0, 0), np.uint8)


def byte_matrices(mats: torch.Tensor) -> torch.Tensor | None:
    """The conductances mats[:1] (1, tiles, rows, KO) as uint8, where they are all small
    non-negative integers -- an ideal array's levels in units of one level step -- and no
    column of a tile can sum past 255 over its rows (rows x largest level <= 255): then a
    read of 0/1 inputs sums bytes, exactly (the same numbers as the float32 sums of these
    integers in any order), with a quarter of the memory traffic and vector additions.
    None otherwise (variation, wires, a finite on/off ratio, or a large sum)."""
    g = mats[0]
    if mats.device.type != "cpu" or not g.numel():
        return None
    head = g.reshape(-1)[:4096]  # a programmed (non-integer) chip shows itself in its first cells
    if not bool((head == head.round()).all()):
        return None
    top = float(g.max())
    if float(g.min()) < 0 or top * g.shape[-2] > 255:
        return None
    b = g.to(torch.uint8)
    flat, bflat = g.reshape(-1), b.view(-1)
    step = 1 << 20  # checked a piece at a time: a whole-layer round() and comparison of VGG9's fc held 80 MB
    if not all(torch.equal(bflat[a:a + step].to(g.dtype), flat[a:a + step]) for a in range(0, flat.numel(), step)):
        return None
    return b.unsqueeze(0)


def plane_reads_readout_sum(x_int: torch.Tensor, bit_serial: bool, planes: int, groups: int,
                            mats: torch.Tensor, square: bool, keys: torch.Tensor | None, offsets: torch.Tensor,
                            seed: int, sigma: float, adc_scale: tuple[float, float, float], plane_w: list[float],
                            col_w: list[float], acc: torch.Tensor,
                            byte_mats: torch.Tensor | None = None) -> tuple[torch.Tensor, int] | None:
    """All reads of integer inputs ``x_int`` (V, groups * in_group; float32 or uint8) in one
    compiled loop: each read's driven rows taken from the inputs themselves (spikes)
    or their bit p (``bit_serial``, ``planes`` bits), then :func:`products_readout_sum` of it, codes
    summed into ``acc`` (V * groups, og) with weight plane_w[p] * col_w[k] -- the same
    sums as building the planes, the row tiles' view and the list of active reads first
    (exact integer sums: order does not matter). ``mats`` (1|2, groups * Tr, rows, KO);
    ``keys`` (V,) the vectors' noise keys or None; row tiles of mats.shape[2] rows (the last
    one of a group may be short); ``offsets`` (groups * Tr, planes) int64
    (:func:`imcsim.tiles.readout.read_offsets`). Returns (any_read (planes, V, groups, Tr)
    bool, driven rows) for the event tally, or None where the loop cannot run (as
    :func:`row_products`, or an ADC range without code 0): then the caller builds the reads.
    ``byte_mats``: mats[:1] as uint8 (:func:`byte_matrices`) or None; noise-free reads of
    0/1 inputs then add bytes -- the same sums, exact integers."""
    k = _product_kernels(x_int, mats, x_dtypes=(torch.float32, torch.uint8))
    inv, lo, hi = adc_scale
    if k is None or acc.dtype != torch.float32 or not lo <= 0.0 <= hi:
        return None
    V = x_int.shape[0]
    Tr = mats.shape[1] // groups
    any_read = torch.empty(planes, V, groups, Tr, dtype=torch.bool)
    if not V:
        return any_read, 0
    noisy = keys is not None
    if noisy and mats.shape[0] < 2 and not square:
        raise ValueError("plane_reads_readout_sum: read noise needs the variances (mats[1], or square=True)")
    vk = keys.to(torch.int64).contiguous().numpy() if noisy else np.zeros(1, np.int64)
    active = k["plane_reads_codes_sum"](
        x_int.contiguous().numpy(), bit_serial, planes, groups, x_int.shape[1] // groups, Tr, mats.shape[2],
        mats.contiguous().numpy(), _NO_BYTES if byte_mats is None else byte_mats.contiguous().numpy(), square, noisy,
        vk, offsets.to(torch.int64).contiguous().numpy(),
        np.int64(seed & 0xFFFFFFFF), normal_stream(x_int.device).numpy(), np.float32(sigma), np.float32(inv),
        np.float32(lo), np.float32(hi), np.asarray(plane_w, dtype=np.float32), np.asarray(col_w, dtype=np.float32),
        acc.numpy(), any_read.view(torch.uint8).numpy())
    return any_read, int(active)
