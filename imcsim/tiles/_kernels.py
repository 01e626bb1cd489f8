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
    for r in range(x_row.shape[0]):  # without branches, as in plane_reads_codes_sum
        x = x_row[r]
        idx[nd] = r
        xs[nd] = x
        unit &= (x == 0) | (x == 1)
        nd += x != 0
    return nd, unit


_BLOCK = 16  # driven rows summed per pass over a read's columns (sums stored and reloaded between passes)


def _row_pass(nv: int, lanes: int):
    """An intrinsic ``f(g, idx, xs, q0, q1, cur, var, c0, first, scaled, sq)`` (``scaled``
    and ``sq`` constant booleans: each pair compiles its own loop) that adds driven rows
    q0 .. q1 - 1 of one read to the nv * lanes columns c0 .. of its sums: for q in order,
    cur[c] += xs[q] * g[idx[q], c] (``scaled``; else + g[idx[q], c]) and, with ``sq``,
    var[c] += xs[q]**2 * g[idx[q], c]**2 -- each product and sum rounded to float32, no
    fused multiply-add: the operations of a scalar loop in the same order -- starting from
    zero (``first``) or from cur and var. The sums stay in nv (2 nv with ``sq``) vector
    registers over the rows and are stored once; a scalar loop's compiled form stores and
    reloads them every few rows, which at 64 columns costs more than the additions. g is
    float32 in C order (rows of contiguous columns); xs and var, where not used, may be any
    float32 array."""
    from llvmlite import ir

    def make_codegen(scaled: bool, sq: bool):
        def codegen(context, builder, sig, args):
            g, ix, xa = (context.make_array(sig.args[i])(context, builder, args[i]) for i in range(3))
            cur, var = (context.make_array(sig.args[i])(context, builder, args[i]) for i in (5, 6))
            q0, q1, c0 = (context.cast(builder, args[i], sig.args[i], types.int64) for i in (3, 4, 7))
            first = context.cast(builder, args[8], sig.args[8], types.boolean)
            i64, i32 = ir.IntType(64), ir.IntType(32)
            vt = ir.VectorType(ir.FloatType(), lanes)
            cbytes = builder.mul(c0, ir.Constant(i64, 4))
            bases = [builder.add(builder.ptrtoint(a.data, i64), cbytes) for a in (cur, var)[: 2 if sq else 1]]

            def vptr(base, k):  # the k-th vector from byte address base
                return builder.inttoptr(builder.add(base, ir.Constant(i64, 4 * lanes * k)), vt.as_pointer())

            def splat(x):
                v = builder.insert_element(ir.Constant(vt, ir.Undefined), x, ir.Constant(i32, 0))
                lane0 = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
                return builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined), lane0)

            zero = ir.Constant(vt, [0.0] * lanes)
            start = [builder.select(first, zero, builder.load(vptr(b, k), align=4)) for b in bases for k in range(nv)]
            pre = builder.block
            head, body, done = (builder.append_basic_block(f"rows.{n}") for n in ("head", "body", "done"))
            builder.branch(head)
            builder.position_at_end(head)
            q = builder.phi(i64)
            q.add_incoming(q0, pre)
            acc = [builder.phi(vt) for _ in start]
            for a, v in zip(acc, start):
                a.add_incoming(v, pre)
            builder.cbranch(builder.icmp_signed("<", q, q1), body, done)
            builder.position_at_end(body)
            r = builder.load(builder.gep(ix.data, [q]))
            stride = builder.extract_value(g.strides, 0)
            row = builder.add(builder.add(builder.ptrtoint(g.data, i64), builder.mul(r, stride)), cbytes)
            if scaled:
                xq = builder.load(builder.gep(xa.data, [q]))
                x, s = splat(xq), splat(builder.fmul(xq, xq))
            vals = [None] * len(acc)
            for k in range(nv):
                e = builder.load(vptr(row, k), align=4)
                vals[k] = builder.fadd(acc[k], builder.fmul(x, e) if scaled else e)
                if sq:
                    e2 = builder.fmul(e, e)
                    vals[nv + k] = builder.fadd(acc[nv + k], builder.fmul(s, e2) if scaled else e2)
            q.add_incoming(builder.add(q, ir.Constant(i64, 1)), builder.block)
            for a, v in zip(acc, vals):
                a.add_incoming(v, builder.block)
            builder.branch(head)
            builder.position_at_end(done)
            for j, b in enumerate(bases):
                for k in range(nv):
                    builder.store(acc[j * nv + k], vptr(b, k), align=4)
            return context.get_dummy_value()
        return codegen

    def typer(typingctx, g, idx, xs, q0, q1, cur, var, c0, first, scaled, sq):
        f32c = types.Array(types.float32, 1, "C")
        if not (g == types.Array(types.float32, 2, "C") and idx == types.Array(types.int64, 1, "C")
                and xs == f32c and cur == f32c and var == f32c and isinstance(first, types.Boolean)
                and all(isinstance(i, types.Integer) for i in (q0, q1, c0))
                and all(isinstance(f, types.BooleanLiteral) for f in (scaled, sq))):
            raise TypeError(f"row sums need float32 C-order g, xs, cur, var, int64 idx and constant flags; got {g}, "
                            f"{idx}, {xs}, {cur}, {var}, {scaled}, {sq}")
        sig = types.void(g, idx, xs, q0, q1, cur, var, c0, first, scaled, sq)
        return sig, make_codegen(scaled.literal_value, sq.literal_value)

    typer.__name__ = f"_rows{nv}x{lanes}"
    return intrinsic(prefer_literal=True)(typer)


