"""Operations that stay in the digital periphery, with their events counted.

A converted model never computes anything for free: what is not on a crossbar (pooling,
residual additions, an unfolded BatchNorm, a Linear / Conv kept digital, a ReLU on analog
values, ...) runs in one of these wrappers, which computes exactly what the float op computes
and counts its arithmetic:

* ``macs``: multiply-accumulates (digital Linear / Conv);
* ``adds``: additions (pooling sums, residual additions, bias / BatchNorm shifts);
* ``muls``: multiplications (averages' divisions, BatchNorm scales, constant scales);
* ``compares``: comparisons (max pooling, ReLU);
* ``values``: output values produced (buffer traffic).

The cost model prices them with the technology's digital energies.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .events import DIGITAL_EVENTS, EventCounter, counting_enabled


class DigitalOp(nn.Module):
    """One digital operation: ``fn(*args, **kwargs)`` plus its event count.

    kind: what it is, for reports (``add``, ``avg_pool``, ``max_pool``, ``sum_pool``,
    ``batchnorm``, ``linear``, ``conv``, ``relu``, ``mean``, ``scale``, ``other``).
    count: function (output, args, kwargs) -> dict of DIGITAL_EVENTS counts."""

    neuron_kind = None

    def __init__(self, fn, kind: str, count, label: str = ""):
        super().__init__()
        self.fn, self.kind, self.count, self.label = fn, kind, count, label or kind
        self.events = EventCounter(*DIGITAL_EVENTS)

    def forward(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        if counting_enabled() and isinstance(out, torch.Tensor):
            self.events.add(values=out.numel(), **self.count(out, args, kwargs))
        return out

    def extra_repr(self) -> str:
        return self.label


def _pair(v, n=2):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _window(k) -> int:
    return math.prod(_pair(k))


def count_pool(kind: str):
    """Counts of a pooling call: args (x, kernel_size, ...) or a pooling module's attributes."""

    def count(out, args, kwargs, module=None):
        k = kwargs.get("kernel_size", args[1] if len(args) > 1 else None)
        n = out.numel()
        w = _window(k) if k is not None else 1
        if kind == "max_pool":
            return {"compares": n * (w - 1)}
        if kind == "sum_pool":
            return {"adds": n * (w - 1)}
        return {"adds": n * (w - 1), "muls": n}
    return count


def count_elementwise(kind: str):
    def count(out, args, kwargs):
        n = out.numel()
        return {"adds": n} if kind in ("add", "sub") else {"muls": n} if kind in ("mul", "scale", "div") else {"compares": n}
    return count


def count_reduction(out, args, kwargs):
    x = args[0]
    n_in, n_out = x.numel(), out.numel()
    return {"adds": max(0, n_in - n_out), "muls": n_out}


# ------------------------------------------------------------------ module wrappers


class DigitalModule(nn.Module):
    """A module kept digital (a Linear / Conv that is not mapped, a BatchNorm that is not
    folded, a pooling layer, a ReLU): runs the original module and counts its arithmetic."""

    neuron_kind = None

    def __init__(self, module: nn.Module, reason: str = ""):
        super().__init__()
        self.module, self.reason = module, reason
        self.kind = _module_kind(module)
        self.events = EventCounter(*DIGITAL_EVENTS)

    def forward(self, *args, **kwargs):
        out = self.module(*args, **kwargs)
        if counting_enabled() and isinstance(out, torch.Tensor):
            self.events.add(values=out.numel(), **module_counts(self.module, args[0] if args else None, out))
        return out

    def __getattr__(self, name: str):
        # a forward that reads the original layer's tensors (``F.linear(x, self.fc.weight)``)
        # finds them on the module kept digital, as before conversion
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("module")
            if inner is None or name.startswith("__"):
                raise
            return getattr(inner, name)

    def extra_repr(self) -> str:
        return f"{self.kind}{': ' + self.reason if self.reason else ''}"


def _module_kind(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "conv"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "batchnorm"
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        return "max_pool"
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return "avg_pool"
    if isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh)):
        return "relu"
    return type(m).__name__.lower()


def module_counts(m: nn.Module, x, out) -> dict:
    """Arithmetic of one call of a digital module (x: its first input, out: its output)."""
    n = out.numel()
    if isinstance(m, nn.Linear):
        return {"macs": n * m.in_features, "adds": n if m.bias is not None else 0}
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        per = (m.in_channels // m.groups) * math.prod(m.kernel_size)
        return {"macs": n * per, "adds": n if m.bias is not None else 0}
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return {"muls": n, "adds": n}
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
        return {"compares": n * (_window(m.kernel_size) - 1)}
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
        return {"adds": n * (_window(m.kernel_size) - 1), "muls": n}
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d)):
        w = max(1, x.numel() // max(1, n)) if x is not None else 1
        key = "compares" if "Max" in type(m).__name__ else "adds"
        return {key: n * (w - 1), **({"muls": n} if key == "adds" else {})}
    if isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh)):
        return {"compares": n}
    if isinstance(m, SumPool2d):
        return {"adds": n * (_window(m.kernel_size) - 1)}
    if isinstance(m, Scale):
        return {"muls": n}
    return {"adds": n}


class SumPool2d(nn.Module):
    """Sum pooling (NIR's SumPool2d): the sum over each window (average x window size)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)
        self.padding = _pair(padding)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, divisor_override=1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Scale(nn.Module):
    """Elementwise scaling by a (broadcast) tensor (NIR's Scale)."""

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x):
        return x * self.scale
