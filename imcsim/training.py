"""Training (SNN: surrogate-gradient BPTT; QNN: quantisation-aware) and checkpoints.

Losses on the per-timestep logits (T, B, K) of a :class:`~imcsim.models.Network`:

* ``mean``: cross-entropy of the mean logit over timesteps (the usual SNN loss);
* ``per_timestep``: mean over t of the cross-entropy of timestep t's own output (as in
  DT-SNN), so early timesteps are already informative;
* ``per_timestep_cumulative``: mean over t of the cross-entropy of the mean output over
  timesteps 1..t (what an early exit actually sees).

Options: activity regularisation (``activity_lambda`` x mean spike rate, or mean activation
of quantised layers, added to the loss) and noise-aware training (every step, weights are
perturbed multiplicatively by N(0, weight_noise) before the forward pass and restored before
the update) and random translations (``shift``: every training image moved by up to that many
pixels along each of its last two axes, uniformly and independently per sample, the uncovered
border filled with zeros -- more distinct images from a small training set). ``distill``:
the loss becomes (1 - distill) x the task loss + distill x the distillation loss, the KL
divergence from the starting model's (frozen, float) mean output to the trained one's at
temperature 2, times 4 (Hinton et al. 2015; as "Noisy Machines", Zhou et al. 2020, use it for
noisy analog hardware): for fine-tuning through a chip, the float model teaches its noisy
twin. All randomness comes from ``seed``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .context import read_context
from .events import no_counting
from .models import Network
from .neurons import QuantAct, SpikingNeuron

LOSSES = ("mean", "per_timestep", "per_timestep_cumulative")
DISTILL_TEMPERATURE = 2.0


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    loss: str = "mean"
    activity_lambda: float = 0.0
    weight_noise: float = 0.0
    shift: int = 0
    distill: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not isinstance(self.shift, int) or self.shift < 0:
            raise ConfigError(f"shift must be an integer >= 0 (pixels), got {self.shift!r}")
        if not 0.0 <= self.distill <= 1.0:
            raise ConfigError(f"distill must be in [0, 1] (the distillation loss's weight), got {self.distill!r}")
        for name in ("activity_lambda", "weight_noise", "weight_decay"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"{name} must be >= 0, got {v!r}")


def sequence_loss(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss of per-timestep logits (T, B, K) against labels (B,)."""
    if kind == "mean":
        return F.cross_entropy(logits.mean(0), y)
    T = logits.shape[0]
    if kind == "per_timestep":
        return F.cross_entropy(logits.reshape(T * logits.shape[1], -1), y.repeat(T))
    steps = torch.arange(1, T + 1, dtype=logits.dtype, device=logits.device).view(T, 1, 1)
    cum = logits.cumsum(0) / steps
    return F.cross_entropy(cum.reshape(T * logits.shape[1], -1), y.repeat(T))


def distill_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float = DISTILL_TEMPERATURE) -> torch.Tensor:
    """temperature**2 x KL(softmax(teacher / temperature) || softmax(logits / temperature)),
    averaged over the batch; logits and teacher (B, K)."""
    return F.kl_div(F.log_softmax(logits / temperature, -1), F.log_softmax(teacher / temperature, -1),
                    log_target=True, reduction="batchmean") * temperature ** 2


def _activations(model):
    return [m for m in model.modules() if isinstance(m, (SpikingNeuron, QuantAct))]


def _weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def random_shift(x: torch.Tensor, shift: int, batch_dim: int, gen: torch.Generator) -> torch.Tensor:
    """Each sample of ``x`` (samples along ``batch_dim``, images along the last two axes)
    translated by (dy, dx), each drawn uniformly from -shift..shift with ``gen``; zeros enter
    at the border. The draws depend on the batch alone (two per sample, in sample order)."""
    if x.dim() < batch_dim + 3:
        raise ConfigError(f"shift needs image inputs (samples, ..., height, width); got a tensor of shape "
                          f"{tuple(x.shape)} with samples on axis {batch_dim}")
    H, W = x.shape[-2:]
    if shift >= min(H, W):
        raise ConfigError(f"shift must be smaller than the images ({H}x{W}), got {shift}")
    n = x.shape[batch_dim]
    d = torch.randint(-shift, shift + 1, (n, 2), generator=gen)
    padded = torch.nn.functional.pad(x, (shift, shift, shift, shift))
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(d[i, 0]), int(d[i, 1])
        # the image moves by (dy, dx): output pixel (h, w) shows input pixel (h - dy, w - dx)
        out.select(batch_dim, i).copy_(padded.select(batch_dim, i)[..., shift - dy:shift - dy + H,
                                                                     shift - dx:shift - dx + W])
    return out


