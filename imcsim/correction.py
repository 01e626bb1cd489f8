"""Post-programming correction of a crossbar layer's outputs (``adc.correction``).

After a chip is programmed and calibrated, its reads of calibration data are compared, output
by output, with the exact integer products of the same inputs, and one digital gain and
offset per output are fitted:

* ``columns``: least squares, measured = gain * exact + offset;
* ``moments``: the measured outputs' mean and spread mapped onto the exact ones'
  (gain = std_measured / std_exact), a re-estimated normalisation.

Later reads are corrected as ``(measured - offset) / gain`` (one multiply and one add per
output value). Quantities are in the layer's integer units (before the digital scale).
"""

from __future__ import annotations

import torch

KINDS = ("columns", "moments")


class CorrectionFit:
    """Running sums of one layer's fit: reads are added in any order and chunking."""

    def __init__(self, kind: str, outputs: int, device=None):
        if kind not in KINDS:
            raise ValueError(f"correction kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = kind
        self.sums = torch.zeros(6, outputs, dtype=torch.float64, device=device)

    def add(self, exact: torch.Tensor, measured: torch.Tensor) -> None:
        """Add reads: exact and measured outputs, both (vectors, outputs)."""
        u, m = exact.double(), measured.double()
        self.sums += torch.stack([torch.ones_like(m).sum(0), u.sum(0), m.sum(0), (u * u).sum(0), (u * m).sum(0),
                                  (m * m).sum(0)])

    def result(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(gain, offset, outputs corrected); an output whose exact products did not vary,
        or that fits a gain below 0.05, keeps gain 1 and offset 0."""
        n, su, sm, suu, sum_, smm = self.sums
        var_u = n * suu - su * su
        if self.kind == "moments":
            slope = torch.sqrt((n * smm - sm * sm).clamp(min=0) / var_u.clamp(min=1e-300))
        else:
            slope = (n * sum_ - su * sm) / var_u.clamp(min=1e-300)
        ok = (var_u > 1e-9 * n * n) & (slope > 0.05) & (n > 1)
        gain = torch.where(ok, slope, torch.ones_like(slope))
        offset = torch.where(ok, (sm - gain * su) / n.clamp(min=1), torch.zeros_like(gain))
        return gain.to(torch.float32), offset.to(torch.float32), int(ok.sum())


def apply_correction(units: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``(units - offset) / gain`` with the outputs along ``dim``."""
    shape = [1] * units.dim()
    shape[dim] = -1
    return (units - offset.view(shape).to(units.dtype)) / gain.view(shape).to(units.dtype)
