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

from imcsim import crossbar_layers


def pin_threads(n: int) -> int:
    """Use exactly ``n`` torch threads (intra- and inter-op) and say so."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    return torch.get_num_threads()


MALLOC_CHOICES = ("default", "tuned")


def add_malloc_option(ap) -> None:
    ap.add_argument("--malloc", choices=MALLOC_CHOICES, default="default",
                    help="glibc malloc settings of this process (and its children): its own (default), or "
                         "those the imcsim command and its study workers run with (imcsim.allocator)")


def apply_malloc(choice: str) -> str:
    """Set the chosen malloc settings; the setting in force, for the JSON ("tuned" falls
    back to "default" where glibc's mallopt is not there)."""
    if choice == "tuned":
        from imcsim.allocator import tune_malloc

        return "tuned" if tune_malloc() else "default"
    return "default"


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


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (e.g. VmRSS) in MB, or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): VmHWM, which (unlike ru_maxrss) a
    child does not inherit from the parent that forked it."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Resident memory of this process now (MB): VmRSS."""
    rss = _status_mb("VmRSS")
    if rss is None:
        raise OSError("no VmRSS in /proc/self/status")
    return rss


def reset_peak_rss() -> bool:
    """Restart this process's peak (VmHWM) at its resident memory now (Linux
    ``/proc/self/clear_refs``); False where that cannot be done (the peak then counts from
    the process's start)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def settle() -> None:
    """Free what is unreachable, hand the freed heap back to the kernel
    (:func:`imcsim.allocator.trim_malloc`) and restart the peak (VmHWM) at the resident
    memory now."""
    import gc

    from imcsim.allocator import trim_malloc

    gc.collect()
    trim_malloc()
    reset_peak_rss()


def child_peak(args: list[str], env: dict | None = None) -> dict:
    """Run ``python args...`` in a fresh process that prints one JSON line; return it."""
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(f"child {args} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def floor_fn(chip, x, batch):
    """The bare matmuls of every read the chip makes on x: per layer and batch, (tiles,
    reads, rows) @ (tiles, rows, columns) with the layer's own matrices, reads = vectors x
    input planes (or, for a lossless noise-free read-out, vectors @ the mapped weights).
    Every read is counted, whichever way the layer is entered (``TiledMatrix._compute``:
    a linear layer's vectors and a convolution's patches; ``conv_units``: an exact
    convolution's output positions); the random 0/1 inputs are multiplied a few million
    elements at a time (one buffer per layer), as the chip's own reads are chunked."""
    from imcsim.crossbar import TiledMatrix

    layers = {id(m) for _, m in crossbar_layers(chip)}
    shapes = []

    def record(m, V):
        if m.read_path == "linear":  # a lossless, noise-free read-out: one matmul of the mapped weights
            shapes.append((m.W_lin, V))
        else:
            planes = 1 if m.input_spec.kind == "spike" else m.driver().bits
            shapes.append((m.G, V * planes))

    compute, conv_units = TiledMatrix._compute, TiledMatrix.conv_units

    def counted_compute(self, x_int, keys, repeat=1):
        if id(self) in layers:
            record(self, x_int.shape[0] * repeat)
        return compute(self, x_int, keys, repeat)

    def counted_conv(self, x_int, kernel, stride, padding, dilation, repeat=1):
        units = conv_units(self, x_int, kernel, stride, padding, dilation, repeat)
        if id(self) in layers:
            record(self, units.shape[0] * units.shape[2] * units.shape[3] * repeat)
        return units

    TiledMatrix._compute, TiledMatrix.conv_units = counted_compute, counted_conv
    try:
        with torch.no_grad():
            chip(x[:batch])
    finally:
        TiledMatrix._compute, TiledMatrix.conv_units = compute, conv_units
    per_batch = []
    for G, reads in shapes:
        chunk = max(1, min(reads, (1 << 22) // max(1, G.shape[0] * G.shape[1])))
        inp = torch.bernoulli(torch.full((G.shape[0], chunk, G.shape[1]), 0.5, dtype=G.dtype, device=G.device))
        per_batch.append((G, inp, reads))
    n_batches = x.shape[0] / batch

    def run():
        for _ in range(max(1, int(round(n_batches)))):
            for G, inp, reads in per_batch:
                c = inp.shape[1]
                for s in range(0, reads, c):
                    torch.bmm(inp[:, :min(c, reads - s)], G)
        if x.is_cuda:
            torch.cuda.synchronize()
    return run


def run_batches(model, x, batch: int) -> None:
    """Forward all of ``x`` through ``model`` in batches, without gradients (waiting for
    a GPU to finish, so that the time is the work's)."""
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            model(x[s:s + batch])
    if x.is_cuda:
        torch.cuda.synchronize()


def load_mnist_or_exit(ap, data_dir):
    """The MNIST test split from ``data_dir``, or one line naming the problem and exit 2
    (``ap.error``) -- before any work, instead of a traceback after it."""
    from imcsim.datasets import load_dataset
    from imcsim.errors import DataError

    try:
        return load_dataset("mnist", data_dir)
    except DataError as e:
        ap.error(f"{e}; pass --data-dir DIR, the MNIST test split's IDX files (this project's: ../shared/data/mnist-test)")


CIFAR_ZOO = ("vgg9", "vgg16", "resnet19")


def check_models(ap, models) -> None:
    """Exit 2 with one line (``ap.error``) if ``--models`` names a network outside the CIFAR-size zoo."""
    unknown = [m for m in models if m not in CIFAR_ZOO]
    if unknown:
        ap.error(f"--models: unknown {unknown[0]!r}; choose from {', '.join(CIFAR_ZOO)}")


def measure_each(args, res: dict, measure) -> None:
    """``measure(args, name, kind)`` for every ``--models`` x ``--kinds`` (a ``--checkpoint``:
    itself, its kind recorded), each result appended to ``res["results"]`` and ``res``
    written to ``--out`` at once, so what is measured survives an interrupted run."""
    from imcsim.io import write_json

    for name in ([args.checkpoint] if args.checkpoint else args.models):
        for kind in ([None] if args.checkpoint else args.kinds):
            res["results"].append(measure(args, name, kind))
            write_json(args.out, res)
    print(f"wrote {args.out}")


def zoo_or_checkpoint(checkpoint, data_dir, name: str, kind: str, width: float, calibration: int, n_images: int):
    """(float model in eval mode, calibration images, test images, what it is): a trained
    checkpoint with its recorded dataset, or the untrained zoo model ``name`` (seed 0) on
    ``n_images`` uniform random CIFAR-shaped images (generator seed 1)."""
    if checkpoint:
        from imcsim.app.workflows import checkpoint_data
        from imcsim.checkpoints import load_checkpoint

        net, meta = load_checkpoint(checkpoint)
        ds = checkpoint_data(meta, data_dir, net)
        return net.eval(), ds.x_train[:calibration], ds.x_test, f"checkpoint {checkpoint}"
    from imcsim.models import ZOO

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = ZOO[name](kind=kind, timesteps=4, width=width)
    x = torch.rand(calibration + n_images, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return net.eval(), x[:calibration], x[calibration:], f"untrained {name} (seed 0), random images"