def train(model: Network, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *, progress: bool = True,
          x_val=None, y_val=None, log=None, chip=None) -> list[dict]:
    """Train ``model`` in place; returns per-epoch history (loss, train acc, val acc).

    chip: a :class:`~imcsim.chip_training.ChipInTheLoop` of ``model``: every step is
    programmed as a fresh training chip and the forward pass runs through it (BatchNorm
    statistics and activation clips then stay fixed)."""
    from tqdm.auto import tqdm

    bd = batch_dim(model)
    n = x.shape[bd]
    if n != y.shape[0]:
        raise ValueError(f"x and y must have the same number of samples, got {n} and {y.shape[0]}")
    if n == 0:
        raise ValueError("no training samples (x holds 0 samples)")
    check_finite_input(x, "training data")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    shift_gen = torch.Generator().manual_seed(cfg.seed + 2)
    teacher = None
    if cfg.distill > 0:  # the model as it starts, in float, frozen
        teacher = copy.deepcopy(model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    frozen = chip.frozen() if chip is not None else []
    frozen_ids = {id(p) for p in frozen}
    params = [p for p in model.parameters() if id(p) not in frozen_ids]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    net = model if chip is None else chip.chip
    acts = _activations(net)
    for m in acts:
        m.track_activity = cfg.activity_lambda > 0
    history = []
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc=f"train {getattr(model, 'kind', 'model')}", disable=not progress, leave=False)
    try:
        with no_counting():
            step = 0
            for epoch in range(cfg.epochs):
                model.train(chip is None)  # through the chip: BatchNorm folded with its running statistics
                perm = torch.randperm(n, generator=gen)
                tot_loss, correct, seen = 0.0, 0, 0
                for s in range(0, n, cfg.batch_size):
                    idx = perm[s : s + cfg.batch_size]
                    xb, yb = x.index_select(bd, idx), y[idx].to(device)
                    if cfg.shift:
                        xb = random_shift(xb, cfg.shift, bd, shift_gen)
                    xb = xb.to(device)
                    saved = None
                    if cfg.weight_noise > 0:
                        saved = [w.detach().clone() for w in _weights(model)]
                        with torch.no_grad():
                            for w in _weights(model):
                                w.mul_(1 + cfg.weight_noise * torch.randn(w.shape, generator=noise_gen, device=device))
                    if chip is not None:
                        chip.program(step, xb)
                    with read_context(idx, read_seed=cfg.seed * 100_003 + epoch):  # rate spikes: fresh each epoch
                        logits = _output_logits(chip(xb)) if chip is not None else model(xb)
                        if teacher is not None:
                            with torch.no_grad():
                                taught = _output_logits(teacher(xb)).mean(0)
                    step += 1
                    loss = sequence_loss(logits, yb, cfg.loss)
                    if teacher is not None:
                        loss = (1 - cfg.distill) * loss + cfg.distill * distill_loss(logits.mean(0), taught)
                    if cfg.activity_lambda > 0 and acts:
                        loss = loss + cfg.activity_lambda * torch.stack([m.last_activity for m in acts]).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if saved is not None:
                        with torch.no_grad():
                            for w, w0 in zip(_weights(model), saved):
                                w.copy_(w0)
                    opt.step()
                    sched.step()
                    tot_loss += float(loss.detach()) * len(idx)
                    correct += int((logits.detach().mean(0).argmax(-1) == yb).sum())
                    seen += len(idx)
                    bar.update(1)
                    bar.set_postfix(loss=f"{tot_loss / seen:.3f}", acc=f"{100 * correct / seen:.1f}", refresh=False)
                rec = {"epoch": epoch + 1, "loss": tot_loss / seen, "train_acc": 100.0 * correct / seen}
                if x_val is not None:
                    rec["val_acc"] = accuracy(model, x_val, y_val)
                history.append(rec)
                if log:
                    log(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()))
    finally:
        bar.close()
        for m in acts:
            m.track_activity, m.last_activity = False, None
        model.eval()
    return history


def batch_dim(model: nn.Module) -> int:
    """The input dimension that indexes samples: 1 for sequence networks (T, B, ...), else 0."""
    return getattr(model, "batch_dim", 0)


def check_finite_input(x: torch.Tensor, what: str = "input") -> None:
    """Non-finite inputs are refused on every path (a NaN must not become a prediction)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() and x.numel() and not bool(torch.isfinite(x).all()):
        idx = torch.nonzero(~torch.isfinite(x))[0].tolist()
        raise ValueError(f"{what} must be finite, got {x[tuple(idx)].item()} at index {tuple(idx)}")


def _output_logits(out) -> torch.Tensor:
    """A model's output as per-timestep logits (T, B, K): tuples give their first element,
    (B, K) outputs are one timestep."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() not in (2, 3):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model output must be logits (B, K) or (T, B, K), got {shape}")
    return out.unsqueeze(0) if out.dim() == 2 else out


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256, timesteps: int | None = None,
                   read_seed: int = 0, progress: bool = False, desc: str = "evaluate", sample_offset: int = 0) -> torch.Tensor:
    """Per-timestep logits (T, N, K) of any ``model`` on ``x`` (eval mode, batched).

    Sample i of ``x`` is named ``sample_offset + i`` for keyed read noise and encodings
    (:mod:`imcsim.context`), so the result does not depend on ``batch_size``."""
    from tqdm.auto import tqdm

    from .context import read_context

    check_finite_input(x)
    model.eval()
    device = next((b.device for b in model.buffers()), torch.device("cpu"))
    bd = batch_dim(model)
    N = x.shape[bd]
    kw = {} if timesteps is None else {"timesteps": timesteps}
    outs = []
    for s in tqdm(range(0, N, batch_size), desc=desc, disable=not progress, leave=False):
        xb = x.narrow(bd, s, min(batch_size, N - s)).to(device)
        with read_context(torch.arange(s, s + xb.shape[bd]) + sample_offset, read_seed=read_seed):
            outs.append(_output_logits(model(xb, **kw)).cpu())
    if not outs:
        raise ValueError("no samples to evaluate (the input holds 0 samples)")
    return torch.cat(outs, dim=1)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> float:
    """Top-1 accuracy (%) of the mean-over-timesteps logits, for any module."""
    if x.shape[batch_dim(model)] != y.shape[0]:
        raise ValueError(f"x holds {x.shape[batch_dim(model)]} samples but y holds {y.shape[0]} labels")
    with no_counting():
        logits = predict_logits(model, x, **kw)
    return 100.0 * int((logits.mean(0).argmax(-1) == y).sum()) / y.shape[0]


from .checkpoints import load_checkpoint, save_checkpoint  # noqa: E402,F401  (re-exported)


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
