"""Keyed (counter-based) random numbers for read noise and stochastic encodings.

A value is a pure function of its *key* -- e.g. (chip, layer, sample, timestep, read,
column) -- not of how many numbers were drawn before it. So a sample's noisy result does not
depend on the batch it was in, on the batch size, on chunking, on which reads were skipped
or on which samples exited early; and it is the same on every device (integer arithmetic,
then a table lookup).

How a normal variate is made:

1. every key part is folded into one 32-bit key per vector with :func:`hash32`, a bijective
   32-bit mixer (xor-shift / multiply, "lowbias32", C. Wellons 2018) -- computed in int64 so
   that no arithmetic overflows;
2. each element of a vector has a fixed pseudo-random 32-bit offset; element ``(v, j)``
   hashes ``key[v] XOR offset[j]`` with the same mixer in int32 (wrapping multiplies) and
   keeps the top 16 bits;
3. those 16 bits index :data:`NORMAL_TABLE`, the 65,536 equiprobable quantiles of N(0, 1)
   (midpoints, rescaled to unit variance).

So the noise is a discretised Gaussian: mean 0, variance 1 (to float32 rounding), exact
quantiles at 65,536 levels, |eps| <= 4.33. A true Gaussian has probability 1.5e-5 beyond
that bound; in a read-noise model this truncation is far below every other modelling
error. Costs about 3 ns per number on one CPU core, against 3.4 ns for ``torch.randn``.

Read noise of whole reads (:func:`keyed_stream_normal`) takes fewer, wider draws: one
keyed position per read in a fixed *stream* of 2**20 values (each of the 65,536 quantiles
16 times, in a fixed hashed order), and the read's columns take the consecutive values from
there. Per number this costs a copy (about 0.3 ns). What it keeps and what it gives up:

* each value is marginally exactly the discretised Gaussian above (the position is uniform
  over the stream and the stream holds every quantile equally often): same mean, variance
  and quantiles;
* within one read the columns take distinct stream entries: their correlation is
  -1/(2**20 - 1) (drawing without replacement), ~1e-6;
* two reads share values only where their windows overlap at the same shift: the same
  column of two reads gets the same value only when their positions coincide
  (probability 2**-20 per pair of reads); otherwise values are those of a random permutation;
* still a pure function of the read's key: independent of batch, chunking, skipped reads
  and device.
"""

from __future__ import annotations

import torch

__all__ = ["NORMAL_TABLE", "STREAM_BITS", "hash32", "fold_key", "element_offsets", "keyed_normal", "keyed_stream_normal",
           "keyed_uniform", "normal_table", "normal_stream"]

_M1 = 0x7FEB352D
_M2 = 0x846CA68B
_MASK = 0xFFFFFFFF


def _as_signed32(c: int) -> int:
    return c - (1 << 32) if c >= 1 << 31 else c


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit mix of the low 32 bits of an integer tensor; int64 in [0, 2**32).

    Works in int64 with masks, so no operation overflows (well defined on every device)."""
    x = x.to(torch.int64) & _MASK  # a new tensor: the steps below update it in place
    x ^= x >> 16
    x.mul_(_M1).bitwise_and_(_MASK)  # < 2**63: no overflow
    x ^= x >> 15
    x.mul_(_M2).bitwise_and_(_MASK)
    x ^= x >> 16
    return x


def fold_key(*parts) -> torch.Tensor:
    """One 32-bit key (int64 tensor in [0, 2**32)) from integer key parts (ints or int
    tensors that broadcast); different tuples of parts give unrelated keys."""
    h = None
    for i, p in enumerate(parts):
        p = torch.as_tensor(p, dtype=torch.int64) if not isinstance(p, torch.Tensor) else p.to(torch.int64)
        lo, hi = p & _MASK, (p >> 32) & _MASK
        step = hash32(lo ^ (0x9E3779B9 * (i + 1) & _MASK)) ^ hash32(hi + 0x632BE5AB)
        h = step if h is None else hash32(h ^ step)
    if h is None:
        raise ValueError("fold_key needs at least one key part")
    return h


def element_offsets(n: int, salt: int = 0, device=None) -> torch.Tensor:
    """(n,) int32 pseudo-random offsets that tell the elements of one keyed vector apart."""
    j = torch.arange(n, dtype=torch.int64, device=device)
    return _to_int32(hash32(hash32(j + 0x5BD1E995) ^ (salt & _MASK)))


def _to_int32(x: torch.Tensor) -> torch.Tensor:
    """Reinterpret [0, 2**32) int64 values as int32 bit patterns."""
    return torch.where(x >= 1 << 31, x - (1 << 32), x).to(torch.int32)


def _mix_top16(keys: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """int32 (..., V, J) top-16-bit hashes of ``keys[..., v] ^ offsets[j]`` (in place work)."""
    h = torch.bitwise_xor(keys.unsqueeze(-1), offsets)
    h ^= (h >> 16) & 0xFFFF  # logical shifts: mask away the sign extension
    h *= _as_signed32(_M1)  # int32 multiplies wrap around (checked by the tests)
    h ^= (h >> 15) & 0x1FFFF
    h *= _as_signed32(_M2)
    h >>= 16  # the final xor-shift of lowbias32 leaves the top 16 bits unchanged
    h &= 0xFFFF
    return h


_TABLES: dict = {}


def normal_table(device=None, dtype=torch.float32) -> torch.Tensor:
    """The 65,536 equiprobable N(0, 1) quantiles, rescaled to unit variance (cached)."""
    key = (str(device), dtype)
    if key not in _TABLES:
        p = (torch.arange(65536, dtype=torch.float64) + 0.5) / 65536
        q = torch.special.ndtri(p)
        q = q / q.pow(2).mean().sqrt()
        _TABLES[key] = q.to(dtype).to(device)
    return _TABLES[key]


NORMAL_TABLE = normal_table()


def keyed_normal(keys: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Standard normal variates ``eps[..., v, j]`` determined by ``keys[..., v]`` (int32,
    e.g. from :func:`fold_key`) and ``offsets[j]`` (int32, :func:`element_offsets`);
    float32, on the keys' device."""
    keys = _to_int32(keys.to(torch.int64)) if keys.dtype != torch.int32 else keys
    idx = _mix_top16(keys, offsets.to(keys.device))
    table = normal_table(keys.device)
    return table.index_select(0, idx.reshape(-1)).view(idx.shape)


