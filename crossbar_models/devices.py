"""Resistive memory devices: conductance levels, programming variation, read noise, faults.

A cell stores one of ``2**bits_per_cell`` conductance levels spaced uniformly between
``g_off`` and ``g_on`` (siemens). Programming a chip instance perturbs each cell once
(device-to-device variation) and sticks a random subset of cells at ``g_on`` or ``g_off``;
every read then adds cycle-to-cycle read noise. All randomness comes from an explicit
``torch.Generator``: the same seed gives the same chip and the same reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import check_choice, check_int, check_real, check_tensor

__all__ = ["DeviceModel", "column_read_noise"]

VARIATION_KINDS = ("gaussian", "lognormal")


@dataclass(frozen=True)
class DeviceModel:
    """One resistive device technology.

    g_on, g_off: highest / lowest programmable conductance in siemens (0 <= g_off < g_on;
    g_off = 0 means an infinite on/off ratio, only usable without wire resistance).
    bits_per_cell: levels per cell = 2**bits_per_cell (1..8).
    variation: relative programming (device-to-device) spread, >= 0. With ``gaussian`` a
    programmed cell is ``G * (1 + variation * eps)``; with ``lognormal`` it is
    ``G * exp(variation * eps - variation**2 / 2)`` (mean-preserving, ``variation`` is the
    standard deviation of ln G). eps ~ N(0, 1), drawn once per programmed chip.
    read_noise: relative cycle-to-cycle spread of a cell's conductance on every read, >= 0.
    p_stuck_on, p_stuck_off: probability that a cell is stuck at g_on / g_off (sum <= 1).
    """

    g_on: float = 1e-4
    g_off: float = 1e-6
    bits_per_cell: int = 2
    variation: float = 0.0
    variation_kind: str = "gaussian"
    read_noise: float = 0.0
    p_stuck_on: float = 0.0
    p_stuck_off: float = 0.0

    def __post_init__(self):
        s = object.__setattr__
        s(self, "g_on", check_real("DeviceModel.g_on", self.g_on, low=0.0, low_open=True))
        s(self, "g_off", check_real("DeviceModel.g_off", self.g_off, low=0.0))
        if self.g_off >= self.g_on:
            raise ValueError(
                f"DeviceModel.g_off must be < g_on ({self.g_on!r} S), got {self.g_off!r} S"
            )
        s(self, "bits_per_cell", check_int("DeviceModel.bits_per_cell", self.bits_per_cell, low=1, high=8))
        s(self, "variation", check_real("DeviceModel.variation", self.variation, low=0.0))
        check_choice("DeviceModel.variation_kind", self.variation_kind, VARIATION_KINDS)
        s(self, "read_noise", check_real("DeviceModel.read_noise", self.read_noise, low=0.0))
        for name in ("p_stuck_on", "p_stuck_off"):
            s(self, name, check_real(f"DeviceModel.{name}", getattr(self, name), low=0.0, high=1.0))
        if self.p_stuck_on + self.p_stuck_off > 1.0:
            raise ValueError(
                "DeviceModel.p_stuck_on + p_stuck_off must be <= 1, got "
                f"{self.p_stuck_on!r} + {self.p_stuck_off!r}"
            )

    @property
    def levels(self) -> int:
        """Number of programmable conductance levels per cell."""
        return 2**self.bits_per_cell

    @property
    def delta_g(self) -> float:
        """Conductance step between neighbouring levels, siemens."""
        return (self.g_on - self.g_off) / (self.levels - 1)

    @property
    def on_off_ratio(self) -> float:
        return float("inf") if self.g_off == 0 else self.g_on / self.g_off

    @property
    def is_ideal(self) -> bool:
        """No programming variation, no read noise, no faults."""
        return self.variation == 0 and self.read_noise == 0 and self.p_stuck_on == 0 and self.p_stuck_off == 0

    def level_conductance(self, level: torch.Tensor) -> torch.Tensor:
        """Target conductance (siemens) of integer levels 0..levels-1."""
        level = check_tensor("level", level)
        lo, hi = level.min().item() if level.numel() else 0, level.max().item() if level.numel() else 0
        if lo < 0 or hi > self.levels - 1 or not bool((level == level.round()).all()):
            raise ValueError(
                f"level must hold integers in [0, {self.levels - 1}] for bits_per_cell="
                f"{self.bits_per_cell}, got values in [{lo}, {hi}]"
            )
        return self.g_off + level * self.delta_g

    def program(self, target: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Conductances of one programmed chip instance for ``target`` conductances (siemens).

        Applies device-to-device variation, then stuck-at faults. Deterministic without
        variation and faults; otherwise draws from ``generator`` (required then).
        """
        target = check_tensor("target", target)
        if self.variation == 0 and self.p_stuck_on == 0 and self.p_stuck_off == 0:
            return target.clone()
        if generator is None:
            raise ValueError("program() needs a torch.Generator when variation or faults are on")
        # In place on fresh tensors (the same arithmetic, the same bits as the out-of-place form).
        if self.variation > 0:
            G = torch.randn(target.shape, generator=generator, dtype=target.dtype, device=target.device)
            if self.variation_kind == "gaussian":
                # A conductance cannot go negative: a draw below zero is an (almost) open cell.
                G.mul_(self.variation).add_(1.0).mul_(target).clamp_min_(1e-3 * self.g_off)
            else:
                G.mul_(self.variation).sub_(0.5 * self.variation**2).exp_().mul_(target)
        else:
            G = target.clone()
        if self.p_stuck_on > 0 or self.p_stuck_off > 0:
            u = torch.rand(target.shape, generator=generator, dtype=target.dtype, device=target.device)
            G.masked_fill_(u < self.p_stuck_on, self.g_on)
            G.masked_fill_((u >= self.p_stuck_on) & (u < self.p_stuck_on + self.p_stuck_off), self.g_off)
        return G

    def read(self, G: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One noisy read of cell conductances: ``G * (1 + read_noise * eps)``, eps ~ N(0, 1)."""
        G = check_tensor("G", G)
        if self.read_noise == 0:
            return G
        eps = torch.randn(G.shape, generator=generator, dtype=G.dtype, device=G.device)
        return G * (1.0 + self.read_noise * eps)


def column_read_noise(
    v: torch.Tensor, G: torch.Tensor, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """Column-current noise of one read per input vector, equal in law to per-cell read noise.

    With independent relative cell noise ``sigma`` on every read, column j's current is
    Gaussian with variance ``sigma**2 * sum_i v_i**2 G_ij**2``; sampling it at the column
    costs one extra matmul instead of a fresh R x C noise draw per read.
    v: (..., B, R) volts; G: (..., R, C) siemens. Returns (..., B, C) amperes.
    """
    sigma = check_real("sigma", sigma, low=0.0)
    var = (v * v) @ (G * G)
    eps = torch.randn(var.shape, generator=generator, dtype=var.dtype, device=var.device)
    return sigma * var.sqrt() * eps
