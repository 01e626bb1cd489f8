"""Straight-through gradients of a crossbar layer (hardware-aware training, imcsim.chip_training).

The chip's output is not differentiable (rounding, clipping, integer slicing). A layer in
training returns the chip's output in value and, in gradient, that of a linear surrogate
``x @ (gain * W_q)``: ``W_q`` the quantised weight with an identity gradient through the
rounding, ``gain`` each weight's IR-drop attenuation, and each output's gradient scaled by
the share of its ADC conversions that did not clip.
"""

from __future__ import annotations

import torch


def straight_through_weight(tiles, link) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weights (out, in_g) a training step differentiates: the programmed integers times
    the digital scale in value, with gradient ``tiles.grad_gain`` (1 without wires) with
    respect to the float weight that ``link()`` returns (with its bias)."""
    w, b = link()
    w = w.reshape(tiles.out_features, tiles.in_group)
    scale = tiles.w_scale.to(w.dtype).unsqueeze(1)
    q = w / scale
    q = q + (tiles.w_int.to(w.dtype) - q).detach()
    if tiles.grad_gain is not None:
        q = q * tiles.grad_gain.to(w.dtype)
    return q * scale, b


def with_surrogate_gradient(y_chip, y_lin, bias, gate, channel_dim: int) -> torch.Tensor:
    """The chip's output in value; in gradient the surrogate ``y_lin`` (+ bias), scaled by
    ``gate`` (the unclipped share of each output's conversions, or None: 1)."""
    ds = y_lin - y_lin.detach()
    if gate is not None:
        ds = ds * gate.reshape(ds.shape).to(ds.dtype)
    out = y_chip.detach().to(y_lin.dtype) + ds
    if bias is not None:
        shape = [1] * out.dim()
        shape[channel_dim] = -1
        out = out + (bias - bias.detach()).view(shape)
    return out
