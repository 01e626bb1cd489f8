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

    Keeps the running maximum and a bounded, evenly strided sample of |x| (at most
    ``max_samples`` values per update) for percentiles below 100.
    """

    def __init__(self, max_samples: int = 1 << 18):
        self.max_samples = check_int("max_samples", max_samples, low=1)
        self.max = 0.0
        self.count = 0
        self._samples: list[torch.Tensor] = []

    def update(self, x: torch.Tensor) -> None:
        x = check_tensor("observed", x).detach()
        if x.numel() == 0:
            return
        a = x.abs().reshape(-1)
        if not bool(torch.isfinite(a).all()):
            raise ValueError("observed currents must be finite (got NaN or inf)")
        self.max = max(self.max, a.max().item())
        self.count += a.numel()
        stride = max(1, a.numel() // self.max_samples)
        self._samples.append(a[::stride].to("cpu", torch.float64))

    def update_zeros(self, n: int) -> None:
        """Record ``n`` currents of exactly zero (reads of all-zero inputs), without
        materialising them."""
        n = int(n)
        if n <= 0:
            return
        stride = max(1, n // self.max_samples)
        self.count += n
        self._samples.append(torch.zeros(-(-n // stride), dtype=torch.float64))

    def full_scale(self, percentile: float = 100.0) -> float:
        percentile = check_real("percentile", percentile, low=0.0, high=100.0, low_open=True)
        if self.count == 0 or self.max == 0.0:
            raise ValueError("cannot calibrate an ADC range: no nonzero currents were observed")
        if percentile == 100.0:
            return self.max
        s = torch.cat(self._samples)
        k = min(s.numel(), max(1, int(round(percentile / 100.0 * s.numel()))))
        value = torch.kthvalue(s, k).values.item()
        return value if value > 0 else self.max
