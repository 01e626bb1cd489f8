"""Argument checks shared by the physics modules.

Every check raises ``ValueError`` whose message names the argument, the offending value and
what is allowed, so that a bad call fails at the boundary rather than deep inside torch.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch


def check_real(name: str, value, *, low=None, high=None, low_open=False, high_open=False):
    """Return ``float(value)`` if it is a finite real number inside the given bounds."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return v


def check_int(name: str, value, *, low=None, high=None):
    """Return ``int(value)`` if it is an integer (not a bool) inside [low, high]."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return v


def check_choice(name: str, value, choices):
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_tensor(name: str, value, *, min_dim: int = 0) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimensions, got shape {tuple(value.shape)}"
        )
    if not (value.is_floating_point() or value.is_complex()):
        value = value.to(torch.get_default_dtype())
    return value


def _fmt(x) -> str:
    return f"{x:.6g}" if isinstance(x, float) else repr(x)


def _first_bad(mask: torch.Tensor):
    idx = torch.nonzero(mask, as_tuple=False)[0].tolist()
    return tuple(idx)


def _within(value: torch.Tensor, positive: bool) -> bool:
    """True when every element is finite (and > 0 when ``positive``): one min/max pass (NaN
    propagates into both), instead of boolean masks as large as the tensor; False sends the
    caller to the slower pass that finds the first bad element."""
    if not value.is_floating_point() or value.numel() == 0:
        return False
    lo, hi = (float(v) for v in torch.aminmax(value.detach()))
    return math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or not positive)


def check_finite_tensor(name: str, value: torch.Tensor) -> None:
    if _within(value, positive=False):
        return
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        where = _first_bad(bad)
        raise ValueError(f"{name} must be finite, got {_fmt(value[where].item())} at index {where}")


def check_positive_tensor(name: str, value: torch.Tensor, unit: str = "") -> None:
    """Finite and strictly positive everywhere (conductances, resistances of devices)."""
    if _within(value, positive=True):
        return
    check_finite_tensor(name, value)
    bad = value <= 0
    if bool(bad.any()):
        where = _first_bad(bad)
        unit = f" {unit}" if unit else ""
        raise ValueError(
            f"{name} must be > 0{unit} everywhere, got {_fmt(value[where].item())} at index {where}"
        )
