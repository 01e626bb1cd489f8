"""NIR (Neuromorphic Intermediate Representation) import and export.

``from_nir(graph_or_path, dt=1.0)`` returns an :class:`imcsim.Network` whose forward takes a
sequence (T, B, *input_shape) and returns the output node's values per timestep (T, B, K).
``to_nir(network)`` gives a ``nir.NIRGraph`` back (and writes it with ``path=``).

Discretisation (forward Euler with step ``dt``; NIR's equations are continuous-time):

=========  ===================================================================================
node       one step of imcsim's neuron
=========  ===================================================================================
I          v += dt r x                                     (output v)
LI         v += dt/tau (v_leak - v + r x)                  (output v)
IF         v += dt r x; spike when v > v_threshold, then v = v_reset
LIF        v += dt/tau (v_leak - v + r x); spike when v > v_threshold, then v = v_reset
CubaLI     i = (1 - dt/tau_syn) i + dt/tau_syn w_in x; v += dt/tau_mem (v_leak - v + r i)
CubaLIF    as CubaLI, then spike when v > v_threshold, v = v_reset
Threshold  spike when x > threshold (no state)
=========  ===================================================================================

The synaptic current of CubaLI / CubaLIF is updated first and drives the membrane in the same
step (as snnTorch's ``Synaptic``). Several edges into one node are summed. A recurrent edge
(a cycle in the graph) carries the previous timestep's value; such cycles run step by step,
the rest of the graph runs all timesteps at once. Subgraphs are flattened. Nodes that cannot
be mapped (e.g. ``Delay``) are an error naming the node and its type.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..context import current_context
from ..digital import Scale, SumPool2d
from ..limits import MAX_ARRAY_VALUES, MAX_NIR_OBJECTS, check_arch, check_finite, check_values, tensors_in
from ..neurons import SpikingNeuron

SUPPORTED = ("Input", "Output", "Identity", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "Flatten", "SumPool2d",
             "AvgPool2d", "Threshold", "I", "IF", "LI", "LIF", "CubaLI", "CubaLIF")
_PASS = ("Input", "Output", "Identity")


# ------------------------------------------------------------------------ spec <-> NIR


def _to_plain(v):
    """NIR dict values -> plain data (tensors for arrays)."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "US" or v.dtype == object:
            return [_to_plain(x) for x in v.tolist()]
        return torch.from_numpy(np.ascontiguousarray(v).copy())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, dict):
        return {str(k): _to_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_plain(x) for x in v]
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().clone()
    return v


def _to_nir_value(v):
    if isinstance(v, torch.Tensor):
        return v.numpy()
    if isinstance(v, dict):
        return {k: _to_nir_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_nir_value(x) for x in v]
    return v


def _flatten(spec: dict, prefix: str = "") -> tuple[dict, list]:
    """Nodes and edges of a (possibly nested) graph spec, subgraphs inlined."""
    nodes, edges = {}, []
    sub_io = {}
    for name, node in spec["nodes"].items():
        full = f"{prefix}{name}"
        if node.get("type") == "NIRGraph":
            n2, e2 = _flatten(node, f"{full}.")
            nodes.update(n2)
            edges += e2
            ins = [k for k, v in node["nodes"].items() if v.get("type") == "Input"]
            outs = [k for k, v in node["nodes"].items() if v.get("type") == "Output"]
            sub_io[full] = ([f"{full}.{k}" for k in ins], [f"{full}.{k}" for k in outs])
        else:
            nodes[full] = node
    for a, b in spec["edges"]:
        a, b = f"{prefix}{a}", f"{prefix}{b}"
        srcs = sub_io[a][1] if a in sub_io else [a]
        dsts = sub_io[b][0] if b in sub_io else [b]
        edges += [(s, d) for s in srcs for d in dsts]
    return nodes, edges


