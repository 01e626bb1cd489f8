"""The end-to-end table of scripts/bench_e2e.py on a CUDA GPU (float model, ideal, rram with
and without wires; seconds per image, ratios to float and to the mapped-matmul floor, peak
GPU memory). CI has no GPU: without one this script says so and measures nothing.

    python scripts/bench_gpu.py [--checkpoint CK] [--batch 1024] [--out results/bench_gpu.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device on this machine; nothing was measured")
        return 0
    import bench_e2e

    if not any(a.startswith("--out") for a in argv):
        argv += ["--out", "results/bench_gpu.json"]
    return bench_e2e.main(["--device", "cuda", "--no-memory", *argv])


if __name__ == "__main__":
    sys.exit(main())
