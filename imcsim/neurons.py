"""Neurons: spiking IF / LIF with surrogate gradients, and uniform quantised activations.

Spiking neurons take a sequence (T, B, ...) and return spikes (T, B, ...) in {0, 1}. Per
timestep: ``v = leak * v + x_t``; spike when ``v >= threshold``; reset by subtraction
(``v -= threshold``) or to zero. ``v_init`` is the initial membrane potential as a fraction
of the threshold (0.5 makes the spike count round to nearest, see :func:`if_spike_count`).
With ``persistent`` set (by the dynamic-timestep runner) the membrane carries over between
calls, so a network can be run one timestep at a time.

:class:`QuantAct` is the QNN counterpart: ``b``-bit uniform levels ``k * clip / (2**b - 1)``,
k = 0..2**b - 1, of ``clamp(x, 0, clip)``, rounding half to even, straight-through gradient
and a learnable clip (PACT).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .events import NEURON_EVENTS, QUANT_EVENTS, EventCounter, counting_enabled

SURROGATES = ("atan", "sigmoid", "triangle")


class _Spike(torch.autograd.Function):
    """Heaviside step forward; smooth surrogate derivative backward."""

    @staticmethod
    def forward(ctx, u, kind: str, alpha: float):
        ctx.save_for_backward(u)
        ctx.kind, ctx.alpha = kind, alpha
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        a = ctx.alpha
        if ctx.kind == "atan":
            d = (a / 2) / (1 + (math.pi / 2 * a * u) ** 2)
        elif ctx.kind == "sigmoid":
            s = torch.sigmoid(a * u)
            d = a * s * (1 - s)
        else:  # triangle
            d = torch.clamp(1 - a * u.abs(), min=0) * a
        return grad * d, None, None


def spike(u: torch.Tensor, surrogate: str = "atan", alpha: float = 2.0) -> torch.Tensor:
    """Spikes where ``u >= 0`` with a surrogate gradient."""
    return _Spike.apply(u, surrogate, alpha)


class SpikingNeuron(nn.Module):
    """Base of IF and LIF. leak: membrane decay per timestep in (0, 1] (1 = IF)."""

    def __init__(self, threshold=1.0, leak=1.0, reset="subtract", v_init=0.0, surrogate="atan", alpha=2.0):
        super().__init__()
        if not (isinstance(threshold, (int, float)) and threshold > 0 and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
        if not (0 < leak <= 1):
            raise ValueError(f"leak must be in (0, 1], got {leak!r}")
        if reset not in ("subtract", "zero"):
            raise ValueError(f"reset must be 'subtract' or 'zero', got {reset!r}")
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
        if not (0 <= v_init < 1):
            raise ValueError(f"v_init must be in [0, 1) (a fraction of the threshold), got {v_init!r}")
        self.threshold, self.leak, self.reset = float(threshold), float(leak), reset
        self.v_init, self.surrogate, self.alpha = float(v_init), surrogate, float(alpha)
        self.persistent = False
        self.v: torch.Tensor | None = None
        self.track_activity = False  # keep the mean spike rate (with grad) for regularisation
        self.last_activity: torch.Tensor | None = None
        self.events = EventCounter(*NEURON_EVENTS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, B, ...) input currents -> spikes (T, B, ...)."""
        if x.dim() < 2:
            raise ValueError(f"spiking neuron expects (T, B, ...), got shape {tuple(x.shape)}")
        if self.persistent and self.v is not None and self.v.shape == x.shape[1:]:
            v = self.v
        else:
            v = torch.full_like(x[0], self.v_init * self.threshold)
        out = []
        for t in range(x.shape[0]):
            v = self.leak * v + x[t]
            s = spike(v - self.threshold, self.surrogate, self.alpha)
            v = v - s * self.threshold if self.reset == "subtract" else v * (1 - s)
            out.append(s)
        if self.persistent:
            self.v = v.detach()
        spikes = torch.stack(out)
        if self.track_activity:
            self.last_activity = spikes.mean()
        if counting_enabled():
            self.events.add(updates=x.numel(), spikes=float(spikes.detach().sum()))
        return spikes

    def reset_state(self) -> None:
        self.v = None

    def select_state(self, keep: torch.Tensor) -> None:
        """Keep only the membranes of samples ``keep`` (indices into the batch)."""
        if self.v is not None:
            self.v = self.v[keep]

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, leak={self.leak}, reset={self.reset}, v_init={self.v_init}"


class IF(SpikingNeuron):
    """Integrate-and-fire: no leak."""

    def __init__(self, threshold=1.0, reset="subtract", v_init=0.0, surrogate="atan", alpha=2.0):
        super().__init__(threshold, 1.0, reset, v_init, surrogate, alpha)


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire: ``v = leak * v + x``, leak = exp(-1 / tau) by default tau=2."""

    def __init__(self, threshold=1.0, leak=None, tau=2.0, reset="subtract", v_init=0.0, surrogate="atan", alpha=2.0):
        if leak is None:
            if not tau > 0:
                raise ValueError(f"tau must be > 0, got {tau!r}")
            leak = math.exp(-1.0 / tau)
        super().__init__(threshold, leak, reset, v_init, surrogate, alpha)


class QuantAct(nn.Module):
    """Unsigned b-bit activation over [0, clip], straight-through rounding, learnable clip."""

    def __init__(self, bits: int, clip: float = 1.0, learn_clip: bool = True):
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"bits must be an integer in 1..16, got {bits!r}")
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        self.bits = bits
        self.clip = nn.Parameter(torch.tensor(float(clip)), requires_grad=learn_clip)
        self.track_activity = False
        self.last_activity: torch.Tensor | None = None
        self.events = EventCounter(*QUANT_EVENTS)

    @property
    def levels(self) -> int:
        return 2**self.bits - 1

    @property
    def scale(self) -> float:
        """Value of one integer step, clip / (2**bits - 1)."""
        return float(self.clip.detach().abs()) / self.levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.clip.abs() + 1e-12
        y = torch.minimum(torch.relu(x), c)
        q = torch.round(y / c * self.levels) * (c / self.levels)
        out = y + (q - y).detach()
        if self.track_activity:
            self.last_activity = (out / c).mean()  # mean activation as a fraction of full scale
        if counting_enabled():
            self.events.add(updates=x.numel(), nonzero=float(torch.count_nonzero(q.detach())))
        return out

    def extra_repr(self) -> str:
        return f"bits={self.bits}, clip={float(self.clip):.4g}"


def if_spike_count(c: float, T: int, threshold: float = 1.0, v_init: float = 0.0) -> int:
    """Closed form of an IF neuron (reset by subtraction) driven by a constant c in [0, thr):
    ``floor(T c / thr + v_init)`` spikes in T steps -- round-half-up when v_init = 0.5."""
    return math.floor(T * c / threshold + v_init)


def neurons(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, SpikingNeuron)]


def set_persistent(model: nn.Module, on: bool) -> None:
    for n in neurons(model):
        n.persistent = on
        n.v = None


def reset_states(model: nn.Module) -> None:
    for n in neurons(model):
        n.reset_state()


def select_states(model: nn.Module, keep: torch.Tensor) -> None:
    for n in neurons(model):
        n.select_state(keep)
