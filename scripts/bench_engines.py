"""Benchmark: one `imcsim evaluate` study on each engine -- wall time and identical results.

Runs `imcsim evaluate --chips 8` on a checkpoint (e.g. the MNIST conv SNN of the README) with
`--workers 1` (the serial engine, at its default threads: all cores) and `--workers 1
--threads 1`, `--workers 2` (2 local processes, 1 thread each) and, where Ray is installed,
a local Ray instance with 2 CPUs and (--ray-cluster) a two-node Ray cluster on loopback
(`ray start --head` plus a second `ray start` node, both on this machine, 1 CPU each).
--repeat interleaved rounds; min and median wall times (whole commands, start-up included)
and speed-ups. Every run's evaluate.json must be byte-identical.

    python scripts/bench_engines.py --checkpoint runs/mnist-snn/model.pt [--test-limit 1000]
        [--repeat 3] [--ray-cluster] [--out results/bench_engines.json]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import interleaved  # noqa: E402

from imcsim.app.engines import default_threads  # noqa: E402
from imcsim.io import machine_info, write_json  # noqa: E402


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
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (min and median are reported)")
    ap.add_argument("--out", default="results/bench_engines.json")
    args = ap.parse_args(argv)
    try:
        import ray  # noqa: F401
        have_ray = True
    except ImportError:
        have_ray = False
    threads = default_threads(1)
    runs = [(f"--workers 1 (serial, {threads} threads)", ["--workers", "1"]),
            ("--workers 1 --threads 1", ["--workers", "1", "--threads", "1"]),
            ("--workers 2 (1 thread each)", ["--workers", "2"])]
    if have_ray:
        runs.append(("ray, local, 2 CPUs", ["--engine", "ray", "--workers", "2", "--threads", "1"]))
    if have_ray and args.ray_cluster:
        runs.append(("ray, 2-node cluster on loopback", ["--engine", "ray", "--address", "CLUSTER", "--threads", "1"]))
    tmp = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    blobs = []
    stop = None

    def one_run(name, flags):
        out = tmp / f"run{len(blobs)}"
        wall = evaluate(args, out, *flags, env=RAY_ENV if "--address" in flags else None)
        blobs.append((out / "evaluate.json").read_bytes())
        print(f"{name:<34} {wall:7.1f} s", flush=True)

    try:
        if any("CLUSTER" in flags for _, flags in runs):
            addr, stop = ray_cluster(6399)
            runs = [(n, [addr if f == "CLUSTER" else f for f in flags]) for n, flags in runs]
        # interleaved rounds: machine noise hits every engine alike
        t = interleaved({name: (lambda n=name, f=flags: one_run(n, f)) for name, flags in runs}, args.repeat, warmup=0)
    finally:
        if stop:
            stop()
        shutil.rmtree(tmp, ignore_errors=True)
    identical = all(b == blobs[0] for b in blobs)
    res = {name: {"flags": flags, "wall_s": t[name]} for name, flags in runs}
    w1, w1t1, w2 = (res[n]["wall_s"] for n, _ in runs[:3])
    for r in res.values():
        r["speedup_vs_workers_1"] = {k: w1[k] / r["wall_s"][k] for k in ("min", "median")}
        r["speedup_vs_workers_1_thread_1"] = {k: w1t1[k] / r["wall_s"][k] for k in ("min", "median")}
    write_json(args.out, {"script": "bench_engines", **machine_info(), "chips": args.chips,
                          "test_limit": args.test_limit, "repeat": args.repeat, "serial_default_threads": threads,
                          "runs": res, "identical_results": identical, "ray_installed": have_ray})
    print(f"\n{'run':<34} {'min s':>7} {'median s':>9} {'speed-up vs --workers 1 (min / median)':>40}")
    for name, _ in runs:
        r = res[name]
        print(f"{name:<34} {r['wall_s']['min']:7.1f} {r['wall_s']['median']:9.1f} "
              f"{r['speedup_vs_workers_1']['min']:17.2f}x / {r['speedup_vs_workers_1']['median']:.2f}x")
    print(f"evaluate.json byte-identical on every engine and repeat: {identical}")
    print(f"--workers 2 vs --workers 1 ({threads} threads): {w1['min'] / w2['min']:.2f}x (min), "
          f"{w1['median'] / w2['median']:.2f}x (median); vs 1 thread: {w1t1['min'] / w2['min']:.2f}x (min); "
          f"one process's gain from {threads} threads: {w1t1['min'] / w1['min']:.2f}x (min)")
    print(f"wrote {args.out}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
