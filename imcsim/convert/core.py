"""``convert(model, hw)``: a copy of a trained model with its Linear / Conv layers on crossbars.

Any ``torch.fx``-traceable model converts (see :mod:`imcsim.convert.graph`): residual
additions, concatenations, functional calls, nested containers, a module used twice, the
neurons of snnTorch / SpikingJelly / Norse. Each crossbar layer is told what it receives
from the graph (spikes, integer counts, b-bit activations, analog values), BatchNorm folds
into the Linear / Conv it directly follows, and what stays digital is wrapped so its
arithmetic is counted. A model that cannot be traced is converted by walking its submodules
in order instead, and the report says why. Every node and what it became is listed in the
returned model's ``conversion_report``.

``calibrate(model, data)`` sets analog input ranges and calibrated ADC ranges from data.
"""

from __future__ import annotations

import copy
import types
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from crossbar_models import RangeObserver
from crossbar_models._checks import check_int

from ..allocator import trim_malloc
from ..context import default_context
from ..crossbar import CrossbarConv, CrossbarLinear, InputSpec, TiledMatrix, unsupported_conv
from ..digital import DigitalModule
from ..errors import CalibrationError, CalibrationWarning
from ..events import INPUT_EVENTS, EventCounter, count_run_input, no_counting, reset_events
from ..hardware import MAX_SEED, HardwareConfig
from ..neurons import QuantAct, SpikingNeuron
from . import graph as G
from .frameworks import adapt, framework_of, is_framework_neuron

INPUT_KINDS = ("auto", "analog", "spike", "count")


@dataclass
class ConversionReport:
    hardware: str
    entries: list = field(default_factory=list)
    traced: bool = True
    note: str = ""

    @property
    def crossbar_layers(self) -> list[str]:
        return [e.name for e in self.entries if e.status == "crossbar"]

    @property
    def digital_layers(self) -> list[str]:
        return [e.name for e in self.entries if e.status == "digital"]

    def input_kinds(self) -> dict:
        """Crossbar layer -> what it reads (from the report's details)."""
        return {e.name: e.input for e in self.entries if e.status == "crossbar"}

    def __str__(self) -> str:
        w = max([len(e.name) for e in self.entries] + [5])
        kw = max([len(e.kind) for e in self.entries] + [4])
        lines = [f"conversion onto {self.hardware}"]
        if self.note:
            lines.append(f"  note: {self.note}")
        for e in self.entries:
            lines.append(f"  {e.name:<{w}}  {e.kind:<{kw}}  {e.status:<8} {e.detail}")
        return "\n".join(lines)


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None, bn) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of a layer followed by an eval-mode BatchNorm, folded together
    (differentiable in the weights and the BatchNorm's affine parameters; its running
    statistics are constants)."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    k = gamma / std
    w = weight * k.view(-1, *([1] * (weight.dim() - 1)))
    b0 = bias if bias is not None else torch.zeros_like(std)
    return w, (b0 - bn.running_mean) * k + beta


def _first_batch(data):
    if data is None:
        return None
    if isinstance(data, torch.Tensor):
        return data
    for item in data:
        return item[0] if isinstance(item, (tuple, list)) else item
    return None


