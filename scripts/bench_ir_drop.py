"""Benchmark: exact IR drop via effective conductance vs a per-read circuit solve.

Times ``effective_conductance`` on one 128x128 tile, a batch of 64 such tiles and one
256x256 tile, next to the per-read nodal solve (``solve_currents``) and the read it enables
(``v @ M``), on this machine's CPU. Checks the fast path's accuracy on the way and writes
everything to JSON.

    python scripts/bench_ir_drop.py [--out results/bench_ir_drop.json] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import pin_threads  # noqa: E402

from crossbar_models import WireModel, effective_conductance, solve_currents
from imcsim.io import machine_info, write_json

# Realistic values: cells 1 uS..1 mS, wires of a few ohms (within 0.5..20 ohm).
WIRES = WireModel(r_row=2.5, r_col=2.5, r_src=5.0, r_sink=5.0)
TARGET_PER_TILE_S = 0.1
TARGET_BATCH64_S = 5.0


def _tiles(n, size, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, size, size, generator=g, dtype=torch.float64) * (1e-3 - 1e-6) + 1e-6


MINIMA: dict = {}


def _time(fn, repeat, name=None):
    """Median of ``repeat`` runs (the minimum is kept in MINIMA[name])."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    if name:
        MINIMA[name] = min(times)
    return statistics.median(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench_ir_drop.json", help="JSON file to write")
    ap.add_argument("--quick", action="store_true", help="smaller batch (8 tiles) for a smoke run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (pinned)")
    args = ap.parse_args(argv)
    threads = pin_threads(args.threads)

    n_batch = 8 if args.quick else 64
    res = {
        "machine": machine_info(),
        "threads": threads,
        "minima_s": MINIMA,
        "wires_ohm": dataclasses.asdict(WIRES),
        "conductance_range_S": [1e-6, 1e-3],
    }
    effective_conductance(_tiles(1, 16, 0), WIRES)  # warm-up

    one = _tiles(1, 128, 1)
    t_one, M_one = _time(lambda: effective_conductance(one, WIRES), 3, "one_tile")
    batch = _tiles(n_batch, 128, 2)
    t_batch, _ = _time(lambda: effective_conductance(batch, WIRES), 1, "batch")
    big = _tiles(1, 256, 3)
    t_big, _ = _time(lambda: effective_conductance(big, WIRES), 1, "big_tile")

    g = torch.Generator().manual_seed(4)
    v1 = 0.2 * (torch.rand(1, 1, 128, generator=g) < 0.5).double()
    v64 = 0.2 * (torch.rand(1, 64, 128, generator=g) < 0.5).double()
    t_solve1, I1 = _time(lambda: solve_currents(one, v1, WIRES), 1)
    t_solve64, I64 = _time(lambda: solve_currents(one, v64, WIRES), 1)
    t_mm64, I64_fast = _time(lambda: v64 @ M_one, 20, "read_64")
    rel_err = ((I64_fast - I64).abs().max() / I64.abs().max()).item()
    ones = torch.full((1, 1, 128), 0.2, dtype=torch.float64)
    loss = 1.0 - (solve_currents(one, ones, WIRES).sum() / (ones @ one).sum()).item()

    per_tile = t_batch / n_batch
    res["effective_conductance_s"] = {
        "one_128x128": t_one,
        f"batch_{n_batch}x128x128": t_batch,
        "per_tile_in_batch_128x128": per_tile,
        "one_256x256": t_big,
    }
    res["per_read_solve_s"] = {
        "solve_currents_128x128_1_read": t_solve1,
        "solve_currents_128x128_64_reads": t_solve64,
        "v_at_M_128x128_64_reads": t_mm64,
        "reads_to_amortise_M": t_one / max(t_solve1, 1e-12),
    }
    res["accuracy"] = {"max_rel_err_vs_nodal_solve": rel_err, "ir_drop_current_loss_all_rows_on": loss}
    res["targets"] = {
        "per_tile_batched_s": TARGET_PER_TILE_S,
        "batch64_s": TARGET_BATCH64_S,
        "per_tile_met": per_tile <= TARGET_PER_TILE_S,
        "batch64_met": None if args.quick else t_batch <= TARGET_BATCH64_S,
    }
    write_json(args.out, res)

    print(f"effective_conductance  1 x 128x128 : {t_one:8.3f} s")
    print(f"effective_conductance {n_batch:2d} x 128x128 : {t_batch:8.3f} s  ({per_tile:.3f} s/tile, target <= {TARGET_PER_TILE_S})")
    print(f"effective_conductance  1 x 256x256 : {t_big:8.3f} s")
    print(f"nodal solve, 1 read    (128x128)   : {t_solve1:8.3f} s")
    print(f"nodal solve, 64 reads  (128x128)   : {t_solve64:8.3f} s")
    print(f"v @ M,       64 reads  (128x128)   : {t_mm64 * 1e6:8.1f} us")
    print(f"max rel. error of v @ M vs nodal solve: {rel_err:.2e}; IR-drop current loss (all rows on): {loss:.1%}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
