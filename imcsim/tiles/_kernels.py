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
        if noisy:
            _add_noisy_codes(acc[dst[i]], Y[i], var[i], np.int64(keys[i]) & _MASK, stream, sigma, inv, lo, hi, row_w[i],
                             cw, og)
        else:
            _add_plain_codes(acc[dst[i]], Y[i], inv, lo, hi, row_w[i], cw, og)


@njit(nogil=True, cache=True, inline="always")
def _add_noisy_codes(a, y_row, var_row, s, stream, sigma, inv, lo, hi, rw, cw, og):
    """One read's noisy codes (its noise from stream position s) times rw * cw[k], added to
    its output row a: the body of :func:`codes_sum`. Callers branch on the noise before
    calling this or :func:`_add_plain_codes` (a branch inside these loops is not always
    unswitched by LLVM in a large kernel, and the noisy loop then runs ~1.3x slower)."""
    for k in range(cw.shape[0]):
        w = np.float32(rw * cw[k])
        base = k * og
        for o in range(og):
            c = base + o
            y = fma32(np.float32(sigma * stream[s + c]), np.float32(np.sqrt(var_row[c])), y_row[c])
            a[o] += w * min(max(np.rint(np.float32(y * inv)), lo), hi)


@njit(nogil=True, cache=True, inline="always")
def _add_plain_codes(a, y_row, inv, lo, hi, rw, cw, og):
    """:func:`_add_noisy_codes` without read noise."""
    for k in range(cw.shape[0]):
        w = np.float32(rw * cw[k])
        base = k * og
        for o in range(og):
            a[o] += w * min(max(np.rint(np.float32(y_row[base + o] * inv)), lo), hi)


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
def _driven(x_row, idx, xs):
    """The rows a read drives (x != 0), in row order: their indices into idx, their inputs
    into xs; returns how many, and whether every one of those inputs is 1."""
    nd = 0
    unit = True
    for r in range(x_row.shape[0]):
        x = x_row[r]
        if x != 0:
            idx[nd] = r
            xs[nd] = x
            unit = unit and x == 1
            nd += 1
    return nd, unit


@njit(nogil=True, cache=True, inline="always")
def _sum_rows(g, idx, xs, nd, out):
    """out[c] = 0 + xs[0] * g[idx[0], c] + xs[1] * g[idx[1], c] + ..., added in row order
    (each product and each sum rounded to float32). Four rows per pass over the columns:
    out[c] stays in a register for four additions instead of being stored after each (the
    same operations in the same order, about 1.3x faster)."""
    for c in range(out.shape[0]):
        out[c] = 0.0
    q = 0
    while q + 4 <= nd:
        g0, g1, g2, g3 = g[idx[q]], g[idx[q + 1]], g[idx[q + 2]], g[idx[q + 3]]
        x0, x1, x2, x3 = xs[q], xs[q + 1], xs[q + 2], xs[q + 3]
        for c in range(out.shape[0]):
            out[c] = (((out[c] + x0 * g0[c]) + x1 * g1[c]) + x2 * g2[c]) + x3 * g3[c]
        q += 4
    while q < nd:
        g0, x0 = g[idx[q]], xs[q]
        for c in range(out.shape[0]):
            out[c] += x0 * g0[c]
        q += 1


@njit(nogil=True, cache=True, inline="always")
def _sum_rows_sq(g, idx, xs, nd, cur, var):
    """:func:`_sum_rows` into cur and, in the same pass, var[c] = 0 + xs[0]**2 * g[idx[0], c]**2
    + ... (every square rounded to float32): the read-noise variances from the conductances
    themselves, each loaded once for both sums."""
    for c in range(cur.shape[0]):
        cur[c] = 0.0
        var[c] = 0.0
    q = 0
    while q + 4 <= nd:
        g0, g1, g2, g3 = g[idx[q]], g[idx[q + 1]], g[idx[q + 2]], g[idx[q + 3]]
        x0, x1, x2, x3 = xs[q], xs[q + 1], xs[q + 2], xs[q + 3]
        s0, s1, s2, s3 = x0 * x0, x1 * x1, x2 * x2, x3 * x3
        for c in range(cur.shape[0]):
            a0, a1, a2, a3 = g0[c], g1[c], g2[c], g3[c]
            cur[c] = (((cur[c] + x0 * a0) + x1 * a1) + x2 * a2) + x3 * a3
            var[c] = (((var[c] + s0 * (a0 * a0)) + s1 * (a1 * a1)) + s2 * (a2 * a2)) + s3 * (a3 * a3)
        q += 4
    while q < nd:
        g0, x0 = g[idx[q]], xs[q]
        s0 = x0 * x0
        for c in range(cur.shape[0]):
            a0 = g0[c]
            cur[c] += x0 * a0
            var[c] += s0 * (a0 * a0)
        q += 1


