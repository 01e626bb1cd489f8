"""Neurons of the frameworks users train in, replaced by imcsim neurons that keep the
framework's equations and calling convention, and count their events.

Supported (the mapping of every parameter is in docs/frameworks.md):

* snnTorch ``Leaky`` and ``Synaptic``: ``spk, mem = lif(x, mem)`` (or stateful with
  ``init_hidden=True``); decay ``beta`` (and ``alpha``), ``threshold``, reset by subtraction /
  to zero / none, ``reset_delay``; spike when ``mem > threshold``.
* SpikingJelly ``IFNode``, ``LIFNode``, ``ParametricLIFNode`` (single-step ``'s'`` and
  multi-step ``'m'``): ``v_threshold``, hard reset to ``v_reset`` or soft reset
  (``v_reset=None``), ``tau``, ``decay_input``; spike when ``v >= v_threshold``.
* Norse ``LIFCell`` (current-based) and ``LIFBoxCell``: ``z, state = cell(x, state)``;
  ``tau_syn_inv``, ``tau_mem_inv``, ``v_leak``, ``v_th``, ``v_reset``, ``dt``; spike when
  ``v > v_th``.

A parameter with no equivalent (graded spikes, lateral inhibition, state quantisation, a
reset method we do not know, a neuron class we do not know) is refused with a message that
names it. The frameworks themselves are never imported by imcsim unless a model holds one of
their modules.
"""

from __future__ import annotations

from collections import namedtuple

import torch
import torch.nn as nn

from ..events import NEURON_EVENTS, EventCounter, counting_enabled

FRAMEWORKS = ("snntorch", "spikingjelly", "norse")


def framework_of(m: nn.Module) -> str | None:
    root = type(m).__module__.split(".")[0]
    return root if root in FRAMEWORKS else None


def is_framework_neuron(m: nn.Module) -> bool:
    """A spiking-neuron module of one of the supported frameworks (supported or not)."""
    fw = framework_of(m)
    if fw == "snntorch":
        from snntorch._neurons.neurons import SpikingNeuron as Base

        return isinstance(m, Base)
    if fw == "spikingjelly":
        from spikingjelly.activation_based.neuron import BaseNode

        return isinstance(m, BaseNode)
    if fw == "norse":
        name = type(m).__name__
        return name.endswith("Cell") or name in ("LIF", "LIFBox", "IAF", "LI", "LIBox")
    return False


def _t(value) -> torch.Tensor:
    return value.detach().clone().to(torch.float32) if isinstance(value, torch.Tensor) else torch.tensor(float(value))


def _refuse(m, param: str, value, why: str = "has no imcsim equivalent"):
    raise ValueError(f"{type(m).__module__.split('.')[0]}.{type(m).__name__}: parameter {param}={value!r} {why}")


class FrameworkNeuron(nn.Module):
    """Base of the adapters: event counting and state handling."""

    neuron_kind = "spiking"
    framework = ""
    source = ""  # framework class name
    _STATE = ()  # names of state tensors

    def __init__(self):
        super().__init__()
        self.events = EventCounter(*NEURON_EVENTS)
        self.persistent = False
        self.spiking = True

    def _count(self, x, spk, syn: bool = False):
        if counting_enabled():
            self.events.add(updates=x.numel(), spikes=float(spk.detach().sum()), syn_updates=x.numel() if syn else 0)

    def reset_state(self) -> None:
        for n in self._STATE:
            setattr(self, n, None)

    def select_state(self, keep: torch.Tensor) -> None:
        for n in self._STATE:
            t = getattr(self, n)
            if isinstance(t, torch.Tensor) and t.dim():
                setattr(self, n, t[keep])

    def extra_repr(self) -> str:
        return f"from {self.framework}.{self.source}"


# ---------------------------------------------------------------------------- snnTorch


def _snn_common(m):
    if float(getattr(m, "graded_spikes_factor", 1.0)) != 1.0:
        _refuse(m, "graded_spikes_factor", float(m.graded_spikes_factor), "(graded spikes are not binary row drives)")
    if getattr(m, "inhibition", False):
        _refuse(m, "inhibition", True, "(lateral inhibition)")
    if getattr(m, "state_quant", False):
        _refuse(m, "state_quant", m.state_quant, "(state quantisation)")
    reset = {0: "subtract", 1: "zero", 2: "none"}.get(int(getattr(m, "reset_mechanism_val", 0)))
    if reset is None:
        _refuse(m, "reset_mechanism", getattr(m, "reset_mechanism", None))
    return reset


def _reset_now(mem, spk, delayed, thr, mode: str):
    """snnTorch's ``reset_delay=False``: apply this step's reset at once (``delayed`` is the
    reset already applied from the previous step's spikes)."""
    do = spk - delayed
    if mode == "subtract":
        return mem - do * thr
    if mode == "zero":
        return mem - do * mem
    return mem


