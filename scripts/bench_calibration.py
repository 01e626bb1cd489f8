"""Benchmark: calibration's batch -- its time and the conversion's peak memory, threads
pinned, at several ``imcsim.calibrate`` batch sizes on the CIFAR-size zoo (or a checkpoint).

For each kind and batch size, with ``--calibration`` images (the command line's default, 128):

* time of ``imcsim.calibrate`` on one converted chip (interleaved repeats, min and median),
  and whether every input and ADC range equals the first batch size's (they must: the
  ranges do not depend on the batch);
* peak memory of a conversion (``imcsim.convert`` then ``imcsim.calibrate`` at that batch)
  in ``--memory-repeat`` fresh processes (median), counted from the loaded model and data,
  as in ``bench_scale.py``: above a process that loads them and runs nothing, and the
  programming's own peak (before calibration) beside it.

Why: calibration reads its images through the chip like a forward pass, and a forward
pass's memory grows with its batch while a chip's time per image hardly does; the default
for CIFAR-size inputs (``imcsim.convert.core.CALIBRATION_BATCH``, the fewest images per pass
``calibration_batch`` picks) is chosen from these figures.

    python scripts/bench_calibration.py [--models vgg9] [--kinds snn,qnn] [--preset rram] \\
        [--batches 256,32,16,8] [--calibration 128] [--repeat 3] [--memory-repeat 3] [--threads 1] \\
        [--out results/bench_calibration.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (check_models, child_peak, current_rss_mb, interleaved, measure_each, peak_rss_mb,  # noqa: E402
                      pin_threads, reset_peak_rss, settle, zoo_or_checkpoint)

import imcsim  # noqa: E402
from imcsim.io import machine_info  # noqa: E402


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def _load(args, name, kind):
    net, cal, _, how = zoo_or_checkpoint(args.checkpoint, args.data_dir, name, kind, args.width, args.calibration, 1)
    return net, cal, how


def _convert(net, preset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return imcsim.convert(net, imcsim.HardwareConfig.preset(preset))


def _ranges(chip) -> list:
    return [(m.input_spec.scale, m.adc_full_scale) for _, m in imcsim.crossbar_layers(chip)]


def child(args) -> None:
    """One conversion at one calibration batch in this fresh process: peaks in MB above the
    loaded model and data (programming alone, then the whole conversion)."""
    pin_threads(args.threads)
    name, kind, batch = args.child.split(":")
    net, cal, _ = _load(args, name, kind)
    settle()
    base = current_rss_mb()
    chip = _convert(net, args.preset)
    programming = peak_rss_mb() - base
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imcsim.calibrate(chip, cal, batch_size=int(batch))
    print(json.dumps({"programming_mb": programming, "conversion_mb": peak_rss_mb() - base}))


def measure(args, name, kind) -> dict:
    net, cal, how = _load(args, name, kind)
    out = {"model": name, "kind": kind, "inputs": how, "preset": args.preset, "calibration_images": int(cal.shape[0]),
           "batches": {}}
    chip = _convert(net, args.preset)
    runs, ranges = {}, {}

    def calibrate(b):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imcsim.calibrate(chip, cal, batch_size=b)
        ranges[b] = _ranges(chip)

    t = interleaved({b: (lambda b=b: calibrate(b)) for b in args.batches}, args.repeat)
    common = [__file__, "--threads", str(args.threads), "--width", str(args.width), "--calibration",
              str(args.calibration), "--preset", args.preset]
    if args.checkpoint:
        common += ["--checkpoint", args.checkpoint] + (["--data-dir", args.data_dir] if args.data_dir else [])
    for _ in range(args.memory_repeat):
        for b in args.batches:
            runs.setdefault(b, []).append(child_peak(common + ["--child", f"{name}:{kind}:{b}"]))
    first = args.batches[0]
    for b in args.batches:
        conv = statistics.median(r["conversion_mb"] for r in runs[b])
        prog = statistics.median(r["programming_mb"] for r in runs[b])
        out["batches"][str(b)] = {"calibrate_s": {"min": t[b]["min"], "median": t[b]["median"], "all": t[b]["all"]},
                                  "same_ranges_as_batch_%d" % first: ranges[b] == ranges[first],
                                  "conversion_peak_mb": conv, "programming_peak_mb": prog,
                                  "all_mb": runs[b]}
        print(f"  {name} {kind} {args.preset}, {cal.shape[0]} images in batches of {b}: calibrate "
              f"{t[b]['min']:.2f} s (median {t[b]['median']:.2f}); conversion peak {conv:.0f} MB above the loaded "
              f"model (programming alone {prog:.0f} MB); ranges {'equal' if ranges[b] == ranges[first] else 'DIFFER'}",
              flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench_calibration.json")
    ap.add_argument("--models", type=lambda s: [v for v in s.split(",") if v], default=["vgg9"])
    ap.add_argument("--kinds", type=lambda s: [v for v in s.split(",") if v], default=["snn", "qnn"])
    ap.add_argument("--preset", default="rram")
    ap.add_argument("--batches", type=_ints, default=[256, 32, 16, 8], help="calibration batch sizes")
    ap.add_argument("--calibration", type=int, default=128, help="calibration images")
    ap.add_argument("--width", type=float, default=1.0, help="width multiplier of the untrained zoo models")
    ap.add_argument("--checkpoint", help="a trained zoo checkpoint (its dataset is loaded as recorded)")
    ap.add_argument("--data-dir")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory-repeat", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for flag, v in (("--repeat", args.repeat), ("--memory-repeat", args.memory_repeat),
                    ("--calibration", args.calibration)):
        if v < 1:
            ap.error(f"{flag} must be >= 1, got {v}")
    check_models(ap, args.models)
    if not args.batches or min(args.batches) < 1:
        ap.error(f"--batches must be positive integers, got {args.batches}")
    if args.child:
        child(args)
        return 0
    if not reset_peak_rss():
        ap.error("this benchmark needs Linux's /proc/self/clear_refs to restart the peak per measurement")
    threads = pin_threads(args.threads)
    res = {"script": "bench_calibration", **machine_info(), "threads": threads, "repeat": args.repeat,
           "memory_repeat": args.memory_repeat, "results": []}
    print(f"{threads} thread(s), {args.repeat} interleaved repeats (min, median); memory: median of "
          f"{args.memory_repeat} fresh processes", flush=True)
    measure_each(args, res, measure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
