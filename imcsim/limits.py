"""What a file may ask imcsim to build or read, checked before anything is allocated.

A checkpoint or a NIR file of a few kilobytes can declare a network of any size (a hidden
layer of 10**9 neurons, an HDF5 dataset of shape (10**5, 10**5) that was never written) or
weights that are not numbers. Everything that reads such a file checks it here first:

* each size field against a stated limit (the same limits the command line applies);
* the number of values a network's weights would hold (or a NIR file's arrays), at 4 bytes
  each, against :func:`memory_budget`;
* every weight and statistic for NaN / inf (and BatchNorm variances for negative values),
  naming the tensor.

Errors are :class:`~imcsim.errors.ConfigError` with the field, the value and what is allowed.
"""

from __future__ import annotations

import math
import os

import torch

from .errors import ConfigError

MAX_TIMESTEPS = 64             # SNN timesteps of a zoo network (imcsim train / demo --timesteps)
MAX_SEQUENCE_STEPS = 1024      # frames of an imported sequence network (imcsim import --timesteps)
MAX_WIDTH = 1 << 20            # neurons of one hidden layer (imcsim train --hidden)
MAX_CHANNELS = 1 << 16         # channels of one conv stage (imcsim train --channels)
MAX_WIDTH_SCALE = 8            # width multiplier of the CIFAR-size zoo networks (imcsim train --width)
MAX_LAYERS = 256               # entries of a hidden / channels / blocks list
MAX_BLOCKS = 64                # residual blocks per stage
MAX_SIDE = 1 << 14             # one input dimension (height, width, channels)
MAX_INPUT_VALUES = 1 << 24     # values in one input sample (16.8 M, e.g. 3 x 2365 x 2365)
MAX_CLASSES = 1 << 20          # output classes
MAX_BITS = 16                  # QNN activation bits (imcsim train --bits)
MAX_ARRAY_VALUES = 1 << 28     # values in one array of a NIR file (268 M; VGG16's largest layer has 103 M)
MAX_NIR_OBJECTS = 100_000      # groups and datasets in a NIR file
BYTES_PER_VALUE = 4            # float32


def memory_budget() -> int:
    """Bytes the weights of one network (or the arrays of one file) may take: a quarter of
    the memory this process may use (the machine's physical memory, or a smaller address-space
    limit such as ``ulimit -v``) -- conversion keeps several copies (float weights,
    conductances, effective conductances), each as large. IMCSIM_MEMORY_BUDGET (bytes)
    overrides it."""
    env = os.environ.get("IMCSIM_MEMORY_BUDGET")
    if env:
        try:
            return max(1, int(float(env)))
        except ValueError:
            raise ConfigError(f"IMCSIM_MEMORY_BUDGET must be a number of bytes, got {env!r}") from None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 16 << 30
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY and limit > 0:
            total = min(total, limit)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        pass
    return max(1 << 26, total // 4)


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_values(what: str, values: int) -> None:
    """``values`` float32 numbers must fit the memory budget."""
    budget = memory_budget()
    if values * BYTES_PER_VALUE > budget:
        raise ConfigError(f"{what} would hold {values:,} values ({_gib(values * BYTES_PER_VALUE)}), more than the "
                          f"memory budget of {_gib(budget)} (a quarter of this machine's memory; "
                          "IMCSIM_MEMORY_BUDGET sets it)")


def _int(where: str, v, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where} must be an integer in [{lo}, {hi}], got {v!r}")
    if not lo <= v <= hi:
        raise ConfigError(f"{where} must be in [{lo}, {hi}], got {v}")
    return v


def _int_list(where: str, v, lo: int, hi: int, min_len: int = 0) -> list:
    if not isinstance(v, (list, tuple)):
        raise ConfigError(f"{where} must be a list of integers in [{lo}, {hi}], got {type(v).__name__}")
    if not min_len <= len(v) <= MAX_LAYERS:
        raise ConfigError(f"{where} must have {min_len} to {MAX_LAYERS} entries, got {len(v)}")
    return [_int(f"{where}[{i}]", x, lo, hi) for i, x in enumerate(v)]


def check_in_shape(where: str, shape) -> list:
    """An input sample's shape: 1 to 3 dimensions, each <= MAX_SIDE, <= MAX_INPUT_VALUES in all."""
    s = _int_list(where, shape, 1, MAX_SIDE, min_len=1)
    if len(s) > 3:
        raise ConfigError(f"{where} must have 1 to 3 dimensions (channels, height, width), got {len(s)}")
    if math.prod(s) > MAX_INPUT_VALUES:
        raise ConfigError(f"{where} = {s} holds {math.prod(s):,} values per sample; at most {MAX_INPUT_VALUES:,}")
    return s


_ZOO_FIELDS = {  # field: (checker, arguments) for the size fields of the zoo builders
    "hidden": lambda w, v: _int(w, v, 1, MAX_WIDTH) if not isinstance(v, (list, tuple))
    else _int_list(w, v, 1, MAX_WIDTH),
    "channels": lambda w, v: _int_list(w, v, 1, MAX_CHANNELS, min_len=1),
    "blocks": lambda w, v: _int_list(w, v, 1, MAX_BLOCKS, min_len=1),
    "num_classes": lambda w, v: _int(w, v, 2, MAX_CLASSES),
    "in_shape": check_in_shape,
    "stem": lambda w, v: v if v is None else _int(w, v, 1, MAX_CHANNELS),
    "width": lambda w, v: _width(w, v),
}


def _width(where: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= MAX_WIDTH_SCALE:
        raise ConfigError(f"{where} must be a number in (0, {MAX_WIDTH_SCALE}], got {v!r}")
    return v


def check_arch(arch: dict, where: str = "arch") -> None:
    """The size fields of an architecture record, before anything is built."""
    name = arch.get("name")
    steps = MAX_SEQUENCE_STEPS if name == "nir" or arch.get("input") == "sequence" else MAX_TIMESTEPS
    if arch.get("timesteps") is not None or name != "nir":
        _int(f"{where}.timesteps", arch.get("timesteps", 1), 1, steps)
    if arch.get("bits") is not None:
        _int(f"{where}.bits", arch["bits"], 1, MAX_BITS)
    for field, check in _ZOO_FIELDS.items():
        if field in arch and not (name == "nir" and not arch[field]):  # a NIR graph may leave them open
            check(f"{where}.{field}", arch[field])


def check_network_size(build, what: str):
    """Build a network with ``build()`` on the meta device (no memory), check that its
    parameters and buffers fit :func:`memory_budget`, then build it for real."""
    with torch.device("meta"):
        shell = build()
    values = sum(t.numel() for t in shell.parameters()) + sum(t.numel() for t in shell.buffers())
    del shell
    check_values(what, values)
    return build()


def check_finite(tensors: dict, what: str) -> None:
    """No NaN / inf in floating tensors, no negative BatchNorm running variance; the first
    offending tensor is named."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
            continue
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ConfigError(f"{what}: tensor {name!r} holds {bad} non-finite value(s) (NaN or inf); "
                              "its weights cannot be mapped onto a chip")
        if name.endswith("running_var") and bool((t < 0).any()):
            raise ConfigError(f"{what}: tensor {name!r} (a BatchNorm variance) holds negative values "
                              f"(min {float(t.min()):g}); a variance is >= 0")


def tensors_in(obj, prefix: str = "") -> dict:
    """Every tensor inside nested dicts / lists, by a dotted name (NIR graph specs)."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix or "value"] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(tensors_in(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(tensors_in(v, f"{prefix}[{i}]"))
    return out
