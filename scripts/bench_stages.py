"""Where a converted network's time goes, stage by stage (imcsim.tiles.timing): programming,
encoding, the tile products, read noise, the ADC, the shift-add, event counting, and the
rest (neurons, pooling, digital layers, Python), beside the float model. 1 thread by default.

    python scripts/bench_stages.py [--model vgg9 | --checkpoint CK [--data-dir D]] \\
        [--kind snn] [--presets rram-ideal,rram] [--batch 8] [--images 32] [--repeat 3] \\
        [--out results/bench_stages.json]

Each repeat runs all images once with stage timing on; the figures are the run with the
smallest total (min) and the per-stage medians. Timing adds a little overhead per stage.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import pin_threads, run_batches, zoo_or_checkpoint  # noqa: E402

import imcsim  # noqa: E402
from imcsim.io import machine_info, write_json  # noqa: E402
from imcsim.models import ZOO  # noqa: E402
from imcsim.tiles.timing import STAGES, stage_times  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg9", choices=sorted(ZOO))
    ap.add_argument("--kind", default="snn", choices=["snn", "qnn"])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--checkpoint")
    ap.add_argument("--data-dir")
    ap.add_argument("--presets", default="rram-ideal,rram")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--calibration", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/bench_stages.json")
    args = ap.parse_args(argv)
    if args.images < 1 or args.batch < 1 or args.repeat < 1:
        ap.error("--images, --batch and --repeat must be >= 1")
    warnings.filterwarnings("ignore", category=UserWarning)
    threads = pin_threads(args.threads)
    net, cal, x, _ = zoo_or_checkpoint(args.checkpoint, args.data_dir, args.model, args.kind, args.width,
                                       args.calibration, args.images)
    x = x[: args.images]
    n = x.shape[0]
    res = {"script": "bench_stages", **machine_info(), "threads": threads, "repeat": args.repeat,
           "model": args.checkpoint or f"{args.model} {args.kind} width {args.width} (untrained, seed 0)",
           "batch": args.batch, "images": n, "presets": {}}
    floats = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        run_batches(net, x, args.batch)
        floats.append(time.perf_counter() - t0)
    res["float_s_per_image"] = {"min": min(floats) / n, "median": statistics.median(floats) / n}
    print(f"{threads} thread(s); float {min(floats) / n * 1e3:.2f} ms/image", flush=True)
    for name in [p for p in args.presets.split(",") if p]:
        hw = imcsim.HardwareConfig.preset(name)
        chip = imcsim.convert(net, hw, calibration=cal)
        with stage_times() as prog:
            t0 = time.perf_counter()
            imcsim.reprogram(chip, 1, calibration=cal)
            new_chip = time.perf_counter() - t0
        run_batches(chip, x[: args.batch], args.batch)  # warm-up
        runs = []
        for _ in range(args.repeat):
            with stage_times() as st:
                t0 = time.perf_counter()
                run_batches(chip, x, args.batch)
                total = time.perf_counter() - t0
            run_st = {k: v for k, v in st.items() if k != "program"}
            runs.append({**run_st, "other": total - sum(run_st.values()), "total": total})
        best = min(runs, key=lambda r: r["total"])
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        row = {"s_per_image_min": {k: v / n for k, v in best.items()},
               "s_per_image_median": {k: v / n for k, v in med.items()},
               "vs_float_min": best["total"] / min(floats),
               "new_instance_s": new_chip, "new_instance_program_s": prog["program"]}
        res["presets"][name] = row
        share = "; ".join(f"{k} {best[k] / best['total'] * 100:.0f} %" for k in (*STAGES[1:], "other"))
        print(f"  {name}: {best['total'] / n * 1e3:.1f} ms/image ({row['vs_float_min']:.1f}x float): {share}; "
              f"new instance {new_chip:.1f} s (programming {prog['program']:.1f} s)", flush=True)
        write_json(args.out, res)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