def convert(model: nn.Module, hw: HardwareConfig, *, calibration=None, exclude=(), seed: int | None = None,
            input_kind: str = "auto", batch_dim: int | None = None) -> nn.Module:
    """Return a crossbar copy of ``model`` (the original is untouched).

    hw: the hardware. calibration: data in the form of the model's input (a tensor or an
    iterable of batches; for sequence networks (T, B, ...)) used to set analog input ranges
    and calibrated ADC ranges. exclude: module names to keep digital (their arithmetic is
    priced as digital events). seed: chip instance (default hw.seed): programming variation
    and the key of the read noise. input_kind: what the model's input is -- ``auto`` (from
    the calibration data: 0/1 values are spikes, non-negative integers counts, anything else
    analog), ``analog``, ``spike`` or ``count``. batch_dim: the input dimension indexing
    samples, for a model that is not an imcsim Network (default 0).
    """
    from ..models import Network, Stepwise

    if not isinstance(hw, HardwareConfig):
        raise ValueError(f"hw must be a HardwareConfig, got {type(hw).__name__}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        chip = hw.seed if seed is None else check_int("seed", seed, low=0, high=MAX_SEED)
    except ValueError as e:
        raise ValueError(f"convert: {e}") from None
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind must be one of {', '.join(INPUT_KINDS)}, got {input_kind!r}")
    names = {n for n, _ in model.named_modules()}
    inner = model.body if isinstance(model, Network) else model.module if isinstance(model, Stepwise) else model
    prefix = "body." if isinstance(model, Network) else "module." if isinstance(model, Stepwise) else ""
    for name in exclude:
        if name not in names:
            raise ValueError(f"exclude names {name!r}, which is not a module of the model")
    layer_ids: dict[str, int] = {}

    def seed_of(name: str) -> int:
        return layer_seed(chip, layer_ids.setdefault(name, len(layer_ids)))

    placeholder = _placeholder_kind(model, input_kind, calibration)
    excl = {e[len(prefix):] if e.startswith(prefix) else e for e in exclude}
    body, report = _convert_module(inner, hw, placeholder, excl, seed_of, prefix)
    report.entries = [type(e)(prefix + e.name, e.kind, e.status, e.detail, e.input) for e in report.entries]
    if isinstance(model, Network):
        out = copy.copy(model)
        out._modules = dict(model._modules)
        out._modules["body"] = body
        out.arch = dict(model.arch)
        out.eval()
    elif isinstance(model, Stepwise):
        out = Stepwise(body, output_index=model.output_index)
    else:
        out = body.eval()
        out.batch_dim = 0 if batch_dim is None else int(batch_dim)
        _with_default_context(out)
    report.hardware = hw.describe()
    out.conversion_report = report
    out.chip_seed = chip
    if calibration is not None:
        calibrate(out, calibration)
    trim_malloc()  # programming's and calibration's freed intermediates back to the kernel
    return out


def layer_seed(chip: int, index: int) -> int:
    """Seed of the index-th converted layer of chip instance ``chip`` (programming
    variation and read-noise key)."""
    return chip * 1_000_003 + index


def reprogram(model: nn.Module, seed: int, *, calibration=None, batch_size: int | None = None) -> nn.Module:
    """Another chip instance of a converted model: a copy whose crossbar layers are
    programmed with chip seed ``seed`` (new variation, faults and read-noise key), equal to
    ``convert(original, hw, seed=seed, calibration=calibration)`` but without mapping the
    network again; the digital input ranges are kept and only the ADC ranges are calibrated
    again (each physical chip is calibrated on its own currents)."""
    try:
        chip = check_int("seed", seed, low=0, high=MAX_SEED)
    except ValueError as e:
        raise ValueError(f"reprogram: {e}") from None
    old = getattr(model, "chip_seed", None)
    if old is None:
        raise ValueError("reprogram needs a model made by imcsim.convert")
    out = G.detached_deepcopy(model)
    out.chip_seed = chip
    for _, m in crossbar_layers(out):  # a chip calibrated before it drifts: programmed as then (calibrate reads it later)
        m.reprogram(layer_seed(chip, m.seed - layer_seed(old, 0)), time=0.0 if _calibrated_before_drift(m) else None)
    layers = [m for _, m in crossbar_layers(out)]
    ranges_known = all(m.input_spec.kind != "analog" or m.input_spec.scale is not None for m in layers)
    if any((not m.hw.adc.lossless and m.hw.adc.range == "calibrated") or m.hw.adc.correction != "none"
           for m in layers) or not ranges_known:
        if calibration is None:
            raise CalibrationError("reprogram: the model has calibrated ranges; pass calibration data")
        calibrate(out, calibration, batch_size=batch_size, inputs=not ranges_known)
    trim_malloc()
    return out


def _placeholder_kind(model, input_kind, calibration) -> G.Kind:
    from ..models import Network

    if input_kind == "analog":
        return G.ANALOG
    if input_kind == "spike":
        return G.SPIKE
    if isinstance(model, Network) and model.kind == "snn" and model.input == "static" and model.encoding == "rate":
        return G.SPIKE
    if isinstance(model, Network) and model.kind == "qnn" and model.input == "sequence":
        return G.ANALOG  # its body sees the sequence's event rate per pixel, not the events
    x = _first_batch(calibration)
    if input_kind == "count":
        if x is None:
            raise ValueError("input_kind='count' needs calibration data to know the number of levels")
        k = G.kind_of_data(x)
        if not k.is_count:
            raise ValueError("input_kind='count': the calibration data are not non-negative integers")
        return k
    return G.kind_of_data(x) if x is not None else G.ANALOG


def _convert_module(module: nn.Module, hw, placeholder, exclude, seed_of, prefix=""):
    report = ConversionReport(hardware=hw.describe())
    if hasattr(module, "dataflow"):  # a body that knows its own graph (NIR), cycles included
        out, report.entries = G.convert_dataflow(module, hw, placeholder=placeholder, exclude=set(exclude), seed_of=seed_of)
        return out, report
    try:
        graph = G.trace(module)
    except Exception as e:  # noqa: BLE001 - any tracing failure: say why, fall back
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        out, shared = G.converting_copy(module)
        report.traced = False
        report.note = (f"not traceable by torch.fx ({reason[:160]}); converted by walking its submodules in order: "
                       "each layer's input kind is taken from the module defined before it, and functional calls in "
                       "forward() are not seen")
        report.entries = _walk(out, hw, exclude, seed_of, placeholder)
        return G.unshare(out, shared), report
    out, entries = G.convert_graph(module, graph, hw, placeholder=placeholder, exclude=set(exclude), seed_of=seed_of,
                                   fold_bn=True, prefix=prefix)
    report.entries = entries
    return out, report


def _with_default_context(model: nn.Module) -> None:
    """Calls of a converted user model outside imcsim's runners key read noise by batch
    position (each call its own context); runners name samples themselves. The input is
    counted for the off-chip cost, as a Network counts its input. The class's own forward is
    looked up at each call (not captured), so a deep copy (``reprogram``) runs its own layers."""
    model.input_events = EventCounter(*INPUT_EVENTS)

    def forward(self, *args, **kwargs):
        x = args[0] if args else next(iter(kwargs.values()), None)
        bd = getattr(self, "batch_dim", 0)
        b = x.shape[bd] if isinstance(x, torch.Tensor) and x.dim() > bd else 1
        with default_context(b):
            if isinstance(x, torch.Tensor):  # set_persistent marks a step-by-step run
                count_run_input(self, x, bd, getattr(self, "_input_stepwise", False))
            return type(self).forward(self, *args, **kwargs)

    model.forward = types.MethodType(forward, model)


# ------------------------------------------------------------------------ fallback walk

_TRANSPARENT = (nn.Flatten, nn.MaxPool1d, nn.MaxPool2d, nn.Dropout, nn.Identity, nn.Unflatten)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _walk(root: nn.Module, hw, exclude, seed_of, placeholder) -> list:
    """Convert by module order (for models torch.fx cannot trace)."""
    entries = []

    def kind_after(prev):
        if prev is None:
            return placeholder
        if isinstance(prev, SpikingNeuron) or is_framework_neuron(prev):
            return G.SPIKE
        if isinstance(prev, QuantAct):
            return G.count(2**prev.bits, prev.scale)
        return G.ANALOG

    def visit(parent: nn.Module, prefix: str, prev):
        children = list(parent.named_children())
        sequential = isinstance(parent, (nn.Sequential, nn.ModuleList))
        folded: set[str] = set()
        for idx, (cname, child) in enumerate(children):
            full = f"{prefix}{cname}"
            tname = type(child).__name__
            if isinstance(child, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                problem = "excluded by the user" if full in exclude else unsupported_conv(child) if not isinstance(child, nn.Linear) else None
                if problem:
                    setattr(parent, cname, DigitalModule(child, problem))
                    entries.append(G.Entry(full, tname, "digital", f"{problem}; priced as digital MACs"))
                else:
                    weight, bias = child.weight, child.bias
                    note = ""
                    nxt = children[idx + 1][1] if sequential and idx + 1 < len(children) else None
                    if isinstance(nxt, _BN) and nxt.num_features == weight.shape[0]:
                        weight, bias = fold_batchnorm(weight, bias, nxt)
                        folded.add(children[idx + 1][0])
                        note = f", {prefix}{children[idx + 1][0]} folded in"
                    spec = G.input_spec(kind_after(prev), hw)
                    twin = CrossbarLinear if isinstance(child, nn.Linear) else CrossbarConv
                    new = twin(child, hw, spec, seed=seed_of(full), name=full, weight=weight, bias=bias)
                    if note:
                        new.folded_bn = f"{prefix}{children[idx + 1][0]}"
                    setattr(parent, cname, new)
                    g = new.tiles.grid
                    entries.append(G.Entry(full, tname, "crossbar", f"{g.row_tiles}x{g.col_tiles} tiles, input "
                                           f"{spec.describe(hw)}{note}", spec.describe(hw)))
            elif isinstance(child, _BN):
                if cname in folded:
                    setattr(parent, cname, nn.Identity())
                    entries.append(G.Entry(full, tname, "folded", "into the layer before it"))
                else:
                    setattr(parent, cname, DigitalModule(child, "not directly after a Linear/Conv"))
                    entries.append(G.Entry(full, tname, "digital", "not directly after a Linear/Conv in a Sequential"))
            elif is_framework_neuron(child):
                setattr(parent, cname, adapt(child))
                entries.append(G.Entry(full, f"{framework_of(child)}.{tname}", "neuron", "imcsim adapter"))
            elif isinstance(child, (SpikingNeuron, QuantAct)):
                entries.append(G.Entry(full, tname, "neuron", ""))
            elif len(list(child.children())):
                prev = visit(child, f"{full}.", prev)
            elif isinstance(child, _TRANSPARENT):
                entries.append(G.Entry(full, tname, "free" if not isinstance(child, (nn.MaxPool1d, nn.MaxPool2d)) else "digital", ""))
                if isinstance(child, (nn.MaxPool1d, nn.MaxPool2d)):
                    setattr(parent, cname, DigitalModule(child))
            elif not any(True for _ in child.parameters()):
                setattr(parent, cname, DigitalModule(child))
                entries.append(G.Entry(full, tname, "digital", "events counted"))
            if not isinstance(child, _TRANSPARENT + _BN):
                prev = child
        return prev

    visit(root, "", None)
    return entries


def crossbar_layers(model: nn.Module) -> list[tuple[str, TiledMatrix]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, TiledMatrix)]


def _batches(data, batch_size: int, bd: int = 0):
    if isinstance(data, torch.Tensor):
        for s in range(0, data.shape[bd], batch_size):
            yield data.narrow(bd, s, min(batch_size, data.shape[bd] - s))
        return
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


def _run(model, data, batch_size):
    from ..training import predict_logits

    offset = 0
    bd = getattr(model, "batch_dim", 0)
    with torch.no_grad(), no_counting():  # calibration reads are not priced (events are reset after)
        for x in _batches(data, batch_size, bd):
            predict_logits(model, x, batch_size=x.shape[bd] or 1, sample_offset=offset)
            offset += x.shape[bd]


CALIBRATION_BATCH = 8
"""The fewest images per calibration pass (``calibrate`` / ``reprogram`` without
``batch_size``; see :func:`calibration_batch`), the number for CIFAR-size inputs. The
ranges are the same bits whatever the batch (histograms of powers-of-two bins, read noise
keyed per image), but the reads' memory grows with it, and their time per image does not
fall: full-width VGG9 on ``rram``, 128 calibration images (the command line's default),
1 thread, ``scripts/bench_calibration.py``: at stop 45, in passes of 256 / 32 / 16 / 8, the
conversion's peak 541 / 376 / 361 / 370 MB above the loaded model for the SNN, 442 / 366 /
337 / 310 MB for its QNN twin, calibration 11.2 / 11.2 / 10.6 / 10.0 s and 9.9 / 8.9 / 8.8 /
9.2 s (min of 2); at stop 46, with programming and calibration leaner, passes of 16 / 8:
319 / 304 MB and 291 / 278 MB, 10.9 / 11.3 s and 9.7 / 9.4 s (median of 3 processes)."""
CALIBRATION_PASS_VALUES = 1 << 14
"""Input values per calibration pass by default: small inputs are read many images at a
time, as a pass costs each layer a fixed overhead (the digits conv SNN on ``rram``, 128
images: 0.30 s in passes of 8, 0.12 s in one pass of 128), CIFAR-size ones 8 at a time."""
CALIBRATION_BATCH_MAX = 128


def calibration_batch(data, batch_dim: int = 0) -> int:
    """Images per calibration pass for ``data`` (a tensor of samples along ``batch_dim``):
    :data:`CALIBRATION_PASS_VALUES` over the values per sample, within
    [:data:`CALIBRATION_BATCH`, :data:`CALIBRATION_BATCH_MAX`] (3x32x32: 8; 1x28x28: 20;
    8x8: 128). The ranges are the same bits whatever it is; it sets time and memory only."""
    if not isinstance(data, torch.Tensor) or data.dim() <= batch_dim or data.shape[batch_dim] == 0:
        return CALIBRATION_BATCH
    per_sample = data.numel() // data.shape[batch_dim]
    return min(CALIBRATION_BATCH_MAX, max(CALIBRATION_BATCH, CALIBRATION_PASS_VALUES // max(1, per_sample)))


def calibrate(model: nn.Module, data, *, batch_size: int | None = None, inputs: bool = True) -> nn.Module:
    """Set analog input ranges (max seen) and calibrated ADC full scales from ``data``, read
    ``batch_size`` images at a time (default: :func:`calibration_batch`).

    Two passes: first the layers run digitally to see their inputs, then through the
    crossbars (ADC off) to see their column currents (of the reads performed: skipped
    all-zero reads convert nothing). inputs=False keeps the input ranges (they are digital,
    the same for every chip instance) and runs only the second pass. Layers with
    an ``adc.correction`` then get a third pass: the calibrated chip reads the data and
    each output's gain and offset are fitted against the exact integer products.
    Layers with ``adc.calibrated_at = "programming"`` on a drifting chip are calibrated on
    the chip as programmed (time 0) and then read at ``device.time`` with those ranges.
    """
    layers = [m for _, m in crossbar_layers(model)]
    if not layers:
        raise ValueError("calibrate: the model has no crossbar layers (did you call imcsim.convert?)")
    if batch_size is None:
        batch_size = calibration_batch(data, getattr(model, "batch_dim", 0))
    else:
        batch_size = check_int("calibrate: batch_size", batch_size, low=1)
    early = [m for m in layers if _calibrated_before_drift(m)]
    for m in early:
        if m.read_time != 0.0:
            m.read_at(0.0)
    try:
        _calibrate(model, layers, data, batch_size, inputs)
    finally:
        for m in early:
            m.read_at()  # the same chip, drifted to device.time; calibration kept
    return model


def _calibrated_before_drift(m: TiledMatrix) -> bool:
    """Whether layer m has ADC ranges or a correction set right after programming and is read later, drifted."""
    adc = m.hw.adc
    calibrated = (not adc.lossless and adc.range == "calibrated") or adc.correction != "none"
    return calibrated and adc.calibrated_at == "programming" and m.hw.device.drifting


def _calibrate(model, layers, data, batch_size, inputs) -> None:
    analog = [m for m in layers if m.input_spec.kind == "analog"] if inputs else []
    if not inputs and any(m.input_spec.kind == "analog" and m.input_spec.scale is None for m in layers):
        raise CalibrationError("calibrate(inputs=False): the analog input ranges were never calibrated")
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
        unseen = []
        for m in analog:
            top = m._input_max or 0.0
            if top <= 0:  # all its inputs were zero: no range to learn; [0, 1] (any range reads zeros alike)
                top = 1.0
                unseen.append(m.name)
            m.input_spec = InputSpec("analog", m.input_spec.bits, top / (2**m.input_spec.bits - 1))
        if unseen:
            warnings.warn(
                f"calibrate: crossbar layer(s) {', '.join(map(repr, unseen))} saw no positive inputs on the calibration "
                "data (the layers before them stayed silent, as in an untrained network); their analog input range is "
                "set to [0, 1]", CalibrationWarning, stacklevel=2)
    adc_cal = [m for m in layers if not m.hw.adc.lossless and m.hw.adc.range == "calibrated"]
    if adc_cal:
        for m in adc_cal:
            m._observer = RangeObserver()
        try:
            _run(model, data, batch_size)
            silent = []
            for m in adc_cal:
                if m._observer.max == 0.0:  # no read converted anything: no range to learn
                    m.adc_full_scale = m.hw.adc.full_scale_fraction * m.max_column_current()
                    silent.append(m.name)
                else:
                    m.adc_full_scale = m._observer.full_scale(m.hw.adc.percentile)
            if silent:
                warnings.warn(
                    f"calibrate: crossbar layer(s) {', '.join(map(repr, silent))} saw no column current on the "
                    "calibration data (all their inputs were zero: the neurons before them never spiked, as in an "
                    "untrained network); their ADCs use the fixed worst-case range (as adc.range = 'fixed')",
                    CalibrationWarning, stacklevel=2)
        finally:
            for m in adc_cal:
                m._observer = None
    corrected = [m for m in layers if m.hw.adc.correction != "none"]
    if corrected:  # reference reads on the programmed chip, fitted against the exact integer products
        for m in corrected:
            m.start_correction_fit()
        try:
            _run(model, data, batch_size)
        except BaseException:
            for m in corrected:
                m._fit = None
            raise
        for m in corrected:
            m.finish_correction_fit()
    reset_events(model)
