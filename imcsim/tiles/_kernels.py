"""numba kernels of :mod:`imcsim.tiles.fused` (imported only there, and only when numba is
installed): read noise, the ADC and the summing of codes over reads (rows) x columns, and
the reads' noise keys. The noise and ADC kernels work in place on Y (float32) on purpose: a
separate output that may alias the input keeps LLVM from vectorising (its overlap check
fails and the scalar loop runs, about 4x slower)."""

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from crossbar_models.noise import STREAM_BITS

_MASK = (1 << STREAM_BITS) - 1


@intrinsic
def fma32(typingctx, a, b, c):
    """float32 a * b + c with one rounding, as torch's vectorised CPU ``addcmul_`` computes."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return sig, codegen


@njit(nogil=True, cache=True, boundscheck=False)
def noisy(Y, var, keys, stream, sigma):
    """Y[i, j] += sigma * stream[(keys[i] & mask) + j] * sqrt(var[i, j])."""
    n, k = Y.shape
    for i in range(n):
        s = np.int64(keys[i]) & _MASK
        for j in range(k):
            Y[i, j] = fma32(np.float32(sigma * stream[s + j]), np.float32(np.sqrt(var[i, j])), Y[i, j])


@njit(nogil=True, cache=True, boundscheck=False)
def noisy_codes(Y, var, keys, stream, sigma, inv, lo, hi):
    """:func:`noisy`, then the ADC code clamp(rint(Y * inv), lo, hi)."""
    n, k = Y.shape
    for i in range(n):
        s = np.int64(keys[i]) & _MASK
        for j in range(k):
            y = fma32(np.float32(sigma * stream[s + j]), np.float32(np.sqrt(var[i, j])), Y[i, j])
            Y[i, j] = min(max(np.rint(np.float32(y * inv)), lo), hi)


@njit(nogil=True, cache=True, boundscheck=False)
def codes(Y, inv, lo, hi):
    """The ADC code clamp(rint(Y * inv), lo, hi) of noiseless currents."""
    n, k = Y.shape
    for i in range(n):
        for j in range(k):
            Y[i, j] = min(max(np.rint(np.float32(Y[i, j] * inv)), lo), hi)


@njit(nogil=True, cache=True, boundscheck=False)
def codes_sum(Y, var, keys, stream, sigma, noisy, inv, lo, hi, dst, row_w, cw, acc):
    """ADC codes of the rows of Y (n, K*og) (with read noise when ``noisy``, as
    :func:`noisy_codes`), summed with digital weights straight into acc (rows, og):
    acc[dst[i], o] += row_w[i] * sum_k cw[k] * code[i, k*og + o]. Y is left as it was.
    Integer codes and power-of-two weights: every product and partial sum is an integer,
    exact in float32 below 2**24, so the order of the sums does not matter."""
    n, ko = Y.shape
    og = ko // cw.shape[0]
    for i in range(n):
        s = np.int64(keys[i]) & _MASK if noisy else 0
        _add_codes(acc[dst[i]], Y[i], var[i], s, stream, sigma, noisy, inv, lo, hi, row_w[i], cw, og)


@njit(nogil=True, cache=True, inline="always")
def _add_codes(a, y_row, var_row, s, stream, sigma, noisy, inv, lo, hi, rw, cw, og):
    """One read's codes (noisy from stream position s when ``noisy``) times rw * cw[k],
    added to its output row a: the body of :func:`codes_sum`."""
    for k in range(cw.shape[0]):
        w = np.float32(rw * cw[k])
        base = k * og
        for o in range(og):
            c = base + o
            y = y_row[c]
            if noisy:
                y = fma32(np.float32(sigma * stream[s + c]), np.float32(np.sqrt(var_row[c])), y)
            a[o] += w * min(max(np.rint(np.float32(y * inv)), lo), hi)


@njit(nogil=True, cache=True, inline="always")
def _hash32(x):
    """crossbar_models.noise.hash32 on the low 32 bits of x (uint64 arithmetic: the low 32
    bits of each wrapped product are the same) -> int32 bit pattern."""
    x = np.uint64(x) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    return np.int32(np.int64(x) - (np.int64(1) << 32) if x >= np.uint64(1 << 31) else np.int64(x))


@njit(nogil=True, cache=True, boundscheck=False)
def grid_keys(vk, offs, seed, t, p, v, out):
    """out[a, q] = key of the read (tile t[a], plane p[q], vector v[q]): hash32(vk[v[q]] ^
    offs[t[a], p[q]] ^ seed), as imcsim.tiles.readout.read_keys."""
    for a in range(t.shape[0]):
        for q in range(p.shape[0]):
            out[a, q] = _hash32(vk[v[q]] ^ offs[t[a], p[q]] ^ seed)


@njit(nogil=True, cache=True, boundscheck=False)
def paired_keys(vk, offs, seed, t, p, v, out):
    """out[k] = key of the read (tile t[k], plane p[k], vector v[k])."""
    for k in range(t.shape[0]):
        out[k] = _hash32(vk[v[k]] ^ offs[t[k], p[k]] ^ seed)


@njit(nogil=True, cache=True, boundscheck=False)
def bin_rows(Y, keep, scale, hist):
    """hist[min(floor(|Y[i, j]| * scale), bins - 1)] += 1 over the rows i with keep[i] (all
    rows when keep is empty); scale in Y's dtype, so the product is the one torch computes."""
    n, k = Y.shape
    use = keep.shape[0] > 0
    last = hist.shape[0] - 1
    for i in range(n):
        if use and not keep[i]:
            continue
        for j in range(k):
            b = np.floor(abs(Y[i, j]) * scale)
            hist[last if b > last else np.int64(b)] += 1


