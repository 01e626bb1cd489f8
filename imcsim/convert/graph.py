"""Graph-level conversion: trace a model with ``torch.fx``, infer what every crossbar layer
receives, and map it.

Tracing treats neurons (imcsim's and the frameworks'), quantised activations, crossbar
layers and the standard torch layers as leaves, so residual additions, concatenations,
functional calls (``F.relu``, ``torch.flatten``, ``F.avg_pool2d``, ...), nested containers and
a module used twice are all seen.

**Value kinds** are propagated through the graph:

* ``count(levels, scale)``: non-negative integer multiples of ``scale`` with ``levels``
  distinct values -- spikes are count(2, 1); a b-bit activation is count(2**b, clip/(2**b-1));
  sum pooling of spikes over k x k is count(k*k + 1, 1); average pooling divides the scale;
  a SEW-ResNet ``spikes + spikes`` is count(3, 1);
* ``analog``: anything else.

A Linear / Conv receiving count(2, 1) reads spikes; count(L, s) reads integers 0..L-1 of step
s (bit-serial over ceil(log2 L) planes, or a DAC); analog values are quantised to
``hw.inputs.bits`` over a calibrated range.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..crossbar import _KEEP, CrossbarConv, CrossbarLinear, InputSpec, unsupported_conv
from ..digital import DigitalModule, DigitalOp, Scale, SumPool2d, count_elementwise, count_pool, count_reduction
from ..hardware import HardwareConfig
from ..neurons import QuantAct, SpikingNeuron
from .frameworks import adapt, framework_of, is_framework_neuron, output_arity

_BN = nn.modules.batchnorm._BatchNorm


def detached_deepcopy(model: nn.Module, memo: dict | None = None) -> nn.Module:
    """``copy.deepcopy`` of a model whose modules may hold state tensors that are part of an
    autograd graph (an snnTorch ``init_hidden`` neuron's ``mem`` after training): those are
    copied detached (torch refuses to deep-copy non-leaf tensors). ``memo``: objects to take
    as they are (id -> object), as ``copy.deepcopy``'s."""
    memo = {} if memo is None else memo
    for m in model.modules():
        for v in [*vars(m).values(), *m._buffers.values()]:
            if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter) and v.grad_fn is not None:
                memo[id(v)] = v.detach().clone()
    return copy.deepcopy(model, memo)


_MAPPED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def converting_copy(model: nn.Module) -> tuple[nn.Module, dict[int, torch.Tensor]]:
    """:func:`detached_deepcopy` of a model about to be converted, whose Linear / Conv
    weights and biases are the original's tensors, not copies: the layers that go onto
    crossbars quantise them and keep none, so a copy would only be held until the whole
    network is programmed (VGG9: 24 MB of float weights, its fc layer 17 MB of them).
    Returns (copy, the shared tensors by id); :func:`unshare` then gives whatever the
    converted model still holds of them (a layer kept digital) its own copy."""
    shared = {}
    for m in model.modules():
        if isinstance(m, _MAPPED):
            for p in (m.weight, m.bias):
                if isinstance(p, torch.Tensor):
                    shared[id(p)] = p
    return detached_deepcopy(model, dict(shared)), shared


def unshare(root: nn.Module, shared: dict[int, torch.Tensor]) -> nn.Module:
    """Replace every tensor of ``shared`` (:func:`converting_copy`) that a module of ``root``
    still holds -- as a parameter, a buffer or a plain attribute -- by a deep copy (one per
    tensor, so tied weights stay tied): the converted model then owns all its tensors, as
    after a deep copy, and changing the original model later does not change it."""
    copies: dict[int, torch.Tensor] = {}

    def own(v):
        if id(v) not in copies:
            copies[id(v)] = copy.deepcopy(v)
        return copies[id(v)]

    for m in root.modules():
        for store in (m._parameters, m._buffers):
            for k, v in store.items():
                if v is not None and id(v) in shared:
                    store[k] = own(v)
        for k, v in list(vars(m).items()):
            if isinstance(v, torch.Tensor) and id(v) in shared:
                setattr(m, k, own(v))
    return root


_FREE_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
          nn.AdaptiveMaxPool2d, SumPool2d)
