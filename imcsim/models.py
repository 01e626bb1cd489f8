"""Networks whose topology can be instantiated as an SNN (T timesteps) or a QNN (b bits).

A :class:`Network` is a body (any module working on time-flattened tensors (T*B, ...), with
spiking neurons unfolding (T, B, ...)) plus how to feed it time:

* ``kind="snn"``, ``input="static"``: a (B, ...) input is encoded over T timesteps
  (``direct``: the same analog input every step; ``rate``: Bernoulli spikes with probability
  = pixel intensity, keyed by sample and timestep);
* ``kind="snn"``, ``input="sequence"``: the input already is a sequence (T, B, ...) --
  event-camera frames, spike trains, audio features -- and T is its length;
* ``kind="qnn"``: one pass with b-bit :class:`~imcsim.neurons.QuantAct` activations;
  ``input="sequence"`` (the QNN twin of an event-stream SNN): the sequence's event rate per
  pixel over its T frames (events / T, in [0, 1]) is the QNN's analog input image -- the
  same events, integrated once instead of fed frame by frame.

The output is logits (or spikes / membranes) per timestep (T, B, K), T = 1 for a QNN; the
prediction is the class with the largest mean over timesteps. The zoo builders record
their arguments in ``arch`` so a checkpoint can rebuild the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from crossbar_models.noise import element_offsets, keyed_uniform

from .context import default_context, vector_keys
from .events import INPUT_EVENTS, EventCounter, count_run_input
from .neurons import IF, LIF, QuantAct, SpikingNeuron

KINDS = ("snn", "qnn")
ENCODINGS = ("direct", "rate")
INPUTS = ("static", "sequence")
NEURON_TYPES = ("if", "lif")


def qnn_bits_for(timesteps: int) -> int:
    """Activation bits of the QNN equivalent to a T-step SNN: ceil(log2(T + 1))."""
    return max(1, math.ceil(math.log2(timesteps + 1)))


class Network(nn.Module):
    def __init__(self, body: nn.Module, kind: str, timesteps: int = 1, encoding: str = "direct", arch: dict | None = None,
                 static_input_once: bool = False, input: str = "static"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
        if kind == "snn" and (isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1):
            raise ValueError(f"timesteps must be an integer >= 1, got {timesteps!r}")
        if static_input_once and not isinstance(body, nn.Sequential):
            raise ValueError("static_input_once needs an nn.Sequential body (the layers before the first neuron are "
                             "computed once)")
        self.body = body
        self.kind = kind
        self.timesteps = timesteps if kind == "snn" else 1
        self.encoding = encoding
        self.input = input
        # With direct encoding the layers before the first spiking neuron see the same input
        # every timestep; hardware may compute them once and hold the result (counted once).
        self.static_input_once = bool(static_input_once)
        self.arch = dict(arch or {})
        self.input_events = EventCounter(*INPUT_EVENTS)  # the network input, for off-chip fetches
        self.persistent = False  # step-by-step runs: the static prefix is computed once per inference
        self._static: torch.Tensor | None = None
        self._input_fetched = False

    @property
    def batch_dim(self) -> int:
        """Dimension of the input that indexes samples: 1 for (T, B, ...) sequences, else 0."""
        return 1 if self.input == "sequence" else 0

    def encode(self, x: torch.Tensor, T: int) -> torch.Tensor:
        """(B, ...) -> (T, B, ...) network input for T timesteps."""
        if self.encoding == "direct":
            return x.unsqueeze(0).expand(T, *x.shape)
        # rate: a spike with probability = intensity, keyed by (sample, timestep, pixel)
        B = x.shape[0]
        keys = vector_keys(0x7A7E, T * B, 1, "rate encoding").to(x.device)  # (T*B,), step-major
        u = keyed_uniform(keys, element_offsets(x[0].numel(), salt=17, device=x.device))
        p = x.clamp(0, 1).reshape(1, B, -1).expand(T, B, -1).reshape(T * B, -1)
        return (u < p).to(x.dtype).view(T, *x.shape)

    def forward(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        """Logits per timestep, (T, B, K); T = 1 for a QNN."""
        if not isinstance(x, torch.Tensor) or x.dim() < 1 + (self.input == "sequence"):
            raise ValueError(f"network input must be a tensor {'(T, B, ...)' if self.input == 'sequence' else '(B, ...)'}, "
                             f"got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        with default_context(x.shape[self.batch_dim]):
            # the input is fetched from off-chip once per inference (a sequence: every frame)
            count_run_input(self, x, self.batch_dim, self.persistent, every_call=self.input == "sequence")
            return self._forward(x, timesteps)

    def reset_state(self) -> None:
        self._static, self._input_fetched = None, False

    def select_state(self, keep) -> None:
        if self._static is not None:
            self._static = self._static[keep]

    def _forward(self, x, timesteps):
        if self.kind == "qnn":
            return self.body(x.mean(0) if self.input == "sequence" else x).unsqueeze(0)
        if self.input == "sequence":
            T, B = x.shape[0], x.shape[1]
            if timesteps is not None and int(timesteps) != T:
                raise ValueError(f"timesteps={timesteps} does not match the sequence length {T}")
            h = x.reshape(T * B, *x.shape[2:])
        else:
            T = self.timesteps if timesteps is None else int(timesteps)
            if T < 1:
                raise ValueError(f"timesteps must be >= 1, got {T}")
            B = x.shape[0]
            h = self.encode(x, T).reshape(T * B, *x.shape[1:])
        mods = list(self.body) if isinstance(self.body, nn.Sequential) else [self.body]
        if self.static_input_once and self.encoding == "direct" and self.input == "static":
            k = next((i for i, m in enumerate(mods) if isinstance(m, SpikingNeuron)), len(mods))
            if self.persistent and self._static is not None:  # a step-by-step run: computed at its first step
                c = self._static
            else:
                c = x  # computed once per inference (keyed as timestep 0 of each sample)
                for m in mods[:k]:
                    c = _call(m, c, T=1, B=B)
                if self.persistent:
                    self._static = c
            h = c.unsqueeze(0).expand(T, *c.shape).reshape(T * B, *c.shape[1:])
            mods = mods[k:]
        for m in mods:
            h = _call(m, h, T=T, B=B)
        return h.view(T, B, *h.shape[1:])

    def predict(self, x: torch.Tensor, **kw) -> torch.Tensor:
        return self(x, **kw).mean(0).argmax(-1)


class Stepwise(nn.Module):
    """A model that takes one timestep per call (snnTorch ``init_hidden`` networks,
    SpikingJelly single-step networks, any stateful per-step module), run over sequences.

    forward(x) with x (T, B, ...) resets the module's neuron states, calls ``module(x[t])``
    for t = 0..T-1 and stacks the outputs (T, B, ...); a tuple output contributes its
    element ``output_index`` (e.g. 0: spikes, 1: membranes of snnTorch's ``(spk, mem)``).
    Read noise is keyed by step. Works with :func:`imcsim.dynamic.run_dynamic`."""

    kind = "snn"
    input = "sequence"
    batch_dim = 1
    encoding = "direct"
    static_input_once = False

    def __init__(self, module: nn.Module, output_index: int = 0):
        super().__init__()
        self.module = module
        self.output_index = int(output_index)
        self.persistent = False
        self._input_fetched = False
        self.arch: dict = {}
        self.input_events = EventCounter(*INPUT_EVENTS)  # every frame is fetched (off-chip cost)

    @property
    def timesteps(self) -> int:
        return 0

    def reset_state(self) -> None:
        """Fresh states: imcsim neurons and adapters, and native snnTorch / SpikingJelly
        neurons (``reset_mem()`` / ``reset()``) of a model not converted yet."""
        from .convert.frameworks import framework_of
        from .neurons import neurons

        self._input_fetched = False
        for n in neurons(self.module):
            n.reset_state()
        for m in self.module.modules():
            fw = framework_of(m)
            if fw == "snntorch" and hasattr(m, "reset_mem"):
                m.reset_mem()
                for name in ("syn",):
                    if hasattr(m, name) and isinstance(getattr(m, name), torch.Tensor):
                        setattr(m, name, torch.zeros(0))
            elif fw == "spikingjelly" and hasattr(m, "reset") and hasattr(m, "v"):
                m.reset()

    def select_state(self, keep) -> None:
        pass  # the module's own neurons are selected by imcsim.neurons.select_states

    def forward(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ValueError(f"Stepwise expects a sequence (T, B, ...), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if not self.persistent:
            self.reset_state()
        count_run_input(self, x, 1, self.persistent)
        outs = []
        with default_context(x.shape[1]):
            for t in range(x.shape[0]):
                o = self.module(x[t])
                outs.append(o[self.output_index] if isinstance(o, (tuple, list)) else o)
        return torch.stack(outs)


def _call(m: nn.Module, h: torch.Tensor, T: int, B: int) -> torch.Tensor:
    """Run one body module on time-flattened h (T*B, ...); spiking neurons see (T, B, ...)."""
    if isinstance(m, SpikingNeuron) and not m.time_flat:
        return m(h.view(T, B, *h.shape[1:])).reshape(T * B, *h.shape[1:])
    return m(h)


def _activation(kind: str, neuron: str, bits: int | None, threshold: float, leak: float | None, v_init: float,
                time_flat: bool = False):
    if kind == "qnn":
        return QuantAct(bits, clip=threshold)
    if neuron == "if":
        return IF(threshold=threshold, v_init=v_init, time_flat=time_flat)
    return LIF(threshold=threshold, leak=leak if leak is not None else math.exp(-0.5), v_init=v_init, time_flat=time_flat)


def _check_common(kind, timesteps, bits, neuron):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if neuron not in NEURON_TYPES:
        raise ValueError(f"neuron must be one of {NEURON_TYPES}, got {neuron!r}")
    if kind == "qnn" and bits is None:
        bits = qnn_bits_for(timesteps)
    return bits


def mlp(in_shape=(1, 8, 8), num_classes=10, hidden=(128,), kind="snn", timesteps=4, bits=None, neuron="if",
        threshold=1.0, leak=None, v_init=0.0, encoding="direct", batchnorm=True, static_input_once=False,
        input="static") -> Network:
    """Flatten -> [Linear -> (BN) -> act] x len(hidden) -> Linear. input: ``static`` (an
    image encoded over ``timesteps``) or ``sequence`` ((T, B, ...) frames, e.g. events)."""
    bits = _check_common(kind, timesteps, bits, neuron)
    arch = dict(name="mlp", in_shape=list(in_shape), num_classes=num_classes, hidden=list(hidden), kind=kind,
                timesteps=timesteps, bits=bits, neuron=neuron, threshold=threshold, leak=leak, v_init=v_init,
                encoding=encoding, batchnorm=batchnorm, static_input_once=static_input_once, input=input)
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(math.prod(in_shape))
    for h in hidden:
        layers.append(nn.Linear(width, h, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(_activation(kind, neuron, bits, threshold, leak, v_init))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return Network(nn.Sequential(*layers), kind, timesteps, encoding, arch, static_input_once, input)


def convnet(in_shape=(1, 28, 28), num_classes=10, channels=(16, 32), hidden=128, kind="snn", timesteps=4, bits=None,
            neuron="if", threshold=1.0, leak=None, v_init=0.0, encoding="direct", pool=(True, True),
            static_input_once=False, input="static") -> Network:
    """Small VGG-style net: [Conv3x3 -> BN -> act -> (MaxPool2)] per stage -> Flatten ->
    Linear -> BN -> act -> Linear. input: ``static`` or ``sequence`` (see :func:`mlp`)."""
    bits = _check_common(kind, timesteps, bits, neuron)
    pool = list(pool) + [False] * (len(channels) - len(pool))
    arch = dict(name="convnet", in_shape=list(in_shape), num_classes=num_classes, channels=list(channels), hidden=hidden,
                kind=kind, timesteps=timesteps, bits=bits, neuron=neuron, threshold=threshold, leak=leak, v_init=v_init,
                encoding=encoding, pool=pool[: len(channels)], static_input_once=static_input_once, input=input)
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for ch, p in zip(channels, pool):
        layers += [nn.Conv2d(c, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), _activation(kind, neuron, bits, threshold, leak, v_init)]
        if p:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = ch
    layers += [nn.Flatten(), nn.Linear(c * h * w, hidden, bias=False), nn.BatchNorm1d(hidden),
               _activation(kind, neuron, bits, threshold, leak, v_init), nn.Linear(hidden, num_classes)]
    return Network(nn.Sequential(*layers), kind, timesteps, encoding, arch, static_input_once, input)


RESNET_STYLES = ("sew", "spiking")


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut (1x1 convolution + BN where the
    shape changes). ``spiking`` style (Hu et al.): the shortcut is added to the second
    convolution's output before the activation; ``sew`` style (Fang et al. 2021, ADD): the
    activations are added after, so spikes + spikes reach the next layer as integer counts."""

    def __init__(self, c_in: int, c_out: int, stride: int, style: str, act):
        super().__init__()
        self.style = style
        self.conv1, self.bn1, self.act1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), act()
        self.conv2, self.bn2, self.act2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), act()
        self.down = stride != 1 or c_in != c_out
        if self.down:
            self.conv_s, self.bn_s = nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            if style == "sew":
                self.act_s = act()

    def forward(self, x):
        h = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        s = x
        if self.down:
            s = self.bn_s(self.conv_s(x))
            if self.style == "sew":
                s = self.act_s(s)
        if self.style == "spiking":
            return self.act2(h + s)
        return self.act2(h) + s