@njit(nogil=True, cache=True, inline="always")
def _sum_unit_rows(g, idx, nd, out):
    """:func:`_sum_rows` where every input is 1 (a spike, a bit of a plane): 1 * g is g
    exactly, so adding g alone gives the same bits with one operation per term instead of
    two."""
    for c in range(out.shape[0]):
        out[c] = 0.0
    q = 0
    while q + 4 <= nd:
        g0, g1, g2, g3 = g[idx[q]], g[idx[q + 1]], g[idx[q + 2]], g[idx[q + 3]]
        for c in range(out.shape[0]):
            out[c] = (((out[c] + g0[c]) + g1[c]) + g2[c]) + g3[c]
        q += 4
    while q < nd:
        g0 = g[idx[q]]
        for c in range(out.shape[0]):
            out[c] += g0[c]
        q += 1


@njit(nogil=True, cache=True, inline="always")
def _sum_unit_rows_sq(g, idx, nd, cur, var):
    """:func:`_sum_rows_sq` where every input is 1: the same bits (1 * g and 1 * g**2 are
    exact), three operations per term instead of five."""
    for c in range(cur.shape[0]):
        cur[c] = 0.0
        var[c] = 0.0
    q = 0
    while q + 4 <= nd:
        g0, g1, g2, g3 = g[idx[q]], g[idx[q + 1]], g[idx[q + 2]], g[idx[q + 3]]
        for c in range(cur.shape[0]):
            a0, a1, a2, a3 = g0[c], g1[c], g2[c], g3[c]
            cur[c] = (((cur[c] + a0) + a1) + a2) + a3
            var[c] = (((var[c] + a0 * a0) + a1 * a1) + a2 * a2) + a3 * a3
        q += 4
    while q < nd:
        g0 = g[idx[q]]
        for c in range(cur.shape[0]):
            a0 = g0[c]
            cur[c] += a0
            var[c] += a0 * a0
        q += 1


@njit(nogil=True, cache=True, inline="always")
def _products(g, g2, square, idx, xs, nd, unit, cur, var, with_var):
    """The products of one read's nd driven rows (idx, xs: :func:`_driven`): its column
    currents into cur and (``with_var``) their variances into var, from the squares of g
    (``square``) or from the matrix g2 of stored variances (xs is then squared in place).
    ``unit``: every xs is 1 (the sums then skip the multiplications by 1; same bits)."""
    if unit:
        if with_var and square:
            _sum_unit_rows_sq(g, idx, nd, cur, var)
            return
        _sum_unit_rows(g, idx, nd, cur)
        if with_var:
            _sum_unit_rows(g2, idx, nd, var)
        return
    if with_var and square:
        _sum_rows_sq(g, idx, xs, nd, cur, var)
        return
    _sum_rows(g, idx, xs, nd, cur)
    if with_var:
        for q in range(nd):
            xs[q] = xs[q] * xs[q]
        _sum_rows(g2, idx, xs, nd, var)


@njit(nogil=True, cache=True, inline="always")
def _read_products(x_row, g, g2, square, idx, xs, cur, var, with_var):
    """:func:`_driven` rows of one read, then their :func:`_products`. Returns the number of
    driven rows."""
    nd, unit = _driven(x_row, idx, xs)
    _products(g, g2, square, idx, xs, nd, unit, cur, var, with_var)
    return nd


@njit(nogil=True, cache=True, boundscheck=False)
def row_products(X, t, mats, square, out):
    """out[0, a] = sum_r X[a, r] * G[r] and, when out has two slots, out[1, a] = sum_r
    X[a, r]**2 * V[r] (the read's column currents and their read-noise variances), G =
    mats[0, t[a]], V = G**2 in float32 (``square``) or the stored mats[1, t[a]]; added from
    zero in row order over the rows with X[a, r] != 0 only. Inputs of 0 and 1 (spikes, bit
    planes) make every term a conductance exactly; the sum of a read depends on that read
    alone, not on the batch it is in."""
    M = mats.shape[0]
    R = X.shape[1]
    idx = np.empty(R, np.int64)
    xs = np.empty(R, np.float32)
    with_var = out.shape[0] > 1
    for a in range(X.shape[0]):
        ta = t[a]
        _read_products(X[a], mats[0, ta], mats[M - 1, ta], square, idx, xs, out[0, a], out[out.shape[0] - 1, a],
                       with_var)