_LEAF_BASES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, _BN, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout,
               nn.Dropout2d, nn.ReLU, *_POOLS, Scale, SpikingNeuron, QuantAct, CrossbarLinear, CrossbarConv,
               DigitalModule)


# ------------------------------------------------------------------------ value kinds


@dataclass(frozen=True)
class Kind:
    what: str  # "count" | "analog" | "tuple"
    levels: int = 0
    scale: float = 1.0
    items: tuple = ()

    @property
    def is_count(self) -> bool:
        return self.what == "count"

    def describe(self) -> str:
        if self.what == "count":
            if self.levels == 2 and self.scale == 1.0:
                return "spikes"
            return f"counts 0..{self.levels - 1} x {self.scale:.4g}"
        return self.what


ANALOG = Kind("analog")
SPIKE = Kind("count", 2, 1.0)
ZERO = Kind("zero")  # an all-zero tensor (an initial state): compatible with every kind


def count(levels: int, scale: float) -> Kind:
    return Kind("count", int(levels), float(scale)) if levels >= 2 and scale > 0 and math.isfinite(scale) else ANALOG


def join(a: Kind, b: Kind) -> Kind:
    """The kind that covers both (a layer used at two places)."""
    if a == b or b.what == "zero":
        return a
    if a.what == "zero":
        return b
    if a.is_count and b.is_count and math.isclose(a.scale, b.scale, rel_tol=1e-9):
        return count(max(a.levels, b.levels), a.scale)
    return ANALOG


def add_kinds(a: Kind, b: Kind) -> Kind:
    if a.what == "zero" or b.what == "zero":
        return b if a.what == "zero" else a
    if a.is_count and b.is_count and math.isclose(a.scale, b.scale, rel_tol=1e-9):
        return count(a.levels + b.levels - 1, a.scale)
    return ANALOG


def input_spec(kind: Kind, hw: HardwareConfig) -> InputSpec:
    if kind.is_count and kind.levels == 2 and kind.scale == 1.0:
        return InputSpec("spike")
    if kind.is_count:
        bits = max(1, math.ceil(math.log2(kind.levels)))
        if bits > 16:
            return InputSpec("analog", hw.inputs.bits, None)
        return InputSpec("quantized", bits, kind.scale, levels=kind.levels if kind.levels != 2**bits else None)
    return InputSpec("analog", hw.inputs.bits, None)


def kind_of_data(x: torch.Tensor) -> Kind:
    """What sample data is: spikes (all 0/1), integer counts, or analog."""
    if not isinstance(x, torch.Tensor) or not x.numel() or not x.is_floating_point() and x.dtype == torch.bool:
        return SPIKE if isinstance(x, torch.Tensor) and x.dtype == torch.bool else ANALOG
    xf = x.float()
    if bool((xf < 0).any()) or not bool((xf == xf.round()).all()):
        return ANALOG
    top = int(xf.max())
    return SPIKE if top <= 1 else count(top + 1, 1.0) if top < 2**16 else ANALOG


# ------------------------------------------------------------------------ tracing


