"""Counting stage: the events of a layer's reads, for the cost model (:mod:`imcsim.events`).

A batch of reads is first summed into a 5-entry float64 *tally* on the device (no host sync
per read): active rows, row-tile reads performed, partial-sum accumulations, reads in time
(vectors x planes with any read), group reads (a group with any row tile read). The tally
becomes events once per layer call (:func:`tally_events`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def conv_tile_counts(nz: torch.Tensor, rows: int, kernel, stride, padding, dilation) -> torch.Tensor:
    """Nonzero inputs each row tile sees at each output position of a convolution, without
    unfolding: nz (N, C, H, W) 0/1 float -> (N, Tr, Ho, Wo) counts, where patch element
    (c, i, j) sits on row ``c * kh * kw + i * kw + j`` and row tile ``row // rows``.

    At one kernel offset the rows of a tile hold a contiguous range of channels, so the
    tile's count there is a difference of channel-cumulative sums, taken at the offset's
    shifted window. The cumulative sums are needed only at the tiles' channel bounds (at
    most kh*kw*(Tr+1) of them): one pass over the input plus kh*kw*Tr adds per output
    position, 3-4x less than a convolution with Tr output channels (VGG9 layers, 1 thread).
    Exact: the counts are integers below 2**24."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    N, C, H, W = nz.shape
    KK = kh * kw
    Tr = -(-C * KK // rows)
    t = torch.arange(Tr + 1)
    o = torch.arange(KK).view(-1, 1)
    bounds = torch.clamp(-((o - t * rows) // KK), 0, C)  # (KK, Tr+1): first channel of tile t at offset o
    cuts, where = torch.unique(bounds, sorted=True, return_inverse=True)
    cuts = cuts.tolist()
    x = nz.reshape(N, C, H * W)
    S = torch.empty(N, len(cuts), H * W, dtype=nz.dtype, device=nz.device)  # S[:, q] = sum of channels < cuts[q]
    if cuts[0] == 0:
        S[:, 0] = 0
    else:
        torch.sum(x[:, : cuts[0]], 1, out=S[:, 0])
    for q in range(1, len(cuts)):
        torch.add(S[:, q - 1], x[:, cuts[q - 1]: cuts[q]].sum(1), out=S[:, q])
    S = S.view(N, len(cuts), H, W)
    if ph or pw:
        S = F.pad(S, (pw, pw, ph, ph))
    Hp, Wp = S.shape[2], S.shape[3]
    Ho, Wo = (Hp - dh * (kh - 1) - 1) // sh + 1, (Wp - dw * (kw - 1) - 1) // sw + 1
    at = S.index_select(1, where.reshape(-1).to(nz.device)).view(N, KK, Tr + 1, Hp, Wp)
    at = at[:, :, 1:] - at[:, :, :-1]  # (N, KK, Tr, Hp, Wp): tile t's channels at offset o
    out = torch.zeros(N, Tr, Ho, Wo, dtype=nz.dtype, device=nz.device)
    for i in range(kh):
        for j in range(kw):
            out += at[:, i * kw + j, :, i * dh: i * dh + sh * (Ho - 1) + 1: sh, j * dw: j * dw + sw * (Wo - 1) + 1: sw]
    return out
