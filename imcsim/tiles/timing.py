"""Wall time per stage of the crossbar reads, on request: ``with stage_times() as t: model(x)``
leaves ``t`` = {stage: seconds} summed over every crossbar layer. Off (the default) a stage
costs one global lookup. On a GPU each stage boundary synchronises, so the total grows; the
split is what it is for. Where one compiled loop does several stages (the products of 0/1
reads with their noise, codes and sums: ``fused.products_readout_sum``) they count as
"readout"."""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

STAGES = ("program", "encode", "matmul", "noise", "adc", "readout", "shift_add", "events")
_totals: dict | None = None


@contextmanager
def stage_times():
    """Collect {stage: seconds} of the crossbar stages run inside the block (not re-entrant)."""
    global _totals
    if _totals is not None:
        raise RuntimeError("stage_times() is already collecting")
    _totals = dict.fromkeys(STAGES, 0.0)
    try:
        yield _totals
    finally:
        _totals = None


class stage:
    """``with stage("noise", tensor):`` adds the block's wall time to the collecting
    :func:`stage_times`, if any (synchronising ``tensor``'s CUDA device at both ends)."""

    __slots__ = ("name", "device", "t0")

    def __init__(self, name: str, like: torch.Tensor | None = None):
        self.name = name
        self.device = like.device if like is not None and like.is_cuda else None

    def __enter__(self):
        self.t0 = None
        if _totals is not None:
            if self.device is not None:
                torch.cuda.synchronize(self.device)
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if _totals is not None and self.t0 is not None:
            if self.device is not None:
                torch.cuda.synchronize(self.device)
            _totals[self.name] += time.perf_counter() - self.t0
        return False
