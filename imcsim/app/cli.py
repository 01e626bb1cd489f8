"""The ``imcsim`` command line.

    imcsim demo                      # the main job on the embedded 8x8 digits
    imcsim train ... / evaluate ... / energy ... / timesteps ... / compare ...

Errors in what the user gave (flags, files, configs, data directories) exit with code 2 and
one line on stderr naming the problem; Ctrl-C exits with 130 and leaves no partial output.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError, DataError

_EXAMPLES = """examples:
  imcsim demo --out demo-report
  imcsim train --dataset mnist --data-dir ../shared/data/mnist-test --model convnet --kind snn --timesteps 4 \\
               --loss per_timestep --epochs 12 --out runs/snn
  imcsim evaluate --checkpoint runs/snn/model.pt --preset rram --sweep device.variation=0,0.05,0.1 --out runs/eval
  imcsim energy --checkpoint runs/snn/model.pt --preset rram --tech spikesim-65nm-rram --out runs/energy
  imcsim timesteps --checkpoint runs/snn/model.pt --preset ideal,rram --out runs/dt
  imcsim compare --snn runs/snn/model.pt --qnn runs/qnn/model.pt --out runs/cmp
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints the usage too)
        raise SystemExit(_fail(f"{self.prog}: {message}"))


def _fail(msg: str, code: int = 2) -> int:
    print(f"imcsim: error: {msg}" if not msg.startswith("imcsim") else f"{msg}", file=sys.stderr)
    return code