class ResNetBody(nn.Module):
    def __init__(self, in_shape, num_classes, channels, blocks, style, act, stem=None, hidden=(), pool="2x2"):
        super().__init__()
        c, h, w = in_shape
        stem = stem or channels[0]
        self.stem, self.bn, self.act = nn.Conv2d(c, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), act()
        layers, c_in = [], stem
        for i, (ch, n) in enumerate(zip(channels, blocks)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(ResidualBlock(c_in, ch, stride, style, act))
                if stride == 2:
                    h, w = (h + 1) // 2, (w + 1) // 2
                c_in = ch
        self.blocks = nn.Sequential(*layers)
        if pool == "global":  # mean over the whole map (ResNet-19's head)
            self.pool, h, w = nn.AdaptiveAvgPool2d(1), 1, 1
        else:
            # 2x2 average (spike counts / 4) then a Linear over the whole map. A global average
            # over the map learned far slower as an SNN (MNIST, 3000 images, 3 epochs: 38 % vs 95 %).
            self.pool = nn.AvgPool2d(2) if min(h, w) >= 2 else nn.Identity()
            h, w = (h // 2, w // 2) if min(h, w) >= 2 else (h, w)
        self.flatten = nn.Flatten()
        head: list[nn.Module] = []
        width = c_in * h * w
        for hd in hidden:
            head += [nn.Linear(width, hd, bias=False), nn.BatchNorm1d(hd), act()]
            width = hd
        self.head = nn.Sequential(*head)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.flatten(self.pool(self.blocks(self.act(self.bn(self.stem(x))))))))