_r64, _r16, _r8 = _row_pass(4, 16), _row_pass(1, 16), _row_pass(1, 8)


@njit(nogil=True, cache=True, inline="always")
def _row_sums(g, idx, xs, nd, cur, var, scaled, sq):
    """One read's driven rows idx[:nd] added in row order from zero, each product and sum
    rounded to float32: cur[c] = xs[0] * g[idx[0], c] + xs[1] * g[idx[1], c] + ...
    (``scaled``; else the rows alone: 1 * g is g exactly, one operation per term instead of
    two) and, with ``sq``, in the same pass var[c] = xs[0]**2 * g[idx[0], c]**2 + ... (every
    square rounded to float32: the read-noise variances from the conductances themselves,
    each loaded once for both sums). Up to _BLOCK rows per pass over the columns (the rows
    of a pass are streams the CPU prefetches), 64, 16 or 8 columns at a time in vector
    registers (:func:`_row_pass`), the last few columns one by one. Without ``sq``, var may
    be any float32 array; unscaled, xs too. ``scaled`` and ``sq`` are constants at every
    call (inlined, each pair compiles its own loop without branches)."""
    n = cur.shape[0]
    q0 = 0
    while True:
        q1 = min(q0 + _BLOCK, nd)
        first = q0 == 0
        c = 0
        while c + 64 <= n:
            _r64(g, idx, xs, q0, q1, cur, var, c, first, scaled, sq)
            c += 64
        while c + 16 <= n:
            _r16(g, idx, xs, q0, q1, cur, var, c, first, scaled, sq)
            c += 16
        if c + 8 <= n:
            _r8(g, idx, xs, q0, q1, cur, var, c, first, scaled, sq)
            c += 8
        if c < n:
            if first:
                cur[c:] = 0.0
                if sq:
                    var[c:] = 0.0
            for q in range(q0, q1):
                row = g[idx[q]]
                x = xs[q] if scaled else np.float32(1.0)
                s = x * x
                for k in range(c, n):
                    a = row[k]
                    cur[k] += x * a if scaled else a
                    if sq:
                        var[k] += s * (a * a) if scaled else a * a
        q0 = q1
        if q0 >= nd:
            return


