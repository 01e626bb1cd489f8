"""Event (action) counters recorded by crossbar layers and neurons during a forward.

Layers only count; the cost model (:mod:`imcsim.cost`) prices the counts. Counting is
cheap: a handful of reductions over a layer's *input* per call, never over its outputs.

Crossbar layer counters (totals since the last reset, over every sample and timestep):

* ``vectors``: input vectors presented (samples x timesteps x conv positions);
* ``vector_reads``: (input plane, vector) pairs that needed at least one tile read -- the
  reads that take time, since all tiles of a layer read in parallel;
* ``tile_reads``: crossbar tile reads actually performed (one read = one input plane on one
  tile; reads of all-zero inputs are skipped when the hardware says so);
* ``active_rows``: row drivers switched on (non-zero input plane entries on every tile that
  receives them), summed over reads;
* ``adc_conversions``: column (or column-pair) conversions;
* ``shift_adds``: digital shift-and-add operations merging slices, planes and pairs;
* ``accumulations``: additions of partial sums across row tiles;
* ``outputs``: output values produced (vectors x output features);
* ``input_bits``: input bits fetched from the activation buffer (vectors x inputs x input bits).

Digital operations (:mod:`imcsim.digital`): ``macs``, ``adds``, ``muls``, ``compares``,
``values``.

Neuron counters: ``updates`` (membrane updates), ``spikes`` (spikes emitted) and
``syn_updates`` (synaptic-current updates of current-based neurons), or ``updates`` and
``nonzero`` for quantised activations.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager

import torch.nn as nn

_ENABLED = [True]


def counting_enabled() -> bool:
    return _ENABLED[0]


@contextmanager
def no_counting():
    """Run without recording events (to measure what counting costs, or for warm-ups)."""
    old = _ENABLED[0]
    _ENABLED[0] = False
    try:
        yield
    finally:
        _ENABLED[0] = old


class EventCounter:
    """A named bag of float counters with add / snapshot / reset."""

    def __init__(self, *names: str):
        self._names = tuple(names)
        self.counts: dict[str, float] = {n: 0.0 for n in names}
        self.calls = 0

    def add(self, **counts) -> None:
        if not _ENABLED[0]:
            return
        for k, v in counts.items():
            self.counts[k] += float(v)
        self.calls += 1

    def reset(self) -> None:
        for k in self.counts:
            self.counts[k] = 0.0
        self.calls = 0

    def snapshot(self) -> dict[str, float]:
        return dict(self.counts)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v:.6g}" for k, v in self.counts.items())
        return f"EventCounter({inner})"


CROSSBAR_EVENTS = ("vectors", "vector_reads", "tile_reads", "active_rows", "adc_conversions", "shift_adds",
                   "accumulations", "outputs", "input_bits")
NEURON_EVENTS = ("updates", "spikes", "syn_updates")
QUANT_EVENTS = ("updates", "nonzero")
DIGITAL_EVENTS = ("macs", "adds", "muls", "compares", "values")
INPUT_EVENTS = ("samples", "values", "nonzero", "frame_values", "calls", "spike_calls")


def count_input(counter: EventCounter, x, batch_dim: int = 0, new_samples: bool = True) -> None:
    """Record a network input (B, ...) or (T, B, ...): samples, values, non-zero values,
    values per frame, and whether the input was an event stream (a sequence of 0/1 spikes,
    fetched as address events; a static input is fetched as dense values). new_samples:
    False for the later frames of samples already counted (a step-by-step run)."""
    if not _ENABLED[0] or not hasattr(x, "numel") or x.numel() == 0:
        return
    import torch

    B = x.shape[batch_dim]
    frame = x[0, 0].numel() if batch_dim == 1 else x[0].numel()
    spikes = bool(torch.equal(x * x, x)) if x.is_floating_point() else bool(((x == 0) | (x == 1)).all())
    counter.add(samples=B if new_samples else 0, values=x.numel(), nonzero=float(torch.count_nonzero(x)), frame_values=frame, calls=1,
                spike_calls=1 if spikes and batch_dim == 1 else 0)  # event streams: sequences of spikes
    counter.counts["frame_values"] = frame  # a size, not a sum


def count_run_input(owner, x, batch_dim: int, stepwise: bool, every_call: bool = True) -> None:
    """Count ``owner``'s input (its ``input_events``) for the off-chip cost. In a step-by-step
    run (``stepwise``) a sample is counted once, at its first call; ``every_call``: the later
    calls' values are fetched too (frames of a sequence), else only the first call's (a static
    input kept on chip). ``owner._input_fetched`` remembers the first call; reset it to start
    a new run."""
    first = not (stepwise and getattr(owner, "_input_fetched", False))
    if every_call or first:
        count_input(owner.input_events, x, batch_dim, new_samples=first)
    owner._input_fetched = stepwise


def counting_modules(model: nn.Module):
    """(name, module) of every module in ``model`` that records events, in forward order.

    A counter shared by a wrapper and its inner module (a crossbar layer and its tiles) is
    listed once, under the outer name."""
    seen, out = set(), []
    for n, m in model.named_modules():
        ev = getattr(m, "events", None)
        if isinstance(ev, EventCounter) and id(ev) not in seen:
            seen.add(id(ev))
            out.append((n, m))
    return out


def reset_events(model: nn.Module) -> None:
    for _, m in counting_modules(model):
        m.events.reset()
    for m in model.modules():
        inp = getattr(m, "input_events", None)
        if isinstance(inp, EventCounter):
            inp.reset()


def collect_events(model: nn.Module) -> "OrderedDict[str, dict[str, float]]":
    """Per-module counter snapshots, keyed by module name."""
    return OrderedDict((n, m.events.snapshot()) for n, m in counting_modules(model))


def _input_counter(model: nn.Module):
    return next((m.input_events for m in model.modules() if isinstance(getattr(m, "input_events", None), EventCounter)),
                None)


class StepEvents:
    """Events recorded per timestep of a step-by-step run (summed over batches).

    ``steps[t - 1]`` = {"samples": samples that ran timestep t, "layers": {module: counts},
    "input": input-counter counts} -- the deltas between :meth:`begin` and :meth:`end`."""

    def __init__(self, model: nn.Module, t_max: int):
        self.model = model
        self.steps = [{"samples": 0.0, "layers": {}, "input": {}} for _ in range(t_max)]
        self._before = None

    def _snap(self):
        inp = _input_counter(self.model)
        return collect_events(self.model), (inp.snapshot() if inp is not None else {})

    def begin(self) -> None:
        self._before = self._snap()

    def end(self, t: int, samples: int) -> None:
        (layers0, inp0), (layers1, inp1) = self._before, self._snap()
        rec = self.steps[t - 1]
        rec["samples"] += samples
        for name, c1 in layers1.items():
            acc = rec["layers"].setdefault(name, {k: 0.0 for k in c1})
            for k, v in c1.items():
                acc[k] += v - layers0[name][k]
        for k, v in inp1.items():
            if k == "frame_values":
                rec["input"][k] = v
            else:
                rec["input"][k] = rec["input"].get(k, 0.0) + v - inp0.get(k, 0.0)
