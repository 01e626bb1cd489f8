"""The tasks studies are made of: pure functions of (shared context, parameters) -> JSON.

The context (set once per worker by the engine) holds the float models, the data splits, the
technology and the batch size::

    {"uid": str, "models": {name: Network}, "x_cal": ..., "x_test": ..., "y_test": ...,
     "x_hold": ..., "y_hold": ..., "tech": Technology | None, "batch_size": int}

A task names a model, a hardware config (as :meth:`HardwareConfig.to_dict`, or None for the
float model) and a chip seed. Chip instance ``c`` is ``convert(model, hw, seed=c,
calibration=x_cal)``; a worker keeps its last few chip instances and makes another
instance of a kept network with :func:`imcsim.reprogram`, which gives the same chip without
mapping again.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict

import torch

from ..convert import convert, reprogram
from ..cost import CostReport, estimate, per_sample_cost
from ..dynamic import choose_threshold, run_dynamic
from ..events import no_counting, reset_events
from ..hardware import HardwareConfig
from ..training import batch_dim, predict_logits

_CTX: dict | None = None
_PROGRESS = False
_CHIPS: "OrderedDict[tuple, torch.nn.Module]" = OrderedDict()  # ((model, hw json), chip seed) -> instance
CACHE_SIZE = 4


def set_context(context: dict | None, progress: bool = False) -> None:
    global _CTX, _PROGRESS
    if context is None or _CTX is None or context.get("uid") != _CTX.get("uid"):
        _CHIPS.clear()
    _CTX, _PROGRESS = context, progress


def ctx() -> dict:
    if _CTX is None:
        raise RuntimeError("no study context is set (tasks run inside an engine)")
    return _CTX


def chip(model: str, hw: dict | None, seed: int = 0) -> torch.nn.Module:
    """The float model (hw None) or chip instance ``seed`` of it on ``hw``: kept from an
    earlier task of this worker (e.g. another data slice of the same chip), else made by
    :func:`reprogram` from a kept instance of the same network on ``hw``, else converted."""
    c = ctx()
    net = c["models"][model]
    if hw is None:
        return net
    config = (model, json.dumps(hw, sort_keys=True))
    key = (config, seed)
    inst = _CHIPS.get(key)
    if inst is None:
        other = next((m for (cfg, _), m in reversed(_CHIPS.items()) if cfg == config), None)
        inst = (convert(net, HardwareConfig.from_dict(hw), seed=seed, calibration=c["x_cal"]) if other is None
                else reprogram(other, seed, calibration=c["x_cal"]))
        _CHIPS[key] = inst
        while len(_CHIPS) > CACHE_SIZE:
            _CHIPS.popitem(last=False)
    _CHIPS.move_to_end(key)
    return inst


def _label(what: str, hw: dict | None, seed: int) -> str:
    return what if hw is None else f"{what} {hw['name']} chip {seed}"


# ------------------------------------------------------------------------------ tasks


def accuracy(model: str, hw: dict | None = None, chip_seed: int = 0, split: str = "test", start: int = 0,
             stop: int | None = None) -> dict:
    """Top-1 accuracy of the mean logits on samples [start, stop) of the split, from integer
    counts. Samples keep their index in the split (read noise is keyed by it), so the counts
    of contiguous slices add up to those of the whole split."""
    c = ctx()
    net = chip(model, hw, chip_seed)
    x, y = c[f"x_{split}"], c[f"y_{split}"]
    n = int(y.shape[0])
    stop = n if stop is None else stop
    if not 0 <= start < stop <= n:
        raise ValueError(f"accuracy: slice [{start}, {stop}) is not inside the {n} samples of split {split!r}")
    x, y = x.narrow(batch_dim(net), start, stop - start), y[start:stop]
    with no_counting():  # accuracy only: the events of these reads are not priced (about 2 % of a noisy read)
        logits = predict_logits(net, x, batch_size=c["batch_size"], progress=_PROGRESS, sample_offset=start,
                                desc=_label("evaluate", hw, chip_seed))
    hit = logits.mean(0).argmax(-1) == y
    correct = int(hit.sum())
    return {"correct": correct, "n": int(y.shape[0]), "accuracy": 100.0 * correct / int(y.shape[0]),
            "mask": pack_mask(hit)}


def pack_mask(hit: torch.Tensor) -> str:
    """Which samples were right, 1 bit each (hex): rows on the same images compare paired."""
    import numpy as np

    return np.packbits(hit.cpu().numpy().astype(np.uint8)).tobytes().hex()


def unpack_mask(text: str, n: int):
    import numpy as np

    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


def theta_choice(model: str, hw: dict, chip_seed: int, rule: str, tolerance: float, t_max: int) -> dict:
    """The largest theta within ``tolerance`` pp of static T_max on the held-out split."""
    c = ctx()
    net = chip(model, hw, chip_seed)
    with no_counting():
        logits = predict_logits(net, c["x_hold"], batch_size=c["batch_size"], timesteps=t_max, progress=_PROGRESS,
                                desc=_label("held-out", hw, chip_seed))
    return choose_threshold(logits, c["y_hold"], rule, tolerance)


def timestep_point(model: str, hw: dict, chip_seed: int, theta: float, t_max: int, rule: str) -> dict:
    """One static (theta 0, T = t_max) or dynamic point on the test split, priced from its
    events: energy, latency, EDP (of means, and per sample), exit histogram."""
    c = ctx()
    net = chip(model, hw, chip_seed)
    reset_events(net)
    t0 = time.perf_counter()
    run = run_dynamic(net, c["x_test"], theta, t_max, rule=rule, y=c["y_test"], batch_size=c["batch_size"],
                      progress=_PROGRESS, desc=f"{'static T=' + str(t_max) if theta == 0 else 'theta=%.3g' % theta}",
                      record_steps=True)
    wall = time.perf_counter() - t0
    rep = estimate(net, c["tech"], timesteps=run.avg_timesteps)
    ps = per_sample_cost(net, c["tech"], run)
    correct = int((run.predictions == run.labels).sum())
    return {"mode": "static" if theta == 0 else "dynamic", "T_max": t_max, "theta": theta,
            "accuracy": 100.0 * correct / len(run.labels), "correct": correct, "avg_timesteps": run.avg_timesteps,
            "histogram": {str(k): v for k, v in run.histogram().items()}, "energy_J": rep.energy_J,
            "latency_s": rep.latency_s, "edp_Js": rep.edp_Js, "edp_per_sample_Js": ps["edp_per_sample_Js"],
            "energy_by_component_J": rep.by_component(), "wall_s": wall}


def measured_cost(model: str, hw: dict, chip_seed: int = 0, latency_mode: str = "sequential") -> dict:
    """Accuracy and the priced events of a full run (all timesteps) on the test split."""
    c = ctx()
    net = chip(model, hw, chip_seed)
    reset_events(net)
    logits = predict_logits(net, c["x_test"], batch_size=c["batch_size"], progress=_PROGRESS,
                            desc=_label("measure", hw, chip_seed))
    rep = estimate(net, c["tech"], timesteps=getattr(net, "timesteps", 1) if getattr(net, "kind", "qnn") == "snn" else 1,
                   latency_mode=latency_mode)
    correct = int((logits.mean(0).argmax(-1) == c["y_test"]).sum())
    return {"accuracy": 100.0 * correct / int(c["y_test"].shape[0]), "report": rep.to_dict()}


def selftest(value: float, die_marker: str | None = None, fail_marker: str | None = None, sleep: float = 0.0) -> dict:
    """Engine self-test: 2 x value. die_marker: a file that, while absent, makes the first
    worker to see it create it and die (a killed worker); fail_marker: raises while the file
    exists."""
    if die_marker and not os.path.exists(die_marker):
        with open(die_marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(3)
    if fail_marker and os.path.exists(fail_marker):
        raise RuntimeError(f"selftest failure requested by {fail_marker}")
    if sleep:
        time.sleep(sleep)
    log = ctx().get("log")
    if log:
        with open(log, "a") as f:
            f.write(f"{value}\n")
    return {"value": 2 * value}


TASKS = {"accuracy": accuracy, "theta_choice": theta_choice, "timestep_point": timestep_point,
         "measured_cost": measured_cost, "selftest": selftest}


def run_task(fn: str, params: dict) -> dict:
    if fn not in TASKS:
        raise ValueError(f"unknown task {fn!r}; known: {', '.join(TASKS)}")
    return TASKS[fn](**params)


def report_of(result: dict) -> CostReport:
    return CostReport.from_dict(result["report"])