@njit(nogil=True, cache=True, boundscheck=False)
def products_codes_sum(X, t, mats, square, keys, stream, sigma, noisy, inv, lo, hi, dst, row_w, cw, acc):
    """:func:`row_products` of each read into a scratch row, then :func:`codes_sum` of it:
    the same float32 operations in the same order, without writing the reads' currents
    and variances to memory."""
    KO = mats.shape[3]
    og = KO // cw.shape[0]
    M = mats.shape[0]
    R = X.shape[1]
    cur = np.empty(KO, np.float32)
    var = np.zeros(KO, np.float32)
    idx = np.empty(R, np.int64)
    xs = np.empty(R, np.float32)
    zero_code = lo <= 0.0 <= hi  # an undriven read converts to codes 0: nothing to add
    for a in range(X.shape[0]):
        ta = t[a]
        nd = _read_products(X[a], mats[0, ta], mats[M - 1, ta], square, idx, xs, cur, var, noisy)
        if nd == 0 and zero_code:
            continue
        if noisy:
            _add_noisy_codes(acc[dst[a]], cur, var, np.int64(keys[a]) & _MASK, stream, sigma, inv, lo, hi, row_w[a], cw,
                             og)
        else:
            _add_plain_codes(acc[dst[a]], cur, inv, lo, hi, row_w[a], cw, og)


@njit(nogil=True, cache=True, boundscheck=False)
def plane_reads_codes_sum(Xv, bit_serial, P, groups, in_g, Tr, R, mats, square, noisy, vk, offs, seed, stream, sigma,
                          inv, lo, hi, pw, cw, acc, any_read):
    """Every read of the vectors Xv (V, groups * in_g) (integer values, float32 or uint8): the
    driven rows of plane p of row tile t of group g -- the inputs themselves (spikes) or
    their bit p (``bit_serial``) at rows g*in_g + t*R ... -- their products (as
    :func:`row_products`), noisy codes keyed hash32(vk[v] ^ offs[g*Tr + t, p] ^ seed) (as
    :func:`grid_keys`) and their sum, times pw[p] * cw[k], into acc[v * groups + g]. The
    planes, the tile view and the list of reads are never built. any_read (P, V, groups,
    Tr) is set where a read drives some row; returns the number of driven rows. Only for
    ADCs whose range holds code 0 (an undriven read adds nothing)."""
    KO = mats.shape[3]
    og = KO // cw.shape[0]
    M = mats.shape[0]
    cur = np.empty(KO, np.float32)
    var = np.zeros(KO, np.float32)
    idx = np.empty((P, R), np.int64)
    xs = np.empty((P, R), np.float32)
    nds = np.zeros(P, np.int64)
    active = 0
    for g in range(groups):  # tile by tile: a tile's conductances stay in cache while its reads run
        for t in range(Tr):
            base = g * in_g + t * R
            n = min(R, in_g - t * R)
            for v in range(Xv.shape[0]):
                xv = Xv[v]
                nds[:] = 0
                unit = True  # bit planes are 0/1; spikes usually are
                for r in range(n):
                    x = xv[base + r]
                    if x != 0:
                        if bit_serial:
                            xi = np.int64(x)
                            for p in range(P):
                                if (xi >> p) & 1:
                                    idx[p, nds[p]] = r
                                    xs[p, nds[p]] = 1.0
                                    nds[p] += 1
                        else:
                            idx[0, nds[0]] = r
                            xs[0, nds[0]] = x
                            unit = unit and x == 1
                            nds[0] += 1
                ta = g * Tr + t
                for p in range(P):
                    nd = nds[p]
                    if nd == 0:
                        any_read[p, v, g, t] = 0
                        continue
                    any_read[p, v, g, t] = 1
                    active += nd
                    _products(mats[0, ta], mats[M - 1, ta], square, idx[p], xs[p], nd, unit, cur, var, noisy)
                    if noisy:
                        s = np.int64(_hash32(vk[v] ^ offs[ta, p] ^ seed)) & _MASK
                        _add_noisy_codes(acc[v * groups + g], cur, var, s, stream, sigma, inv, lo, hi, pw[p], cw, og)
                    else:
                        _add_plain_codes(acc[v * groups + g], cur, inv, lo, hi, pw[p], cw, og)
    return active
