"""Checkpoints: a network's architecture record, weights and metadata -- data, never code.

A checkpoint is a ``torch.save`` file of one dict holding only plain data (str, int, float,
bool, None, lists, dicts) and tensors::

    {"format": "imcsim-checkpoint-2", "arch": {...}, "state_dict": {name: tensor}, "meta": {...}}

It is loaded with ``torch.load(weights_only=True)``: a file that carries anything else (a
pickled object, a code payload) is refused before any of it runs. The architecture record
rebuilds the network (:func:`imcsim.models.build`). Every part is validated before anything
is built (:mod:`imcsim.limits`: sizes against stated limits and the memory budget, weights
finite), and a bad file gives one :class:`~imcsim.errors.ConfigError` that names the file
and what is wrong.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from .errors import ConfigError
from .io import _atomic_write_bytes
from .limits import check_arch, check_finite, check_network_size, tensors_in

# meta fields the commands read: name -> (accepted types, description)
META_FIELDS = {
    "dataset": ((str,), "a dataset name"),
    "data_dir": ((str, type(None)), "a folder path or null"),
    "n_train": ((int, type(None)), "a sample count >= 1 or null"),
    "n_test": ((int, type(None)), "a sample count >= 1 or null"),
    "holdout": ((int, type(None)), "a sample count >= 0 or null"),
    "hardware_training": ((dict,), "a record of hardware-aware training (mode, hardware, chip_seeds)"),
}

FORMATS = ("imcsim-checkpoint-1", "imcsim-checkpoint-2")
FORMAT = FORMATS[-1]


def _plain(value, where: str):
    """Refuse anything but plain data and tensors in a record we write."""
    if value is None or isinstance(value, (str, bool, int, torch.Tensor)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value!r}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where} has a non-string key {k!r}")
            _plain(v, f"{where}.{k}")
        return
    raise ValueError(f"{where} must be plain data (str, number, bool, None, list, dict, tensor), got {type(value).__name__}")


def save_checkpoint(path, model, **meta) -> None:
    """Architecture record + weights + metadata, written atomically."""
    arch = getattr(model, "arch", None)
    if not isinstance(arch, dict) or not arch.get("name"):
        raise ValueError("save_checkpoint needs an imcsim Network with an architecture record (built by the zoo, "
                         "imcsim.from_nir or imcsim.Network with arch=...)")
    _plain(arch, "arch")
    _plain(meta, "meta")
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "arch": arch, "state_dict": dict(model.state_dict()), "meta": meta}, buf)
    _atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path, map_location="cpu"):
    """Rebuild a model from a checkpoint; returns (model in eval mode, metadata)."""
    from .models import build

    p = Path(path)
    name = repr(str(p))
    if not p.is_file():
        raise ConfigError(f"checkpoint not found: {name}")
    try:
        ck = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read plain data means a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "Unsupported operand" in str(e):
            raise ConfigError(f"{name} is not an imcsim checkpoint: it holds Python objects, not only plain data and "
                              f"tensors, and imcsim never runs code from a file ({first})") from None
        raise ConfigError(f"{name} is not a readable imcsim checkpoint ({first})") from None
    if not isinstance(ck, dict) or ck.get("format") not in FORMATS:
        raise ConfigError(f"{name} is not an imcsim checkpoint (no 'format': {FORMAT!r} record)")
    arch, state, meta = ck.get("arch"), ck.get("state_dict"), ck.get("meta")
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise ConfigError(f"checkpoint {name}: 'arch' must be a dict naming the architecture, got {type(arch).__name__}")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ConfigError(f"checkpoint {name}: 'meta' must be a dict, got {type(meta).__name__}")
    if not isinstance(state, dict) or not state:
        raise ConfigError(f"checkpoint {name}: 'state_dict' must be a non-empty dict of tensors")
    bad = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ConfigError(f"checkpoint {name}: state_dict entry {bad!r} is not a tensor")
    _check_meta(meta, name)
    check_arch(arch, f"checkpoint {name}: arch")
    check_finite(state, f"checkpoint {name}")
    check_finite(tensors_in(arch.get("graph")), f"checkpoint {name}: NIR graph")
    try:
        with torch.random.fork_rng(devices=[]):
            if arch["name"] == "nir":  # its weights are the graph's arrays, already read (sized by the file)
                model = build(arch)
            else:
                model = check_network_size(lambda: build(arch), f"checkpoint {name}: the network")
    except ConfigError:
        raise
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"checkpoint {name}: its architecture record cannot be built: {_first_line(e)}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"checkpoint {name}: weights do not match the architecture {arch['name']!r}: "
                          f"{_first_line(e, skip_header=True)}") from None
    return model.eval(), meta


def _check_meta(meta: dict, name: str) -> None:
    for key, (types, what) in META_FIELDS.items():
        if key not in meta:
            continue
        v = meta[key]
        if isinstance(v, bool) or not isinstance(v, types):
            raise ConfigError(f"checkpoint {name}: meta.{key} must be {what}, got {v!r}")
        if isinstance(v, int) and v < (0 if key == "holdout" else 1):
            raise ConfigError(f"checkpoint {name}: meta.{key} must be {what}, got {v}")


def _first_line(e: Exception, skip_header: bool = False) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if skip_header and len(lines) > 1:
        lines = lines[1:]
    return lines[0] if lines else type(e).__name__
