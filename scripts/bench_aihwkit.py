"""imcsim beside IBM aihwkit on the same CIFAR-size network, one process, threads pinned.

The network: the zoo's VGG9 (SpikeSim's / SATA's: conv 64-64-M-128-128-M-256-256-256-M,
fc 1024, fc 10; 3x32x32 inputs), untrained (seed 0) on uniform random images. Timed side by
side (interleaved repeats, min and median, seconds per image):

* the float models: the SNN (T = 4, IF) and its 3-bit QNN twin;
* aihwkit's torch tile (``TorchInferenceRPUConfig``) on the QNN twin's float layers --
  programming noise of its PCM-like statistical model, output noise (its torch tile has no
  weight read noise), 8-bit inputs, 8-bit outputs, tiles of ``--tile`` rows and columns (default 64, as
  imcsim's ``rram``); no IR drop (aihwkit has no exact solve);
* imcsim on ``rram`` (variation, faults, read noise, exact IR drop, 4-bit ADC): the SNN,
  and the QNN twin with DAC inputs (``inputs.mode = "dac"``: one read per input, as
  aihwkit reads it) and as the preset reads it (bit-serial, one read per input bit).

Also: conversion (aihwkit: ``convert_to_analog`` + ``program_analog_weights``; imcsim:
``convert`` = quantise, map, program with IR drop, calibrate on ``--calibration`` images),
``--repeat-convert`` times each, interleaved, min and median; the one-time start-up of each
(imports, numba loading its cached kernels) is timed apart on a 1/8-width VGG9 first.
aihwkit is optional: without it the script says how to install it and exits 2.

    pip install --no-deps aihwkit==1.1.0   # its torch tile needs no compiled extension
    python scripts/bench_aihwkit.py [--batch 64] [--images 64] [--repeat 3] [--threads 1] \\
        [--tile 64] [--repeat-convert 3] [--malloc default|tuned] [--out results/bench_aihwkit.json]

``--malloc tuned``: this process (aihwkit and imcsim alike) with the malloc settings of the
``imcsim`` command (``imcsim.allocator``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import add_malloc_option, apply_malloc, interleaved, pin_threads, run_batches  # noqa: E402

import imcsim  # noqa: E402
from imcsim.models import vgg9  # noqa: E402
from imcsim.io import machine_info, write_json  # noqa: E402


def aihwkit_config(tile: int):
    """aihwkit's torch inference tile with noise comparable to imcsim's rram preset."""
    from aihwkit.simulator.configs import TorchInferenceRPUConfig
    from aihwkit.simulator.parameters.enums import BoundManagementType

    cfg = TorchInferenceRPUConfig()
    cfg.mapping.max_input_size = tile
    cfg.mapping.max_output_size = tile
    cfg.forward.inp_res = 1 / (2**8 - 2)  # 8-bit inputs
    cfg.forward.out_res = 1 / (2**8 - 2)  # 8-bit outputs
    cfg.forward.out_noise = 0.02  # read noise at the output (its torch tile has no weight read noise)
    cfg.forward.bound_management = BoundManagementType.NONE  # one read per input, as imcsim
    return cfg


def describe_config(cfg) -> dict:
    f = cfg.forward
    return {"tile": [cfg.mapping.max_input_size, cfg.mapping.max_output_size], "inp_res": f.inp_res,
            "out_res": f.out_res, "out_noise": f.out_noise, "w_noise": f.w_noise,
            "w_noise_type": str(f.w_noise_type), "bound_management": str(f.bound_management),
            "noise_model": type(cfg.noise_model).__name__}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tile", type=int, default=64, help="aihwkit tile rows and columns")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--calibration", type=int, default=16)
    ap.add_argument("--repeat-convert", type=int, default=3, help="conversions of each kind, interleaved (min, median)")
    ap.add_argument("--out", default="results/bench_aihwkit.json")
    add_malloc_option(ap)
    args = ap.parse_args(argv)
    for name in ("batch", "images", "repeat", "repeat_convert"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    try:
        import aihwkit
        from aihwkit.nn.conversion import convert_to_analog
    except ImportError:
        print("aihwkit is not installed: pip install --no-deps aihwkit==1.1.0 (plus tqdm, scikit-build "
              "are not needed for the torch tile)", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    threads = pin_threads(args.threads)
    malloc = apply_malloc(args.malloc)
    torch.manual_seed(0)
    snn = vgg9(kind="snn", timesteps=4, width=args.width).eval()
    torch.manual_seed(0)
    qnn = vgg9(kind="qnn", timesteps=4, width=args.width).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(args.calibration + args.images, 3, 32, 32, generator=g)
    cal, x = x[: args.calibration], x[args.calibration:]

    cfg = aihwkit_config(args.tile)
    rram = imcsim.HardwareConfig.preset("rram")
    kinds = (("imcsim_rram_snn", snn, rram),
             ("imcsim_rram_qnn_dac", qnn, rram.replace(**{"inputs.mode": "dac"})),
             ("imcsim_rram_qnn_bit_serial", qnn, rram))

    def convert_aihwkit(model):
        analog = convert_to_analog(copy.deepcopy(model), cfg)
        analog.eval()
        analog.program_analog_weights()
        return analog

    # Start-up (imports, numba loading its cached kernels, first calls) on a small VGG9 of
    # each kind, timed apart: it is paid once per process, not per conversion.
    startup = {}
    small_snn, small_qnn = vgg9(kind="snn", timesteps=4, width=0.125).eval(), vgg9(kind="qnn", timesteps=4, width=0.125).eval()
    t0 = time.perf_counter()
    convert_aihwkit(small_qnn)
    startup["aihwkit_torch_tile"] = time.perf_counter() - t0
    for name, net, hw in kinds:
        t0 = time.perf_counter()
        imcsim.convert(small_snn if name.endswith("snn") else small_qnn, hw, calibration=cal[:2])
        startup[name] = time.perf_counter() - t0
    built = {}

    def keep(name, make):
        def run():
            built.pop(name, None)  # the previous repeat's model freed first
            built[name] = make()
        return run

    fns = {"aihwkit_torch_tile": keep("aihwkit_torch_tile", lambda: convert_aihwkit(qnn))}
    fns.update({name: keep(name, lambda net=net, hw=hw: imcsim.convert(net, hw, calibration=cal)) for name, net, hw in kinds})
    conversion = interleaved(fns, args.repeat_convert, warmup=0)  # aihwkit, then each imcsim kind, per repeat
    analog = built.pop("aihwkit_torch_tile")
    chips = built
    print(f"{threads} thread(s), malloc {malloc}; conversion, min (median) of {args.repeat_convert}: "
          + "; ".join(f"{k} {v['min']:.1f} s ({v['median']:.1f})" for k, v in conversion.items())
          + "; start-up on a 1/8-width VGG9, once per process: "
          + "; ".join(f"{k} {v:.1f} s" for k, v in startup.items()), flush=True)

    fns = {"float_snn": lambda: run_batches(snn, x, args.batch), "float_qnn": lambda: run_batches(qnn, x, args.batch),
           "aihwkit_torch_tile": lambda: run_batches(analog, x, args.batch)}
    fns.update({k: (lambda c=c: run_batches(c, x, args.batch)) for k, c in chips.items()})
    t = interleaved(fns, args.repeat)
    n = x.shape[0]
    per = {k: {"s_per_image_min": v["min"] / n, "s_per_image_median": v["median"] / n} for k, v in t.items()}
    ai = t["aihwkit_torch_tile"]
    for k in chips:
        per[k]["vs_aihwkit_min"] = t[k]["min"] / ai["min"]
        per[k]["vs_aihwkit_median"] = t[k]["median"] / ai["median"]
        base = "float_snn" if k.endswith("snn") else "float_qnn"
        per[k]["vs_float_min"] = t[k]["min"] / t[base]["min"]
    for k, v in per.items():
        extra = (f" ({v['vs_aihwkit_min']:.2f}x aihwkit, median {v['vs_aihwkit_median']:.2f}x; "
                 f"{v['vs_float_min']:.1f}x its float model)") if "vs_aihwkit_min" in v else ""
        print(f"  {k}: {v['s_per_image_min'] * 1e3:.1f} ms/image (median {v['s_per_image_median'] * 1e3:.1f}){extra}")
    ai_conv = conversion["aihwkit_torch_tile"]
    conv_ratio = {k: {"min": conversion[k]["min"] / ai_conv["min"], "median": conversion[k]["median"] / ai_conv["median"]}
                  for k in chips}
    print("  conversion vs aihwkit, min (median): "
          + "; ".join(f"{k} {v['min']:.1f}x ({v['median']:.1f}x)" for k, v in conv_ratio.items()))
    res = {"script": "bench_aihwkit", **machine_info(), "threads": threads, "malloc": malloc, "repeat": args.repeat,
           "batch": args.batch, "images": n, "width": args.width, "aihwkit_version": aihwkit.__version__,
           "aihwkit_config": describe_config(cfg), "imcsim_preset": "rram", "calibration_images": args.calibration,
           "repeat_convert": args.repeat_convert, "conversion_s": conversion, "conversion_vs_aihwkit": conv_ratio,
           "startup_s": startup, "timing": per}
    write_json(args.out, res)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
