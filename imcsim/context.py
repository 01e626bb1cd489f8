"""Which sample and timestep each crossbar read belongs to: the key of its read noise.

Read noise (and rate-encoded input spikes) are keyed random numbers
(:mod:`crossbar_models.noise`): a function of (chip, layer, read seed, sample, timestep,
position, plane, tile, column). The runners (:func:`imcsim.training.predict_logits`,
:func:`imcsim.dynamic.run_dynamic`, the experiments) enter a :func:`read_context` naming the
samples of the batch by their index in the dataset, so a sample's result is the same
whatever the batch size, the batch's other samples, chunking or early exits.

Layers see inputs whose leading dimension is ``steps x batch`` (time-major, as imcsim's
networks flatten (T, B, ...)); a layer called several times in one forward (a recurrent
layer, a time loop in a user's model) continues counting steps. Outside any context a
model call keys samples by their position in the batch (each call starting at step 0).
"""

from __future__ import annotations

import contextvars
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from crossbar_models.noise import element_offsets, fold_key, hash32

__all__ = ["ReadContext", "read_context", "current_context", "vector_keys"]


@dataclass
class ReadContext:
    sample_ids: torch.Tensor  # (B,) int64 on the CPU: the samples of the batch
    t0: int = 0  # timestep of the first step in this context
    read_seed: int = 0  # extra key part: another noise realisation of the same chip
    steps_done: dict = field(default_factory=dict)  # per layer id: steps consumed so far

    @property
    def batch(self) -> int:
        return int(self.sample_ids.shape[0])


_CTX: contextvars.ContextVar[ReadContext | None] = contextvars.ContextVar("imcsim_read_context", default=None)


def current_context() -> ReadContext | None:
    return _CTX.get()


@contextmanager
def read_context(sample_ids, *, t0: int = 0, read_seed: int = 0):
    """Name the samples of the batch (indices into the dataset) for keyed read noise.

    sample_ids: (B,) integers, or an int B meaning ``range(B)``; t0: timestep of the first
    step run inside the context (a step-by-step runner passes the current timestep)."""
    if isinstance(sample_ids, int):
        sample_ids = torch.arange(sample_ids)
    ids = torch.as_tensor(sample_ids).detach().to("cpu", torch.int64).reshape(-1)
    token = _CTX.set(ReadContext(ids, int(t0), int(read_seed)))
    try:
        yield _CTX.get()
    finally:
        _CTX.reset(token)


@contextmanager
def default_context(batch: int):
    """Enter ``read_context(range(batch))`` unless a context is already active (whose batch
    must then be ``batch``)."""
    ctx = _CTX.get()
    if ctx is not None:
        if ctx.batch != batch:
            raise ValueError(f"read_context names {ctx.batch} samples but the input batch holds {batch}")
        yield ctx
    else:
        with read_context(batch) as ctx:
            yield ctx


_warned: set = set()


def vector_keys(layer_id: int, n_lead: int, positions: int, name: str = "") -> torch.Tensor:
    """(n_lead * positions,) int64 32-bit keys of a layer call's input vectors, ordered
    (lead, position) with lead = step * B + b.

    Consumes ``n_lead // B`` steps of the layer's step counter in the active context."""
    ctx = _CTX.get()
    if ctx is None or ctx.batch == 0 or n_lead % ctx.batch != 0:
        if ctx is not None and ctx.batch and name not in _warned:
            _warned.add(name)
            warnings.warn(
                f"crossbar layer {name!r}: its input's leading dimension {n_lead} is not a multiple of the batch "
                f"({ctx.batch}); its read noise is keyed by position in the call, not by sample", stacklevel=3)
        ids, steps, t0, seed = torch.arange(n_lead), 1, 0, 0 if ctx is None else ctx.read_seed
        b = n_lead
    else:
        b = ctx.batch
        steps = n_lead // b
        t0 = ctx.t0 + ctx.steps_done.get(layer_id, 0)
        ctx.steps_done[layer_id] = ctx.steps_done.get(layer_id, 0) + steps
        ids, seed = ctx.sample_ids, ctx.read_seed
    step = torch.arange(steps).repeat_interleave(b) + t0  # (n_lead,)
    lead = fold_key(layer_id, seed, ids.repeat(steps), step)
    if positions == 1:
        return lead
    pos = element_offsets(positions, salt=0x3C6EF372).to(torch.int64) & 0xFFFFFFFF
    return hash32(lead.unsqueeze(1) ^ pos.unsqueeze(0)).reshape(-1)
