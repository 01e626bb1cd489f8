"""Benchmark at research scale: the CIFAR-size zoo (VGG9 first; VGG16, ResNet-19) as SNN
(T = 4) and QNN twin (3-bit), converted onto ``ideal``, ``rram-ideal`` and ``rram``, timed
side by side with the same float model in one process, threads pinned.

For each model, kind, batch size and preset:

* seconds per image of the chip and of the float model (interleaved repeats over the same
  images; min and median) and their ratio;
* the mapped-matmul floor: the bare batched matmuls of the same tile reads (see
  ``benchlib.floor_fn``), and the chip's time as a multiple of it;
* conversion (map + program + calibrate, once) and a new chip instance
  (``imcsim.reprogram``: program + ADC calibration, min / median of repeats), with
  ``--calibration`` images; a preset ``rram@nominal`` is the rram preset with
  ``wire_solve = "nominal"`` (the nominal array's IR-drop solve reused by every instance),
  whose error against the exact float64 solve is measured on every tile of the network
  (``nominal_error``: column currents with every row driven, the largest IR drop);
* peak memory (``--memory``; ``--memory-only`` skips the timings): each configuration at
  each of ``--memory-batches`` (default: ``--batches``) in ``--memory-repeat`` fresh
  processes (median), each process's peak counted from the moment its model and data are
  loaded (freed memory handed back, VmHWM reset). Reported as the whole process's peak
  against the float model's (the measure of issue 19's report), and as what the
  configuration adds to a process that loads the same and runs nothing, as it is and with
  the preset's code set apart -- the resident memory of a process that has also converted
  and run a 1/8-width stand-in on the preset (numba's compiled kernels, their runtime and
  LLVM: ~130 MB once per process, whatever the network's size, as torch's own libraries
  are in every figure's baseline). See :func:`memory`.

Inputs: ``--checkpoint`` (a trained zoo model, e.g. ``imcsim train --model vgg9 --dataset
mnist32``) and its data, or an untrained model (seed 0) on uniform random CIFAR-shaped
images. Activity decides how many tile reads are skipped, so a trained model's figures
are the ones to quote. Targets (issue 19, 1 thread): rram <= 10x float, rram-ideal <= 6x,
ideal <= 2x, memory <= 2x float, new rram instance <= 10 s. ``--malloc tuned``: the whole
run (children included) with the malloc settings of the ``imcsim`` command
(``imcsim.allocator``); the default keeps the process's own.

    python scripts/bench_scale.py [--models vgg9] [--kinds snn,qnn] [--batches 8,64] \\
        [--presets ideal,rram-ideal,rram] [--images 64] [--repeat 3] [--threads 1] \\
        [--memory | --memory-only] [--memory-repeat 3] [--memory-batches 8,64] \\
        [--malloc default|tuned] \\
        [--out results/bench_scale.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (add_malloc_option, apply_malloc, check_models, child_peak, current_rss_mb, floor_fn,  # noqa: E402
                      interleaved, measure_each, peak_rss_mb, pin_threads, run_batches, settle, zoo_or_checkpoint)

import imcsim  # noqa: E402
from imcsim.io import machine_info  # noqa: E402

TARGETS = {"ideal": 2.0, "rram-ideal": 6.0, "rram": 10.0, "rram@nominal": 10.0}


def hardware(name: str):
    """A preset, or ``PRESET@nominal``: the preset with wire_solve = "nominal"."""
    preset, _, solve = name.partition("@")
    hw = imcsim.HardwareConfig.preset(preset)
    return hw.replace(wire_solve=solve) if solve else hw


def nominal_error(chip, hw) -> dict:
    """How far ``wire_solve = "nominal"`` is from the exact float64 wire solve on this chip
    instance, over every tile of every crossbar layer: the tiles' column currents with every
    row driven at the read voltage (all cells conducting at once: the largest IR drop), as a
    share of the tile's largest such current, and each cell's effective conductance as a
    share of the tile's largest. Max over tiles, and the tiles' mean of the current error."""
    from imcsim.tiles.programming import programmed_conductances

    exact = hw.replace(wire_solve="exact", wire_precision="float64")
    worst_i = worst_m = total = 0.0
    n = 0
    for _, m in imcsim.crossbar_layers(chip):
        w = m.w_int.to(torch.float64).cpu()
        near, _, _ = programmed_conductances(w, hw, m.grid, m.groups, m.seed)
        ref, _, _ = programmed_conductances(w, exact, m.grid, m.groups, m.seed)
        near = near.to(torch.float64)
        i_ref = ref.sum(-2)  # (groups, Tr, Tc, cols): currents per volt with every row driven
        e_i = (near.sum(-2) - i_ref).abs().amax(-1) / i_ref.abs().amax(-1).clamp(min=1e-30)
        e_m = (near - ref).abs().flatten(-2).amax(-1) / ref.abs().flatten(-2).amax(-1).clamp(min=1e-30)
        worst_i, worst_m = max(worst_i, float(e_i.max())), max(worst_m, float(e_m.max()))
        total, n = total + float(e_i.sum()), n + e_i.numel()
        del near, ref
    return {"tiles": n, "max_current_error_rel_tile_max": worst_i, "mean_current_error_rel_tile_max": total / n,
            "max_cell_error_rel_tile_max": worst_m}


def _list(kind):
    return lambda s: [kind(v) for v in s.split(",") if v]


def load(args, name: str, kind: str):
    """(float model in eval mode, calibration images, test images, what it is)."""
    return zoo_or_checkpoint(args.checkpoint, args.data_dir, name, kind, args.width, args.calibration,
                             max(args.batches) * 2)


def load_libraries(net, preset: str, x) -> None:
    """Load the code a chip on ``preset`` runs (numba's compiled kernels, their runtime and
    LLVM) by converting and running a stand-in: the same zoo architecture at 1/8 of its
    width (a copy of ``net`` where it has no zoo record); then free it and hand the freed
    memory back (:func:`benchlib.settle`), so what stays is library code and the model."""
    import copy

    from imcsim.models import build

    arch = dict(getattr(net, "arch", {}) or {})
    if arch.get("name") not in (None, "nir") and "width" in arch:
        stand_in = build({**arch, "width": arch["width"] / 8}).eval()
    else:
        stand_in = copy.deepcopy(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chip = imcsim.convert(stand_in, hardware(preset), calibration=x[:4])
        with torch.no_grad():
            chip(x[:2])
    del chip, stand_in
    settle()


def child(args):
    """One configuration in this fresh process: peak memory (MB); for ``libraries@PRESET``
    the resident memory once the preset's code is loaded (:func:`load_libraries`)."""
    pin_threads(args.threads)
    name, kind, preset = args.child.split(":")
    net, cal, x, _ = load(args, name, kind)
    x = x[: args.child_batch]
    settle()  # every configuration starts from the loaded model and data, the peak reset
    if preset.startswith("libraries@"):
        load_libraries(net, preset.partition("@")[2], x)
        print(json.dumps({"peak_mb": current_rss_mb()}))
        return
    if preset != "none":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = net if preset == "float" else imcsim.convert(net, hardware(preset), calibration=cal)
        with torch.no_grad():
            model(x)
    print(json.dumps({"peak_mb": peak_rss_mb()}))