@njit(nogil=True, cache=True, inline="always")
def _add_driven_rows(x_row, g, g2, cur, var, with_var):
    """One read's products: for each row r with x_row[r] != 0, in row order, cur += x * g[r]
    and (``with_var``) var += x**2 * g2[r]. True when some row was driven."""
    driven = False
    KO = cur.shape[0]
    for r in range(x_row.shape[0]):
        x = x_row[r]
        if x != 0:
            driven = True
            gr = g[r]
            for c in range(KO):
                cur[c] += x * gr[c]
            if with_var:
                x2 = x * x
                gr = g2[r]
                for c in range(KO):
                    var[c] += x2 * gr[c]
    return driven


@njit(nogil=True, cache=True, boundscheck=False)
def row_products(X, t, mats, out):
    """out[0, a] = sum_r X[a, r] * mats[0, t[a], r] and out[1, a] = sum_r X[a, r]**2 *
    mats[1, t[a], r] (the read's column currents and, with read noise, their variances),
    added from zero in row order over the rows with X[a, r] != 0 only. Inputs of 0 and 1
    (spikes, bit planes) make every term a conductance exactly; the sum of a read depends on
    that read alone, not on the batch it is in."""
    M = mats.shape[0]
    for a in range(X.shape[0]):
        ta = t[a]
        out[:, a] = 0.0
        _add_driven_rows(X[a], mats[0, ta], mats[M - 1, ta], out[0, a], out[M - 1, a], M > 1)


@njit(nogil=True, cache=True, boundscheck=False)
def products_codes_sum(X, t, mats, keys, stream, sigma, noisy, inv, lo, hi, dst, row_w, cw, acc):
    """:func:`row_products` of each read into a scratch row, then :func:`codes_sum` of it:
    the same float32 operations in the same order, without writing the reads' currents
    and variances to memory."""
    KO = mats.shape[3]
    og = KO // cw.shape[0]
    M = mats.shape[0]
    cur = np.empty(KO, np.float32)
    var = np.zeros(KO, np.float32)
    zero_code = lo <= 0.0 <= hi  # an undriven read converts to codes 0: nothing to add
    for a in range(X.shape[0]):
        ta = t[a]
        cur[:] = 0.0
        if noisy:
            var[:] = 0.0
        driven = _add_driven_rows(X[a], mats[0, ta], mats[M - 1, ta], cur, var, noisy)
        if not driven and zero_code:
            continue
        s = np.int64(keys[a]) & _MASK if noisy else 0
        _add_codes(acc[dst[a]], cur, var, s, stream, sigma, noisy, inv, lo, hi, row_w[a], cw, og)
