"""Counting stage: the events of a layer's reads, for the cost model (:mod:`imcsim.events`).

A batch of reads is first summed into a 5-entry float64 *tally* on the device (no host sync
per read): active rows, row-tile reads performed, partial-sum accumulations, reads in time
(vectors x planes with any read), group reads (a group with any row tile read). The tally
becomes events once per layer call (:func:`tally_events`).
"""

from __future__ import annotations

import torch


def new_tally(device) -> torch.Tensor:
    return torch.zeros(5, dtype=torch.float64, device=device)


def count_reads(any_read: torch.Tensor, active: torch.Tensor, tally: torch.Tensor, skip_zero_reads: bool) -> None:
    """Add reads to ``tally``. any_read: (P, V, G, Tr) bool, row tile t of group g has input
    in plane p of vector v; active: the number of driven rows (a 0-d tensor)."""
    P, V, G, Tr = any_read.shape
    if skip_zero_reads:
        per = any_read.sum(-1)  # (P, V, G) row tiles read per group
        tally += torch.stack([active.double(), per.sum().double(), (per - 1).clamp(min=0).sum().double(),
                              (per.sum(-1) > 0).sum().double(), (per > 0).sum().double()])
    else:
        tally += torch.tensor([0.0, P * V * G * Tr, P * V * G * (Tr - 1), P * V, P * V * G], dtype=torch.float64,
                              device=tally.device)
        tally[0] += active.double()


def tally_events(tally: torch.Tensor, vectors: int, repeat: int, *, col_tiles: int, conversion_columns: int,
                 out_group: int, out_features: int, in_features: int, input_bits: int, analog_sum: bool) -> dict:
    """The events (``EventCounter.add`` keywords) of ``vectors`` input vectors read in
    ``repeat`` steps, from their tally."""
    V = vectors * repeat
    t = (tally * repeat).tolist()
    conv = 4 if analog_sum else 1  # analog: one conversion per group read, not per row tile
    return dict(
        vectors=V, vector_reads=t[3], tile_reads=t[1] * col_tiles,
        active_rows=t[0] * col_tiles,  # every column tile drives its own copy of a row
        adc_conversions=t[conv] * conversion_columns, shift_adds=t[conv] * conversion_columns,
        accumulations=0.0 if analog_sum else t[2] * out_group, outputs=V * out_features,
        input_bits=V * in_features * input_bits,
    )