def measure(args, name, kind):
    net, cal, x_all, how = load(args, name, kind)
    out = {"model": name, "kind": kind, "inputs": how,
           "parameters": sum(p.numel() for p in net.parameters()), "presets": {}}
    chips = {}
    for preset in ([] if args.memory_only else args.presets):
        hw = hardware(preset)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            chip = imcsim.convert(net, hw, calibration=cal, seed=0)
            t_convert = time.perf_counter() - t0
        rep = interleaved({"new": lambda: imcsim.reprogram(chip, 1, calibration=cal)}, args.repeat_program, warmup=0)
        tiles = sum(m.grid.n_tiles for _, m in imcsim.crossbar_layers(chip))
        chips[preset] = chip
        out["presets"][preset] = {"tiles": tiles, "convert_s": t_convert, "new_instance_s": rep["new"],
                                  "calibration_images": int(cal.shape[0]),
                                  "warnings": sorted({str(w.message)[:200] for w in caught})}
        print(f"  {name} {kind} {preset}: {tiles} tiles, convert {t_convert:.1f} s, new instance "
              f"{rep['new']['min']:.1f} s (median {rep['new']['median']:.1f})", flush=True)
        if hw.wire_solve == "nominal" and not hw.wires.is_ideal:
            err = nominal_error(chip, hw)
            out["presets"][preset]["nominal_vs_exact_float64"] = err
            print(f"    wire_solve = nominal against the exact float64 solve, {err['tiles']} tiles: column currents "
                  f"(every row driven) within {err['max_current_error_rel_tile_max']:.2e} of the tile's largest "
                  f"(mean {err['mean_current_error_rel_tile_max']:.2e}); cells within "
                  f"{err['max_cell_error_rel_tile_max']:.2e} of the tile's largest", flush=True)
    for batch in ([] if args.memory_only else args.batches):
        x = x_all[: max(batch, args.images)]
        n = int(x.shape[0])
        fns = {"float": lambda: run_batches(net, x, batch)}
        fns.update({p: (lambda c=c: run_batches(c, x, batch)) for p, c in chips.items()})
        fns.update({f"floor_{p}": floor_fn(c, x, batch) for p, c in chips.items()})
        t = interleaved(fns, args.repeat)
        row = {"images": n, "float_s_per_image": {k: v / n for k, v in t["float"].items() if k != "all"}}
        for p in chips:
            row[p] = {"s_per_image_min": t[p]["min"] / n, "s_per_image_median": t[p]["median"] / n,
                      "vs_float_min": t[p]["min"] / t["float"]["min"],
                      "vs_float_median": t[p]["median"] / t["float"]["median"],
                      "vs_mapped_matmul_floor_min": t[p]["min"] / t[f"floor_{p}"]["min"],
                      "target_vs_float": TARGETS.get(p)}
        out[f"batch_{batch}"] = row
        print(f"  {name} {kind} batch {batch} ({n} images): float {row['float_s_per_image']['min'] * 1e3:.1f} ms/image; "
              + "; ".join(f"{p} {row[p]['s_per_image_min'] * 1e3:.1f} ms ({row[p]['vs_float_min']:.1f}x float, median "
                          f"{row[p]['vs_float_median']:.1f}x; {row[p]['vs_mapped_matmul_floor_min']:.1f}x its floor)"
                          for p in chips), flush=True)
    if args.memory or args.memory_only:
        out["memory"] = memory(args, name, kind)
    return out


