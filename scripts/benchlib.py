"""Shared helpers of the benchmark scripts: pinned threads, interleaved repeats (min and
median), peak memory of a fresh child process, and the JSON record of the machine."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch


def pin_threads(n: int) -> int:
    """Use exactly ``n`` torch threads (intra- and inter-op) and say so."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    return torch.get_num_threads()


def interleaved(fns: dict, repeat: int, warmup: int = 1) -> dict:
    """Time each function ``repeat`` times, the candidates interleaved so that machine noise
    hits them alike; {name: {"min": s, "median": s, "all": [s, ...]}}."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    samples = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            samples[k].append(time.perf_counter() - t0)
    return {k: {"min": min(v), "median": statistics.median(v), "all": v} for k, v in samples.items()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): VmHWM, which (unlike ru_maxrss) a
    child does not inherit from the parent that forked it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_peak(args: list[str], env: dict | None = None) -> dict:
    """Run ``python args...`` in a fresh process that prints one JSON line; return it."""
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(f"child {args} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])