def keyed_uniform(keys: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Uniform variates in [0, 1) on a 2**-16 grid, keyed like :func:`keyed_normal`."""
    keys = _to_int32(keys.to(torch.int64)) if keys.dtype != torch.int32 else keys
    return (_mix_top16(keys, offsets.to(keys.device)).to(torch.float32) + 0.5) * (1.0 / 65536)


STREAM_BITS = 20  # the stream holds 2**20 values: 16 of each of the 65,536 quantiles
_WINDOW = 1 << 16  # longest window read from one position; longer reads take several positions
_STREAMS: dict = {}


def normal_stream(device=None, dtype=torch.float32) -> torch.Tensor:
    """The read-noise stream: ``2**STREAM_BITS`` values, every N(0, 1) quantile of
    :func:`normal_table` 16 times in a fixed hashed order, followed by its first 65,536
    values again (so any window of up to 65,536 starting in the stream is contiguous). Cached."""
    key = (str(device), dtype)
    if key not in _STREAMS:
        n = 1 << STREAM_BITS
        # hash32 is a bijection: sorting the hashes of 0..n-1 gives a fixed permutation,
        # the same on every machine and library version (no ties: any sort gives it).
        # Built lean, as it is built during a chip's first noisy read, on top of the read's
        # own temporaries: the hashes a piece at a time into int32 (shifted: the same
        # order), numpy's in-place argsort (no copies of the keys), the values gathered
        # straight into the stream -- about 12 MB at the peak where torch's sort held 32.
        h = torch.empty(n, dtype=torch.int32)
        for a in range(0, n, _WINDOW):
            part = hash32(torch.arange(a, a + _WINDOW, dtype=torch.int64).bitwise_xor_(0x2545F491))
            h[a:a + _WINDOW] = part.sub_(1 << 31)
        order = torch.from_numpy(h.numpy().argsort())
        del h
        stream = torch.empty(n + _WINDOW, dtype=dtype)
        torch.index_select(normal_table(None, dtype), 0, order.remainder_(65536), out=stream[:n])
        del order
        stream[n:] = stream[:_WINDOW]
        _STREAMS[key] = stream.to(device)
    return _STREAMS[key]


def keyed_stream_normal(keys: torch.Tensor, n: int) -> torch.Tensor:
    """Standard normal variates ``eps[..., v, j]`` (j < n) of reads keyed by ``keys[..., v]``
    (int32 or int64 hash values, e.g. from :func:`hash32`): the n stream values from the
    position the key gives (its low STREAM_BITS bits); a read longer than 65,536 takes its
    further windows from positions of re-hashed keys. float32, on the keys' device."""
    stream = normal_stream(keys.device)
    mask = (1 << STREAM_BITS) - 1
    k64 = keys.reshape(-1).to(torch.int64)
    parts = []
    for seg, a in enumerate(range(0, n, _WINDOW)):
        w = min(_WINDOW, n - a)
        start = (k64 if seg == 0 else hash32(k64 ^ (0x68E31DA4 * seg))) & mask
        parts.append(stream.unfold(0, w, 1).index_select(0, start))
    eps = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    return eps.view(*keys.shape, n)