def memory(args, name, kind) -> dict:
    """Peak memory of each configuration at each of ``--memory-batches``, in
    ``--memory-repeat`` fresh processes (interleaved; the median), measured two ways:

    * whole process: the peak resident memory of the process that loads the model and data
      and runs the configuration -- Python, torch, the model and data included -- against
      the float model's (the measure of issue 19's report, 1.69 GB against 0.36 GB at
      batch 8);
    * above baseline: minus a process that loads the same and runs nothing, so the figure
      is what the configuration adds (the chip's state, its code, its forward pass),
      against what the float model's forward pass adds; and that again with the preset's
      code (``libraries@PRESET``: numba's kernels and runtime) set apart, like torch's own.
    """
    common = [__file__, "--threads", str(args.threads), "--width", str(args.width), "--calibration",
              str(args.calibration), "--batches", ",".join(map(str, args.batches)), "--malloc", args.malloc]
    if args.checkpoint:
        common += ["--checkpoint", args.checkpoint] + (["--data-dir", args.data_dir] if args.data_dir else [])
    batches = args.memory_batches or args.batches
    # The baseline and the preset's code do not depend on the batch: once per repeat.
    shared = ["none", *(f"libraries@{p}" for p in args.presets)]
    per_batch = ["float", *args.presets]
    runs = {(c, None): [] for c in shared} | {(c, b): [] for b in batches for c in per_batch}
    for _ in range(args.memory_repeat):
        for c, b in runs:
            batch = max(batches) if b is None else b
            runs[(c, b)].append(child_peak(common + ["--child-batch", str(batch), "--child", f"{name}:{kind}:{c}"])
                                ["peak_mb"])
    med = {k: statistics.median(v) for k, v in runs.items()}
    base = med[("none", None)]
    libs = {p: med[(f"libraries@{p}", None)] for p in args.presets}
    mem = {"repeats": args.memory_repeat, "baseline_mb": base, "baseline_all_mb": runs[("none", None)],
           "libraries_mb": {p: libs[p] - base for p in args.presets}, "batches": {}}
    print(f"  {name} {kind} peak memory, median of {args.memory_repeat} fresh processes; a process that loads the "
          f"model and data and runs nothing: {base:.0f} MB; the preset's code (numba's kernels and runtime, once per "
          "process): " + "; ".join(f"{p} {libs[p] - base:.0f} MB" for p in args.presets), flush=True)
    for b in batches:
        fl = med[("float", b)]
        used_float = max(fl - base, 1e-9)
        row = {"peak_mb": {c: med[(c, b)] for c in per_batch}, "all_mb": {c: runs[(c, b)] for c in per_batch},
               "above_baseline_mb": {c: med[(c, b)] - base for c in per_batch}}
        for p in args.presets:
            row[f"{p}_vs_float_whole_process"] = med[(p, b)] / fl
            row[f"{p}_vs_float"] = (med[(p, b)] - base) / used_float
            row[f"{p}_vs_float_libraries_apart"] = (med[(p, b)] - libs[p]) / used_float
        mem["batches"][str(b)] = row
        print(f"    batch {b}: whole process float {fl:.0f} MB; "
              + "; ".join(f"{p} {med[(p, b)]:.0f} MB ({row[f'{p}_vs_float_whole_process']:.2f}x)" for p in args.presets)
              + f"\n      above the baseline float {fl - base:.0f} MB; "
              + "; ".join(f"{p} {med[(p, b)] - base:.0f} MB ({row[f'{p}_vs_float']:.1f}x; "
                          f"{row[f'{p}_vs_float_libraries_apart']:.1f}x with its code apart)" for p in args.presets),
              flush=True)
    return mem


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench_scale.json")
    ap.add_argument("--models", type=_list(str), default=["vgg9"], help="of vgg9, vgg16, resnet19")
    ap.add_argument("--kinds", type=_list(str), default=["snn", "qnn"])
    ap.add_argument("--presets", type=_list(str), default=["ideal", "rram-ideal", "rram"])
    ap.add_argument("--batches", type=_list(int), default=[8, 64])
    ap.add_argument("--images", type=int, default=64, help="images per timed run (at least one batch)")
    ap.add_argument("--width", type=float, default=1.0, help="width multiplier of the untrained zoo models")
    ap.add_argument("--calibration", type=int, default=64, help="calibration images per chip")
    ap.add_argument("--checkpoint", help="a trained zoo checkpoint (its dataset is loaded as recorded)")
    ap.add_argument("--data-dir")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repeat-program", type=int, default=2, help="repeats of the new-chip-instance timing")
    ap.add_argument("--memory", action="store_true", help="peak memory in fresh processes (slow)")
    ap.add_argument("--memory-only", action="store_true", help="--memory without the timings")
    ap.add_argument("--memory-repeat", type=int, default=3, help="fresh processes per configuration (median)")
    ap.add_argument("--memory-batches", type=_list(int), help="batch sizes of the memory figures (default: --batches)")
    add_malloc_option(ap)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-batch", type=int, default=64, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_repeat < 1:
        ap.error(f"--memory-repeat must be >= 1, got {args.memory_repeat}")
    check_models(ap, args.models)
    malloc = apply_malloc(args.malloc)
    if args.child:
        return child(args)
    threads = pin_threads(args.threads)
    res = {"script": "bench_scale", **machine_info(), "threads": threads, "malloc": malloc, "repeat": args.repeat,
           "targets_vs_float": TARGETS, "results": []}
    print(f"{threads} thread(s), {args.repeat} interleaved repeats; min and median", flush=True)
    measure_each(args, res, measure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
