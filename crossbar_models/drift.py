"""Conductance drift after programming, and the statistical PCM device model.

Drift (phase-change and, more weakly, resistive devices): a cell programmed to ``g_prog``
and first read at ``t0`` seconds after programming conducts, at ``t >= t0``,

    g(t) = g_prog * (t / t0) ** (-nu),

with a drift exponent ``nu`` drawn per device. Before ``t0`` nothing has drifted.

The PCM model is the statistical model fitted to doped-Ge2Sb2Te5 mushroom cells by
Nandakumar et al. (IEEE ICECS 2019; J. Appl. Phys. 124, 152135, 2018) and used by Joshi et
al. (Nat. Commun. 11, 2473, 2020) -- the fits IBM's aihwkit ships as ``PCMLikeNoiseModel``.
With ``x = g_target / g_max`` (g_max: the largest programmed conductance):

* programming noise, additive Gaussian with standard deviation
  ``(0.26348 + 1.9650 x - 1.1731 x**2) uS * g_max / 25 uS`` (fitted at g_max = 25 uS);
* drift exponent ``nu ~ |N(mu, sigma)|`` with ``mu = clip(-0.0155 ln x + 0.0244, 0.049, 0.1)``
  and ``sigma = clip(-0.0125 ln x - 0.0059, 0.008, 0.045)``, t0 = 20 s;
* 1/f read noise accumulated up to ``t``: relative standard deviation
  ``Q_s sqrt(ln((t + t_read) / (2 t_read)))``, ``Q_s = min(0.0088 / max(x**0.65, 1e-3), 0.2)``,
  t_read = 250 ns.

RRAM relaxation follows Wan et al. (Nature 608, 504, 2022, the NeuRRAM chip) as fitted by
IBM's aihwkit (``ReRamWan2022NoiseModel``): the standard deviation of a write-verified cell's
conductance around its target is a 4th-order polynomial of ``x = g_target / g_max`` (uS,
fitted at g_max = 40 uS) measured 1 s, 1 day and 2 days after programming. A chip read at
``t`` adds the growth since 1 s, ``sqrt(sigma(t)**2 - sigma(1 s)**2)`` times one N(0, 1) draw
per cell, on top of its own programming spread; ``sigma(t)`` is interpolated linearly in
log10 t between the three fits and held at the 2-day fit beyond (the data end there).

Global drift compensation (Joshi et al.; aihwkit's ``GlobalDriftCompensation``): a
reference read of every column with all inputs on, right after programming and again at
``t``; the ratio of the two column-current sums (one per layer, or one per column) scales
the outputs at ``t``.
"""

from __future__ import annotations

import math

import torch

PCM_PROG_COEFF = (0.26348, 1.9650, -1.1731)  # uS, fitted with g_max = 25 uS
PCM_PROG_G_MAX_REF = 25e-6                    # siemens
PCM_T0 = 20.0                                 # s
PCM_T_READ = 250e-9                           # s
_X_MIN = 1e-7                                 # g/g_max floor inside the logarithms (aihwkit's zero clip)
# Wan et al. 2022 (NeuRRAM) relaxation fits, sigma = sum_i c_i x**i in uS at g_max = 40 uS, c_0 first
RRAM_RELAX_FITS = ((1.0, (0.348, 16.030, -43.853, 45.393, -16.815)),
                   (86400.0, (0.701, 22.086, -50.773, 47.095, -16.458)),
                   (172800.0, (0.782, 20.274, -43.507, 37.062, -11.934)))
RRAM_RELAX_G_MAX_REF = 40e-6                  # siemens


def pcm_programming_sigma(g_target: torch.Tensor, g_max: float) -> torch.Tensor:
    """Standard deviation (siemens) of PCM programming noise at target conductances."""
    x = g_target / g_max
    c0, c1, c2 = PCM_PROG_COEFF
    return (c0 + c1 * x + c2 * x * x) * 1e-6 * (g_max / PCM_PROG_G_MAX_REF)


