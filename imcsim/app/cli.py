"""The ``imcsim`` command line.

    imcsim demo                      # the main job on the embedded 8x8 digits
    imcsim train / import / evaluate / energy / timesteps / compare ...

Errors in what the user gave (flags, files, configs, data directories) exit with code 2 and
one line on stderr naming the problem; the machine's errors (a full disk) exit with 1 and one
line naming the file; Ctrl-C exits with 130 (SIGTERM 143) and leaves no partial output
folder -- a study's finished tasks stay in its journal for ``--resume``.
"""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import ConfigError, DataError

_EXAMPLES = """examples:
  imcsim demo --out demo-report
  imcsim train --dataset mnist --data-dir ../shared/data/mnist-test --model convnet --kind snn --timesteps 4 \\
               --loss per_timestep --epochs 12 --out runs/snn
  imcsim finetune --checkpoint runs/snn/model.pt --hardware rram --epochs 3 --out runs/snn-hat
  imcsim evaluate --checkpoint runs/snn/model.pt --preset rram --chips 8 --workers 2 \\
               --sweep device.variation=0,0.05,0.1 --out runs/eval
  imcsim energy --checkpoint runs/snn/model.pt --preset rram --analytical --out runs/energy
  imcsim timesteps --checkpoint runs/snn/model.pt --preset rram-ideal,rram --out runs/dt
  imcsim compare --snn runs/snn/model.pt --qnn runs/qnn/model.pt --out runs/cmp
  imcsim import model.nir --dataset event-mnist --data-dir ../shared/data/mnist-test --out runs/nir

seeds: --seed S in evaluate / energy / timesteps / compare is the base chip seed: chip instance c
is seed S + c (its programming variation, faults and read-noise key); default: the hardware
config's seed. In train it seeds the weights and the data order; in demo both. Hardware-aware
training (--hardware) runs on training chips 2**31 + step, which evaluation refuses.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints the usage too)
        raise SystemExit(_fail(f"{self.prog}: {message}"))


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless the text already states it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or not action.option_strings \
                or action.dest == "help" or action.required:
            return text
        d = action.default
        shown = ("off" if d is False else "on" if d is True else "none" if d is None
                 else ",".join(map(str, d)) if isinstance(d, (list, tuple)) else str(d))
        return f"{text} (default: {shown})"


def _fail(msg: str, code: int = 2) -> int:
    print(f"imcsim: error: {msg}" if not msg.startswith("imcsim") else f"{msg}", file=sys.stderr)
    return code


def _int_in(name, lo, hi=None):
    def f(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{name} must be in [{lo}, {hi}], got {v}" if hi is not None
                                             else f"{name} must be >= {lo}, got {v}")
        return v
    return f


def _float_in(name, lo, hi):
    def f(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {s!r}") from None
        if not math.isfinite(v) or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be in [{lo}, {hi}], got {s}")
        return v
    return f


def _platforms(s):
    """--platforms: comma-separated names out of imc, systolic, neuromorphic."""
    from ..cost.platforms import PLATFORMS

    names = [x.strip() for x in s.split(",") if x.strip()]
    bad = [x for x in names if x not in PLATFORMS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"--platforms must be comma-separated names out of {', '.join(PLATFORMS)}, "
                                         f"got {s!r}")
    if "imc" not in names:
        names.insert(0, "imc")  # the crossbar chip is always measured: it supplies the activity
    return tuple(p for p in PLATFORMS if p in names)


def _number_list(name, kind, lo, hi, what):
    """Comma-separated finite numbers of ``kind`` within [lo, hi]; ``what`` names them."""
    def f(s):
        try:
            v = [kind(x) for x in s.split(",")]
        except ValueError:
            v = []
        if not v or any(not math.isfinite(x) or not lo <= x <= hi for x in v):
            raise argparse.ArgumentTypeError(f"{name} must be comma-separated {what}, got {s!r}")
        return v
    return f


def build_parser() -> argparse.ArgumentParser:
    from ..hardware import MAX_SEED
    from .experiments import CALIBRATION_SAMPLES, DEFAULT_THETAS
    from ..datasets import DATASETS
    from .workflows import DEFAULT_TECH, MODELS

    p = _Parser(prog="imcsim", description="Spiking and quantized neural networks on simulated analog IMC crossbars.",
                epilog=_EXAMPLES, formatter_class=_Help)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    def command(name, help):
        return sub.add_parser(name, help=help, description=help, formatter_class=_Help)

    def out_opts(sp):
        sp.add_argument("--out", required=True, help="output folder (must not exist, unless --force; required)")
        sp.add_argument("--force", action="store_true", help="replace an existing imcsim output folder")
        sp.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where tensors live")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    def study_opts(sp, seed_help="base chip seed: chip instance c is seed + c (default: the hardware config's seed)"):
        sp.add_argument("--seed", type=_int_in("--seed", 0, MAX_SEED), default=None, help=seed_help)
        sp.add_argument("--engine", choices=("serial", "processes", "ray"), default="serial",
                        help="who runs the study's tasks: this process, local worker processes, or Ray")
        sp.add_argument("--workers", type=_int_in("--workers", 1, 1024), default=1,
                        help="worker processes (> 1 implies --engine processes; with ray: CPUs of a local instance)")
        sp.add_argument("--address", help="Ray cluster address (host:port) for --engine ray (default: a local instance)")
        sp.add_argument("--threads", type=_int_in("--threads", 1, 1024), default=None,
                        help="torch threads per task (default: CPU cores / workers)")
        sp.add_argument("--retries", type=_int_in("--retries", 0, 100), default=2,
                        help="times a failed task (or one whose worker died) is run again")
        sp.add_argument("--resume", action="store_true",
                        help="reuse the finished tasks of an interrupted run with the same --out and inputs")
        sp.add_argument("--calibration-samples", type=_int_in("--calibration-samples", 1), default=CALIBRATION_SAMPLES,
                        help="training samples used to calibrate input and ADC ranges")
        sp.add_argument("--batch-size", type=_int_in("--batch-size", 1), default=256, help="samples per forward pass")

    def hw_opts(sp, default="rram", several=False):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--config", help="hardware config TOML file (default: use --preset)")
        # default None (resolved in _run): argparse only sees a --config/--preset clash when the
        # value given is not the default object itself
        g.add_argument("--preset", default=None,
                       help=("comma-separated hardware presets" if several else "hardware preset")
                       + f" (ideal, rram, rram-ideal, spikesim, ...; default: {default})")
        sp.set_defaults(preset_default=default)

    def data_opts(sp):
        sp.add_argument("--data-dir", help="dataset directory (default: the one recorded in the checkpoint)")
        sp.add_argument("--test-limit", type=_int_in("--test-limit", 1), default=None,
                        help="use only the first N test samples (default: all)")

    def hat_opts(sp):
        sp.add_argument("--hardware", default=None,
                        help="train through this simulated chip (a preset name or a hardware TOML file): every step "
                             "programs a fresh training chip and runs forward on it (default: float training)")
        sp.add_argument("--hardware-mode", choices=("chip", "weights"), default="chip",
                        help="chip: the whole crossbar path (variation, faults, read noise, wires, ADC); weights: only "
                             "the chip's weight quantiser (QAT of the crossbar weights)")

    def regularisation_opts(sp):
        """Training options shared by train and finetune."""
        sp.add_argument("--activity-lambda", type=_float_in("--activity-lambda", 0.0, 1e6), default=0.0,
                        help="weight of the spike-count / activation penalty")
        sp.add_argument("--weight-noise", type=_float_in("--weight-noise", 0.0, 10.0), default=0.0,
                        help="noise-aware training: relative weight noise sigma")
        sp.add_argument("--shift", type=_int_in("--shift", 0, 64), default=0,
                        help="augmentation: move every training image by up to N pixels along each axis "
                             "(default 0: off)")

    def tech_opt(sp):
        sp.add_argument("--tech", default=DEFAULT_TECH, help="technology preset name or TOML path (per-event costs, "
                        "areas, static power)")

    d = command("demo", "the main job on the embedded 8x8 digits: train an SNN and its QNN twin, accuracy under "
                        "non-idealities, energy/latency/area, static vs dynamic timesteps, SNN vs QNN")
    out_opts(d)
    study_opts(d, seed_help="seed of the training runs and base chip seed (chip c is seed + c)")
    d.add_argument("--timesteps", type=_int_in("--timesteps", 1, 64), default=4, help="SNN timesteps T")
    d.add_argument("--chips", type=_int_in("--chips", 1), default=3, help="chip instances per non-ideal point")

    t = command("train", "train an SNN (BPTT) or QNN (quantisation-aware) and save a checkpoint")
    out_opts(t)
    t.add_argument("--seed", type=_int_in("--seed", 0, MAX_SEED), default=0,
                   help="seed of the weight initialisation and the data order")
    t.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits / event-digits are embedded; the others read --data-dir (mnist32: MNIST padded to "
                        "3x32x32 for the CIFAR-size models; cifar10 / cifar100: the binary releases; nmnist: "
                        "N-MNIST's event files)")
    t.add_argument("--data-dir", help="folder with the dataset files (default: none; needed for mnist and friends)")
    t.add_argument("--download", action="store_true", help="download the dataset into --data-dir if missing")
    t.add_argument("--model", choices=MODELS, default="mlp", help="zoo architecture")
    t.add_argument("--kind", choices=("snn", "qnn"), default="snn", help="spiking network or quantised twin")
    t.add_argument("--timesteps", type=_int_in("--timesteps", 1, 64), default=None,
                   help="SNN timesteps; a QNN gets ceil(log2(T+1)) bits (default: 4, or the event dataset's frames)")
    t.add_argument("--bits", type=_int_in("--bits", 1, 16), default=None,
                   help="QNN activation bits (default: ceil(log2(T+1)); not for SNNs)")
    t.add_argument("--neuron", choices=("if", "lif"), default="if", help="spiking neuron")
    t.add_argument("--encoding", choices=("direct", "rate"), default="direct", help="how a static image enters an SNN")
    t.add_argument("--hidden", type=_number_list("--hidden", int, 1, 1 << 20, "integers >= 1"), default=None,
                   help="hidden widths of mlp / convnet, e.g. 256,128 (default: 128)")
    t.add_argument("--channels", type=_number_list("--channels", int, 1, 1 << 16, "integers >= 1"), default=None,
                   help="conv channels per stage of convnet / resnet (default: 16,32)")
    t.add_argument("--width", type=_float_in("--width", 1e-3, 8.0), default=None,
                   help="width multiplier of vgg9 / vgg16 / resnet19: every channel and hidden width scaled "
                        "(default: 1, the published widths)")
    t.add_argument("--epochs", type=_int_in("--epochs", 1), default=15, help="passes over the training data")
    t.add_argument("--batch-size", type=_int_in("--batch-size", 1), default=64, help="samples per optimiser step")
    t.add_argument("--lr", type=_float_in("--lr", 1e-8, 10.0), default=2e-3, help="Adam learning rate (cosine decay)")
    t.add_argument("--loss", choices=("mean", "per_timestep", "per_timestep_cumulative"), default="per_timestep",
                   help="SNN loss over per-timestep logits (QNNs always use mean)")
    regularisation_opts(t)
    t.add_argument("--holdout", type=_int_in("--holdout", 0), default=None,
                   help="last N training samples held out for theta choice (default: 1/8 of them)")
    t.add_argument("--train-limit", type=_int_in("--train-limit", 1), default=None,
                   help="use only the first N training samples (default: all)")
    t.add_argument("--test-limit", type=_int_in("--test-limit", 1), default=None,
                   help="use only the first N test samples (default: all)")
    hat_opts(t)

    f = command("finetune", "continue training a checkpoint on its data, e.g. through a simulated chip (hardware-aware "
                            "training) or with its weight quantiser (QAT)")
    out_opts(f)
    f.add_argument("--checkpoint", required=True, help="checkpoint from imcsim train or import (required)")
    f.add_argument("--data-dir", help="dataset directory (default: the one recorded in the checkpoint)")
    f.add_argument("--seed", type=_int_in("--seed", 0, MAX_SEED), default=0, help="seed of the data order")
    f.add_argument("--epochs", type=_int_in("--epochs", 1), default=3, help="passes over the training data")
    f.add_argument("--batch-size", type=_int_in("--batch-size", 1), default=64, help="samples per optimiser step")
    f.add_argument("--lr", type=_float_in("--lr", 1e-8, 10.0), default=5e-4,
                   help="Adam learning rate (one-cycle schedule; default 5e-4, a quarter of training's)")
    f.add_argument("--loss", choices=("mean", "per_timestep", "per_timestep_cumulative"), default=None,
                   help="SNN loss (default: the checkpoint's; QNNs always use mean)")
    regularisation_opts(f)
    f.add_argument("--distill", type=_float_in("--distill", 0.0, 1.0), default=0.0,
                   help="weight W of distillation from the checkpoint's own float outputs: loss = (1 - W) task loss "
                        "+ W KL divergence at temperature 2 (default 0: off; 0.5 helps hardware-aware fine-tuning)")
    hat_opts(f)

    i = command("import", "turn a NIR graph into an imcsim checkpoint (for evaluate, energy, timesteps, compare)")
    i.add_argument("graph", help="the .nir file")
    out_opts(i)
    i.add_argument("--dataset", choices=("event-digits", "event-mnist", "nmnist"), default="event-digits",
                   help="event dataset matching the graph's input: event-digits (2x14x14, embedded), event-mnist "
                        "(2x34x34, generated from MNIST IDX files in --data-dir) or nmnist (2x34x34, N-MNIST's "
                        "binary event files in --data-dir)")
    i.add_argument("--data-dir", help="MNIST IDX folder for event-mnist, N-MNIST folder for nmnist (default: none)")
    i.add_argument("--timesteps", type=_int_in("--timesteps", 1, 1024), default=None,
                   help="timesteps per sample (default: the dataset's frames)")
    i.add_argument("--dt", type=_float_in("--dt", 1e-12, 1e6), default=1.0,
                   help="Euler step of the graph's continuous-time neurons")
    i.add_argument("--num-classes", type=_int_in("--num-classes", 2), default=None,
                   help="output classes (default: the dataset's)")
    i.add_argument("--holdout", type=_int_in("--holdout", 0), default=0,
                   help="last N training samples held out for theta choice")

    def study_command(name, help, tech=True, **hw):
        """A command that studies a checkpoint on hardware: output, study, hardware, data (and
        technology) options."""
        sp = command(name, help)
        out_opts(sp)
        study_opts(sp)
        hw_opts(sp, **hw)
        data_opts(sp)
        if tech:
            tech_opt(sp)
        return sp

    e = study_command("evaluate", "accuracy under non-idealities over chip instances, optionally swept", tech=False)
    e.add_argument("--checkpoint", required=True, help="checkpoint from imcsim train or import (required)")
    e.add_argument("--sweep", help="FIELD=V1,V2,... e.g. device.variation=0,0.05,0.1 or adc.bits=3,4,6 "
                   "(default: no sweep)")
    e.add_argument("--chips", type=_int_in("--chips", 1), default=3, help="chip instances (seeds) per point")
    e.add_argument("--attribution", action="store_true",
                   help="also the accuracy with each non-ideality of the hardware alone and each left out (variation, "
                        "read noise, stuck-at, wires, on/off ratio, ADC resolution, weight quantisation), over the "
                        "same chips: table, CSV and plot")
    e.add_argument("--slices", type=_int_in("--slices", 1), default=1,
                   help="split each row's test samples into this many tasks, for more workers than rows "
                        "(each slice programs and calibrates its own copy of the chip; same results)")

    n = study_command("energy", "energy, latency, area, EDP and EDAP per inference, with breakdowns")
    n.add_argument("--checkpoint", required=True, help="checkpoint from imcsim train or import (required)")
    n.add_argument("--analytical", action="store_true",
                   help="also give the analytical estimate at the measured per-layer activity, and how it differs")
    n.add_argument("--spike-rate", type=_float_in("--spike-rate", 0.0, 1.0), default=None,
                   help="skip the simulation: analytical estimate at this assumed activity on every layer "
                        "(default: measure the run)")
    n.add_argument("--latency-mode", choices=("sequential", "pipelined"), default="sequential",
                   help="layers one after another, or overlapped at timestep granularity")

    s = study_command("timesteps", "static vs dynamic timesteps (entropy exit) on one or more hardware configs",
                      default="rram-ideal,rram", several=True)
    s.add_argument("--checkpoint", required=True, help="SNN checkpoint (required)")
    s.add_argument("--thetas", type=_number_list("--thetas", float, 1e-9, 1.0, "numbers in (0, 1]"),
                   default=list(DEFAULT_THETAS), help="thetas to sweep")
    s.add_argument("--tolerance", type=_float_in("--tolerance", 0.0, 100.0), default=0.1,
                   help="allowed accuracy loss (pp) on the held-out split when choosing theta")
    s.add_argument("--rule", choices=("entropy", "entropy_mean", "max_confidence"), default="entropy",
                   help="exit rule")

    c = study_command("compare", "SNN vs QNN on the same hardware: ratios and break-even spike rate")
    c.add_argument("--snn", required=True, help="SNN checkpoint (required)")
    c.add_argument("--qnn", required=True, help="QNN checkpoint (required)")
    c.add_argument("--platforms", type=_platforms, default=("imc", "systolic", "neuromorphic"),
                   help="comma-separated platforms to price both networks on: imc (the crossbar chip), systolic "
                        "(SATA-style digital array), neuromorphic (analytical digital core); default: all three")
    c.add_argument("--neuromorphic", default="typical",
                   help="neuromorphic setting: minimum, typical, worst-sparse, or a TOML file (default typical)")
    return p


def _one_line_warnings() -> None:
    """imcsim's own warnings print as one line (not Python's file:line + source echo)."""
    import warnings

    from ..errors import CalibrationWarning

    if getattr(warnings.formatwarning, "_imcsim", False):
        return
    base = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):
        if issubclass(category, CalibrationWarning):
            return f"imcsim: warning: {message}\n"
        return base(message, category, filename, lineno, line)

    fmt._imcsim = True
    warnings.formatwarning = fmt


def main(argv=None) -> int:
    _one_line_warnings()
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
        parser.print_help(sys.stderr)
        return _fail("no command given (demo, train, finetune, import, evaluate, energy, timesteps, compare)")
    import functools
    import signal

    from .outputs import OutputDir
    from .study import StudyError

    # Remember a Ctrl-C / SIGTERM even if the KeyboardInterrupt lands somewhere that
    # swallows it (an object's finalizer): the output folder then is not committed either.
    interrupted = []

    def on_signal(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    if hasattr(signal, "SIGXFSZ"):  # a file-size limit (ulimit -f): an error we report, not a core dump
        old[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    inputs = [getattr(args, k, None) for k in ("checkpoint", "snn", "qnn", "data_dir", "config", "tech", "graph", "hardware")]
    try:
        return _run(args, functools.partial(OutputDir, cancelled=lambda: bool(interrupted), inputs=inputs,
                                             command=args.command))
    except KeyboardInterrupt:
        kept = " (finished tasks are kept: run again with --resume)" if getattr(args, "resume", None) is not None else ""
        if interrupted and interrupted[0] == signal.SIGTERM:
            return _fail(f"terminated; no results were written{kept}", 128 + signal.SIGTERM)
        return _fail(f"interrupted; no results were written{kept}", 130)
    except StudyError as e:
        return _fail(str(e), 1)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as e:
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except OSError as e:  # the machine, not the input: a full disk, a vanished folder, ...
        from ..io import storage_error

        e = storage_error(e, e.filename) if e.filename else e
        kept = "; finished tasks are kept: run again with --resume" if getattr(args, "resume", None) is not None else ""
        where = f" {e.filename!r}" if e.filename and e.filename not in str(e) else ""
        return _fail(f"{str(e).splitlines()[0]}{where}{kept}", 1)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _hardware_arg(value):
    """--hardware: a preset name, or a path to a hardware TOML file."""
    from . import workflows as w

    if value is None:
        return None
    from pathlib import Path

    if value.endswith(".toml") or Path(value).is_file():
        return w.hardware(value, None)
    return w.hardware(None, value)


def _run(args, OutputDir) -> int:
    from . import workflows as w
    from ..allocator import tune_malloc
    from ..cost.technology import Technology
    from .engines import make_engine

    progress = not args.quiet
    tune_malloc()  # freed tensor memory kept for reuse, not handed back to the kernel (imcsim.allocator)
    device = w.device_of(args.device)
    if args.command == "train":
        with OutputDir(args.out, args.force) as out:
            text = w.cmd_train(out, dataset=args.dataset, data_dir=args.data_dir, model=args.model, kind=args.kind,
                               timesteps=args.timesteps, bits=args.bits, neuron=args.neuron, hidden=args.hidden,
                               channels=args.channels, width=args.width, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               loss=args.loss if args.kind == "snn" else "mean", activity_lambda=args.activity_lambda,
                               weight_noise=args.weight_noise, shift=args.shift, holdout=args.holdout,
                               train_limit=args.train_limit,
                               test_limit=args.test_limit, encoding=args.encoding, seed=args.seed, device=device,
                               progress=progress, download=args.download, hardware=_hardware_arg(args.hardware),
                               hardware_mode=args.hardware_mode)
    elif args.command == "finetune":
        with OutputDir(args.out, args.force) as out:
            text = w.cmd_finetune(out, checkpoint=args.checkpoint, data_dir=args.data_dir, epochs=args.epochs,
                                  batch_size=args.batch_size, lr=args.lr, loss=args.loss,
                                  activity_lambda=args.activity_lambda, weight_noise=args.weight_noise,
                                  shift=args.shift, distill=args.distill, seed=args.seed,
                                  device=device, progress=progress, hardware=_hardware_arg(args.hardware),
                                  hardware_mode=args.hardware_mode)
    elif args.command == "import":
        with OutputDir(args.out, args.force) as out:
            text = w.cmd_import(out, graph=args.graph, dataset=args.dataset, data_dir=args.data_dir,
                                timesteps=args.timesteps, dt=args.dt, num_classes=args.num_classes, holdout=args.holdout)
    else:
        engine = make_engine(args.engine, args.workers, address=args.address, threads=args.threads,
                             retries=args.retries)
        opts = w.RunOptions(engine=engine, resume=args.resume, progress=progress, seed=args.seed,
                            batch_size=args.batch_size, device=device, calibration_samples=args.calibration_samples)
        tech = Technology.load(args.tech) if hasattr(args, "tech") else None
        if args.command == "demo":
            with OutputDir(args.out, args.force) as out:
                _journal_note(out, args)
                text = w.cmd_demo(out, opts, timesteps=args.timesteps, chips=args.chips,
                                  train_seed=args.seed if args.seed is not None else 0)
        elif args.command == "timesteps":
            hws = w.hardware_list(args.config, args.preset if args.preset is not None else args.preset_default)
            with OutputDir(args.out, args.force) as out:
                _journal_note(out, args)
                text = w.cmd_timesteps(out, opts, checkpoint=args.checkpoint, hws=hws, tech=tech, thetas=args.thetas,
                                       tolerance=args.tolerance, rule=args.rule, data_dir=args.data_dir,
                                       test_limit=args.test_limit)
        else:
            hw = w.hardware(args.config, args.preset if args.preset is not None else args.preset_default)
            common = dict(data_dir=args.data_dir, test_limit=args.test_limit)
            sweep = w.parse_sweep(getattr(args, "sweep", None))
            w.check_sweep(hw, sweep)
            with OutputDir(args.out, args.force) as out:
                _journal_note(out, args)
                if args.command == "evaluate":
                    text = w.cmd_evaluate(out, opts, checkpoint=args.checkpoint, hw=hw, sweep=sweep, chips=args.chips,
                                          slices=args.slices, attribution=args.attribution, **common)
                elif args.command == "energy":
                    text = w.cmd_energy(out, opts, checkpoint=args.checkpoint, hw=hw, tech=tech,
                                        analytical=args.analytical, spike_rate=args.spike_rate,
                                        latency_mode=args.latency_mode, **common)
                else:
                    text = w.cmd_compare(out, opts, snn_ck=args.snn, qnn_ck=args.qnn, hw=hw, tech=tech,
                                         platforms=args.platforms, neuromorphic=args.neuromorphic, **common)
    print(text)
    print(f"results in {args.out}")
    return 0


def _journal_note(out, args) -> None:
    if not args.resume and out.journal.exists():
        print(f"imcsim: note: {out.journal} holds finished tasks of an earlier, interrupted run with this --out; "
              "they are not used (pass --resume to reuse them)", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