def _byte_pass(nv: int):
    """An intrinsic ``f(g, idx, nd, out, c0)``: out[c] = g[idx[0], c] + ... + g[idx[nd - 1], c]
    for the nv * 64 columns c0 .. of a uint8 matrix g (C order), in nv vector registers of
    64 bytes. The caller makes sure no sum exceeds 255 (the sums are then exact integers, in
    any order): a quarter of the bytes and additions of float32 sums."""
    from llvmlite import ir

    def codegen(context, builder, sig, args):
        g, ix, _, out = (context.make_array(sig.args[i])(context, builder, args[i]) if i != 2 else None
                         for i in range(4))
        nd = context.cast(builder, args[2], sig.args[2], types.int64)
        c0 = context.cast(builder, args[4], sig.args[4], types.int64)
        i64 = ir.IntType(64)
        vt = ir.VectorType(ir.IntType(8), 64)

        def vptr(base, k):
            return builder.inttoptr(builder.add(base, ir.Constant(i64, 64 * k)), vt.as_pointer())

        pre = builder.block
        head, body, done = (builder.append_basic_block(f"bytes.{n}") for n in ("head", "body", "done"))
        builder.branch(head)
        builder.position_at_end(head)
        q = builder.phi(i64)
        q.add_incoming(ir.Constant(i64, 0), pre)
        acc = [builder.phi(vt) for _ in range(nv)]
        for a in acc:
            a.add_incoming(ir.Constant(vt, [0] * 64), pre)
        builder.cbranch(builder.icmp_signed("<", q, nd), body, done)
        builder.position_at_end(body)
        r = builder.load(builder.gep(ix.data, [q]))
        stride = builder.extract_value(g.strides, 0)
        row = builder.add(builder.add(builder.ptrtoint(g.data, i64), builder.mul(r, stride)), c0)
        vals = [builder.add(acc[k], builder.load(vptr(row, k), align=1)) for k in range(nv)]
        q.add_incoming(builder.add(q, ir.Constant(i64, 1)), builder.block)
        for a, v in zip(acc, vals):
            a.add_incoming(v, builder.block)
        builder.branch(head)
        builder.position_at_end(done)
        base = builder.add(builder.ptrtoint(out.data, i64), c0)
        for k in range(nv):
            builder.store(acc[k], vptr(base, k), align=1)
        return context.get_dummy_value()

    def typer(typingctx, g, idx, nd, out, c0):
        if not (g == types.Array(types.uint8, 2, "C") and idx == types.Array(types.int64, 1, "C")
                and out == types.Array(types.uint8, 1, "C") and isinstance(nd, types.Integer)
                and isinstance(c0, types.Integer)):
            raise TypeError(f"byte sums need a uint8 C-order g and out and int64 idx; got {g}, {idx}, {out}")
        return types.void(g, idx, nd, out, c0), codegen

    typer.__name__ = f"_bytes{nv}"
    return intrinsic(typer)


_b256, _b64 = _byte_pass(4), _byte_pass(1)


@njit(nogil=True, cache=True, inline="always")
def _byte_sums(g, idx, nd, sums, cur):
    """cur[c] = the sum of g[idx[q], c] over a read's nd driven rows, for a uint8 matrix of
    small integers (levels of an ideal array) whose column sums stay below 256: summed in
    bytes (``sums``, a uint8 buffer as long as cur), then written as float32 -- exact, so
    the same numbers as the float32 sums of the same integers in any order."""
    n = cur.shape[0]
    c = 0
    while c + 256 <= n:
        _b256(g, idx, nd, sums, c)
        c += 256
    while c + 64 <= n:
        _b64(g, idx, nd, sums, c)
        c += 64
    if c < n:
        sums[c:] = 0
        for q in range(nd):
            row = g[idx[q]]
            for k in range(c, n):
                sums[k] += row[k]
    for k in range(n):
        cur[k] = np.float32(sums[k])