class SnnTorchLeaky(FrameworkNeuron):
    """snnTorch ``Leaky``: ``mem = beta*mem + x - reset*threshold`` (reset from the previous
    ``mem > threshold``, or applied at once with ``reset_delay=False``); spike ``mem > threshold``."""

    framework, source = "snntorch", "Leaky"
    _STATE = ("mem",)

    def __init__(self, m):
        super().__init__()
        self.reset = _snn_common(m)
        self.register_buffer("beta", _t(m.beta).clamp(0, 1))
        self.register_buffer("threshold", _t(m.threshold))
        self.reset_delay = bool(getattr(m, "reset_delay", True))
        self.init_hidden, self.output = bool(m.init_hidden), bool(getattr(m, "output", False))
        self.mem: torch.Tensor | None = None

    def reset_mem(self):
        self.mem = torch.zeros(0)
        return self.mem

    init_leaky = reset_mem

    def forward(self, input_, mem=None):
        if mem is not None:
            if self.init_hidden:
                raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
            self.mem = mem
        m = self.mem
        if m is None or m.shape != input_.shape:
            m = torch.zeros_like(input_)
        thr, b = self.threshold, self.beta
        reset = (m - thr > 0).to(input_.dtype)
        if self.reset == "zero":
            new = b * ((1 - reset) * m) + input_
        else:
            new = b * m + input_
            if self.reset == "subtract":
                new = new - reset * thr
        spk = (new - thr > 0).to(input_.dtype)
        if not self.reset_delay:
            new = _reset_now(new, spk, reset, thr, self.reset)
        self.mem = new
        self._count(input_, spk)
        if self.output or not self.init_hidden:
            return spk, new
        return spk


class SnnTorchSynaptic(FrameworkNeuron):
    """snnTorch ``Synaptic``: ``syn = alpha*syn + x; mem = beta*mem + syn - reset*threshold``."""

    framework, source = "snntorch", "Synaptic"
    _STATE = ("syn", "mem")

    def __init__(self, m):
        super().__init__()
        self.reset = _snn_common(m)
        self.register_buffer("alpha", _t(m.alpha).clamp(0, 1))
        self.register_buffer("beta", _t(m.beta).clamp(0, 1))
        self.register_buffer("threshold", _t(m.threshold))
        self.reset_delay = bool(getattr(m, "reset_delay", True))
        self.init_hidden, self.output = bool(m.init_hidden), bool(getattr(m, "output", False))
        self.syn: torch.Tensor | None = None
        self.mem: torch.Tensor | None = None

    def reset_mem(self):
        self.syn, self.mem = torch.zeros(0), torch.zeros(0)
        return self.syn, self.mem

    init_synaptic = reset_mem

    def forward(self, input_, syn=None, mem=None):
        if syn is not None or mem is not None:
            if self.init_hidden:
                raise TypeError("`mem` or `syn` should not be passed as an argument while `init_hidden=True`")
            self.syn = syn if syn is not None else self.syn
            self.mem = mem if mem is not None else self.mem
        s = self.syn if self.syn is not None and self.syn.shape == input_.shape else torch.zeros_like(input_)
        m = self.mem if self.mem is not None and self.mem.shape == input_.shape else torch.zeros_like(input_)
        thr = self.threshold
        reset = (m - thr > 0).to(input_.dtype)
        s = self.alpha * s + input_
        new = self.beta * m + s
        if self.reset == "subtract":
            new = new - reset * thr
        elif self.reset == "zero":
            new = new - new * reset
        spk = (new - thr > 0).to(input_.dtype)
        if not self.reset_delay:
            new = _reset_now(new, spk, reset, thr, self.reset)
        self.syn, self.mem = s, new
        self._count(input_, spk, syn=True)
        if self.output or not self.init_hidden:
            return spk, s, new
        return spk


# ---------------------------------------------------------------------------- SpikingJelly


class SpikingJellyNode(FrameworkNeuron):
    """SpikingJelly ``IFNode`` / ``LIFNode`` / ``ParametricLIFNode``: charge, then spike when
    ``v >= v_threshold``, then hard reset to ``v_reset`` or soft reset (``v -= v_threshold``)."""

    framework = "spikingjelly"
    _STATE = ("v",)

    def __init__(self, m):
        super().__init__()
        name = type(m).__name__
        self.source = name
        if name not in ("IFNode", "LIFNode", "ParametricLIFNode"):
            raise ValueError(f"spikingjelly.{name} has no imcsim equivalent (supported: IFNode, LIFNode, ParametricLIFNode)")
        self.kind = {"IFNode": "if", "LIFNode": "lif", "ParametricLIFNode": "lif"}[name]
        self.v_threshold = float(m.v_threshold)
        self.v_reset = None if m.v_reset is None else float(m.v_reset)
        self.step_mode = getattr(m, "step_mode", "s")
        if self.step_mode not in ("s", "m"):
            _refuse(m, "step_mode", self.step_mode)
        self.decay_input = bool(getattr(m, "decay_input", True))
        if name == "LIFNode":
            self.inv_tau = 1.0 / float(m.tau)
        elif name == "ParametricLIFNode":
            self.inv_tau = float(torch.sigmoid(m.w.detach()))
        else:
            self.inv_tau = 0.0
        self.v: torch.Tensor | None = None

    def reset(self):  # what spikingjelly.activation_based.functional.reset_net calls
        self.v = None

    def _step(self, x):
        v0 = 0.0 if self.v_reset is None else self.v_reset
        v = self.v if self.v is not None and self.v.shape == x.shape else torch.full_like(x, v0)
        if self.kind == "if":
            v = v + x
        elif self.decay_input:
            v = v + (x - (v - v0)) * self.inv_tau
        else:
            v = v - (v - v0) * self.inv_tau + x
        spk = (v - self.v_threshold >= 0).to(x.dtype)
        v = spk * self.v_reset + (1.0 - spk) * v if self.v_reset is not None else v - spk * self.v_threshold
        self.v = v
        return spk

    def forward(self, x):
        if self.step_mode == "s":
            spk = self._step(x)
        else:
            spk = torch.stack([self._step(x[t]) for t in range(x.shape[0])])
        self._count(x, spk)
        return spk

    def select_state(self, keep):
        if isinstance(self.v, torch.Tensor) and self.v.dim():
            self.v = self.v[keep]