def graph_spec(graph) -> dict:
    """A NIR graph (or a path to a .nir file) as plain data: {"nodes": {...}, "edges": [...]}."""
    import nir

    if isinstance(graph, (str, Path)):
        p = Path(graph)
        if not p.is_file():
            raise ValueError(f"NIR file not found: {str(p)!r}")
        check_nir_file(p)
        try:
            graph = nir.read(p)
        except Exception as e:  # noqa: BLE001 - any read failure: say which file
            raise ValueError(f"{str(p)!r} is not a readable NIR file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"from_nir needs a nir.NIRGraph or a path to a .nir file, got {type(graph).__name__}")
    d = _to_plain(graph.to_dict())
    check_finite(tensors_in(d["nodes"]), "NIR graph")
    return {"nodes": d["nodes"], "edges": [list(e) for e in d["edges"]]}


def check_nir_file(path: Path) -> None:
    """Look at a .nir file's HDF5 structure before any array is read: it must be HDF5, hold
    at most MAX_NIR_OBJECTS groups and datasets, numeric or text arrays only, each of at
    most MAX_ARRAY_VALUES values and all together within the memory budget (a small file
    can declare huge chunked arrays it never wrote)."""
    import h5py

    name = repr(str(path))
    if not h5py.is_hdf5(path):
        raise ValueError(f"{name} is not a NIR file: NIR files are HDF5 files (as written by nir.write), and this "
                         "one has no HDF5 signature")
    seen = {"objects": 0, "values": 0}

    def visit(key, obj):
        seen["objects"] += 1
        if seen["objects"] > MAX_NIR_OBJECTS:
            raise ValueError(f"{name} holds more than {MAX_NIR_OBJECTS:,} HDF5 groups and datasets")
        if not isinstance(obj, h5py.Dataset):
            return None
        kind = obj.dtype.kind
        if kind not in "biufSUO":
            raise ValueError(f"{name}: array {key!r} has HDF5 type {obj.dtype}; NIR arrays are numbers or text")
        n = math.prod(obj.shape) if obj.shape else 1
        if n > MAX_ARRAY_VALUES:
            raise ValueError(f"{name}: array {key!r} declares shape {tuple(obj.shape)} ({n:,} values); at most "
                             f"{MAX_ARRAY_VALUES:,} values per array")
        seen["values"] += n
        return None

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged file: say which
        raise ValueError(f"{name} is not a readable NIR file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    check_values(f"NIR file {name}", seen["values"])


# ------------------------------------------------------------------------ nodes -> modules


def _arr(v) -> torch.Tensor:
    return torch.as_tensor(v, dtype=torch.float32) if not isinstance(v, torch.Tensor) else v.to(torch.float32)


def _param(name: str, v):
    """A neuron parameter: a float when all neurons share it, else a tensor."""
    t = _arr(v)
    if t.numel() == 0:
        raise ValueError(f"empty parameter {name}")
    return float(t.reshape(-1)[0]) if bool((t == t.reshape(-1)[0]).all()) else t


def _ints(v, n):
    if isinstance(v, torch.Tensor):
        v = v.reshape(-1).tolist()
    if isinstance(v, (list, tuple)):
        v = [int(x) for x in v]
        return tuple(v) if len(v) == n else tuple(v) * n if len(v) == 1 else tuple(v)
    return (int(v),) * n


def node_module(name: str, node: dict, dt: float):
    """The imcsim module of one NIR node (None for Input / Output / Identity)."""
    t = node.get("type")
    if t in _PASS:
        return None
    if t not in SUPPORTED:
        raise ValueError(f"NIR node {name!r} of type {t!r} has no imcsim equivalent (supported: {', '.join(SUPPORTED)})")
    if t in ("Affine", "Linear", "Conv1d", "Conv2d"):
        shape = tuple(_arr(node.get("weight", [])).shape)
        want = 2 if t in ("Affine", "Linear") else 3 if t == "Conv1d" else 4
        if len(shape) != want or 0 in shape:
            raise ValueError(f"NIR node {name!r} ({t}): weight must have {want} dimensions, none of size 0, got shape "
                             f"{shape}")
    if t in ("Affine", "Linear"):
        w = _arr(node["weight"])
        lin = nn.Linear(w.shape[1], w.shape[0], bias=t == "Affine")
        with torch.no_grad():
            lin.weight.copy_(w)
            if t == "Affine":
                lin.bias.copy_(_arr(node["bias"]).reshape(-1))
        return lin
    if t in ("Conv1d", "Conv2d"):
        w = _arr(node["weight"])
        nd = 1 if t == "Conv1d" else 2
        pad = node.get("padding", 0)
        pad = pad if isinstance(pad, str) else _ints(pad, nd)
        cls = nn.Conv1d if nd == 1 else nn.Conv2d
        groups = int(_arr(node.get("groups", 1)).reshape(-1)[0]) if not isinstance(node.get("groups", 1), int) else node.get("groups", 1)
        conv = cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=_ints(node.get("stride", 1), nd),
                   padding=pad, dilation=_ints(node.get("dilation", 1), nd), groups=groups,
                   bias=node.get("bias") is not None)
        with torch.no_grad():
            conv.weight.copy_(w)
            if node.get("bias") is not None:
                conv.bias.copy_(_arr(node["bias"]).reshape(-1))
        return conv
    if t == "Scale":
        return Scale(_arr(node["scale"]))
    if t == "Flatten":
        s, e = int(_arr(node.get("start_dim", 0))), int(_arr(node.get("end_dim", -1)))
        return nn.Flatten(s + 1 if s >= 0 else s, e + 1 if e >= 0 else e)
    if t == "SumPool2d":
        return SumPool2d(_ints(node["kernel_size"], 2), _ints(node["stride"], 2), _ints(node.get("padding", 0), 2))
    if t == "AvgPool2d":
        return nn.AvgPool2d(_ints(node["kernel_size"], 2), _ints(node["stride"], 2), _ints(node.get("padding", 0), 2))
    return _neuron(name, t, node, dt)


def _neuron(name, t, node, dt) -> SpikingNeuron:
    def decay(tau_key):
        tau = _arr(node[tau_key])
        if bool((tau <= 0).any()):
            raise ValueError(f"NIR node {name!r} ({t}): {tau_key} must be > 0")
        ratio = dt / tau
        if bool((ratio > 1).any()):
            raise ValueError(f"NIR node {name!r} ({t}): dt / {tau_key} = {float(ratio.max()):.3g} > 1 makes the forward-Euler "
                             f"step unstable; pass the dt the graph was made for (snnTorch and SpikingJelly export with "
                             f"dt = 1e-4)")
        return ratio

    spiking = t in ("IF", "LIF", "CubaLIF", "Threshold")
    kw = dict(strict=True, time_flat=True, spiking=spiking)
    if t == "Threshold":
        return SpikingNeuron(threshold=_thr(name, node["threshold"]), leak=0.0, reset="none", **kw)
    r = _arr(node.get("r", 1.0))
    if t in ("I", "IF"):
        leak, gain, rest = 1.0, dt * r, 0.0
    elif t in ("LI", "LIF"):
        a = decay("tau")
        leak, gain, rest = 1 - a, a * r, _arr(node.get("v_leak", 0.0))
    else:  # CubaLI / CubaLIF
        a_syn, a_mem = decay("tau_syn"), decay("tau_mem")
        w_in = _arr(node.get("w_in", 1.0))
        leak, gain, rest = 1 - a_mem, a_mem * r * a_syn * w_in, _arr(node.get("v_leak", 0.0))
        kw["syn_decay"] = _param("syn_decay", 1 - a_syn)
    kw.update(leak=_param("leak", leak), gain=_param("gain", gain), v_rest=_param("v_leak", rest))
    if spiking:
        kw.update(threshold=_thr(name, node["v_threshold"]), reset="zero",
                  v_reset=_param("v_reset", node.get("v_reset", 0.0) if node.get("v_reset") is not None else 0.0))
    else:
        kw.update(reset="none")
    return SpikingNeuron(**kw)


def _thr(name, v):
    t = _arr(v)
    if bool((t <= 0).any()):
        raise ValueError(f"NIR node {name!r}: thresholds must be > 0, got {float(t.min()):g}")
    return _param("threshold", t)


# ------------------------------------------------------------------------ the executor


def _sccs(nodes: list, succ: dict) -> list:
    """Strongly connected components (Tarjan), in reverse topological order."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10 * len(nodes) + 100))
    try:
        for v in nodes:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(old)
    return out


class GraphBody(nn.Module):
    """Executes a NIR graph on time-flattened tensors (T*B, ...); B is the active read
    context's batch. Holds the graph spec (plain data) so it can be saved and exported."""

    def __init__(self, spec: dict, dt: float):
        super().__init__()
        nodes, edges = _flatten(spec)
        self.spec, self.dt = spec, float(dt)
        self.node_names = list(nodes)
        self.types = {n: nodes[n].get("type") for n in nodes}
        self.key = {n: n.replace(".", "__") for n in nodes}
        self.nodes = nn.ModuleDict()
        for n, node in nodes.items():
            m = node_module(n, node, self.dt)
            if m is not None:
                self.nodes[self.key[n]] = m
        self.preds: dict[str, list] = {n: [] for n in nodes}
        succ: dict[str, list] = {n: [] for n in nodes}
        for a, b in edges:
            if a not in nodes or b not in nodes:
                raise ValueError(f"NIR edge ({a!r}, {b!r}) names a node that is not in the graph")
            self.preds[b].append(a)
            succ[a].append(b)
        inputs = [n for n in nodes if self.types[n] == "Input" and not self.preds[n]]
        outputs = [n for n in nodes if self.types[n] == "Output"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"from_nir supports graphs with one Input and one Output node, got {len(inputs)} inputs "
                             f"and {len(outputs)} outputs")
        self.input_node, self.output_node = inputs[0], outputs[0]
        shape = nodes[self.input_node].get("shape")
        self.in_shape = [int(x) for x in (shape.reshape(-1).tolist() if isinstance(shape, torch.Tensor) else shape or [])]
        comps = list(reversed(_sccs(self.node_names, succ)))  # topological order
        self.blocks = []
        for comp in comps:
            cyclic = len(comp) > 1 or comp[0] in succ[comp[0]]
            order = self._block_order(comp) if cyclic else comp
            self.blocks.append((cyclic, order))
        self.persistent = False
        self._carry: dict = {}

    def _block_order(self, comp):
        """Nodes of a cycle, entered where outside inputs arrive first."""
        members = set(comp)
        entry = next((n for n in comp if any(p not in members for p in self.preds[n])), comp[0])
        order, seen, stack = [], set(), [entry]
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            order.append(v)
            for w in reversed([w for w in self.node_names if v in self.preds[w] and w in members]):
                if w not in seen:
                    stack.append(w)
        return order + [n for n in comp if n not in seen]

    def _zero_response(self, n, B):
        m = self.module(n)
        return None if m is None else _zero_response_of(getattr(m, "module", m), B)

    def module(self, n):
        return self.nodes[self.key[n]] if self.key[n] in self.nodes else None

    def dataflow(self):
        """(node, module or None, predecessor nodes) in execution order: how convert() sees
        this body (cycles included)."""
        return [(n, self.module(n), list(self.preds[n])) for _, order in self.blocks for n in order]

    # ---------------------------------------------------------------- state
    def reset_state(self) -> None:
        self._carry = {}

    def select_state(self, keep) -> None:
        self._carry = {k: v[keep] for k, v in self._carry.items()}

    # ---------------------------------------------------------------- run
    def _apply_node(self, n, x):
        m = self.module(n)
        return x if m is None else m(x)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        ctx = current_context()
        B = ctx.batch if ctx is not None and ctx.batch and h.shape[0] % ctx.batch == 0 else h.shape[0]
        T = h.shape[0] // B
        vals = {self.input_node: h}
        for cyclic, order in self.blocks:
            if not cyclic:
                n = order[0]
                if n == self.input_node:
                    continue
                ins = [vals[p] for p in self.preds[n]]
                vals[n] = self._apply_node(n, _sum(ins) if ins else torch.zeros_like(h))
                continue
            vals.update(self._run_cycle(order, vals, T, B))
        return vals[self.output_node]

    def _run_cycle(self, order, vals, T, B):
        members = set(order)
        pos = {n: i for i, n in enumerate(order)}
        neurons = [self.module(n) for n in order if isinstance(self.module(n), SpikingNeuron)]
        saved = [(m.persistent, m.time_flat) for m in neurons]
        for m in neurons:  # inside the loop, each call is one step whose state carries on
            if not m.persistent:
                m.reset_state()
            m.persistent, m.time_flat = True, False
        prev = {n: self._carry.get(n) for n in order} if self.persistent else {n: None for n in order}
        outs = {n: [] for n in order}
        try:
            for t in range(T):
                cur = {}
                for n in order:
                    terms = []
                    for p in self.preds[n]:
                        if p not in members:
                            terms.append(vals[p].view(T, B, *vals[p].shape[1:])[t])
                        elif pos[p] < pos[n]:
                            terms.append(cur[p])
                        elif prev[p] is not None:
                            terms.append(prev[p])
                        else:  # before the first step the recurrent source saw zeros: an affine gives its bias
                            b0 = self._zero_response(p, B)
                            if b0 is not None:
                                terms.append(b0)
                    x = _sum(terms) if terms else None
                    if x is None:
                        raise ValueError(f"NIR node {n!r} has no input at the first timestep")
                    m = self.module(n)
                    cur[n] = m(x.unsqueeze(0))[0] if isinstance(m, SpikingNeuron) else self._apply_node(n, x)
                    outs[n].append(cur[n])
                prev = cur
        finally:
            for m, (p, tf) in zip(neurons, saved):
                m.persistent, m.time_flat = p, tf
                if not p:
                    m.reset_state()
        if self.persistent:
            self._carry = {**self._carry, **prev}
        return {n: torch.stack(v).reshape(T * B, *v[0].shape[1:]) for n, v in outs.items()}


def _zero_response_of(m, B):
    bias = getattr(m, "bias", None)
    if isinstance(m, nn.Linear) and bias is not None:
        return bias.expand(B, -1)
    inner = getattr(m, "tiles", None)  # a crossbar twin
    if inner is not None and getattr(m, "bias", None) is not None and hasattr(m, "out_features"):
        return m.bias.expand(B, -1)
    return None


def _sum(xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


# ------------------------------------------------------------------------ public API


def from_nir(graph_or_path, *, dt: float = 1.0, timesteps: int | None = None, num_classes: int | None = None):
    """An imcsim Network (``input='sequence'``) running the NIR graph with step ``dt``.

    timesteps: the sequence length the network is meant for (recorded; the input decides).
    """

    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
    spec = graph_spec(graph_or_path)
    return network_from_spec({"name": "nir", "graph": spec, "dt": float(dt), "timesteps": timesteps,
                              "num_classes": num_classes})


def network_from_spec(arch: dict):
    """Rebuild a NIR network from its architecture record (see :func:`from_nir`)."""
    from ..models import Network

    extra = sorted(set(arch) - {"name", "graph", "dt", "timesteps", "num_classes", "in_shape"})
    if extra:
        raise ValueError(f"architecture 'nir' has no parameter {extra[0]!r}")
    body = GraphBody(arch["graph"], arch["dt"])
    T = arch.get("timesteps") or 1
    net = Network(body, "snn", timesteps=int(T), input="sequence", arch=dict(arch))
    net.arch["in_shape"] = body.in_shape
    check_arch(net.arch, "NIR graph")
    return net


def import_notes(arch: dict) -> list[str]:
    """What an imported graph's neurons do that its source framework may not have done: NIR
    has no reset by subtraction, fixes the spike comparison, and is continuous-time. One
    line per point that applies, for the import to print."""
    nodes, _ = _flatten(arch["graph"])
    types = {n.get("type") for n in nodes.values()}
    dt = arch["dt"]
    notes = []
    spiking = sorted(types & {"IF", "LIF", "CubaLIF"})
    if spiking:
        notes.append(f"{'/'.join(spiking)} nodes reset to v_reset after a spike: NIR has no reset by subtraction, so "
                     "a source model that subtracted its threshold (snnTorch's default reset_mechanism='subtract') "
                     "behaves differently here; export with reset to zero, or compare the outputs (docs/frameworks.md)")
        notes.append("a neuron spikes when v > v_threshold (strictly, as snnTorch); SpikingJelly fires at v >= "
                     "v_threshold, which differs only where v equals the threshold exactly")
    continuous = sorted(types & {"I", "IF", "LI", "LIF", "CubaLI", "CubaLIF"})
    if continuous:
        notes.append(f"{'/'.join(continuous)} nodes are continuous-time in NIR: stepped by forward Euler with dt = "
                     f"{dt:g} (snnTorch and SpikingJelly export with dt = 1e-4; another dt gives another neuron)")
    return notes


def to_nir(network, path=None):
    """The network as a ``nir.NIRGraph`` (written to ``path`` if given). A network imported
    with :func:`from_nir` gives its graph back exactly; a zoo network is exported layer by
    layer, and a layer or neuron setting NIR cannot express is an error naming it."""
    import nir

    body = getattr(network, "body", network)
    if isinstance(body, GraphBody):
        d = _to_nir_value(body.spec)
        graph = nir.NIRGraph.from_dict({"nodes": d["nodes"], "edges": [tuple(e) for e in d["edges"]]})
    else:
        graph = _export_sequential(network, body)
    if path is not None:
        nir.write(path, graph)
    return graph


def _export_sequential(network, body) -> "object":
    import nir

    from .core import fold_batchnorm

    if not isinstance(body, nn.Sequential):
        raise ValueError("to_nir exports networks imported from NIR, and zoo networks with a Sequential body; "
                         f"this body is a {type(body).__name__}")
    dt = float(network.arch.get("dt", 1.0)) if hasattr(network, "arch") else 1.0
    mods = list(body.named_children())
    in_shape = list(network.arch.get("in_shape", [])) if hasattr(network, "arch") else []
    nodes = {"input": nir.Input(input_type=np.array(in_shape))}
    edges, last, skip = [], "input", set()
    x = torch.zeros(1, *in_shape) if in_shape else None
    for i, (name, m) in enumerate(mods):
        if name in skip:
            continue
        node = None
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            w, b = m.weight.detach(), m.bias.detach() if m.bias is not None else None
            nxt = mods[i + 1][1] if i + 1 < len(mods) else None
            if isinstance(nxt, nn.modules.batchnorm._BatchNorm):
                w, b = (t.detach() for t in fold_batchnorm(w, b, nxt))
                skip.add(mods[i + 1][0])
            if isinstance(m, nn.Linear):
                node = nir.Affine(w.numpy(), b.numpy()) if b is not None else nir.Linear(w.numpy())
            else:
                bias = b.numpy() if b is not None else np.zeros(w.shape[0], dtype=np.float32)
                cls = nir.Conv1d if isinstance(m, nn.Conv1d) else nir.Conv2d
                shape = tuple(x.shape[2:]) if x is not None else None
                node = cls(input_shape=shape[0] if isinstance(m, nn.Conv1d) and shape else shape, weight=w.numpy(),
                           stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups, bias=bias)
        elif isinstance(m, nn.Flatten):
            node = nir.Flatten(input_type={"input": np.array(x.shape[1:])} if x is not None else None,
                               start_dim=m.start_dim - 1 if m.start_dim > 0 else m.start_dim,
                               end_dim=m.end_dim - 1 if m.end_dim > 0 else m.end_dim)
        elif isinstance(m, nn.AvgPool2d):
            node = nir.AvgPool2d(kernel_size=np.array(_ints(m.kernel_size, 2)), stride=np.array(_ints(m.stride, 2)),
                                 padding=np.array(_ints(m.padding, 2)))
        elif isinstance(m, SpikingNeuron):
            node = _export_neuron(f"body.{name}", m, x, dt)
        else:
            raise ValueError(f"to_nir: layer body.{name} ({type(m).__name__}) has no NIR node "
                             "(NIR has Affine, Linear, Conv1d/2d, Flatten, AvgPool2d/SumPool2d, neurons)")
        nodes[name] = node
        edges.append((last, name))
        last = name
        if x is not None:
            with torch.no_grad():
                x = m(x.unsqueeze(0))[0] if isinstance(m, SpikingNeuron) else m(x)
    nodes["output"] = nir.Output(output_type=np.array(x.shape[1:]) if x is not None else np.array([]))
    edges.append((last, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def _export_neuron(name, m: SpikingNeuron, x, dt):
    import nir

    shape = tuple(x.shape[1:]) if x is not None else (1,)

    def full(v):
        return np.broadcast_to(np.asarray(v.numpy() if isinstance(v, torch.Tensor) else v, dtype=np.float32), shape).copy()

    if m.spiking and m.reset != "zero":
        raise ValueError(f"to_nir: neuron {name} resets by {m.reset!r}; NIR neurons reset to v_reset (reset='zero')")
    if m.current_based:
        raise ValueError(f"to_nir: neuron {name} is current-based; export of CubaLIF from a zoo body is not supported")
    if m.v_init:
        raise ValueError(f"to_nir: neuron {name} starts at v_init={m.v_init} x threshold; NIR neurons start at rest")
    leak = m.leak if isinstance(m.leak, float) else m.leak
    if isinstance(leak, float) and leak == 1.0:
        node = nir.IF(r=full(m.gain / dt), v_threshold=full(m.threshold), v_reset=full(m.v_reset)) if m.spiking \
            else nir.I(r=full(m.gain / dt))
    else:
        tau = dt / (1 - np.asarray(leak.numpy() if isinstance(leak, torch.Tensor) else leak))
        r = np.asarray(m.gain.numpy() if isinstance(m.gain, torch.Tensor) else m.gain) * tau / dt
        node = nir.LIF(tau=full(tau), r=full(r), v_leak=full(m.v_rest), v_threshold=full(m.threshold),
                       v_reset=full(m.v_reset)) if m.spiking else nir.LI(tau=full(tau), r=full(r), v_leak=full(m.v_rest))
    return node
