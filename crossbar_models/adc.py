"""Analog-to-digital conversion of column currents.

A uniform ADC with ``bits`` of resolution maps a current to the nearest of its levels
``k * lsb`` and clips to its range: ``k`` in ``0 .. 2**bits - 1`` (unipolar, for currents of
single columns) or ``-(2**(bits-1) - 1) .. 2**(bits-1) - 1`` (bipolar, for the difference of
a differential column pair). ``lsb = full_scale / k_max``, so 0 and +full_scale are both
levels. Ties round half to even. Inside an autograd graph the ADC is a clipped
straight-through estimator: gradient 1 inside the range, 0 where it clips. Float32
(and lower) inputs use torch's fused fake-quantisation kernel; float64 inputs are quantised
in float64.

The range is either fixed by the designer (``full_scale``) or calibrated from currents
observed on representative inputs (:meth:`ADC.calibrated`, :class:`RangeObserver`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import check_int, check_real, check_tensor

__all__ = ["ADC", "RangeObserver"]

# Accepted full scales (any current unit): inside, the step and the codes are exact in
# float32 and float64; outside, float32 over- or underflows.
MIN_FULL_SCALE, MAX_FULL_SCALE = 1e-30, 1e30


@dataclass(frozen=True)
class ADC:
    """bits: 1..16 (>= 2 when signed); full_scale: largest magnitude converted, in
    [1e-30, 1e30] of whatever current unit the caller uses consistently (amperes, or
    normalised units)."""

    bits: int
    full_scale: float
    signed: bool = False

    def __post_init__(self):
        object.__setattr__(self, "bits", check_int("ADC.bits", self.bits, low=2 if self.signed else 1, high=16))
        object.__setattr__(
            self, "full_scale", check_real("ADC.full_scale", self.full_scale, low=MIN_FULL_SCALE, high=MAX_FULL_SCALE)
        )

    @property
    def code_max(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def code_min(self) -> int:
        return -self.code_max if self.signed else 0

    @property
    def lsb(self) -> float:
        """Size of one quantisation step, in the unit of full_scale."""
        return self.full_scale / self.code_max

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Quantised value of ``x`` (same unit and dtype), clipped to the range."""
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        if x.numel() and not bool(torch.isfinite(x).all()):
            bad = x[~torch.isfinite(x)].reshape(-1)[0].item()
            raise ValueError(f"ADC input must be finite, got {bad}")
        if x.dtype != torch.float64:  # one fused pass; its step is held in float32 like x
            return torch.fake_quantize_per_tensor_affine(x, self.lsb, 0, self.code_min, self.code_max)
        code = torch.round(x / self.lsb)
        q = code.clamp(self.code_min, self.code_max) * self.lsb
        if not x.requires_grad:
            return q
        inside = (code >= self.code_min) & (code <= self.code_max)
        return q.detach() + (x - x.detach()) * inside

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Integer output codes (int64) for ``x``."""
        return torch.round(self(x) / self.lsb).to(torch.int64)

    @classmethod
    def calibrated(cls, bits: int, observed: torch.Tensor, percentile: float = 100.0, signed: bool = False):
        """ADC whose full scale is the given percentile of |observed| currents."""
        obs = RangeObserver()
        obs.update(observed)
        return cls(bits=bits, full_scale=obs.full_scale(percentile), signed=signed)


class RangeObserver:
    """Accumulates magnitudes of observed currents over batches to choose an ADC range.

    Keeps the running maximum and a histogram of |x| with ``bins`` equal bins over [0, R],
    R the smallest power of two >= every magnitude seen: when a larger value arrives, R
    doubles and adjacent bins merge. Since R is a power of two and bins a power of two, the
    histogram (and so every percentile) is the same whatever the order, batching or
    chunking of the observations. A percentile below 100 is the upper edge of the bin that
    holds it (capped at the maximum): at most R / bins above the exact order statistic.
    Memory is ``bins`` counters, whatever the number of observations.
    """

    def __init__(self, bins: int = 1 << 16):
        self.bins = check_int("bins", bins, low=2, high=1 << 24)
        if self.bins & (self.bins - 1):
            raise ValueError(f"bins must be a power of two, got {bins}")
        self.max = 0.0
        self.count = 0
        self.range = 0.0  # R: 0 until a nonzero value is seen
        self._hist = torch.zeros(self.bins, dtype=torch.int64)

    def _grow(self, top: float) -> None:
        new = self.range or 2.0 ** math.ceil(math.log2(top))
        while new < top:
            new *= 2.0
        if new < top or not math.isfinite(new):
            raise ValueError(f"observed currents must be finite, got {top}")
        if self.range:
            while self.range < new:  # double: merge neighbouring bins
                h = self._hist.view(-1, 2).sum(1)
                self._hist = torch.cat([h, torch.zeros_like(h)])
                self.range *= 2.0
        self.range = new

    def update(self, x: torch.Tensor) -> None:
        x = check_tensor("observed", x).detach()
        if x.numel() == 0:
            return
        a = x.abs().reshape(-1)
        if self.admit(a.max().item(), a.numel()):
            # R and bins are powers of two: a * (bins / R) is exact, floor gives the bin
            idx = (a * self.bin_scale).floor_().clamp_(max=self.bins - 1).to(torch.int64)
            self._hist += torch.bincount(idx.cpu(), minlength=self.bins)

    def admit(self, top: float, n: int) -> bool:
        """Account for ``n`` magnitudes whose largest is ``top`` (count, maximum, range);
        True when they still have to be binned -- bin ``min(floor(|x| * bin_scale), bins - 1)``
        of :attr:`histogram` each (an exact product: both are powers of two); all zeros
        are binned here. :meth:`update` is admit + binning; a compiled caller may bin itself."""
        if not math.isfinite(top):  # max propagates NaN
            raise ValueError("observed currents must be finite (got NaN or inf)")
        self.count += n
        if top > self.max:
            self.max = top
        if top == 0.0:
            self._hist[0] += n
            return False
        if top > self.range:
            self._grow(top)
        return True

    @property
    def bin_scale(self) -> float:
        """bins / R: a magnitude times this, floored, is its bin (R > 0 once admitted)."""
        return self.bins / self.range

    @property
    def histogram(self) -> torch.Tensor:
        """The (bins,) int64 counts over [0, R] (the live tensor: a compiled binning adds to it)."""
        return self._hist

    def update_zeros(self, n: int) -> None:
        """Record ``n`` currents of exactly zero (reads of all-zero inputs), without
        materialising them."""
        n = int(n)
        if n <= 0:
            return
        self.count += n
        self._hist[0] += n

    def full_scale(self, percentile: float = 100.0) -> float:
        percentile = check_real("percentile", percentile, low=0.0, high=100.0, low_open=True)
        if self.count == 0 or self.max == 0.0:
            raise ValueError("cannot calibrate an ADC range: no nonzero currents were observed")
        if percentile == 100.0:
            return self.max
        k = min(self.count, max(1, int(round(percentile / 100.0 * self.count))))
        b = int(torch.searchsorted(self._hist.cumsum(0), torch.tensor(k)).item())
        value = min(self.max, (b + 1) * self.range / self.bins)
        return value if b > 0 else self.max
