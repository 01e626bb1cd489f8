"""Check on a real network: noisy results do not depend on the batch size, and dynamic-timestep
exits equal the pure exit rule.

Converts a checkpoint onto the rram preset (read noise on), computes per-timestep logits of
the first N test images with batch sizes 256, 32 and 7 (bit-identical?), then runs the
step-by-step dynamic runner (which drops exited samples) at several thetas with batch sizes
256 and 7 and compares its exits and predictions with the pure rule applied to the
full-length logits. Prints and writes JSON.

    python scripts/check_batch_independence.py --checkpoint runs/mnist-snn/model.pt \
        --data-dir ../shared/data/mnist-test [--n 1000] [--out results/batch_independence.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imcsim  # noqa: E402
from imcsim.checkpoints import load_checkpoint  # noqa: E402
from imcsim.datasets import load_dataset  # noqa: E402
from imcsim.dynamic import exit_decisions, run_dynamic  # noqa: E402
from imcsim.io import machine_info, write_json  # noqa: E402
from imcsim.training import predict_logits  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="an SNN checkpoint (imcsim train)")
    ap.add_argument("--data-dir", default=None, help="dataset folder (default: the one recorded in the checkpoint)")
    ap.add_argument("--preset", default="rram", help="hardware preset (default rram)")
    ap.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", default="results/batch_independence.json", help="JSON output")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    net, meta = load_checkpoint(a.checkpoint)
    ds = load_dataset(meta["dataset"], a.data_dir or meta.get("data_dir"))
    x, y = ds.x_test[: a.n], ds.y_test[: a.n]
    chip = imcsim.convert(net, imcsim.HardwareConfig.preset(a.preset), calibration=ds.x_train[:128], seed=0)
    logits = {b: predict_logits(chip, x, batch_size=b) for b in (256, 32, 7)}
    res = {"checkpoint": str(a.checkpoint), "preset": a.preset, "n": int(y.shape[0]), **machine_info(),
           "bit_identical_logits_batch_256_32_7": all(torch.equal(logits[256], logits[b]) for b in (32, 7)),
           "accuracy_by_batch": {b: float((v.mean(0).argmax(-1) == y).float().mean() * 100) for b, v in logits.items()},
           "exit_agreement_pct": {}}
    T = logits[256].shape[0]
    for theta in (0.05, 0.1, 0.3):
        steps, preds = exit_decisions(logits[256], theta)
        res["exit_agreement_pct"][str(theta)] = {}
        for b in (256, 7):
            run = run_dynamic(chip, x, theta, T, y=y, batch_size=b)
            same = (run.exit_steps == steps) & (run.predictions == preds)
            res["exit_agreement_pct"][str(theta)][str(b)] = float(same.float().mean() * 100)
    print(json.dumps(res, indent=1))
    write_json(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
