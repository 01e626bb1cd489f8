"""End-to-end benchmark: a converted MNIST conv SNN against the same float model in plain
PyTorch, side by side in one process, threads pinned.

Model: convnet 16-32, T = 4, direct encoding (a checkpoint with --checkpoint, else one
trained here for one epoch on the first 8,000 images of --data-dir). Data: the 2,000 test
images of ../shared/data/mnist-test. Configurations: float (the model itself), ideal
(lossless 128x128 preset), rram (the default non-ideal preset: read noise, variation,
faults, 4-bit ADC, wire resistance) and rram without wires. For each: seconds per image
(min and median of --repeat interleaved runs over all images, batch --batch), the ratio to
float, and the mapped-matmul floor: the bare batched matmuls of the same reads (every
input plane of every vector on every tile, or for a lossless noise-free read-out the one
matmul of the mapped weights) with the programmed matrices, timed alone.
Peak memory: each configuration in a fresh process at batch 256 and 1024 (--memory-repeat
processes each, interleaved: one process's peak varies by up to ~20 % from run to run),
against the float model's, minus a baseline process that loads the same data and model but
runs nothing; the median and the worst case are reported. Targets (issue 12): rram with wires <= 10x float, ideal <= 4x, memory <= 2x float.

    python scripts/bench_e2e.py [--threads 1] [--repeat 3] [--out results/bench_e2e.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (child_peak, floor_fn, interleaved, load_mnist_or_exit, peak_rss_mb, pin_threads,  # noqa: E402
                      run_batches)

import imcsim  # noqa: E402
from crossbar_models import WireModel  # noqa: E402
from imcsim.io import machine_info, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist-test"
CONFIGS = ("float", "ideal", "rram", "rram_no_wires")


def hardware(name: str):
    if name == "ideal":
        return imcsim.HardwareConfig.preset("ideal")
    hw = imcsim.HardwareConfig.preset("rram")
    return hw.replace(wires=WireModel()) if name == "rram_no_wires" else hw


def load(args, ap=None):
    from imcsim.datasets import load_dataset
    from imcsim.training import TrainConfig, load_checkpoint, train

    ds = load_dataset("mnist", args.data_dir) if ap is None else load_mnist_or_exit(ap, args.data_dir)
    if args.checkpoint:
        net, _ = load_checkpoint(args.checkpoint)
        how = f"checkpoint {args.checkpoint}"
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = imcsim.convnet(in_shape=(1, 28, 28), channels=(16, 32), hidden=128, kind="snn", timesteps=4)
        train(net, ds.x_train, ds.y_train, TrainConfig(epochs=1, batch_size=64, loss="per_timestep", seed=0))
        how = "convnet 16-32 T=4 trained here for 1 epoch on the first 8,000 images"
    return net.eval(), ds, how


def child(args):
    """One configuration at one batch size in this fresh process: peak memory."""
    pin_threads(args.threads)
    net, ds, _ = load(args)
    x = ds.x_test[: args.batch]
    if args.child != "none":
        model = net if args.child == "float" else imcsim.convert(net, hardware(args.child), calibration=ds.x_train[:128])
        with torch.no_grad():
            model(x)
    print(json.dumps({"config": args.child, "batch": args.batch, "peak_mb": peak_rss_mb()}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench_e2e.json")
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA), help="MNIST IDX folder")
    ap.add_argument("--checkpoint", help="an MNIST convnet checkpoint (default: train one here for 1 epoch)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (pinned)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    ap.add_argument("--memory-repeat", type=int, default=3, help="fresh processes per configuration and batch")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (scripts/bench_gpu.py runs this on CUDA)")
    ap.add_argument("--child", choices=("none",) + CONFIGS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    threads = pin_threads(args.threads)
    dev = torch.device(args.device)
    net, ds, how = load(args, ap)
    net = net.to(dev)
    x = ds.x_test[: args.images].to(dev)
    cal = ds.x_train[:128].to(dev)
    chips = {}
    programming = {}
    for name in CONFIGS[1:]:
        t0 = time.perf_counter()
        chips[name] = imcsim.convert(net, hardware(name), calibration=cal).to(dev)
        programming[name] = time.perf_counter() - t0
    fns = {"float": lambda: run_batches(net, x, args.batch)}
    fns.update({name: (lambda c=c: run_batches(c, x, args.batch)) for name, c in chips.items()})
    fns.update({f"floor_{name}": floor_fn(c, x, args.batch) for name, c in chips.items()})
    t = interleaved(fns, args.repeat)
    n = x.shape[0]
    per_image = {k: {"min_s": v["min"] / n, "median_s": v["median"] / n} for k, v in t.items()}
    ratios = {name: {"vs_float_min": t[name]["min"] / t["float"]["min"],
                     "vs_float_median": t[name]["median"] / t["float"]["median"],
                     "vs_mapped_matmul_floor_min": t[name]["min"] / t[f"floor_{name}"]["min"]} for name in chips}
    acc = {}
    from imcsim.training import accuracy

    for name, model in [("float", net), *chips.items()]:
        acc[name] = accuracy(model, x, ds.y_test[:n].to(dev), batch_size=args.batch)
    memory = {}
    if dev.type == "cuda":
        memory["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    elif not args.no_memory:
        base = [sys.argv[0] if sys.argv[0].endswith(".py") else __file__, "--data-dir", args.data_dir,
                "--threads", str(args.threads)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
        for batch in (256, 1024):
            # the peak of one process varies by up to ~20 % from run to run (allocator): repeat, interleaved
            runs = {c: [] for c in ("none",) + CONFIGS}
            for _ in range(args.memory_repeat):
                for c in runs:
                    runs[c].append(child_peak([*base, "--child", c, "--batch", str(batch)])["peak_mb"])
            med = {c: statistics.median(v) for c, v in runs.items()}
            worst = {c: max(v) for c, v in runs.items()}
            memory[batch] = {"peak_mb_all": runs, "peak_mb_median": med, "peak_mb_max": worst,
                             "ratio_to_float_increment_median": {
                                 c: (med[c] - med["none"]) / max(1e-9, med["float"] - med["none"]) for c in CONFIGS[1:]},
                             "ratio_to_float_increment_worst": {  # largest config peak against the smallest float peak
                                 c: (worst[c] - med["none"]) / max(1e-9, min(runs["float"]) - med["none"])
                                 for c in CONFIGS[1:]}}
    res = {"script": "bench_e2e", **machine_info(), "device": str(dev),
           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "threads": threads, "model": how, "images": n, "batch": args.batch,
           "repeat": args.repeat, "programming_s": programming, "seconds_per_image": per_image, "ratios": ratios,
           "accuracy": acc, "memory": memory,
           "targets": {"rram_vs_float_max": 10, "ideal_vs_float_max": 4, "memory_vs_float_max": 2,
                       "rram_met": ratios["rram"]["vs_float_min"] <= 10, "ideal_met": ratios["ideal"]["vs_float_min"] <= 4}}
    write_json(args.out, res)
    print(f"{n} MNIST test images on {dev}, batch {args.batch}, {threads} CPU thread(s), {args.repeat} repeats ({how})")
    print(f"{'config':<16} {'ms/image min':>12} {'median':>8} {'x float':>8} {'x floor':>8} {'acc %':>7}")
    for name in ("float",) + tuple(chips):
        r = ratios.get(name, {})
        print(f"{name:<16} {per_image[name]['min_s'] * 1e3:12.3f} {per_image[name]['median_s'] * 1e3:8.3f} "
              f"{r.get('vs_float_min', 1.0):8.2f} {r.get('vs_mapped_matmul_floor_min', float('nan')):8.2f} "
              f"{acc[name]:7.2f}")
    for batch, m in memory.items():
        if not isinstance(m, dict):
            print(f"{batch}: {m:.0f}")
            continue
        print(f"peak memory, batch {batch} (median / max of {args.memory_repeat} processes): "
              + ", ".join(f"{c} {m['peak_mb_median'][c]:.0f} / {m['peak_mb_max'][c]:.0f} MB" for c in ("none",) + CONFIGS)
              + "; increment over the baseline vs float's, median (worst): "
              + ", ".join(f"{c} {v:.2f}x ({m['ratio_to_float_increment_worst'][c]:.2f}x)"
                          for c, v in m["ratio_to_float_increment_median"].items()))
    print("programming + calibration (first chip): " + ", ".join(f"{k} {v:.2f} s" for k, v in programming.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
