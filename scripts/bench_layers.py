"""Benchmark: a 512x512 CrossbarLinear against torch Linear and the bare matmuls it needs.

Setup (issue 3): binary spike inputs, batch 1024, 128x128 tiles, 4-bit weights (2 bits per
cell, differential: 4 columns per weight), 4-bit ADC. Measures, side by side in one run:
(a) the crossbar forward vs a plain ``torch.nn.Linear`` of the same size and vs the bare
batched matmul of the mapping (row tiles x batch x rows @ rows x columns), the latter three
ways (one call; into a preallocated output; in the layer's cache-sized chunks) so the
ratio is taken against the fastest; (b) the same
with wire resistance on (effective conductance precomputed at programming time).

Threads are pinned (--threads, default 1) and every figure is the min and median of
--repeat interleaved runs measured here; nothing else is printed.

    python scripts/bench_layers.py [--out results/bench_layers.json] [--repeat 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import interleaved, pin_threads  # noqa: E402

from crossbar_models import WireModel
from imcsim import CrossbarLinear, HardwareConfig, InputSpec, calibrate
from imcsim.io import machine_info, write_json


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench_layers.json")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    threads = pin_threads(args.threads)
    torch.manual_seed(0)

    n = 512
    lin = nn.Linear(n, n)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(args.batch, n, generator=g) < 0.2).float()
    base = HardwareConfig.ideal(rows=128, cols=128, weight_bits=4).replace(
        **{"device.g_off": 1e-6, "adc.bits": 4, "adc.range": "calibrated"}
    )
    wired = base.replace(wires=WireModel(2.5, 2.5, 5.0, 5.0))
    t0 = time.perf_counter()
    layer_a = calibrate(CrossbarLinear(lin, base, InputSpec("spike")), x)
    t_prog_a = time.perf_counter() - t0
    t0 = time.perf_counter()
    layer_b = calibrate(CrossbarLinear(lin, wired, InputSpec("spike")), x)
    t_prog_b = time.perf_counter() - t0
    tm = layer_a.tiles
    Tr, R = tm.grid.row_tiles, tm.grid.rows
    G = tm.G
    xt = x.view(args.batch, Tr, R).transpose(0, 1).contiguous()
    y_buf = torch.empty(Tr, args.batch, G.shape[-1])
    chunk = max(1, (1 << 21) // (Tr * G.shape[-1]))  # the layer's own cache-sized chunks

    def bare_chunked():
        for s in range(0, args.batch, chunk):
            torch.bmm(xt[:, s : s + chunk], G)

    with torch.no_grad():
        # interleave the candidates so machine noise hits them alike
        fns = {
            "torch_linear": lambda: lin(x),
            "bare_matmul": lambda: torch.bmm(xt, G),
            "bare_matmul_prealloc": lambda: torch.bmm(xt, G, out=y_buf),
            "bare_matmul_chunked": bare_chunked,
            "crossbar": lambda: layer_a(x),
            "crossbar_wires": lambda: layer_b(x),
        }
        timing = interleaved(fns, args.repeat)
    t = {k: v["min"] for k, v in timing.items()}
    best_bare = min(t["bare_matmul"], t["bare_matmul_prealloc"], t["bare_matmul_chunked"])
    ratios = {
        "crossbar_vs_torch_linear": t["crossbar"] / t["torch_linear"],
        "crossbar_vs_bare_matmul": t["crossbar"] / t["bare_matmul"],
        "crossbar_vs_best_bare_matmul": t["crossbar"] / best_bare,
        "wires_vs_crossbar": t["crossbar_wires"] / t["crossbar"],
        "wires_vs_torch_linear": t["crossbar_wires"] / t["torch_linear"],
    }
    res = {
        "machine": machine_info(),
        "setup": {"in": n, "out": n, "batch": args.batch, "spike_rate": 0.2, "tile": [128, 128], "weight_bits": 4,
                  "bits_per_cell": base.device.bits_per_cell, "mapping": base.mapping, "adc_bits": 4,
                  "columns": tm.G.shape[-1], "row_tiles": Tr, "col_tiles": tm.grid.col_tiles, "repeat": args.repeat},
        "threads": threads,
        "forward_s": {k: {"min": v["min"], "median": v["median"]} for k, v in timing.items()},
        "programming_s": {"ideal_wires": t_prog_a, "with_wires_incl_effective_conductance": t_prog_b},
        "ratios": ratios,
        "targets": {"crossbar_vs_bare_matmul_max": 1.5, "wires_vs_crossbar_max": 1.2,
                    "a_met": ratios["crossbar_vs_best_bare_matmul"] <= 1.5, "b_met": ratios["wires_vs_crossbar"] <= 1.2},
    }
    write_json(args.out, res)
    print(f"{threads} thread(s), {args.repeat} interleaved repeats; ratios of the minima")
    for k, v in timing.items():
        print(f"{k:22s} min {v['min'] * 1e3:8.2f} ms  median {v['median'] * 1e3:8.2f} ms")
    for k, v in ratios.items():
        print(f"{k:28s} {v:6.2f}x")
    print(f"programming (incl. effective conductance of {tm.grid.n_tiles} tiles): {t_prog_b:.2f} s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
