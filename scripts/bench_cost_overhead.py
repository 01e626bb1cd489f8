"""Benchmark: what estimating costs adds to the run that records the events.

Runs a crossbar SNN (convnet, MNIST-sized, rram preset) on a batch with event counting on
and off (interleaved, median of repeats), and times pricing the counts. The overhead is
(counted run + pricing) / uncounted run - 1. Target (issue 4): < 10 %.

    python scripts/bench_cost_overhead.py [--out results/bench_cost_overhead.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import pin_threads  # noqa: E402

import imcsim
from imcsim.cost import estimate
from imcsim.events import no_counting
from imcsim.io import machine_info, write_json
from imcsim.cost import Technology


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench_cost_overhead.json")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (pinned)")
    args = ap.parse_args(argv)
    threads = pin_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = imcsim.convnet(in_shape=(1, 28, 28), channels=(16, 32), hidden=128, kind="snn", timesteps=4).eval()
    x = torch.rand(args.batch, 1, 28, 28, generator=g)
    hw = imcsim.HardwareConfig.preset("rram")
    xnet = imcsim.convert(net, hw, calibration=x[:64])
    tech = Technology.preset("spikesim-65nm-rram")

    def counted():
        imcsim.reset_events(xnet)
        with torch.no_grad():
            xnet(x)

    def uncounted():
        with no_counting(), torch.no_grad():
            xnet(x)

    counted(), uncounted()
    on, off, price = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        uncounted()
        off.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        counted()
        on.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rep = estimate(xnet, tech, args.batch, timesteps=4)
        price.append(time.perf_counter() - t0)
    t_on, t_off, t_price = statistics.median(on), statistics.median(off), statistics.median(price)
    overhead = (t_on + t_price) / t_off - 1
    res = {"batch": args.batch, "repeat": args.repeat, "threads": threads,
           "min_s": {"without_counting": min(off), "with_counting": min(on), "pricing": min(price)},
           "run_without_counting_s": t_off, "run_with_counting_s": t_on,
           "pricing_s": t_price, "overhead": overhead, "target": 0.10, "met": overhead < 0.10,
           "energy_J_per_inference": rep.energy_J, "machine": machine_info()}
    write_json(args.out, res)
    print(f"{threads} thread(s), medians of {args.repeat}: run without counting {t_off:.3f} s, with counting {t_on:.3f} s, pricing {t_price * 1e3:.2f} ms")
    print(f"overhead of estimating costs: {100 * overhead:.2f} % (target < 10 %)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
