"""``convert(model, hw)``: a copy of a trained model with its Linear / Conv2d layers on crossbars.

BatchNorm directly after a Linear / Conv2d (next sibling in an ``nn.Sequential``) is
folded into it. Each crossbar layer learns what it receives from the module before it:
spikes after a spiking neuron, b-bit integers after a :class:`~imcsim.neurons.QuantAct`,
otherwise analog values quantised to ``hw.inputs.bits`` over a calibrated range. Shape-only
modules (Flatten, MaxPool, Dropout, Identity) are looked through. What stays digital, and
why, is listed in the returned model's ``conversion_report``.

``calibrate(model, data)`` sets analog input ranges and calibrated ADC ranges from data.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from crossbar_models import RangeObserver

from ..crossbar import CrossbarConv2d, CrossbarLinear, InputSpec, TiledMatrix, unsupported_conv
from ..errors import CalibrationError
from ..events import reset_events
from ..hardware import HardwareConfig
from ..neurons import QuantAct, SpikingNeuron

_TRANSPARENT = (nn.Flatten, nn.MaxPool1d, nn.MaxPool2d, nn.Dropout, nn.Identity, nn.Unflatten)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class LayerEntry:
    name: str
    kind: str
    status: str  # "crossbar" | "digital" | "folded"
    detail: str


@dataclass
class ConversionReport:
    hardware: str
    entries: list[LayerEntry] = field(default_factory=list)

    @property
    def crossbar_layers(self) -> list[str]:
        return [e.name for e in self.entries if e.status == "crossbar"]

    @property
    def digital_layers(self) -> list[str]:
        return [e.name for e in self.entries if e.status == "digital"]

    def __str__(self) -> str:
        w = max([len(e.name) for e in self.entries] + [5])
        lines = [f"conversion onto {self.hardware}"]
        for e in self.entries:
            lines.append(f"  {e.name:<{w}}  {e.kind:<12} {e.status:<9} {e.detail}")
        return "\n".join(lines)


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None, bn) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of a layer followed by an eval-mode BatchNorm, folded together."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    k = (gamma / std).detach()
    w = weight.detach() * k.view(-1, *([1] * (weight.dim() - 1)))
    b0 = bias.detach() if bias is not None else torch.zeros_like(k)
    return w, (b0 - bn.running_mean) * k + beta.detach()


def _input_spec(prev: nn.Module | None, hw: HardwareConfig) -> tuple[InputSpec, str]:
    if isinstance(prev, SpikingNeuron):
        return InputSpec("spike"), "spikes"
    if isinstance(prev, QuantAct):
        return InputSpec("quantized", prev.bits, prev.scale), f"{prev.bits}-bit activations"
    return InputSpec("analog", hw.inputs.bits, None), f"analog, {hw.inputs.bits}-bit {hw.inputs.mode}"


def convert(model: nn.Module, hw: HardwareConfig, *, calibration=None, exclude=(), seed: int | None = None) -> nn.Module:
    """Return a crossbar copy of ``model`` (the original is untouched).

    hw: the hardware. calibration: data (tensor or iterable of batches) used to set analog
    input ranges and calibrated ADC ranges. exclude: module names to keep digital.
    seed: chip instance (defaults to hw.seed): programming variation and read noise.
    """
    if not isinstance(hw, HardwareConfig):
        raise ValueError(f"hw must be a HardwareConfig, got {type(hw).__name__}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    names = {n for n, _ in model.named_modules()}
    for name in exclude:
        if name not in names:
            raise ValueError(f"exclude names {name!r}, which is not a module of the model")
    chip = hw.seed if seed is None else int(seed)
    out = copy.deepcopy(model).eval()
    report = ConversionReport(hardware=hw.describe())
    counter = [0]

    def visit(parent: nn.Module, prefix: str):
        children = list(parent.named_children())
        sequential = isinstance(parent, (nn.Sequential, nn.ModuleList))
        prev_compute = None  # last module before the current one that is not transparent
        folded: set[str] = set()
        for idx, (cname, child) in enumerate(children):
            full = f"{prefix}{cname}"
            if isinstance(child, (nn.Linear, nn.Conv2d)):
                kind = type(child).__name__
                if full in exclude:
                    report.entries.append(LayerEntry(full, kind, "digital", "excluded by the user"))
                elif isinstance(child, nn.Conv2d) and unsupported_conv(child):
                    report.entries.append(LayerEntry(full, kind, "digital", unsupported_conv(child)))
                else:
                    weight, bias = child.weight, child.bias
                    note = ""
                    nxt = children[idx + 1][1] if sequential and idx + 1 < len(children) else None
                    if isinstance(nxt, _BN) and nxt.num_features == weight.shape[0]:
                        weight, bias = fold_batchnorm(weight, bias, nxt)
                        folded.add(children[idx + 1][0])
                        note = f", {prefix}{children[idx + 1][0]} folded in"
                    spec, what = _input_spec(prev_compute if sequential else None, hw)
                    layer_seed = chip * 1_000_003 + counter[0]
                    counter[0] += 1
                    twin = CrossbarLinear if isinstance(child, nn.Linear) else CrossbarConv2d
                    new = twin(child, hw, spec, seed=layer_seed, name=full, weight=weight, bias=bias)
                    setattr(parent, cname, new)
                    g = new.tiles.grid
                    report.entries.append(LayerEntry(full, kind, "crossbar", f"{g.row_tiles}x{g.col_tiles} tiles, input {what}{note}"))
            elif isinstance(child, _BN):
                if cname in folded:
                    setattr(parent, cname, nn.Identity())
                    report.entries.append(LayerEntry(full, type(child).__name__, "folded", "into the layer before it"))
                else:
                    report.entries.append(LayerEntry(full, type(child).__name__, "digital", "not directly after a Linear/Conv2d in a Sequential"))
            elif isinstance(child, (SpikingNeuron, QuantAct)):
                pass
            elif len(list(child.children())):
                visit(child, f"{full}.")
            if not isinstance(child, _TRANSPARENT + _BN):
                prev_compute = child

    visit(out, "")
    out.conversion_report = report
    if calibration is not None:
        calibrate(out, calibration)
    return out


def crossbar_layers(model: nn.Module) -> list[tuple[str, TiledMatrix]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, TiledMatrix)]


def _batches(data, batch_size: int):
    if isinstance(data, torch.Tensor):
        for s in range(0, data.shape[0], batch_size):
            yield data[s : s + batch_size]
        return
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


def _run(model, data, batch_size):
    from ..training import predict_logits

    offset = 0
    bd = getattr(model, "batch_dim", 0)
    with torch.no_grad():
        for x in _batches(data, batch_size):
            predict_logits(model, x, batch_size=x.shape[bd] or 1, sample_offset=offset)
            offset += x.shape[bd]


def calibrate(model: nn.Module, data, *, batch_size: int = 256) -> nn.Module:
    """Set analog input ranges (max seen) and calibrated ADC full scales from ``data``.

    Two passes: first the layers run digitally to see their inputs, then through the
    crossbars (ADC off) to see their column currents.
    """
    layers = [m for _, m in crossbar_layers(model)]
    if not layers:
        raise ValueError("calibrate: the model has no crossbar layers (did you call imcsim.convert?)")
    analog = [m for m in layers if m.input_spec.kind == "analog"]
    if analog:
        for m in analog:
            m._observe_inputs, m._input_max = True, None
        for m in layers:
            m._digital = True
        try:
            _run(model, data, batch_size)
        finally:
            for m in layers:
                m._digital = False
                m._observe_inputs = False
        for m in analog:
            top = m._input_max or 0.0
            if top <= 0:
                raise ValueError(f"calibrate: layer {m.name!r} saw no positive inputs; cannot set its input range")
            m.input_spec = InputSpec("analog", m.input_spec.bits, top / (2**m.input_spec.bits - 1))
    adc_cal = [m for m in layers if not m.hw.adc.lossless and m.hw.adc.range == "calibrated"]
    if adc_cal:
        for m in adc_cal:
            m._observer = RangeObserver()
        try:
            _run(model, data, batch_size)
            for m in adc_cal:
                if m._observer.max == 0.0:
                    raise CalibrationError(
                        f"calibrate: crossbar layer {m.name!r} saw no column current on the calibration data (all its "
                        "inputs were zero, e.g. the neurons before it never spiked); calibrate on other data, or use "
                        "adc.range = 'fixed'")
                m.adc_full_scale = m._observer.full_scale(m.hw.adc.percentile)
        finally:
            for m in adc_cal:
                m._observer = None
    reset_events(model)
    return model