def resnet(in_shape=(1, 28, 28), num_classes=10, channels=(16, 32), blocks=(1, 1), style="sew", kind="snn",
           timesteps=4, bits=None, neuron="if", threshold=1.0, leak=None, v_init=0.0, encoding="direct",
           input="static", stem=None, hidden=(), pool="2x2") -> Network:
    """Spiking ResNet: 3x3 stem (``stem`` channels, default ``channels[0]``), residual stages
    (``blocks[i]`` blocks of ``channels[i]``, stride 2 from the second stage on), pooling
    (``2x2`` average or ``global``), hidden Linear -> BN -> act layers, Linear. ``style``:
    ``sew`` (add spikes: integer counts downstream) or ``spiking`` (add before the neuron)."""
    bits = _check_common(kind, timesteps, bits, neuron)
    if style not in RESNET_STYLES:
        raise ValueError(f"style must be one of {RESNET_STYLES}, got {style!r}")
    if len(channels) != len(blocks) or not channels or min(blocks) < 1:
        raise ValueError(f"channels and blocks must be non-empty and of equal length with blocks >= 1, got {channels}, {blocks}")
    if pool not in ("2x2", "global"):
        raise ValueError(f"pool must be '2x2' or 'global', got {pool!r}")
    arch = dict(name="resnet", in_shape=list(in_shape), num_classes=num_classes, channels=list(channels),
                blocks=list(blocks), style=style, kind=kind, timesteps=timesteps, bits=bits, neuron=neuron,
                threshold=threshold, leak=leak, v_init=v_init, encoding=encoding, input=input)
    if stem is not None or hidden or pool != "2x2":  # recorded only when used: older checkpoints rebuild as before
        arch.update(stem=stem, hidden=list(hidden), pool=pool)

    def act():
        return _activation(kind, neuron, bits, threshold, leak, v_init, time_flat=True)

    body = ResNetBody(tuple(in_shape), num_classes, tuple(channels), tuple(blocks), style, act, stem, tuple(hidden),
                      pool)
    return Network(body, kind, timesteps, encoding, arch, input=input)