def _int_at_least(name, lo):
    def f(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{name} must be >= {lo}, got {v}")
        return v
    return f


def _positive_int(name):
    return _int_at_least(name, 1)


def _nonneg_int(name):
    return _int_at_least(name, 0)


def _float_in(name, lo, hi):
    def f(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {s!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be in [{lo}, {hi}], got {v:g}")
        return v
    return f


def _number_list(name, kind, lo, hi, what):
    """Comma-separated numbers of ``kind`` within [lo, hi]; ``what`` names them in errors."""
    def f(s):
        try:
            v = [kind(x) for x in s.split(",") if x.strip()]
        except ValueError:
            v = []
        if not v or min(v) < lo or max(v) > hi:
            raise argparse.ArgumentTypeError(f"{name} must be comma-separated {what}, got {s!r}")
        return v
    return f


def _int_list(name):
    return _number_list(name, int, 1, float("inf"), "integers >= 1")


def _float_list(name):
    return _number_list(name, float, 0.0, 1.0, "numbers in [0, 1]")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="imcsim", description="Spiking and quantized neural networks on simulated analog IMC crossbars.",
                epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    def common(sp, hardware=True, data=True):
        sp.add_argument("--out", required=True, help="output folder (must not exist, unless --force)")
        sp.add_argument("--force", action="store_true", help="replace an existing output folder")
        sp.add_argument("--seed", type=_nonneg_int("--seed"), default=0, help="seed for everything random (default 0)")
        sp.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        if hardware:
            g = sp.add_mutually_exclusive_group()
            g.add_argument("--config", help="hardware config TOML file")
            g.add_argument("--preset", help="hardware preset name (ideal, rram; default rram)")
        if data:
            sp.add_argument("--data-dir", help="dataset directory (default: the one recorded in the checkpoint)")
            sp.add_argument("--test-limit", type=_positive_int("--test-limit"), help="use only the first N test samples")
            sp.add_argument("--batch-size", type=_positive_int("--batch-size"), default=256)

    d = sub.add_parser("demo", help="the main job on the embedded 8x8 digits (about 2 minutes on 2 cores)")
    common(d, hardware=False, data=False)
    d.add_argument("--timesteps", type=_positive_int("--timesteps"), default=4)
    d.add_argument("--chips", type=_positive_int("--chips"), default=3, help="chip instances per non-ideal point")

    t = sub.add_parser("train", help="train an SNN (BPTT) or QNN (QAT) and save a checkpoint")
    common(t, hardware=False, data=False)
    t.add_argument("--dataset", choices=("digits", "mnist", "fashion-mnist", "cifar10"), default="digits")
    t.add_argument("--data-dir", help="folder with the dataset files")
    t.add_argument("--download", action="store_true", help="download the dataset into --data-dir if missing")
    t.add_argument("--model", choices=("mlp", "convnet"), default="mlp")
    t.add_argument("--kind", choices=("snn", "qnn"), default="snn")
    t.add_argument("--timesteps", type=_positive_int("--timesteps"), default=4, help="SNN timesteps (QNN: sets default bits)")
    t.add_argument("--bits", type=_positive_int("--bits"), help="QNN activation bits (default ceil(log2(T+1)))")
    t.add_argument("--neuron", choices=("if", "lif"), default="if")
    t.add_argument("--encoding", choices=("direct", "rate"), default="direct")
    t.add_argument("--hidden", type=_int_list("--hidden"), default=[128], help="hidden widths, e.g. 256,128")
    t.add_argument("--channels", type=_int_list("--channels"), default=[16, 32], help="conv channels per stage")
    t.add_argument("--epochs", type=_positive_int("--epochs"), default=15)
    t.add_argument("--batch-size", type=_positive_int("--batch-size"), default=64)
    t.add_argument("--lr", type=_float_in("--lr", 1e-8, 10.0), default=2e-3)
    t.add_argument("--loss", choices=("mean", "per_timestep", "per_timestep_cumulative"), default="per_timestep")
    t.add_argument("--activity-lambda", type=_float_in("--activity-lambda", 0.0, 1e6), default=0.0,
                   help="weight of the spike-count / activation penalty")
    t.add_argument("--weight-noise", type=_float_in("--weight-noise", 0.0, 10.0), default=0.0,
                   help="noise-aware training: relative weight noise sigma")
    t.add_argument("--holdout", type=_nonneg_int("--holdout"), help="last N training samples held out (default 1/8)")
    t.add_argument("--train-limit", type=_positive_int("--train-limit"), help="use only the first N training samples")
    t.add_argument("--test-limit", type=_positive_int("--test-limit"), help="use only the first N test samples")

    e = sub.add_parser("evaluate", help="accuracy under non-idealities, over chip instances, optionally swept")
    common(e)
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--sweep", help="FIELD=V1,V2,... e.g. device.variation=0,0.05,0.1 or adc.bits=3,4,6 or wires.r_row=0,2.5,5")
    e.add_argument("--chips", type=_positive_int("--chips"), default=3, help="chip instances (seeds) per point")

    n = sub.add_parser("energy", help="energy, latency and EDP per inference, with breakdown")
    common(n)
    n.add_argument("--checkpoint", required=True)
    n.add_argument("--tech", default="spikesim-65nm-rram", help="technology preset name or TOML path")
    n.add_argument("--analytical", action="store_true", help="estimate from shapes and --spike-rate (no simulation)")
    n.add_argument("--spike-rate", type=_float_in("--spike-rate", 0.0, 1.0), default=0.1)
    n.add_argument("--latency-mode", choices=("sequential", "pipelined"), default="sequential")

    s = sub.add_parser("timesteps", help="static vs dynamic timesteps (entropy exit)")
    common(s, hardware=False)
    s.add_argument("--checkpoint", required=True)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--config", help="hardware config TOML file")
    g.add_argument("--preset", default="ideal,rram", help="comma-separated presets (default ideal,rram)")
    s.add_argument("--tech", default="spikesim-65nm-rram")
    s.add_argument("--thetas", type=_float_list("--thetas"), help="thetas to sweep (default 0.02..0.8)")
    s.add_argument("--tolerance", type=_float_in("--tolerance", 0.0, 100.0), default=0.1,
                   help="allowed accuracy loss (pp) on the held-out split when choosing theta")
    s.add_argument("--rule", choices=("entropy", "entropy_mean", "max_confidence"), default="entropy")

    c = sub.add_parser("compare", help="SNN vs QNN on the same hardware: ratios and break-even spike rate")
    common(c)
    c.add_argument("--snn", required=True, help="SNN checkpoint")
    c.add_argument("--qnn", required=True, help="QNN checkpoint")
    c.add_argument("--tech", default="spikesim-65nm-rram")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 2
    import functools
    import signal

    from .outputs import OutputDir

    # Remember a Ctrl-C / SIGTERM even if the KeyboardInterrupt lands somewhere that
    # swallows it (an object's finalizer): the output folder then is not committed either.
    interrupted = []

    def on_signal(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    inputs = [getattr(args, k, None) for k in ("checkpoint", "snn", "qnn", "data_dir", "config", "tech", "graph")]
    try:
        return _run(args, functools.partial(OutputDir, cancelled=lambda: bool(interrupted), inputs=inputs,
                                             command=args.command))
    except KeyboardInterrupt:
        if interrupted and interrupted[0] == signal.SIGTERM:
            return _fail("terminated; no results were written", 128 + signal.SIGTERM)
        return _fail("interrupted; no results were written", 130)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as e:
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _run(args, OutputDir) -> int:
    from . import workflows as w
    from ..cost.technology import Technology

    progress = not args.quiet
    device = w.device_of(args.device)
    if args.command == "demo":
        with OutputDir(args.out, args.force) as out:
            text = w.cmd_demo(out, seed=args.seed, device=device, progress=progress, timesteps=args.timesteps, chips=args.chips)
    elif args.command == "train":
        with OutputDir(args.out, args.force) as out:
            text = w.cmd_train(out, dataset=args.dataset, data_dir=args.data_dir, model=args.model, kind=args.kind,
                               timesteps=args.timesteps, bits=args.bits, neuron=args.neuron, hidden=args.hidden,
                               channels=args.channels, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               loss=args.loss if args.kind == "snn" else "mean", activity_lambda=args.activity_lambda,
                               weight_noise=args.weight_noise, holdout=args.holdout, train_limit=args.train_limit,
                               test_limit=args.test_limit, encoding=args.encoding, seed=args.seed, device=device,
                               progress=progress, download=args.download)
    else:
        common = dict(data_dir=args.data_dir, test_limit=args.test_limit, batch_size=args.batch_size, seed=args.seed,
                      device=device, progress=progress)
        if args.command == "timesteps":
            hws = [w.hardware(args.config, None)] if args.config else [w.hardware(None, p.strip()) for p in args.preset.split(",")]
            tech = Technology.load(args.tech)
            with OutputDir(args.out, args.force) as out:
                text = w.cmd_timesteps(out, checkpoint=args.checkpoint, hws=hws, tech=tech,
                                       thetas=args.thetas or w.DEFAULT_THETAS, tolerance=args.tolerance, rule=args.rule, **common)
        else:
            hw = w.hardware(args.config, args.preset)
            with OutputDir(args.out, args.force) as out:
                if args.command == "evaluate":
                    text = w.cmd_evaluate(out, checkpoint=args.checkpoint, hw=hw, sweep=args.sweep, chips=args.chips, **common)
                elif args.command == "energy":
                    text = w.cmd_energy(out, checkpoint=args.checkpoint, hw=hw, tech=Technology.load(args.tech),
                                        analytical=args.analytical, spike_rate=args.spike_rate,
                                        latency_mode=args.latency_mode, **common)
                else:
                    text = w.cmd_compare(out, snn_ck=args.snn, qnn_ck=args.qnn, hw=hw, tech=Technology.load(args.tech), **common)
    print(text)
    print(f"results in {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