class Tracer(fx.Tracer):
    """Leaves: neurons, activations, crossbar layers, the standard layers (and subclasses
    of them, e.g. SpikingJelly's multi-step layers), and framework neurons (whose tuple
    outputs become getitem nodes so ``spk, mem = lif(x, mem)`` traces)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, _LEAF_BASES) or is_framework_neuron(m) or getattr(m, "neuron_kind", None):
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        if is_framework_neuron(m):
            proxy = self.create_proxy("call_module", self.path_of_module(m), args, kwargs)
            n = output_arity(m)
            return proxy if n == 1 else tuple(proxy[i] for i in range(n))
        return super().call_module(m, forward, args, kwargs)


def trace(model: nn.Module) -> fx.Graph:
    return Tracer().trace(model)


# ------------------------------------------------------------------------ kind propagation

_VIEW_FUNCS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose, torch.permute,
               torch.clone, torch.detach, F.dropout, torch.Tensor.view, torch.narrow, torch.movedim,
               F.pad, operator.getitem, torch.cat, torch.stack, torch.chunk, torch.split, torch.unbind}
_VIEW_METHODS = {"new_zeros", "new_ones", "zero_", "view", "reshape", "flatten", "squeeze", "unsqueeze", "transpose", "permute", "contiguous", "clone",
                 "detach", "float", "to", "type", "expand", "expand_as", "repeat", "unflatten", "narrow", "chunk",
                 "split", "unbind", "movedim", "size", "dim", "__getitem__", "t"}
_FREE_FUNCS = {getattr, operator.getitem, torch.zeros, torch.zeros_like, torch.ones, torch.ones_like, torch.full, torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze,
               torch.transpose, torch.permute, torch.clone, torch.detach, torch.narrow, torch.movedim, torch.cat,
               torch.stack, torch.chunk, torch.split, torch.unbind, F.dropout, F.pad, len}
_ADD_FUNCS = {operator.add, torch.add, operator.iadd}
_MUL_FUNCS = {operator.mul, torch.mul, operator.imul, operator.truediv, torch.div, operator.sub, torch.sub}
_MAXPOOL_FUNCS = {F.max_pool1d, F.max_pool2d, F.adaptive_max_pool2d}
_AVGPOOL_FUNCS = {F.avg_pool1d, F.avg_pool2d}
_RELU_FUNCS = {F.relu, torch.relu, F.relu6}


def _arg_kind(kinds, a):
    return kinds.get(a, ANALOG) if isinstance(a, fx.Node) else None


def _pool_window(args, kwargs) -> int:
    k = kwargs.get("kernel_size", args[1] if len(args) > 1 else 1)
    return math.prod(k) if isinstance(k, (tuple, list)) else int(k) ** 2


def propagate(gm_root: nn.Module, graph: fx.Graph, placeholder: Kind) -> dict:
    """Kind of every node's value."""
    mods = dict(gm_root.named_modules())
    kinds: dict = {}
    first = True
    for node in graph.nodes:
        if node.op == "placeholder":
            kinds[node] = placeholder if first else ANALOG
            first = False
            continue
        ins = [_arg_kind(kinds, a) for a in node.args]
        x = ins[0] if ins and ins[0] is not None else ANALOG
        k = ANALOG
        if node.op == "call_module":
            m = mods[node.target]
            if isinstance(m, SpikingNeuron):
                k = SPIKE if m.spiking else ANALOG
            elif is_framework_neuron(m):
                n = output_arity(m)
                k = SPIKE if n == 1 else Kind("tuple", items=(SPIKE,) + (ANALOG,) * (n - 1))
            elif isinstance(m, QuantAct):
                k = count(2**m.bits, m.scale)
            elif isinstance(m, _FREE_MODULES) or (isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool2d))):
                k = x
            elif isinstance(m, nn.ReLU):
                k = x if x.is_count else ANALOG
            elif isinstance(m, SumPool2d):
                w = math.prod(m.kernel_size)
                k = count((x.levels - 1) * w + 1, x.scale) if x.is_count else ANALOG
            elif isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
                ks = m.kernel_size if isinstance(m.kernel_size, (tuple, list)) else (m.kernel_size,) * (2 if isinstance(m, nn.AvgPool2d) else 1)
                w = math.prod(ks)
                exact = not any(p for p in _tuple(m.padding)) or m.count_include_pad
                k = count((x.levels - 1) * w + 1, x.scale / w) if x.is_count and exact and m.divisor_override is None else ANALOG
        elif node.op in ("call_function", "call_method"):
            t = node.target
            if t in (torch.zeros, torch.zeros_like) or (node.op == "call_method" and t in ("new_zeros", "zero_")):
                k = ZERO
            elif t in _VIEW_FUNCS or (node.op == "call_method" and t in _VIEW_METHODS):
                if t in (torch.cat, torch.stack):
                    seq = node.args[0] if node.args else []
                    parts = [_arg_kind(kinds, a) or ANALOG for a in seq] if isinstance(seq, (list, tuple)) else [ANALOG]
                    k = parts[0] if parts else ANALOG
                    for p in parts[1:]:
                        k = join(k, p)
                elif t is operator.getitem and x.what == "tuple":
                    idx = node.args[1]
                    k = x.items[idx] if isinstance(idx, int) and idx < len(x.items) else ANALOG
                else:
                    k = x
            elif t in _ADD_FUNCS or (node.op == "call_method" and t in ("add", "__add__", "add_")):
                b = ins[1] if len(ins) > 1 and ins[1] is not None else None
                k = add_kinds(x, b) if b is not None else ANALOG
            elif t in _MUL_FUNCS or (node.op == "call_method" and t in ("mul", "__mul__", "div", "__truediv__")):
                c = node.args[1] if len(node.args) > 1 else None
                if x.is_count and isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 and t in (operator.mul, torch.mul, operator.imul, "mul", "__mul__"):
                    k = count(x.levels, x.scale * c)
                elif x.is_count and isinstance(c, (int, float)) and c > 0 and t in (operator.truediv, torch.div, "div", "__truediv__"):
                    k = count(x.levels, x.scale / c)
            elif t in _MAXPOOL_FUNCS:
                k = x
            elif t in _RELU_FUNCS or (node.op == "call_method" and t == "relu"):
                k = x if x.is_count else ANALOG
            elif t in _AVGPOOL_FUNCS:
                w = _pool_window(node.args, node.kwargs)
                pad = node.kwargs.get("padding", node.args[3] if len(node.args) > 3 else 0)
                k = count((x.levels - 1) * w + 1, x.scale / w) if x.is_count and not any(_tuple(pad)) else ANALOG
        kinds[node] = k
    return kinds