# ------------------------------------------------------------------ CIFAR-size networks

# VGG9 as SpikeSim and SATA use it; VGG16 (13 conv); "M": 2x2 max pooling (spikes stay 0/1).
# Classifier heads: VGG9's fc 1024 (SpikeSim's layer list); VGG16's one hidden fc of 4096
# (the head of the Yale group's spiking VGG16 code, e.g. BNTT; DT-SNN is from that group).
VGG_CONFIGS = {
    "vgg9": ((64, 64, "M", 128, 128, "M", 256, 256, 256, "M"), (1024,)),
    "vgg16": ((64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"), (4096,)),
}


def _scaled(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def _check_width(width) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 8:
        raise ValueError(f"width must be a number in (0, 8], got {width!r}")
    return float(width)


def vgg(depth: int = 9, in_shape=(3, 32, 32), num_classes=10, width=1.0, kind="snn", timesteps=4, bits=None,
        neuron="if", threshold=1.0, leak=None, v_init=0.0, encoding="direct", static_input_once=False,
        input="static") -> Network:
    """VGG9 (conv 64-64-M-128-128-M-256-256-256-M, fc 1024, fc K) or VGG16 (13 conv, fc 4096,
    fc K): Conv3x3 -> BN -> act per conv, 2x2 max pooling at "M" (skipped once the map is
    1 pixel), Linear -> BN -> act per hidden fc. ``width`` scales every channel and hidden
    width (rounded, >= 1): 0.25 gives a quarter-width network for quick studies."""
    name = f"vgg{depth}"
    if name not in VGG_CONFIGS:
        raise ValueError(f"depth must be one of {sorted(int(k[3:]) for k in VGG_CONFIGS)}, got {depth!r}")
    width = _check_width(width)
    bits = _check_common(kind, timesteps, bits, neuron)
    arch = dict(name="vgg", depth=depth, in_shape=list(in_shape), num_classes=num_classes, width=width, kind=kind,
                timesteps=timesteps, bits=bits, neuron=neuron, threshold=threshold, leak=leak, v_init=v_init,
                encoding=encoding, static_input_once=static_input_once, input=input)
    cfg, hidden = VGG_CONFIGS[name]
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            continue
        ch = _scaled(v, width)
        layers += [nn.Conv2d(c, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch),
                   _activation(kind, neuron, bits, threshold, leak, v_init)]
        c = ch
    layers.append(nn.Flatten())
    n_in = c * h * w
    for hd in hidden:
        hd = _scaled(hd, width)
        layers += [nn.Linear(n_in, hd, bias=False), nn.BatchNorm1d(hd), _activation(kind, neuron, bits, threshold, leak,
                                                                                     v_init)]
        n_in = hd
    layers.append(nn.Linear(n_in, num_classes))
    return Network(nn.Sequential(*layers), kind, timesteps, encoding, arch, static_input_once, input)


def vgg9(**kw) -> Network:
    """SpikeSim's / SATA's VGG9 (see :func:`vgg`)."""
    return vgg(9, **kw)


def vgg16(**kw) -> Network:
    """VGG16 (see :func:`vgg`)."""
    return vgg(16, **kw)


def resnet19(in_shape=(3, 32, 32), num_classes=10, width=1.0, kind="snn", timesteps=4, bits=None, neuron="if",
             threshold=1.0, leak=None, v_init=0.0, encoding="direct", input="static", style="spiking") -> Network:
    """ResNet-19 (Zheng et al., AAAI 2021, as DT-SNN uses it): 3x3 stem of 128, residual
    stages of 3 x 128, 3 x 256 (stride 2), 2 x 512 (stride 2) basic blocks, global average
    pooling, fc 256, fc K -- 17 convolutions + 2 fc. ``width`` scales every channel."""
    width = _check_width(width)
    return resnet(in_shape=in_shape, num_classes=num_classes, channels=tuple(_scaled(c, width) for c in (128, 256, 512)),
                  blocks=(3, 3, 2), style=style, kind=kind, timesteps=timesteps, bits=bits, neuron=neuron,
                  threshold=threshold, leak=leak, v_init=v_init, encoding=encoding, input=input,
                  stem=_scaled(128, width), hidden=(_scaled(256, width),), pool="global")


BUILDERS = {"mlp": mlp, "convnet": convnet, "resnet": resnet, "vgg": vgg}
ZOO = {"mlp": mlp, "convnet": convnet, "resnet": resnet, "vgg9": vgg9, "vgg16": vgg16, "resnet19": resnet19}


def build(arch: dict) -> Network:
    """Rebuild a zoo network from its ``arch`` record (unknown keys are an error)."""
    import inspect

    arch = dict(arch)
    if arch.get("name") == "nir":
        from .convert.nir import network_from_spec

        return network_from_spec(arch)
    name = arch.pop("name", None)
    if name not in BUILDERS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(BUILDERS)}, nir")
    builder = BUILDERS[name]
    allowed = set(inspect.signature(builder).parameters)
    extra = sorted(set(arch) - allowed)
    if extra:
        raise ValueError(f"architecture {name!r} has no parameter {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")
    return builder(**arch)