def pcm_nu_stats(g_target: torch.Tensor, g_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the PCM drift exponent at target conductances
    (before the absolute value that keeps a drawn exponent non-negative)."""
    lx = torch.log((g_target / g_max).abs().clamp_min(_X_MIN))
    return (-0.0155 * lx + 0.0244).clamp(0.049, 0.1), (-0.0125 * lx - 0.0059).clamp(0.008, 0.045)


def pcm_read_sigma(g: torch.Tensor, g_max: float, t: float, t_read: float = PCM_T_READ) -> torch.Tensor:
    """Relative standard deviation of PCM 1/f read noise accumulated up to ``t`` seconds."""
    q_s = (0.0088 / ((g.abs() / g_max) ** 0.65).clamp_min(1e-3)).clamp_max(0.2)
    return q_s * math.sqrt(math.log((t + t_read) / (2 * t_read)))


def rram_relaxation_sigma(g_target: torch.Tensor, g_max: float, t: float) -> torch.Tensor:
    """Standard deviation (siemens) of a relaxed RRAM cell around its target ``t`` seconds
    after programming (Wan et al. 2022 fits, log-time interpolation, held beyond 2 days)."""
    x = (g_target / g_max).clamp(0.0, 1.0)

    def poly(coeff):
        out = torch.zeros_like(x)
        for c in reversed(coeff):
            out = out * x + c
        return out

    times = [f[0] for f in RRAM_RELAX_FITS]
    t = min(max(t, times[0]), times[-1])
    k = max(i for i in range(len(times)) if times[i] <= t)
    if k == len(times) - 1:
        sig = poly(RRAM_RELAX_FITS[k][1])
    else:
        w = (math.log10(t) - math.log10(times[k])) / (math.log10(times[k + 1]) - math.log10(times[k]))
        sig = (1 - w) * poly(RRAM_RELAX_FITS[k][1]) + w * poly(RRAM_RELAX_FITS[k + 1][1])
    return sig.clamp_min(0.0) * 1e-6 * (g_max / RRAM_RELAX_G_MAX_REF)


def rram_relaxation_growth(g_target: torch.Tensor, g_max: float, t: float) -> torch.Tensor:
    """Standard deviation (siemens) the relaxation adds between 1 s and ``t``."""
    s_t = rram_relaxation_sigma(g_target, g_max, t)
    s_1 = rram_relaxation_sigma(g_target, g_max, RRAM_RELAX_FITS[0][0])
    return (s_t * s_t - s_1 * s_1).clamp_min(0.0).sqrt()


def drift_factor(nu: torch.Tensor, t: float, t0: float) -> torch.Tensor:
    """``(t / t0) ** (-nu)``: 1 for ``t <= t0``."""
    if t <= t0:
        return torch.ones_like(nu)
    return torch.exp(-nu * math.log(t / t0))


def compensation_scale(g_ref: torch.Tensor, g_now: torch.Tensor, per: str) -> torch.Tensor:
    """Drift compensation factors from reference reads (all rows on) of conductances
    ``(..., rows, cols)`` right after programming (``g_ref``) and now (``g_now``):
    ``per='global'`` one factor for the whole tensor, ``'column'`` one per column (summed over
    every leading dimension but the last two's columns: row tiles and rows). Shaped to
    broadcast against ``g_now``."""
    if per == "global":
        return (g_ref.sum() / g_now.sum()).reshape((1,) * g_now.dim())
    if per == "column":
        # (G, Tr, Tc, rows, cols): sum over row tiles (dim 1) and rows (dim -2)
        dims = (1, -2) if g_now.dim() == 5 else (-2,)
        return g_ref.sum(dim=dims, keepdim=True) / g_now.sum(dim=dims, keepdim=True)
    raise ValueError(f"per must be 'global' or 'column', got {per!r}")
