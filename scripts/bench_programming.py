"""Benchmark: the per-chip cost -- programming (effective conductances under IR drop) and
calibration -- threads pinned, min and median of repeats.

(a) A 512x512 layer on 128x128 tiles with the rram preset's devices and wires: programming
    time with the IR-drop sweep in float64 and in float32, and the error of the float32
    chip's column currents against the float64 one (max relative, 64 random spike vectors).
(b) The MNIST conv SNN (convnet 16-32, T=4; --checkpoint or an untrained one) on the rram
    preset: the first chip (map + program + calibrate) and a new chip instance of the same
    network (imcsim.reprogram: program + calibrate the ADC ranges only), with 128 and 512
    calibration samples, wire precision float32 (the preset's) and float64.

Also the 512x512 layer with ``wire_solve = "nominal"`` (the nominal array's exact solve
reused, a first-order update per instance): a new instance's time and its outputs' error
against the float64 solve.

Target (issue 12): a new chip instance <= 3 s; the 512x512 layer programmed in <= 3 s.

    python scripts/bench_programming.py [--threads 1] [--repeat 3] [--out results/bench_programming.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import load_mnist_or_exit, pin_threads  # noqa: E402

import imcsim  # noqa: E402
from imcsim import CrossbarLinear, HardwareConfig, InputSpec  # noqa: E402
from imcsim.io import machine_info, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist-test"


def stats(ts):
    ts = sorted(ts)
    return {"min_s": ts[0], "median_s": ts[len(ts) // 2], "all_s": ts}


def timed(fn, repeat):
    out, ts = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return out, stats(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench_programming.json")
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    ap.add_argument("--checkpoint", help="MNIST convnet checkpoint (default: an untrained convnet 16-32)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    ds = load_mnist_or_exit(ap, args.data_dir)
    threads = pin_threads(args.threads)
    res = {"script": "bench_programming", **machine_info(), "threads": threads, "repeat": args.repeat}

    # (a) one 512x512 layer, 128x128 tiles, wires on
    torch.manual_seed(0)
    lin = nn.Linear(512, 512, bias=False)
    # raw column currents (lossless read-out, no read noise) so that the comparison sees the solve alone
    rram = HardwareConfig.preset("rram").replace(rows=128, cols=128, **{"adc.bits": None, "device.read_noise": 0.0})
    layers, layer_t = {}, {}
    for prec in ("float64", "float32"):
        hw = rram.replace(wire_precision=prec)
        layers[prec], layer_t[prec] = timed(lambda: CrossbarLinear(lin, hw, InputSpec("spike"), seed=0), args.repeat)
    # wire_solve = "nominal": the nominal array solved once, each new instance a first-order update
    near = CrossbarLinear(lin, rram.replace(wire_solve="nominal"), InputSpec("spike"), seed=1)
    layers["nominal"], layer_t["nominal_new_instance"] = timed(lambda: (near.tiles.reprogram(0), near)[1], args.repeat)
    x = (torch.rand(64, 512, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    ref = layers["float64"].tiles.integer_product(x)
    got = layers["float32"].tiles.integer_product(x)
    err_out = float((got - ref).abs().max() / ref.abs().max())  # normwise: differential outputs cross zero
    G64, G32 = layers["float64"].tiles.G.double(), layers["float32"].tiles.G.double()
    err = float(((G32 - G64).abs() / G64.abs().clamp_min(1e-12)).max())  # every cell's effective conductance
    err_near = float((layers["nominal"].tiles.integer_product(x) - ref).abs().max() / ref.abs().max())
    tiles = layers["float64"].tiles.grid.n_tiles
    res["layer_512"] = {"tiles": tiles, "tile": [128, 128], "programming": layer_t,
                        "float32_max_relative_conductance_error": err,
                        "float32_max_output_error_relative_to_max_output": err_out,
                        "nominal_max_output_error_relative_to_max_output": err_near}

    # (b) the MNIST conv SNN
    from imcsim.training import load_checkpoint

    if args.checkpoint:
        net, _ = load_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(0)
        net = imcsim.convnet(in_shape=(1, 28, 28), channels=(16, 32), hidden=128, kind="snn", timesteps=4).eval()
    chip = {}
    for prec in ("float32", "float64"):
        hw = HardwareConfig.preset("rram").replace(wire_precision=prec)
        for n_cal in (128, 512):
            cal = ds.x_train[:n_cal]
            first, t_first = timed(lambda: imcsim.convert(net, hw, calibration=cal, seed=0), args.repeat)
            _, t_new = timed(lambda: imcsim.reprogram(first, 1, calibration=cal), args.repeat)
            chip[f"{prec}_cal{n_cal}"] = {"first_chip": t_first, "new_instance": t_new}
    res["mnist_convnet"] = {"tiles": sum(m.grid.n_tiles for _, m in imcsim.crossbar_layers(first)), "chips": chip}
    res["targets"] = {"new_instance_max_s": 3.0, "layer_512_max_s": 3.0,
                      "new_instance_met": chip["float32_cal128"]["new_instance"]["min_s"] <= 3.0,
                      "layer_512_met": layer_t["float32"]["min_s"] <= 3.0}
    write_json(args.out, res)
    print(f"{threads} thread(s), {args.repeat} repeats")
    print(f"512x512 layer, {tiles} tiles of 128x128, wires on: programming float64 {layer_t['float64']['min_s']:.2f} s "
          f"(median {layer_t['float64']['median_s']:.2f}), float32 {layer_t['float32']['min_s']:.2f} s (median "
          f"{layer_t['float32']['median_s']:.2f}); float32 effective conductances within {err:.2e} (relative, every "
          f"cell) of float64, layer outputs within {err_out:.2e} of the largest output; wire_solve = 'nominal': a new "
          f"instance {layer_t['nominal_new_instance']['min_s']:.2f} s (median "
          f"{layer_t['nominal_new_instance']['median_s']:.2f}), outputs within {err_near:.2e} of the largest output")
    print(f"MNIST convnet on rram ({res['mnist_convnet']['tiles']} tiles of 64x64):")
    for k, v in chip.items():
        print(f"  {k:<14} first chip {v['first_chip']['min_s']:.2f} s (median {v['first_chip']['median_s']:.2f}), "
              f"new instance {v['new_instance']['min_s']:.2f} s (median {v['new_instance']['median_s']:.2f})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
