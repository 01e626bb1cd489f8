"""Benchmark: one `imcsim evaluate` study on each engine -- wall time and identical results.

Runs `imcsim evaluate --chips 8` on a checkpoint (default: the MNIST conv SNN trained by
`imcsim train` into --checkpoint) with: the serial engine at its default threads (all cores)
and at 1 thread, 2 local worker processes (1 thread each), and, where Ray is installed, a
local Ray instance with 2 CPUs and (--ray-cluster) a two-node Ray cluster on loopback
(`ray start --head` plus a second `ray start` node, both on this machine, 1 CPU each). Every
run's evaluate.json must be byte-identical. Prints wall times and speed-ups.

    python scripts/bench_engines.py --checkpoint runs/snn/model.pt [--test-limit 1000]
        [--ray-cluster] [--out results/bench_engines.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imcsim.io import machine_info, write_json


def evaluate(args, out: Path, *flags, env=None) -> float:
    cmd = [sys.executable, "-m", "imcsim", "evaluate", "--checkpoint", args.checkpoint, "--chips", str(args.chips),
           "--quiet", "--out", str(out), *flags]
    if args.test_limit:
        cmd += ["--test-limit", str(args.test_limit)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
    return wall


RAY_ENV = {"RAY_AUTH_MODE": "token"}  # Ray >= 2.59: nodes and clients share the token in ~/.ray/auth_token


def ray_cluster(port: int):
    """Start a head and a second node on loopback (1 CPU each); return (address, stop)."""
    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    addr = f"127.0.0.1:{port}"
    env = {**os.environ, **RAY_ENV}
    subprocess.run([ray, "get-auth-token", "--generate"], capture_output=True, env=env)
    subprocess.run([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1",
                    "--include-dashboard", "false", "--disable-usage-stats"], check=True, capture_output=True, env=env)
    subprocess.run([ray, "start", "--address", addr, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                    "--disable-usage-stats"], check=True, capture_output=True, env=env)
    return addr, lambda: subprocess.run([ray, "stop", "--force"], capture_output=True, env=env)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--chips", type=int, default=8)
    ap.add_argument("--test-limit", type=int, default=1000)
    ap.add_argument("--ray-cluster", action="store_true", help="also run on a two-node Ray cluster on loopback")
    ap.add_argument("--out", default="results/bench_engines.json")
    args = ap.parse_args(argv)
    try:
        import ray  # noqa: F401
        have_ray = True
    except ImportError:
        have_ray = False
    runs = [("serial (default threads)", []), ("serial, 1 thread", ["--threads", "1"]),
            ("2 worker processes", ["--workers", "2"])]
    if have_ray:
        runs.append(("ray, local, 2 CPUs", ["--engine", "ray", "--workers", "2", "--threads", "1"]))
    tmp = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    res, blobs = {}, {}
    stop = None
    try:
        if have_ray and args.ray_cluster:
            runs.append(("ray, 2-node cluster on loopback", ["--engine", "ray", "--address", "CLUSTER", "--threads", "1"]))
        for i, (name, flags) in enumerate(runs):
            if "CLUSTER" in flags:
                addr, stop = ray_cluster(6399)
                flags = [addr if f == "CLUSTER" else f for f in flags]
            out = tmp / f"run{i}"
            res[name] = {"flags": flags, "wall_s": evaluate(args, out, *flags, env=RAY_ENV if "--address" in flags else None)}
            blobs[name] = (out / "evaluate.json").read_bytes()
            print(f"{name:<34} {res[name]['wall_s']:7.1f} s", flush=True)
    finally:
        if stop:
            stop()
        shutil.rmtree(tmp, ignore_errors=True)
    first = next(iter(blobs.values()))
    identical = all(b == first for b in blobs.values())
    base = res["serial (default threads)"]["wall_s"]
    one = res["serial, 1 thread"]["wall_s"]
    for r in res.values():
        r["speedup_vs_serial_default"] = base / r["wall_s"]
        r["speedup_vs_serial_1_thread"] = one / r["wall_s"]
    write_json(args.out, {"script": "bench_engines", **machine_info(), "chips": args.chips,
                          "test_limit": args.test_limit, "runs": res, "identical_results": identical,
                          "ray_installed": have_ray})
    print(f"evaluate.json byte-identical on every engine: {identical}")
    w2 = res["2 worker processes"]
    print(f"2 workers: {w2['speedup_vs_serial_default']:.2f}x the serial default, {w2['speedup_vs_serial_1_thread']:.2f}x "
          "serial with 1 thread")
    print(f"wrote {args.out}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
