"""Resistive memory devices: conductance levels, programming variation, read noise, faults.

A cell stores one of ``2**bits_per_cell`` conductance levels spaced uniformly between
``g_off`` and ``g_on`` (siemens). Programming a chip instance perturbs each cell once
(device-to-device variation) and sticks a random subset of cells at ``g_on`` or ``g_off``;
every read then adds cycle-to-cycle read noise. A chip read ``time`` seconds after
programming has drifted (:mod:`.drift`), optionally with drift compensation. All
randomness comes from an explicit ``torch.Generator``: the same seed gives the same chip
and the same reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import drift as D
from ._checks import check_choice, check_int, check_real, check_tensor

__all__ = ["DeviceModel", "column_read_noise"]

VARIATION_KINDS = ("gaussian", "lognormal", "pcm")
DRIFT_KINDS = ("none", "power", "pcm", "rram-relaxation")
COMPENSATIONS = ("none", "global", "column")
# Cells per programming draw (a multiple of 64): torch's CPU generators then draw a tensor
# in pieces exactly as in one call (normals in blocks of 16), and the elementwise steps see
# the same vector-aligned runs; tests/test_programming_pieces.py checks the bits against one draw.
PROGRAM_CHUNK = 1 << 20


def draw_spans(n: int) -> list[tuple[int, int]]:
    """(start, stop) pieces of n cells, PROGRAM_CHUNK long but the last, which takes any
    remainder shorter than 64 (a piece under 16 cells would take torch's scalar path)."""
    spans = [(a, min(a + PROGRAM_CHUNK, n)) for a in range(0, n, PROGRAM_CHUNK)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < 64:
        spans[-2:] = [(spans[-2][0], n)]
    return spans


@dataclass(frozen=True)
class DeviceModel:
    """One resistive device technology.

    g_on, g_off: highest / lowest programmable conductance in siemens (0 <= g_off < g_on;
    g_off = 0 means an infinite on/off ratio, only usable without wire resistance).
    bits_per_cell: levels per cell = 2**bits_per_cell (1..8).
    variation: relative programming (device-to-device) spread, >= 0. With ``gaussian`` a
    programmed cell is ``G * (1 + variation * eps)``; with ``lognormal`` it is
    ``G * exp(variation * eps - variation**2 / 2)`` (mean-preserving, ``variation`` is the
    standard deviation of ln G); with ``pcm`` it is ``G + variation * sigma_pcm(G) * eps``, the
    additive, conductance-dependent PCM programming noise of :mod:`.drift` (``variation`` = 1:
    the published fit, g_max = g_on). eps ~ N(0, 1), drawn once per programmed chip.
    read_noise: relative cycle-to-cycle spread of a cell's conductance on every read, >= 0.
    p_stuck_on, p_stuck_off: probability that a cell is stuck at g_on / g_off (sum <= 1).
    drift: conductance drift after programming -- ``none``, ``power`` (exponent
    ``|N(nu_mean, nu_std)|`` per device) or ``pcm`` (the PCM model's conductance-dependent
    exponent, plus its 1/f read noise accumulated up to ``time``) or ``rram-relaxation`` (the
    conductance spread of write-verified RRAM growing after programming, Wan et al. 2022 as
    fitted in aihwkit; acts after 1 s, independent of ``t0``).
    time: seconds since programming at which the chip is read (>= 0); drift acts after
    ``t0`` seconds (``g_prog (time / t0) ** -nu``), nothing has drifted before.
    drift_compensation: ``none``, ``global`` (one gain per layer) or ``column`` (one per
    column) from reference reads with all rows on, right after programming and at ``time``.
    """

    g_on: float = 1e-4
    g_off: float = 1e-6
    bits_per_cell: int = 2
    variation: float = 0.0
    variation_kind: str = "gaussian"
    read_noise: float = 0.0
    p_stuck_on: float = 0.0
    p_stuck_off: float = 0.0
    drift: str = "none"
    time: float = 0.0
    t0: float = D.PCM_T0
    nu_mean: float = 0.05
    nu_std: float = 0.0
    drift_compensation: str = "none"

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
        check_choice("DeviceModel.drift", self.drift, DRIFT_KINDS)
        s(self, "time", check_real("DeviceModel.time", self.time, low=0.0, high=1e12))
        s(self, "t0", check_real("DeviceModel.t0", self.t0, low=0.0, low_open=True, high=1e9))
        s(self, "nu_mean", check_real("DeviceModel.nu_mean", self.nu_mean, low=0.0, high=1.0))
        s(self, "nu_std", check_real("DeviceModel.nu_std", self.nu_std, low=0.0, high=1.0))
        check_choice("DeviceModel.drift_compensation", self.drift_compensation, COMPENSATIONS)

    @property
    def _g_floor(self) -> float:
        """Where noise that would make a conductance negative leaves it: an almost open cell."""
        return 1e-3 * self.g_off if self.g_off > 0 else 1e-3 * self.g_on * 1e-6

    @property
    def programs_exactly(self) -> bool:
        """Whether :meth:`program` returns its targets unchanged (no variation, faults or drift)."""
        return self.variation == 0 and self.p_stuck_on == 0 and self.p_stuck_off == 0 and not self.drifting

    @property
    def drifting(self) -> bool:
        """Whether a chip read at ``time`` differs from one read right after programming."""
        if self.drift == "rram-relaxation":
            return self.time > D.RRAM_RELAX_FITS[0][0]
        return self.drift != "none" and self.time > 0 and (self.time > self.t0 or self.drift == "pcm")

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
        return (self.variation == 0 and self.read_noise == 0 and self.p_stuck_on == 0 and self.p_stuck_off == 0
                and not self.drifting)

    def level_conductance(self, level: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        """Target conductance (siemens) of integer levels 0..levels-1 (in_place: written over
        ``level`` when it is floating point -- a whole layer's cells make that worth it)."""
        level = check_tensor("level", level)
        lo, hi = level.min().item() if level.numel() else 0, level.max().item() if level.numel() else 0
        flat = level.reshape(-1)
        whole = all(torch.equal(c, c.round()) for c in flat.split(1 << 22))  # (in pieces: a layer can be GBs)
        if lo < 0 or hi > self.levels - 1 or not whole:
            raise ValueError(
                f"level must hold integers in [0, {self.levels - 1}] for bits_per_cell="
                f"{self.bits_per_cell}, got values in [{lo}, {hi}]"
            )
        out = level.mul_(self.delta_g) if in_place else level * self.delta_g
        return out.add_(self.g_off)  # = g_off + level * delta_g

    def program(self, target: torch.Tensor, generator: torch.Generator | None = None, *,
                in_place: bool = False) -> torch.Tensor:
        """Conductances of one programmed chip instance for ``target`` conductances (siemens),
        as read ``time`` seconds after programming.

        Applies device-to-device variation, then stuck-at faults, then drift (and, for PCM,
        the 1/f noise accumulated up to ``time``) and drift compensation. Deterministic
        without variation, faults and drift; otherwise draws from ``generator`` (required
        then). Drift draws come after all programming draws, so a drift-free chip of the
        same seed is the same chip before it drifts.

        The variation and fault draws are made and applied :data:`PROGRAM_CHUNK` cells at a
        time, in the order one draw over the whole tensor makes them (the same bits), so a
        layer of millions of cells needs no full-size noise tensors beside its conductances.
        ``in_place``: write the programmed conductances over ``target`` (a contiguous
        floating tensor the caller no longer needs) instead of a new tensor -- not done when
        drifting (drift needs the targets); use the returned tensor either way.
        """
        target = check_tensor("target", target)
        if self.programs_exactly:
            return target if in_place else target.clone()
        if generator is None:
            raise ValueError("program() needs a torch.Generator when variation, faults or drift are on")
        drifting = self.drifting
        own = in_place and not drifting and target.is_contiguous()
        G = target if own else torch.empty_like(target, memory_format=torch.contiguous_format)
        t, g = target.reshape(-1), G.view(-1)  # (t is target itself, or a view of it, when contiguous)
        spans = draw_spans(t.numel())
        if self.variation > 0:
            for a, b in spans:
                eps = torch.randn(b - a, generator=generator, dtype=target.dtype, device=target.device)
                g[a:b].copy_(self._vary(eps, t[a:b]))
        elif not own:
            g.copy_(t)
        if self.p_stuck_on > 0 or self.p_stuck_off > 0:
            for a, b in spans:
                self._stick(g[a:b], torch.rand(b - a, generator=generator, dtype=target.dtype, device=target.device))
        if drifting:
            G = self._drift(target, G, generator)
        return G

    def program_pieces(self, n: int, generator: torch.Generator | None, dtype: torch.dtype = torch.float64):
        """Program an array of ``n`` cells piece by piece: returns ``step(target)``, which
        programs the next consecutive piece of targets (contiguous, siemens) in place and
        returns it. Fed the pieces in order, the result equals :meth:`program` of the whole
        array bit for bit: the fault draws come from a copy of ``generator`` moved past all
        n variation draws. The pieces and n must be multiples of 64 cells (see
        :data:`PROGRAM_CHUNK`); not for a drifting device (drift needs the whole array)."""
        if self.drifting:
            raise ValueError("program_pieces() cannot program a drifting device piece by piece; use program()")
        if n % 64:
            raise ValueError(f"program_pieces() needs a multiple of 64 cells, got {n}")
        if self.programs_exactly:
            return lambda target: target
        if generator is None:
            raise ValueError("program_pieces() needs a torch.Generator when variation or faults are on")
        vary = self.variation > 0
        faults = self.p_stuck_on > 0 or self.p_stuck_off > 0
        fault_gen = generator
        if vary and faults:  # the fault stream starts where all n variation draws end
            fault_gen = torch.Generator(device=generator.device)
            fault_gen.set_state(generator.get_state())
            # (a normal draw of a multiple of 16 values takes one uniform per value from the
            # CPU generator: uniform draws, 4-5x cheaper, move it just as far)
            buf = torch.empty(min(n, PROGRAM_CHUNK), dtype=dtype, device=generator.device)
            for a, b in draw_spans(n):
                (buf if b - a == buf.numel() else torch.empty(b - a, dtype=dtype, device=buf.device)).uniform_(
                    generator=fault_gen)

        def step(target: torch.Tensor) -> torch.Tensor:
            if target.numel() % 64 or not target.is_contiguous() or target.dtype != dtype:
                raise ValueError(f"a piece must be a contiguous {dtype} tensor of a multiple of 64 cells, got "
                                 f"{target.numel()} cells of {target.dtype}")
            g = target.view(-1)
            for a, b in draw_spans(g.numel()):
                cells = g[a:b]
                if vary:
                    eps = torch.randn(b - a, generator=generator, dtype=dtype, device=target.device)
                    cells.copy_(self._vary(eps, cells))
                if faults:
                    self._stick(cells, torch.rand(b - a, generator=fault_gen, dtype=dtype, device=target.device))
            return target

        return step

    def _stick(self, cells: torch.Tensor, u: torch.Tensor) -> None:
        """Stuck-at faults on ``cells`` (in place) from their uniform draws ``u``: stuck on
        below p_stuck_on, stuck off in the next p_stuck_off."""
        on, off = self.p_stuck_on, self.p_stuck_on + self.p_stuck_off
        cells.masked_fill_(u < on, self.g_on)
        cells.masked_fill_((u >= on) & (u < off), self.g_off)

    def _vary(self, eps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Programmed conductances of ``target`` cells (siemens) from their standard normal
        draws ``eps`` (overwritten: the result)."""
        if self.variation_kind == "gaussian":
            # A conductance cannot go negative: a draw below zero is an (almost) open cell.
            return eps.mul_(self.variation).add_(1.0).mul_(target).clamp_min_(1e-3 * self.g_off)
        if self.variation_kind == "pcm":
            eps.mul_(D.pcm_programming_sigma(target, self.g_on)).mul_(self.variation).add_(target)
            return eps.clamp_min_(self._g_floor)
        return eps.mul_(self.variation).sub_(0.5 * self.variation**2).exp_().mul_(target)

    def drift_exponents(self, target: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-device drift exponents nu >= 0 for cells programmed to ``target`` (siemens)."""
        eps = torch.randn(target.shape, generator=generator, dtype=target.dtype, device=target.device)
        if self.drift == "pcm":
            mu, sd = D.pcm_nu_stats(target, self.g_on)
        else:
            mu, sd = self.nu_mean, self.nu_std
        return (mu + sd * eps).abs()

    def _drift(self, target: torch.Tensor, G_prog: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        G = G_prog
        if self.drift == "rram-relaxation":
            eps = torch.randn(target.shape, generator=generator, dtype=target.dtype, device=target.device)
            G = (G_prog + D.rram_relaxation_growth(target, self.g_on, self.time) * eps).clamp_min(self._g_floor)
        elif self.time > self.t0:
            G = G_prog * D.drift_factor(self.drift_exponents(target, generator), self.time, self.t0)
        if self.drift == "pcm":
            eps = torch.randn(target.shape, generator=generator, dtype=target.dtype, device=target.device)
            G = (G + G.abs() * D.pcm_read_sigma(G_prog, self.g_on, self.time) * eps).clamp_min(self._g_floor)
        if self.drift_compensation != "none":
            G = G * D.compensation_scale(G_prog, G, self.drift_compensation)
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