def _tuple(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


# ------------------------------------------------------------------------ the plan


@dataclass
class Entry:
    name: str
    kind: str  # the original's type
    status: str  # crossbar | digital | folded | neuron | free
    detail: str
    input: str = ""  # what a crossbar layer reads (spikes, counts, b-bit activations, analog)


def _module_users(graph: fx.Graph) -> dict:
    uses: dict = {}
    for node in graph.nodes:
        if node.op == "call_module":
            uses.setdefault(node.target, []).append(node)
    return uses


def _counted_function(node: fx.Node):
    """(kind, counter) for a functional op that does arithmetic, or None for data movement."""
    t = node.target
    if node.op == "call_function":
        if t in _FREE_FUNCS:
            return None
        if t in _ADD_FUNCS:
            return "add", count_elementwise("add")
        if t in _MUL_FUNCS:
            return "scale", count_elementwise("mul")
        if t in _MAXPOOL_FUNCS:
            return "max_pool", count_pool("max_pool")
        if t in _AVGPOOL_FUNCS:
            return "avg_pool", count_pool("avg_pool")
        if t in _RELU_FUNCS:
            return "relu", count_elementwise("relu")
        if t in (torch.mean, torch.sum, F.adaptive_avg_pool2d, F.adaptive_avg_pool1d):
            return "mean" if t is not torch.sum else "sum", count_reduction
        if t in (F.linear, F.conv1d, F.conv2d, torch.matmul, operator.matmul):
            return "matmul", _count_matmul
        return getattr(t, "__name__", str(t)), count_elementwise("add")
    if node.op == "call_method":
        if t in _VIEW_METHODS:
            return None
        if t in ("add", "__add__", "add_", "sub", "__sub__"):
            return "add", count_elementwise("add")
        if t in ("mul", "__mul__", "div", "__truediv__", "mul_"):
            return "scale", count_elementwise("mul")
        if t in ("relu", "relu_"):
            return "relu", count_elementwise("relu")
        if t in ("mean", "sum"):
            return t, count_reduction
        return t, count_elementwise("add")
    return None


def _count_matmul(out, args, kwargs):
    a = args[0]
    inner = a.shape[-1] if isinstance(a, torch.Tensor) and a.dim() else 1
    if len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].dim() == 4:  # conv2d weight
        w = args[1]
        inner = w.shape[1] * w.shape[2] * w.shape[3]
    return {"macs": out.numel() * inner}


def _method_fn(name):
    def fn(self_, *a, **k):
        return getattr(self_, name)(*a, **k)
    fn.__name__ = name
    return fn


