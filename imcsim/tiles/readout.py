"""Read-out stages of one batch of tile reads: keyed read noise on the column currents, the
ADC, and the digital shift-add of a weight's columns.

Currents are in normalised units here (one cell level step x v_read); the ADC returns code
x lsb in the same units. A read's noise is a pure function of its key
(:mod:`crossbar_models.noise`), so results do not depend on batching.
"""

from __future__ import annotations

import numpy as np
import torch

from crossbar_models import ADC
from crossbar_models.noise import _to_int32, element_offsets, hash32, keyed_normal, keyed_stream_normal

COLUMN_SALT = 0x2C1B3C6D  # element offsets of the "element" draws (imcsim 0.2.0)
READ_SALT = 0x51ED270B  # offsets of the (tile, plane) reads


def read_offsets(n_reads: int, device=None) -> torch.Tensor:
    """(n_reads,) int64 offsets telling apart the (row tile, plane) reads of one vector."""
    return element_offsets(n_reads, salt=READ_SALT, device=device).to(torch.int64)


def read_keys(vector_keys: torch.Tensor, offsets: torch.Tensor, seed: int) -> torch.Tensor:
    """int32 noise keys of reads: ``vector_keys`` (the vectors' keys, any shape) mixed with the
    reads' (tile, plane) ``offsets`` (broadcasting) and the chip ``seed``."""
    return _to_int32(hash32(vector_keys ^ offsets ^ (seed & 0xFFFFFFFF)))


def add_read_noise(Y: torch.Tensor, var: torch.Tensor, keys: torch.Tensor, sigma: float, draws: str) -> torch.Tensor:
    """Column currents Y (..., n, KO) + sigma * sqrt(var) * eps, eps ~ N(0, 1) keyed by the
    reads' ``keys`` (..., n); var: the currents' noise variance per unit sigma**2. In place
    on Y (returned) and var (overwritten by its square root)."""
    KO = Y.shape[-1]
    if draws == "stream":
        eps = keyed_stream_normal(keys, KO)
    else:  # "element": one hash per (read, column): the draws of imcsim 0.2.0
        eps = keyed_normal(keys, element_offsets(KO, salt=COLUMN_SALT, device=keys.device))
    return Y.addcmul_(eps, sqrt_(var), value=sigma)


def sqrt_(t: torch.Tensor) -> torch.Tensor:
    """In-place square root (returned). On the CPU through NumPy: torch's CPU kernel is
    10-30x slower on zeros (3-6 ns per value against 0.2 here), and every all-zero read has
    variance 0; NumPy's root is also correctly rounded, where torch's CPU kernel is one unit
    in the last place off on some float32 values (docs/reproducibility.md)."""
    if t.device.type == "cpu" and not t.requires_grad:
        a = t.numpy()
        np.sqrt(a, out=a)
        return t
    return t.sqrt_()


def quantize(Y: torch.Tensor, adc: ADC, keep_clipped: bool = False, codes: bool = False):
    """The ADC's output for currents Y (normalised units): code x lsb, the code
    round(Y / lsb) clipped to the code range; in place on Y. Equal to
    :class:`crossbar_models.ADC` bit for bit: float32 multiplies by the float32 reciprocal
    of the step as torch's fake-quantize kernel does (that kernel itself ran 5x slower
    here). codes: return the integer codes themselves (times :func:`code_unit` they are the
    output); the digital shift-add and accumulation then work on integers, as the chip's
    do, and scale once at the end. Returns (output, clipped): clipped is 1.0 where a
    current fell outside the range (kept for chip-in-the-loop training's gradient gate),
    else None."""
    lsb = adc.lsb
    clipped = None
    if keep_clipped:
        clipped = ((Y < (adc.code_min - 0.5) * lsb) | (Y > (adc.code_max + 0.5) * lsb)).to(Y.dtype)
    if Y.dtype == torch.float64:
        Y.div_(lsb)
    else:
        Y.mul_(adc_scale(adc)[0])
    Y.round_().clamp_(adc.code_min, adc.code_max)
    return (Y if codes else Y.mul_(code_unit(adc, Y.dtype))), clipped


def adc_scale(adc: ADC) -> tuple[float, int, int]:
    """(1 / lsb rounded to float32, code_min, code_max): the float32 ADC of :func:`quantize`
    (and of :mod:`imcsim.tiles.fused`), which multiplies by the reciprocal step."""
    return float(torch.tensor(adc.lsb, dtype=torch.float32).reciprocal()), adc.code_min, adc.code_max


def code_unit(adc: ADC, dtype) -> float:
    """The value of one ADC code in normalised units, as :func:`quantize` scales codes in ``dtype``."""
    return adc.lsb if dtype == torch.float64 else float(torch.tensor(adc.lsb, dtype=torch.float32))


def shift_add(Y: torch.Tensor, K: int, og: int, cw: list[float], dtype) -> torch.Tensor:
    """Shift-add of the (polarity, slice) column blocks with digital weights cw:
    (..., K*og) -> (..., og)."""
    z = Y[..., :og].to(dtype) * cw[0]
    for k in range(1, K):
        z.add_(Y[..., k * og:(k + 1) * og], alpha=cw[k])
    return z


def combine_reads(Y: torch.Tensor, block_w: torch.Tensor, cw: list[float], og: int) -> torch.Tensor:
    """The digital side of a layer's dense reads in one pass over them: Y (G, B, V, K*og)
    read results of G groups, B read blocks (row tile x plane) with digital weights
    ``block_w`` (B,), each read's K column blocks with weights ``cw`` -> (V, G, og) =
    sum_b block_w[b] sum_k cw[k] Y[g, b, v, k*og:(k+1)*og]. One batched matrix-vector
    product over the blocks (a single read of Y), then the shift-add of the K slices on
    the B-times smaller result. Exact on integer ADC codes while sums stay below 2**24."""
    G, B, V, KO = Y.shape
    Z = torch.matmul(block_w.to(Y.dtype).view(1, 1, B).expand(G, 1, B), Y.reshape(G, B, V * KO))
    return shift_add(Z.view(G, V, KO), len(cw), og, cw, Z.dtype).transpose(0, 1)