@njit(nogil=True, cache=True, inline="always")
def _products(g, g2, square, idx, xs, nd, unit, cur, var, with_var):
    """The products of one read's nd driven rows (idx, xs: :func:`_driven`): its column
    currents into cur and (``with_var``) their variances into var, from the squares of g
    (``square``) or from the matrix g2 of stored variances (xs is then squared in place).
    ``unit``: every xs is 1 (the sums then skip the multiplications by 1; same bits)."""
    # constant flags at each call: each inlined copy of _row_sums compiles without branches
    if unit:
        if with_var and square:
            _row_sums(g, idx, xs, nd, cur, var, False, True)
            return
        _row_sums(g, idx, xs, nd, cur, var, False, False)
        if with_var:
            _row_sums(g2, idx, xs, nd, var, var, False, False)
        return
    if with_var and square:
        _row_sums(g, idx, xs, nd, cur, var, True, True)
        return
    _row_sums(g, idx, xs, nd, cur, var, True, False)
    if with_var:
        for q in range(nd):
            xs[q] = xs[q] * xs[q]
        _row_sums(g2, idx, xs, nd, var, var, True, False)


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
def plane_reads_codes_sum(Xv, bit_serial, P, groups, in_g, Tr, R, mats, bmats, square, noisy, vk, offs, seed, stream,
                          sigma, inv, lo, hi, pw, cw, acc, any_read):
    """Every read of the vectors Xv (V, groups * in_g) (integer values, float32 or uint8): the
    driven rows of plane p of row tile t of group g -- the inputs themselves (spikes) or
    their bit p (``bit_serial``) at rows g*in_g + t*R ... -- their products (as
    :func:`row_products`), noisy codes keyed hash32(vk[v] ^ offs[g*Tr + t, p] ^ seed) (as
    :func:`grid_keys`) and their sum, times pw[p] * cw[k], into acc[v * groups + g]. The
    planes, the tile view and the list of reads are never built. any_read (P, V, groups,
    Tr) is set where a read drives some row; returns the number of driven rows. Only for
    ADCs whose range holds code 0 (an undriven read adds nothing). ``bmats`` (uint8, the
    shape of mats[:1], or empty): the same matrices as bytes, for noise-free reads of 0/1
    inputs whose column sums stay below 256 (:func:`_byte_sums`)."""
    KO = mats.shape[3]
    use_bytes = bmats.shape[0] > 0 and not noisy
    sums = np.zeros(KO, np.uint8)
    og = KO // cw.shape[0]
    M = mats.shape[0]
    cur = np.empty(KO, np.float32)
    var = np.zeros(KO, np.float32)
    idx = np.empty((P, R), np.int64)
    xs = np.empty((P, R), np.float32)
    nds = np.zeros(P, np.int64)
    nz = np.empty(R, np.int64)
    nzx = np.empty(R, np.int64)
    active = 0
    for g in range(groups):  # tile by tile: a tile's conductances stay in cache while its reads run
        for t in range(Tr):
            base = g * in_g + t * R
            n = min(R, in_g - t * R)
            for v in range(Xv.shape[0]):
                xv = Xv[v]
                nds[:] = 0
                unit = True  # bit planes are 0/1; spikes usually are
                # Without branches: every row is written at the list's end, which moves on
                # only where the row is driven (a branch on random bits is mispredicted
                # about half the time; the half-width VGG9 QNN's plane loop: -10 %).
                if bit_serial:
                    m = 0  # the rows with a nonzero input, then plane by plane those with bit p
                    for r in range(n):
                        xi = np.int64(xv[base + r])
                        nz[m] = r
                        nzx[m] = xi
                        m += xi != 0
                    for p in range(P):
                        nd = 0
                        for j in range(m):
                            idx[p, nd] = nz[j]
                            nd += (nzx[j] >> p) & 1
                        nds[p] = nd
                else:
                    nds[0], unit = _driven(xv[base:base + n], idx[0], xs[0])
                ta = g * Tr + t
                for p in range(P):
                    nd = nds[p]
                    if nd == 0:
                        any_read[p, v, g, t] = 0
                        continue
                    any_read[p, v, g, t] = 1
                    active += nd
                    if use_bytes and unit:
                        _byte_sums(bmats[0, ta], idx[p], nd, sums, cur)
                    else:
                        _products(mats[0, ta], mats[M - 1, ta], square, idx[p], xs[p], nd, unit, cur, var, noisy)
                    if noisy:
                        s = np.int64(_hash32(vk[v] ^ offs[ta, p] ^ seed)) & _MASK
                        _add_noisy_codes(acc[v * groups + g], cur, var, s, stream, sigma, inv, lo, hi, pw[p], cw, og)
                    else:
                        _add_plain_codes(acc[v * groups + g], cur, inv, lo, hi, pw[p], cw, og)
    return active