class _SeqFlat(nn.Module):
    """A crossbar layer standing in for a multi-step (T, B, ...) layer (SpikingJelly 'm')."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.events = inner.events

    def forward(self, x):
        T, B = x.shape[:2]
        y = self.inner(x.reshape(T * B, *x.shape[2:]))
        return y.reshape(T, B, *y.shape[1:])


def convert_graph(model: nn.Module, graph: fx.Graph, hw: HardwareConfig, *, placeholder: Kind, exclude, seed_of,
                  fold_bn, prefix: str = "") -> tuple[nn.Module, list[Entry]]:
    """Apply the conversion to a deep copy of ``model`` following its traced ``graph``."""
    from .core import fold_batchnorm

    root, shared = converting_copy(model)
    mods = dict(root.named_modules())
    kinds = propagate(root, graph, placeholder)
    uses = _module_users(graph)
    entries: list[Entry] = []
    replace: dict[str, nn.Module] = {}
    remove_nodes: dict = {}  # folded BN node -> node to use instead
    folded_into: dict[str, str] = {}
    direct = _read_directly(graph, mods)

    # BatchNorm folding: a BN whose only input is a Linear / Conv used once, with no other users
    if fold_bn:
        for node in graph.nodes:
            if node.op != "call_module" or not isinstance(mods[node.target], _BN) or len(uses[node.target]) != 1:
                continue
            src = node.args[0] if node.args else None
            if not (isinstance(src, fx.Node) and src.op == "call_module" and len(uses.get(src.target, [])) == 1
                    and len(src.users) == 1 and isinstance(mods[src.target], (nn.Linear, nn.Conv1d, nn.Conv2d))):
                continue
            layer, bn = mods[src.target], mods[node.target]
            if bn.num_features != layer.weight.shape[0] or src.target in exclude or unsupported_conv_or_none(layer):
                continue
            if src.target in direct or node.target in direct:  # folding would change what the forward reads
                direct.setdefault(node.target, direct.get(src.target))
                continue
            folded_into[node.target] = src.target
            remove_nodes[node] = src

    bn_of = {layer_name: bn_name for bn_name, layer_name in folded_into.items()}

    # one decision per module (a module used at several nodes is converted once)
    order = [n for n in graph.nodes if n.op == "call_module"]
    seen = set()
    for node in order:
        name = node.target
        if name in seen:
            continue
        seen.add(name)
        k = None
        for n in uses[name]:
            a = n.args[0] if n.args else None
            ka = kinds.get(a, ANALOG) if isinstance(a, fx.Node) else ANALOG
            k = ka if k is None else join(k, ka)
        # a layer's BatchNorm is folded as it is converted: one layer's folded weights held at a time
        folded = {name: fold_batchnorm(mods[name].weight, mods[name].bias, mods[bn_of[name]])} if name in bn_of else {}
        new, entry = decide(name, mods[name], k or ANALOG, hw, exclude, seed_of, folded, folded_into,
                            len(uses[name]), prefix, direct.get(name))
        del folded
        if new is not None:
            replace[name] = new
        entries.append((node, entry))

    functional = [n for n in graph.nodes if n.op in ("call_function", "call_method") and _counted_function(n)]
    for node in graph.nodes:  # data-movement ops, listed too
        if node.op in ("call_function", "call_method") and not _counted_function(node):
            entries.append((node, Entry(node.name, getattr(node.target, "__name__", str(node.target)), "free",
                                        "data movement only")))
    if not functional:  # only modules to swap: keep the model's own class and forward
        for name, new in replace.items():
            _set_module(root, name, new)
        return unshare(root, shared), _ordered(graph, entries)

    # rewrite the graph: counted functional ops become DigitalOp modules, folded BN nodes go
    new_graph = fx.Graph()
    env: dict = {}
    digital = nn.Module()
    for node in graph.nodes:
        if node in remove_nodes:
            env[node] = env[remove_nodes[node]]
            continue
        info = _counted_function(node) if node.op in ("call_function", "call_method") else None
        if info is not None:
            kind, counter = info
            fn = node.target if node.op == "call_function" else _method_fn(node.target)
            fname = getattr(node.target, "__name__", str(node.target))
            label = kind if fname == kind else f"{kind} ({fname})"
            op = DigitalOp(fn, kind, counter, label)
            digital.add_module(node.name, op)
            args = fx.map_arg(node.args, lambda a: env[a])
            kwargs = fx.map_arg(node.kwargs, lambda a: env[a])
            env[node] = new_graph.call_module(f"digital.{node.name}", args, kwargs)
            in_kind = kinds.get(node.args[0], ANALOG) if node.args and isinstance(node.args[0], fx.Node) else ANALOG
            entries.append((node, Entry(node.name, kind, "digital", f"{label}; events counted, input {in_kind.describe()}")))
            continue
        env[node] = new_graph.node_copy(node, lambda a: env[a])
        if node.op == "get_attr":  # a tensor of a module kept digital lives in its wrapper's .module
            owner = max((n for n in replace if node.target.startswith(n + ".")), key=len, default=None)
            if owner is not None and isinstance(replace[owner], DigitalModule):
                env[node].target = f"{owner}.module.{node.target[len(owner) + 1:]}"
    for name, new in replace.items():
        _set_module(root, name, new)
    root.add_module("digital", digital)
    gm = fx.GraphModule(root, new_graph, class_name=f"{type(model).__name__}OnCrossbars")
    return unshare(gm, shared), _ordered(graph, entries)


def _read_directly(graph: fx.Graph, mods: dict) -> dict[str, str]:
    """{module name: the first of its attributes the forward reads directly} (``get_attr``
    nodes, e.g. ``F.linear(x, self.fc.weight)``), for the Linear / Conv / BatchNorm modules."""
    out: dict[str, str] = {}
    for node in graph.nodes:
        if node.op == "get_attr":
            owner = node.target.rsplit(".", 1)[0] if "." in node.target else ""
            while owner:
                if isinstance(mods.get(owner), (*_MAPPED, _BN)):
                    out.setdefault(owner, node.target)
                owner = owner.rsplit(".", 1)[0] if "." in owner else ""
    return out


def _ordered(graph, entries):
    pos = {n: i for i, n in enumerate(graph.nodes)}
    return [e for _, e in sorted(entries, key=lambda ne: pos[ne[0]])]


def decide(name, m, k, hw, exclude, seed_of, folded_params=None, folded_into=None, n_uses=1, prefix="", read=None):
    """The replacement of one module given the kind of its input: (new module or None, Entry).
    read: the attribute (e.g. ``fc.weight``) the model's forward reads from this module
    directly, if any -- a Linear / Conv so read stays digital, as a crossbar layer holds no
    float weights."""
    folded_params, folded_into = folded_params or {}, folded_into or {}
    tname = type(m).__name__
    where = f" (used {n_uses} times)" if n_uses > 1 else ""
    if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and not isinstance(m, (CrossbarLinear, CrossbarConv)):
        problem = ("excluded by the user" if name in exclude else
                   f"{prefix}{read} is read directly by the forward" if read else unsupported_conv_or_none(m))
        if problem:
            return DigitalModule(m, problem), Entry(name, tname, "digital", f"{problem}; priced as digital MACs{where}")
        spec = input_spec(k, hw)
        w, b = folded_params.get(name, (None, _KEEP))
        twin = CrossbarLinear if isinstance(m, nn.Linear) else CrossbarConv
        new = twin(m, hw, spec, seed=seed_of(name), name=name, weight=w, bias=b)
        new.folded_bn = next((bn for bn, ln in folded_into.items() if ln == name), None)
        g = new.tiles.grid
        note = f", {prefix}{next(bn for bn, ln in folded_into.items() if ln == name)} folded in" if name in folded_params else ""
        grp = f", {new.tiles.groups} groups on their own tiles" if new.tiles.groups > 1 else ""
        if getattr(m, "step_mode", "s") == "m":
            new = _SeqFlat(new)
        return new, Entry(name, tname, "crossbar", f"{g.row_tiles}x{g.col_tiles} tiles{grp}, input "
                          f"{spec.describe(hw)}{note}{where}", spec.describe(hw))
    if isinstance(m, _BN):
        if name in folded_into:
            return nn.Identity(), Entry(name, tname, "folded", f"into {prefix}{folded_into[name]}")
        if read:
            return DigitalModule(m, "not folded"), Entry(name, tname, "digital", f"not folded: {prefix}{read} is read "
                                                         "directly by the forward; priced as digital multiply-adds")
        return DigitalModule(m, "not directly after a Linear / Conv used once"), Entry(
            name, tname, "digital", "not foldable (its input is not a Linear / Conv used once with no other users); "
            "priced as digital multiply-adds")
    if is_framework_neuron(m):
        new = adapt(m)
        return new, Entry(name, f"{framework_of(m)}.{tname}", "neuron", f"imcsim {type(new).__name__} (same "
                          "equations and calling convention; events counted)")
    if isinstance(m, SpikingNeuron):
        return None, Entry(name, tname, "neuron", "spiking" if m.spiking else "leaky integrator (membrane out)")
    if isinstance(m, QuantAct):
        return None, Entry(name, tname, "neuron", f"{m.bits}-bit quantised activation")
    if isinstance(m, (CrossbarLinear, CrossbarConv, DigitalModule)):
        return None, Entry(name, tname, "digital" if isinstance(m, DigitalModule) else "crossbar", "already converted")
    if isinstance(m, _FREE_MODULES):
        return None, Entry(name, tname, "free", "data movement only")
    if isinstance(m, (*_POOLS, nn.ReLU, Scale)) or not any(True for _ in m.parameters(recurse=False)):
        new = DigitalModule(m)
        return new, Entry(name, tname, "digital", f"{new.kind}; events counted, input {k.describe()}")
    if name in exclude:
        new = DigitalModule(m, "excluded by the user")
        return new, Entry(name, tname, "digital", "excluded by the user; priced as one add per output value")
    raise ValueError(f"node {name!r} ({type(m).__module__}.{tname}) has weights but no crossbar or digital mapping "
                     "in imcsim; remove it from the model, or pass exclude=[name] to keep it digital (priced as one "
                     "add per output value)")


def convert_dataflow(body: nn.Module, hw, *, placeholder: Kind, exclude, seed_of) -> tuple[nn.Module, list]:
    """Convert a body that describes its own dataflow (a NIR graph executor): kinds follow
    its edges (several inputs are summed; a cycle's back edges are resolved by a second pass)."""
    root, shared = converting_copy(body)
    flow = root.dataflow()
    kinds: dict = {}
    for _ in range(2):
        for n, m, preds in flow:
            ins = [kinds[p] for p in preds if p in kinds]
            x = placeholder if not preds else (ins[0] if ins else ANALOG)
            for k2 in ins[1:]:
                x = add_kinds(x, k2)
            if len(ins) < len(preds) and preds:
                x = ANALOG if not ins else x
            kinds[(n, "in")] = x
            if m is None:
                kinds[n] = x
            elif isinstance(m, SpikingNeuron):
                kinds[n] = SPIKE if m.spiking else ANALOG
            elif isinstance(m, (nn.Flatten, nn.Identity)):
                kinds[n] = x
            elif isinstance(m, SumPool2d):
                w = math.prod(m.kernel_size)
                kinds[n] = count((x.levels - 1) * w + 1, x.scale) if x.is_count else ANALOG
            elif isinstance(m, nn.AvgPool2d):
                w = math.prod(_tuple(m.kernel_size)) if len(_tuple(m.kernel_size)) > 1 else int(m.kernel_size) ** 2
                kinds[n] = count((x.levels - 1) * w + 1, x.scale / w) if x.is_count and not any(_tuple(m.padding)) else ANALOG
            else:
                kinds[n] = ANALOG
    entries = []
    for n, m, preds in flow:
        if m is None:
            continue
        qual = f"nodes.{root.key[n]}"
        new, entry = decide(qual, m, kinds[(n, "in")], hw, exclude, seed_of)
        entry = Entry(f"{qual}", f"{root.types[n]} -> {entry.kind}", entry.status, entry.detail, entry.input)
        if new is not None:
            root.nodes[root.key[n]] = new
        entries.append(entry)
    return unshare(root, shared), entries


def unsupported_conv_or_none(m) -> str | None:
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        return unsupported_conv(m)
    return None


def _set_module(root: nn.Module, qualname: str, new: nn.Module) -> None:
    parent, _, attr = qualname.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, new)
