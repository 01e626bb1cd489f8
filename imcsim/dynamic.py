"""Dynamic timesteps (DT-SNN): per-sample early exit on output confidence.

Exit rules, applied after each timestep t to the logits of timesteps 1..t (K classes):

* ``entropy`` (DT-SNN, Li et al. DAC 2023): p = softmax(sum of logits 1..t); normalised
  entropy H = -sum_k p_k log p_k / log K; exit at the first t with H < theta;
* ``entropy_mean``: the same with p = softmax(mean of logits 1..t);
* ``max_confidence``: exit at the first t with max_k p_k > 1 - theta (p from the sum).

Every rule exits at T_max at the latest; comparisons are strict, so theta = 0 never exits
early and theta = 1 exits at t = 1 unless the output is exactly uniform. The released
DT-SNN code writes the entropy rule as ``1 - H > theta'`` (default theta' = 0.9), i.e.
theta = 1 - theta' here.

:func:`exit_decisions` is the pure rule on a (T, B, K) logit tensor. :func:`run_dynamic`
executes a (crossbar or plain) SNN one timestep at a time, with membranes carried over,
and **drops exited samples from the batch**: later timesteps simulate (and count events
for) only the samples still running, so both the wall time and the priced events follow
the timesteps actually used.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .events import StepEvents
from .neurons import select_states, set_persistent

EXIT_RULES = ("entropy", "entropy_mean", "max_confidence")


def _check_theta(theta) -> float:
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not math.isfinite(theta) or not 0 <= theta <= 1:
        raise ValueError(f"theta must be a number in [0, 1], got {theta!r}")
    return float(theta)


def _check_rule(rule: str) -> str:
    if rule not in EXIT_RULES:
        raise ValueError(f"exit rule must be one of {', '.join(EXIT_RULES)}, got {rule!r}")
    return rule


def _exit_now(cum: torch.Tensor, t: int, theta: float, rule: str) -> torch.Tensor:
    """(B,) bool: exit after timestep t (1-based) given summed logits ``cum`` (B, K)."""
    K = cum.shape[-1]
    z = cum / t if rule == "entropy_mean" else cum
    logp = torch.log_softmax(z.double(), dim=-1)
    if rule == "max_confidence":
        return logp.max(-1).values.exp() > 1.0 - theta
    H = -(logp.exp() * logp).sum(-1) / math.log(K)
    return H < theta


def exit_decisions(logits: torch.Tensor, theta: float, rule: str = "entropy") -> tuple[torch.Tensor, torch.Tensor]:
    """Exit step (1..T, int64) and prediction of every sample, from per-timestep logits.

    logits: (T, B, K) with T >= 1 and K >= 2 classes."""
    theta = _check_theta(theta)
    _check_rule(rule)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a (T, B, K) tensor, got {shape}")
    T, B, K = logits.shape
    if T < 1 or K < 2:
        raise ValueError(f"logits need T >= 1 timesteps and K >= 2 classes, got shape {(T, B, K)}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits must be finite")
    cum = logits.cumsum(0)
    ok = torch.stack([_exit_now(cum[t], t + 1, theta, rule) for t in range(T)])
    ok[-1] = True
    step = ok.to(torch.int64).argmax(0)  # first True
    pred = cum[step, torch.arange(B)].argmax(-1)
    return step + 1, pred


def choose_threshold(logits: torch.Tensor, y: torch.Tensor, rule: str = "entropy", tolerance_pp: float = 0.1,
                     grid=None) -> dict:
    """The largest theta whose accuracy on (calibration) logits stays within ``tolerance_pp``
    percentage points of the static T_max accuracy. Returns theta, its accuracy, average
    timesteps, and the static accuracy."""
    if tolerance_pp < 0:
        raise ValueError(f"tolerance_pp must be >= 0, got {tolerance_pp!r}")
    grid = [k / 400 for k in range(401)] if grid is None else sorted(grid)  # exact decimals: 0.4, not 0.40000001
    static = 100.0 * float((logits.sum(0).argmax(-1) == y).float().mean())
    best = {"theta": 0.0, "accuracy": static, "avg_timesteps": float(logits.shape[0]), "static_accuracy": static}
    for th in grid:
        steps, pred = exit_decisions(logits, th, rule)
        acc = 100.0 * float((pred == y).float().mean())
        if acc >= static - tolerance_pp - 1e-9:
            best = {"theta": float(th), "accuracy": acc, "avg_timesteps": float(steps.double().mean()),
                    "static_accuracy": static}
    best["tolerance_pp"] = tolerance_pp
    best["rule"] = rule
    return best


@dataclass
class DynamicRun:
    """Outcome of :func:`run_dynamic` over a dataset."""

    exit_steps: torch.Tensor
    predictions: torch.Tensor
    t_max: int
    theta: float
    rule: str
    wall_s: float
    labels: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)
    step_events: list | None = None  # per timestep: events recorded in it (record_steps=True)

    @property
    def avg_timesteps(self) -> float:
        return float(self.exit_steps.double().mean())

    @property
    def accuracy(self) -> float | None:
        if self.labels is None:
            return None
        return 100.0 * float((self.predictions == self.labels).float().mean())

    def histogram(self) -> dict[int, int]:
        return {t: int((self.exit_steps == t).sum()) for t in range(1, self.t_max + 1)}


@torch.no_grad()
def run_dynamic(model: nn.Module, x: torch.Tensor, theta: float, t_max: int, *, rule: str = "entropy", y=None,
                batch_size: int = 256, read_seed: int = 0, progress: bool = False, desc: str = "dynamic",
                sample_offset: int = 0, record_steps: bool = False) -> DynamicRun:
    """Run an SNN timestep by timestep with per-sample early exit (theta = 0: static t_max).

    model: a :class:`~imcsim.models.Network` (``kind='snn'``), plain or converted; x in its
    input form ((N, ...) static, or (T, N, ...) sequences with T >= t_max). Read noise is
    keyed by sample and timestep, so a sample's logits do not depend on which other samples
    are still running: the exits equal :func:`exit_decisions` on the full logits.

    record_steps: also keep the events recorded in each timestep (summed over batches;
    :class:`~imcsim.events.StepEvents`), so that :func:`imcsim.cost.per_sample_cost` can
    price every sample at its own exit step."""
    from tqdm.auto import tqdm

    from .context import read_context
    from .training import batch_dim, check_finite_input

    theta = _check_theta(theta)
    _check_rule(rule)
    if isinstance(t_max, bool) or not isinstance(t_max, int) or t_max < 1:
        raise ValueError(f"T_max must be an integer >= 1, got {t_max!r}")
    if getattr(model, "kind", "snn") != "snn":
        raise ValueError("dynamic timesteps need an SNN (a Network with kind='snn')")
    check_finite_input(x)
    sequence = getattr(model, "input", "static") == "sequence"
    if sequence and x.shape[0] < t_max:
        raise ValueError(f"the input sequences have {x.shape[0]} timesteps, fewer than T_max = {t_max}")
    model.eval()
    device = next((b.device for b in model.buffers()), torch.device("cpu"))
    bd = batch_dim(model)
    if x.dim() <= bd or x.shape[bd] == 0:
        raise ValueError("no samples to run (the input holds 0 samples)")
    N = x.shape[bd]
    steps = torch.empty(N, dtype=torch.int64)
    preds = torch.empty(N, dtype=torch.int64)
    recorder = StepEvents(model, t_max) if record_steps else None
    t0 = time.perf_counter()
    try:
        for s in tqdm(range(0, N, batch_size), desc=desc, disable=not progress, leave=False):
            xb = x.narrow(bd, s, min(batch_size, N - s)).to(device)
            alive = torch.arange(xb.shape[bd])
            cum = None
            set_persistent(model, True)  # fresh membranes for this batch
            for t in range(1, t_max + 1):
                xa = xb[t - 1: t, alive.to(device)] if sequence else xb[alive.to(device)]
                kw = {} if sequence else {"timesteps": 1}
                if recorder is not None:
                    recorder.begin()
                with read_context(alive + s + sample_offset, t0=t - 1, read_seed=read_seed):
                    out = _logits(model(xa, **kw))[0].cpu()
                if recorder is not None:
                    recorder.end(t, len(alive))
                cum = out.clone() if cum is None else cum + out
                done = _exit_now(cum, t, theta, rule) if t < t_max else torch.ones(len(alive), dtype=torch.bool)
                if bool(done.any()):
                    idx = s + alive[done]
                    steps[idx] = t
                    preds[idx] = cum[done].argmax(-1)
                    keep = (~done).nonzero().squeeze(1)
                    alive, cum = alive[keep], cum[keep]
                    if len(alive) == 0:
                        break
                    select_states(model, keep.to(device))
    finally:
        set_persistent(model, False)
    wall = time.perf_counter() - t0
    return DynamicRun(steps, preds, t_max, theta, rule, wall, None if y is None else y.cpu(),
                      step_events=recorder.steps if recorder is not None else None)


def _logits(out):
    from .training import _output_logits

    return _output_logits(out)