# ---------------------------------------------------------------------------- Norse

LIFState = namedtuple("LIFFeedForwardState", ["v", "i"])
LIFBoxState = namedtuple("LIFBoxFeedForwardState", ["v"])


class NorseLIF(FrameworkNeuron):
    """Norse ``LIFCell`` (current-based: ``i += x; v += dt/tau_mem (v_leak - v + i); i -= dt/tau_syn i``)
    and ``LIFBoxCell`` (``v += dt/tau_mem (v_leak - v + x)``); spike when ``v > v_th``, then
    ``v = v_reset``. Called as ``z, state = cell(x, state)``."""

    framework = "norse"
    _STATE = ()

    def __init__(self, m):
        super().__init__()
        name = type(m).__name__
        if name not in ("LIFCell", "LIFBoxCell"):
            raise ValueError(f"norse.{name} has no imcsim equivalent (supported: LIFCell, LIFBoxCell)")
        self.source = name
        self.box = name == "LIFBoxCell"
        p = m.p
        self.dt = float(getattr(m, "dt", 0.001))
        for f in ("tau_mem_inv", "v_leak", "v_th", "v_reset"):
            self.register_buffer(f, _t(getattr(p, f)))
        self.register_buffer("tau_syn_inv", _t(getattr(p, "tau_syn_inv", 0.0)))
        reset = getattr(p, "reset_method", None)
        self.subtract = False
        if reset is not None and getattr(reset, "__name__", "") not in ("reset_value", "reset_subtract"):
            _refuse(m, "p.reset_method", getattr(reset, "__name__", reset), "(known: reset_value, reset_subtract)")
        if reset is not None and reset.__name__ == "reset_subtract":
            self.subtract = True

    def forward(self, x, state=None):
        if self.box:
            v = state.v if state is not None else self.v_leak.expand_as(x).clone()
            v = v + self.dt * self.tau_mem_inv * (x + self.v_leak - v)
            i = None
        else:
            v = state.v if state is not None else self.v_leak.expand_as(x).clone()
            i = state.i if state is not None else torch.zeros_like(x)
            i = i + x
            v = v + self.dt * self.tau_mem_inv * ((self.v_leak - v) + i)
            i = i - self.dt * self.tau_syn_inv * i
        z = (v - self.v_th > 0).to(x.dtype)
        v = v - z * self.v_th if self.subtract else (1 - z) * v + z * self.v_reset
        self._count(x, z, syn=not self.box)
        return z, (LIFBoxState(v) if self.box else LIFState(v, i))


# ---------------------------------------------------------------------------- dispatch


def adapt(m: nn.Module) -> FrameworkNeuron:
    """The imcsim replacement of a framework neuron module, or ValueError naming what is not
    supported."""
    fw, name = framework_of(m), type(m).__name__
    if fw == "snntorch":
        if name == "Leaky":
            return SnnTorchLeaky(m)
        if name == "Synaptic":
            return SnnTorchSynaptic(m)
        raise ValueError(f"snntorch.{name} has no imcsim equivalent yet (supported: Leaky, Synaptic; recurrent "
                         "snnTorch layers come in through NIR: snntorch.export_to_nir, then imcsim.from_nir)")
    if fw == "spikingjelly":
        return SpikingJellyNode(m)
    if fw == "norse":
        return NorseLIF(m)
    raise ValueError(f"{type(m).__module__}.{name} is not a neuron of a supported framework")


def output_arity(m: nn.Module) -> int:
    """How many values a framework neuron's call returns (1: just the spikes)."""
    fw, name = framework_of(m), type(m).__name__
    if fw == "snntorch":
        n = 3 if name == "Synaptic" else 2
        return n if (getattr(m, "output", False) or not getattr(m, "init_hidden", False)) else 1
    if fw == "norse":
        return 2
    return 1
