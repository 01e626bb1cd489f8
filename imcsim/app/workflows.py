"""The `imcsim` commands as functions: each takes plain arguments and an :class:`OutputDir`,
runs its studies (:mod:`.experiments`) on the chosen engine, writes JSON / CSV / PNG /
Markdown into the folder and returns a short text summary for stdout.

Result files (``*.json`` apart from ``run.json``, ``*.csv``) depend only on the inputs, the
seeds and the options -- not on the engine, the worker count or the machine; ``run.json``
records how and where the run happened (engine, workers, threads, timings).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import __version__
from ..checkpoints import load_checkpoint, save_checkpoint
from ..chip_training import check_evaluation_seeds
from ..cost import check_fits, compare_with_spikesim, layer_specs
from ..cost.technology import Technology
from ..datasets import EMBEDDED, Dataset, load_dataset
from ..errors import ConfigError
from ..hardware import HardwareConfig
from ..io import machine_info
from ..models import ZOO, Network, convnet, mlp, qnn_bits_for, resnet
from ..plots import attribution_bars, errorbar_sweep, histogram, pareto, platform_bars
from ..stats import difference
from ..training import TrainConfig, accuracy, train
from . import experiments as X
from ..cost.platforms import PLATFORMS
from .outputs import OutputDir, markdown_table

DEFAULT_TECH = "spikesim-65nm-rram"
MODELS = ("mlp", "convnet", "resnet", "vgg9", "vgg16", "resnet19")
CIFAR_SIZE = ("vgg9", "vgg16", "resnet19")  # published topologies: --width scales them, --channels / --hidden do not apply


@dataclass
class RunOptions:
    """How a command runs: engine, resume, progress, seeds, batch size, device."""

    engine: object
    resume: bool = False
    progress: bool = True
    seed: int | None = None  # base chip seed (None: the hardware config's)
    batch_size: int = 256
    device: torch.device = torch.device("cpu")
    calibration_samples: int = X.CALIBRATION_SAMPLES
    stats: dict = field(default_factory=dict)

    def runner(self, out: OutputDir):
        return X.default_runner(self.engine, journal=out.journal, resume=self.resume, progress=self.progress,
                                stats=self.stats)

    def chip_seed(self, hw: HardwareConfig) -> int:
        return hw.seed if self.seed is None else self.seed

    def info(self) -> dict:
        e = self.engine
        return {"engine": e.name, "workers": getattr(e, "workers", 1), "threads_per_task": getattr(e, "threads", None),
                "resume": self.resume, "batch_size": self.batch_size, "tasks": self.stats.get("tasks", 0),
                "tasks_from_journal": self.stats.get("resumed", 0)}


# ----------------------------------------------------------------------------- helpers


def device_of(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available on this machine (use --device cpu)")
    return torch.device(name)


def hardware(config: str | None, preset: str | None, default: str = "rram") -> HardwareConfig:
    if config:
        return HardwareConfig.from_toml(config)
    return HardwareConfig.preset(default if preset is None else preset)


def hardware_list(config: str | None, presets: str) -> list[HardwareConfig]:
    """Comma-separated presets (no empty names, no duplicates), or one config file."""
    if config:
        return [HardwareConfig.from_toml(config)]
    names = [p.strip() for p in presets.split(",")]
    if not presets.strip() or any(not n for n in names):
        raise ConfigError(f"--preset must be comma-separated preset names, got {presets!r}")
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"--preset names {dup!r} twice")
    return [HardwareConfig.preset(n) for n in names]


def run_info(command: str, opts: RunOptions | None = None, **kw) -> dict:
    return {"command": command, "imcsim": __version__, **machine_info(), **(opts.info() if opts else {}), **kw}


@dataclass
class Splits:
    """A dataset cut for a study: fit (training minus held-out), held-out, calibration, test."""

    ds: Dataset
    x_fit: torch.Tensor
    y_fit: torch.Tensor
    x_hold: torch.Tensor
    y_hold: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_cal: torch.Tensor


def splits(ds: Dataset, holdout: int, test_limit: int | None = None, calibration: int = X.CALIBRATION_SAMPLES) -> Splits:
    """Held-out = the last ``holdout`` training samples (theta choice, never fitted);
    calibration = the first ``calibration`` fit samples; test = the first ``test_limit``."""
    n = ds.x_train.shape[ds.sample_dim]
    if not 0 <= holdout < n:
        raise ConfigError(f"--holdout must be in [0, {n - 1}] for {n} training samples, got {holdout}")
    cut = n - holdout
    x_fit, x_hold = ds.take(ds.x_train, 0, cut), ds.take(ds.x_train, cut)
    x_test, y_test = ds.take(ds.x_test, 0, test_limit), ds.y_test[:test_limit]
    if y_test.shape[0] == 0:
        raise ConfigError("the test split holds no samples")
    return Splits(ds, x_fit, ds.y_train[:cut], x_hold, ds.y_train[cut:], x_test, y_test,
                  ds.take(x_fit, 0, calibration))


def build_model(model: str, ds: Dataset, kind: str, timesteps: int, bits: int | None, neuron: str, hidden, channels,
                seed: int, encoding: str = "direct", width: float | None = None) -> Network:
    if model not in MODELS:
        raise ConfigError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    if model in CIFAR_SIZE:
        for flag, v in (("--hidden", hidden), ("--channels", channels)):
            if v is not None:
                raise ConfigError(f"{flag} does not apply to {model} (a published topology); --width scales it")
    elif width is not None:
        raise ConfigError(f"--width scales vgg9, vgg16 and resnet19; for {model} set --channels / --hidden")
    hidden = [128] if hidden is None else hidden
    channels = [16, 32] if channels is None else channels
    common = dict(in_shape=ds.in_shape, num_classes=ds.num_classes, kind=kind, timesteps=timesteps, bits=bits,
                  neuron=neuron, encoding=encoding, input="sequence" if ds.sample_dim == 1 else "static")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model == "mlp":
            return mlp(hidden=tuple(hidden), **common)
        if model == "convnet":
            return convnet(channels=tuple(channels), hidden=hidden[0] if hidden else 128, **common)
        if model == "resnet":
            return resnet(channels=tuple(channels), blocks=(1,) * len(channels), **common)
        return ZOO[model](width=1.0 if width is None else width, **common)


def checkpoint_data(meta: dict, data_dir: str | None, net) -> Dataset:
    """The dataset (and sample limits) a checkpoint was trained with, checked against the
    network's input shape."""
    name = meta.get("dataset")
    if not name:
        raise ConfigError("the checkpoint records no dataset; pass a checkpoint written by imcsim train or import")
    if data_dir and name in EMBEDDED:
        raise ConfigError(f"--data-dir does not apply: the checkpoint's dataset {name!r} is embedded in the package")
    ds = load_dataset(name, data_dir or meta.get("data_dir"), n_train=meta.get("n_train"), n_test=meta.get("n_test"))
    want = tuple(net.arch.get("in_shape") or ())
    if want and tuple(ds.in_shape) != want:
        raise ConfigError(f"the data's samples are {tuple(ds.in_shape)} but the checkpoint's network takes {want}")
    seq = getattr(net, "input", "static") == "sequence"
    if seq != (ds.sample_dim == 1):
        raise ConfigError(f"the checkpoint's network takes {'sequences' if seq else 'static inputs'} but dataset "
                          f"{name!r} holds {'event sequences' if ds.sample_dim == 1 else 'images'}")
    return ds


def load_study_inputs(checkpoint, data_dir, test_limit, opts: RunOptions):
    net, meta = load_checkpoint(checkpoint)
    ds = checkpoint_data(meta, data_dir, net)
    return net, meta, splits(ds, meta.get("holdout", 0) or 0, test_limit, opts.calibration_samples)


def fits(net, hw: HardwareConfig) -> None:
    """Refuse, before any task runs, a network that needs more tiles than the chip has."""
    check_fits(layer_specs(net, tuple(net.arch["in_shape"]), hw), hw)


def context_for(models: dict, sp: Splits, opts: RunOptions, tech=None) -> dict:
    return X.make_context(models, x_cal=sp.x_cal, x_test=sp.x_test, y_test=sp.y_test, x_hold=sp.x_hold,
                          y_hold=sp.y_hold, tech=tech, batch_size=opts.batch_size)


def parse_sweep(spec: str | None):
    """'device.variation=0,0.05,0.1' -> ('device.variation', [0.0, 0.05, 0.1]); every value
    is checked against the config before any work starts."""
    if spec is None:
        return None
    if "=" not in spec:
        raise ConfigError(f"--sweep must look like FIELD=V1,V2,..., got {spec!r}")
    field, vals = spec.split("=", 1)
    allowed = HardwareConfig.sweepable_fields()
    if field not in allowed:
        raise ConfigError(f"--sweep: unknown field {field!r}; sweepable: {', '.join(allowed)}")
    out = []
    for v in vals.split(","):
        v = v.strip()
        if not v:
            raise ConfigError(f"--sweep {field}: empty value in {vals!r}")
        try:
            out.append(int(v) if v.lstrip("-").isdigit() else float(v))
        except ValueError:
            out.append(None if v in ("none", "lossless") else
                       True if v == "true" else False if v == "false" else v)
        if isinstance(out[-1], float) and not math.isfinite(out[-1]):
            raise ConfigError(f"--sweep {field}: values must be finite, got {v!r}")
    return field, out


def check_sweep(hw: HardwareConfig, sweep) -> None:
    if sweep:
        field, values = sweep
        for v in values:
            try:
                hw.replace(**{field: v})
            except (ConfigError, ValueError, TypeError) as e:
                raise ConfigError(f"--sweep {field}={v}: {e}") from None


def _fmt_acc(r: dict) -> str:
    return f"{r['mean']:.2f}" + (f" +- {r['std']:.2f} ({r['n']} chips)" if r.get("n", 1) > 1 else "")


def _fmt_ci(r: dict) -> str:
    lo, hi = r["test_ci95"]
    return f"{lo:.1f}-{hi:.1f}"


def _with_uncertainty(rows: list[dict]) -> list[dict]:
    """Table cells: accuracy, its 95 % test-set interval, and the difference to the row
    above, marked where it is within the two rows' uncertainty."""
    return [{**r, "acc": _fmt_acc(r), "ci": _fmt_ci(r), "diff": difference(r, rows[i - 1]) if i else ""}
            for i, r in enumerate(rows)]


UNCERTAINTY_NOTE = ("95 % test-set interval: Wilson interval for {n} test samples (one sample = {one:.2f} pp); "
                    "'within uncertainty': smaller than 1.96 standard errors of the difference, compared paired on "
                    "the same test samples and chip seeds -- docs/reproducibility.md")


def accuracy_table(rows: list[dict]) -> str:
    return markdown_table(_with_uncertainty(rows), ["hardware", "architecture", "acc", "ci", "diff"],
                          ["hardware", "architecture", "accuracy % (mean +- sample std over chips)",
                           "95 % test-set interval", "vs row above (pp)"])


# ----------------------------------------------------------------------------- train


def cmd_train(out: OutputDir, *, dataset: str, data_dir, model: str, kind: str, timesteps: int | None, bits,
              neuron: str, hidden, channels, epochs: int, batch_size: int, lr: float, loss: str,
              activity_lambda: float, weight_noise: float, holdout: int | None, train_limit, test_limit,
              encoding: str, seed: int, device, progress: bool, download: bool = False, width=None, shift: int = 0,
              hardware: HardwareConfig | None = None, hardware_mode: str = "chip") -> str:
    if data_dir and dataset in EMBEDDED:
        raise ConfigError(f"--data-dir does not apply to {dataset!r}: it is embedded in the package")
    if bits is not None and kind == "snn":
        raise ConfigError("--bits sets a QNN's activation bits; an SNN's resolution is --timesteps")
    ds = load_dataset(dataset, data_dir, download=download, n_train=train_limit, n_test=test_limit)
    if ds.sample_dim == 1:
        if timesteps is not None and timesteps != ds.timesteps:
            raise ConfigError(f"dataset {dataset!r} has {ds.timesteps} frames per sample; --timesteps must be "
                              f"{ds.timesteps} or left out")
        timesteps = ds.timesteps
    timesteps = timesteps or 4
    n = ds.x_train.shape[ds.sample_dim]
    holdout = holdout if holdout is not None else n // 8
    net = build_model(model, ds, kind, timesteps, bits, neuron, hidden, channels, seed, encoding, width).to(device)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, activity_lambda=activity_lambda,
                      weight_noise=weight_noise, shift=shift, seed=seed)
    meta = dict(dataset=dataset, data_dir=str(Path(data_dir).resolve()) if data_dir else None, n_train=train_limit,
                n_test=test_limit, holdout=holdout, split=ds.description)
    desc = f"{kind.upper()} {model}" + (f", T={timesteps}" if kind == "snn" else f", {net.arch['bits']}-bit activations")
    return _train_and_save(out, net, ds, cfg, meta, desc, progress=progress, hardware=hardware,
                           hardware_mode=hardware_mode, title="Training")


def cmd_finetune(out: OutputDir, *, checkpoint, data_dir, epochs: int, batch_size: int, lr: float, loss: str | None,
                 activity_lambda: float, weight_noise: float, seed: int, device, progress: bool,
                 hardware: HardwareConfig | None, hardware_mode: str = "chip", shift: int = 0,
                 distill: float = 0.0) -> str:
    """Continue training a checkpoint on its own data (fit split), optionally through a chip."""
    net, meta = load_checkpoint(checkpoint)
    ds = checkpoint_data(meta, data_dir, net)
    net = net.to(device)
    prior = meta.get("train") if isinstance(meta.get("train"), dict) else {}
    loss = "mean" if getattr(net, "kind", "snn") == "qnn" else (loss or prior.get("loss", "per_timestep"))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, activity_lambda=activity_lambda,
                      weight_noise=weight_noise, shift=shift, distill=distill, seed=seed)
    keep = {k: meta[k] for k in ("dataset", "data_dir", "n_train", "n_test", "holdout", "split") if k in meta}
    if data_dir:
        keep["data_dir"] = str(Path(data_dir).resolve())
    keep["finetuned_from"] = {"checkpoint": str(Path(checkpoint).resolve()), "test_accuracy": meta.get("test_accuracy"),
                              "train": prior or None, "hardware_training": meta.get("hardware_training")}
    arch = net.arch
    desc = f"{str(getattr(net, 'kind', 'model')).upper()} {arch.get('name')}"
    return _train_and_save(out, net, ds, cfg, keep, desc, progress=progress, hardware=hardware,
                           hardware_mode=hardware_mode, title="Fine-tuning")


def _train_and_save(out: OutputDir, net, ds: Dataset, cfg: TrainConfig, meta: dict, desc: str, *, progress: bool,
                    hardware: HardwareConfig | None, hardware_mode: str, title: str) -> str:
    from ..chip_training import MODES, ChipInTheLoop, weights_only

    sp = splits(ds, meta.get("holdout") or 0, None)
    chip, against = None, ""
    if hardware is not None:
        if hardware_mode not in MODES:
            raise ConfigError(f"--hardware-mode must be one of {', '.join(MODES)}, got {hardware_mode!r}")
        hw = hardware if hardware_mode == "chip" else weights_only(hardware)
        fits(net, hw)
        chip = ChipInTheLoop(net, hw, ds.take(sp.x_fit, 0, min(cfg.batch_size, sp.x_fit.shape[ds.sample_dim])))
        against = (f"; through the simulated chip {hardware.name!r} (a fresh training chip per step)"
                   if hardware_mode == "chip" else f"; weights quantised as on {hardware.name!r} (QAT)")
    t0 = time.perf_counter()
    hist = train(net, sp.x_fit, sp.y_fit, cfg, progress=progress, chip=chip)
    wall = time.perf_counter() - t0
    acc = accuracy(net, ds.x_test, ds.y_test)
    meta = {**meta, "train": asdict(cfg), "history": hist, "test_accuracy": acc, "seed": cfg.seed,
            "torch_threads": torch.get_num_threads()}  # float training rounds per thread count
    if chip is not None:
        steps = cfg.epochs * math.ceil(sp.x_fit.shape[ds.sample_dim] / cfg.batch_size)
        meta["hardware_training"] = chip.record(steps, hardware_mode)
    save_checkpoint(out.path("model.pt"), net.cpu(), **meta)
    out.csv("history.csv", hist)
    out.json("train.json", {**meta, "arch": net.arch})
    out.json("run.json", run_info("train", train_seconds=wall))
    holdout = meta.get("holdout") or 0
    hwline = ""
    if chip is not None:
        lo, hi = meta["hardware_training"]["chip_seeds"]
        hwline = (f"- hardware-aware ({hardware_mode}): {chip.hw.describe()}; training chip seeds {lo}..{hi} "
                  "(evaluate on other seeds)\n")
    out.text("report.md", f"# {title}\n\n- model: {desc}\n- data: {ds.description}; last {holdout} training samples "
             f"held out\n- loss: {cfg.loss}, epochs {cfg.epochs}, batch {cfg.batch_size}, lr {cfg.lr}, seed {cfg.seed}"
             f"{f', images shifted by up to {cfg.shift} px' if cfg.shift else ''}"
             f"{f', distilled from the starting float model (weight {cfg.distill})' if cfg.distill else ''}\n"
             f"{hwline}- test accuracy (float model): {acc:.2f} %\n- time: {wall:.1f} s\n")
    verb = "trained" if title == "Training" else "fine-tuned"
    return (f"{verb} {desc} on {ds.description}{against}\ntest accuracy {acc:.2f} % (float model, {wall:.1f} s); "
            f"checkpoint {out.target / 'model.pt'}")


# ----------------------------------------------------------------------------- import


def cmd_import(out: OutputDir, *, graph: str, dataset: str, data_dir, timesteps: int | None, dt: float,
               num_classes: int | None, holdout: int) -> str:
    """A NIR graph -> an imcsim checkpoint that evaluate / energy / timesteps / compare take."""
    from ..convert import from_nir
    from ..convert.nir import import_notes

    if not Path(graph).is_file():
        raise ConfigError(f"NIR file not found: {graph!r}")
    ds = load_dataset(dataset, data_dir)
    if ds.sample_dim != 1:
        raise ConfigError(f"a NIR network takes sequences: --dataset must be an event dataset (event-digits, "
                          f"event-mnist, nmnist), got {dataset!r}")
    T = timesteps or ds.timesteps
    if T > ds.timesteps:
        raise ConfigError(f"--timesteps {T} exceeds the dataset's {ds.timesteps} frames")
    try:
        net = from_nir(graph, dt=dt, timesteps=T, num_classes=num_classes or ds.num_classes)
    except ImportError:
        raise ConfigError("imcsim import needs the nir package: pip install 'imcsim[nir]'") from None
    if tuple(net.arch["in_shape"]) != tuple(ds.in_shape):
        raise ConfigError(f"the graph's input is {tuple(net.arch['in_shape'])} but dataset {dataset!r} has samples "
                          f"{tuple(ds.in_shape)}")
    with torch.no_grad():
        acc = accuracy(net, ds.take(ds.x_test, 0, 512), ds.y_test[:512])
    meta = dict(dataset=dataset, data_dir=str(Path(data_dir).resolve()) if data_dir else None, holdout=holdout,
                split=ds.description, source=str(Path(graph).resolve()), dt=dt, test_accuracy_first_512=acc)
    notes = import_notes(net.arch)
    meta["import_notes"] = notes
    save_checkpoint(out.path("model.pt"), net, **meta)
    out.json("run.json", run_info("import", **meta))
    return (f"imported {graph}: {len(net.arch['graph']['nodes'])} nodes, input {tuple(net.arch['in_shape'])}, "
            f"T={T}, dt={dt:g}\n" + "".join(f"note: {n}\n" for n in notes)
            + f"accuracy on the first 512 test samples of {dataset}: {acc:.2f} % (digital, before mapping; compare "
            f"it with the source model's on the same samples); checkpoint {out.target / 'model.pt'}")


# ----------------------------------------------------------------------------- evaluate


def cmd_evaluate(out: OutputDir, opts: RunOptions, *, checkpoint, hw: HardwareConfig, sweep, chips: int, data_dir,
                 test_limit, slices: int = 1, attribution: bool = False) -> str:
    check_sweep(hw, sweep)
    net, meta, sp = load_study_inputs(checkpoint, data_dir, test_limit, opts)
    t0 = time.perf_counter()
    ctx = context_for({"net": net}, sp, opts)
    seed = opts.chip_seed(hw)
    check_evaluation_seeds(meta, range(seed, seed + chips))
    res = opts.runner(out)(X.accuracy_study(ctx, "net", hw, chips=chips, seed=seed, sweep=sweep, slices=slices))
    acc = X.accuracy_rows(res, "net", hw, chips, sweep, slices=slices)
    result = {"checkpoint": Path(checkpoint).name, "data": sp.ds.description, "test_samples": int(sp.y_test.shape[0]),
              "chip_seeds": list(range(seed, seed + chips)), "hardware": hw.to_dict(), "accuracy": acc["rows"]}
    lines = [accuracy_table(acc["rows"])]
    if sweep:
        sw = acc["sweep"]
        result["sweep"] = sw
        field = sw["field"]
        out.csv("sweep.csv", [{"field": field, "value": r["label"], "mean": r["mean"], "std": r["std"], "n": r["n"],
                               "ci95_low": r["test_ci95"][0], "ci95_high": r["test_ci95"][1], "se_pp": r["se_pp"]}
                              for r in sw["rows"]])
        numeric = all(isinstance(r["value"], (int, float)) and not isinstance(r["value"], bool) for r in sw["rows"])
        xs = [r["value"] if numeric else i for i, r in enumerate(sw["rows"])]
        series, sw2 = None, None
        if field == "device.time" and hw.device.drift != "none":  # drift: with and without compensation
            other = "global" if hw.device.drift_compensation == "none" else "none"
            hw2 = hw.replace(**{"device.drift_compensation": other})
            tag = f"net@compensation={other}"
            res2 = opts.runner(out)(X.accuracy_study(ctx, "net", hw2, chips=chips, seed=seed, sweep=sweep,
                                                     references=False, name=f"accuracy (compensation {other})",
                                                     slices=slices, tag=tag))
            sw2 = X.accuracy_rows(res2, "net", hw2, chips, sweep, references=False, slices=slices, tag=tag)["sweep"]
            result["sweep_other_compensation"] = {"drift_compensation": other, **sw2}
            series = {f"compensation {hw.device.drift_compensation}": ([r["mean"] for r in sw["rows"]],
                                                                       [r["std"] for r in sw["rows"]]),
                      f"compensation {other}": ([r["mean"] for r in sw2["rows"]], [r["std"] for r in sw2["rows"]])}
        errorbar_sweep(xs, [r["mean"] for r in sw["rows"]], [r["std"] for r in sw["rows"]], out.path("sweep.png"),
                       xlabel=field + (" (s since programming, log scale)" if field == "device.time" else ""),
                       ticks=None if numeric else [r["label"] for r in sw["rows"]], series=series,
                       logx=field == "device.time" and numeric and min(xs) > 0,
                       title=f"Accuracy vs {field} ({chips} chip{'s' if chips > 1 else ''} each, {hw.name} "
                             "otherwise; bars: std over chips)")
        lines.append(f"\nSweep of {field} ({chips} chip instance{'s' if chips > 1 else ''} each, seeds "
                     f"{seed}..{seed + chips - 1}):\n")
        lines.append(markdown_table(_with_uncertainty(sw["rows"]), ["label", "acc", "ci", "diff"],
                                    [field, "accuracy %", "95 % test-set interval", "vs row above (pp)"]))
        if sw2 is not None:
            lines.append(f"\nThe same sweep with device.drift_compensation = '{other}' (drift compensation from "
                         "reference reads right after programming and at each time):\n")
            lines.append(markdown_table(_with_uncertainty(sw2["rows"]), ["label", "acc", "ci", "diff"],
                                        [field, "accuracy %", "95 % test-set interval", "vs row above (pp)"]))
    if attribution:
        at = X.attribution_rows(opts.runner(out)(X.attribution_study(ctx, "net", hw, chips=chips, seed=seed)), "net",
                                hw, chips)
        result["attribution"] = at
        lines.append(write_attribution(out, at, hw, chips, seed))
    lines.append("\n" + UNCERTAINTY_NOTE.format(n=acc["rows"][0]["n_test"], one=acc["rows"][0]["one_sample_pp"]))
    out.json("evaluate.json", result)
    out.csv("accuracy.csv", [{**{k: r[k] for k in ("hardware", "architecture", "mean", "std", "n")},
                              "ci95_low": r["test_ci95"][0], "ci95_high": r["test_ci95"][1], "se_pp": r["se_pp"]}
                             for r in acc["rows"]])
    out.json("run.json", run_info("evaluate", opts, slices=slices, seconds=time.perf_counter() - t0))
    text = "\n".join(lines)
    twin = hw.ideal_counterpart()
    if any(r["hardware"] == twin.name for r in acc["rows"]):
        text += (f"\n{twin.name}: {hw.name}'s architecture with ideal devices and wires, and an infinite on/off ratio "
                 f"(g_off = 0, where {hw.name} has g_on / g_off = {hw.device.g_on / hw.device.g_off:.3g}"
                 if hw.device.g_off else f"\n{twin.name}: {hw.name}'s architecture with ideal devices and wires (g_off "
                 f"= 0 on both")
        text += "); the on/off ratio's own effect: --attribution."
    out.text("report.md", f"# Accuracy under non-idealities\n\nModel: {Path(checkpoint).name}; data: "
             f"{sp.ds.description}; {int(sp.y_test.shape[0])} test samples; chip seeds {seed}..{seed + chips - 1}\n\n"
             f"Hardware: {hw.describe()}\n\n{text}\n")
    return text


def write_attribution(out: OutputDir, at: dict, hw: HardwareConfig, chips: int, seed: int) -> str:
    """The attribution table, CSV and plot; returns the table text."""
    out.csv("attribution.csv", [{"config": r["config"], "mean": r["mean"], "std": r["std"], "chips": r["chips"],
                                 "ci95_low": r["test_ci95"][0], "ci95_high": r["test_ci95"][1], "se_pp": r["se_pp"]}
                                for r in at["rows"]])
    eff = at["effects"]
    attribution_bars([e["nonideality"] for e in eff], [e["loss_alone_pp"] for e in eff],
                     [e["loss_alone_se_pp"] for e in eff], [e["recovered_when_left_out_pp"] for e in eff],
                     [e["recovered_se_pp"] for e in eff], out.path("attribution.png"),
                     title=f"What each non-ideality of {hw.name} costs (chip seeds {seed}..{seed + chips - 1})")

    def pp(v, se):
        return f"{v:+.2f} +- {1.96 * se:.2f}" + ("" if abs(v) >= 1.96 * se and v else " (within uncertainty)")

    table = markdown_table(_with_uncertainty(at["rows"]), ["config", "acc", "ci"],
                           ["configuration", "accuracy % (mean +- std over chips)", "95 % test-set interval"])
    effects = markdown_table([{"n": e["nonideality"], "a": pp(e["loss_alone_pp"], e["loss_alone_se_pp"]),
                               "w": pp(e["recovered_when_left_out_pp"], e["recovered_se_pp"])} for e in eff],
                             ["n", "a", "w"], ["non-ideality", "accuracy lost with it alone, vs none (pp)",
                                               "accuracy recovered without it, vs all (pp)"])
    return (f"\nAttribution on {hw.name} (each row over chip seeds {seed}..{seed + chips - 1}; rows no seed changes "
            f"run once; {at['off_values']}):\n\n{table}\n\n{effects}\n\n![attribution](attribution.png)")


# ----------------------------------------------------------------------------- energy


def spikesim_text(rep, specs, timesteps: int) -> tuple[dict | None, str]:
    """SpikeSim's released estimator on the network's conv layers beside imcsim's report,
    with what differs itemised (None where it does not apply: no conv layer)."""
    try:
        c = compare_with_spikesim(rep, specs, timesteps)
    except ValueError as e:
        return None, f"SpikeSim's released estimator does not apply to this network: {e}"
    if c is None:
        return None, ""
    ss, r, p = c["spikesim"], c["ratio"], c["spikesim_pooled_dims"]
    uj = "{:.4g}".format
    by = ", ".join(f"{k} {uj(v['imcsim'] * 1e6)} / {uj(v['spikesim'] * 1e6)}"
                   for k, v in c["conv_layers_by_component_J"].items())
    extra = ", ".join(f"{k} {uj(v * 1e6)}" for k, v in c["not_in_spikesim_J"].items())
    text = [f"SpikeSim's released estimator on the {len(ss['pe_cycles_per_timestep'])} conv layers (dense, "
            f"T={timesteps}): energy {ss['energy_J']:.4g} J, latency {ss['latency_s']:.4g} s, area "
            f"{ss['area_mm2']:.4g} mm^2; imcsim / SpikeSim: energy x{r['energy']:.2f}, latency x{r['latency']:.2f}, "
            f"area x{r['area']:.2f}" + (f" ({'; '.join(ss['warnings'])})" if ss.get("warnings") else ""),
            f"  with the conv layers written at their pooled output size, as SpikeSim's own layer lists do (its PE "
            f"cycles then count pooled pixels): {p['energy_J']:.4g} J, {p['latency_s']:.4g} s, {p['area_mm2']:.4g} mm^2",
            f"  conv layers and their neurons by component, imcsim / SpikeSim (uJ): {by}"]
    if extra:
        text.append(f"  priced by imcsim, not by SpikeSim (uJ): {extra}")
    keep = {k: ss[k] for k in ("energy_J", "latency_s", "area_mm2", "pes", "tiles", "warnings")}
    return {**keep, **{k: v for k, v in c.items() if k != "spikesim"}}, "\n".join(text)


def cmd_energy(out: OutputDir, opts: RunOptions, *, checkpoint, hw: HardwareConfig, tech: Technology,
               analytical: bool, spike_rate, data_dir, test_limit, latency_mode="sequential") -> str:
    from ..cost import analytical_estimate

    net, meta, sp = load_study_inputs(checkpoint, data_dir, test_limit, opts)
    t0 = time.perf_counter()
    seed = opts.chip_seed(hw)
    check_evaluation_seeds(meta, [seed])
    specs = layer_specs(net, tuple(net.arch["in_shape"]), hw)
    check_fits(specs, hw)
    T = net.timesteps if net.kind == "snn" else 1
    if spike_rate is not None:  # an assumed uniform activity: no simulation at all
        rep = analytical_estimate(specs, hw, tech, T, spike_rate, latency_mode=latency_mode,
                                  static_input_once=net.static_input_once)
        note = f"analytical estimate at an assumed activity {spike_rate:g} on every layer (no simulation)"
        measured = None
    else:
        ctx = context_for({"net": net}, sp, opts, tech)
        res = opts.runner(out)(X.cost_study(ctx, ["net"], hw, seed=seed, latency_mode=latency_mode))
        measured = X.report_of(res["net/cost"])
        rep = measured
        note = (f"measured on {int(sp.y_test.shape[0])} test samples (accuracy {res['net/cost']['accuracy']:.2f} %), "
                f"chip seed {seed}")
    result = {"checkpoint": Path(checkpoint).name, "note": note, "hardware": hw.to_dict(), "report": rep.to_dict()}
    texts = []
    if analytical and measured is not None:
        ana = X.analytical_at_measured(net, hw, tech, measured, latency_mode)
        result["analytical_at_measured_activity"] = ana.to_dict()
        diff = ana.energy_J / measured.energy_J - 1
        rates = ", ".join(f"{k} {v:.3f}" for k, v in ana.assumed["input_activity"].items())
        texts.append(f"analytical estimate at the measured per-layer input activity ({rates}): energy "
                     f"{ana.energy_J:.4g} J ({100 * diff:+.1f} % vs measured), latency {ana.latency_s:.4g} s. The "
                     "analytical model spreads each layer's measured activity evenly over its tiles and samples; the "
                     "measured run skips exactly the all-zero tile reads it met, so the two differ where activity "
                     "clusters.")
    ss, ss_text = spikesim_text(rep, specs, T)
    if ss is not None:
        result["spikesim"] = ss
    if ss_text:
        texts.append(ss_text)
    out.json("energy.json", result)
    out.csv("breakdown.csv", [{"layer": layer.name, **rep.layer_energy_pJ(layer),
                               "total_pJ": sum(rep.layer_energy_pJ(layer).values()), "latency_ns": layer.latency_ns,
                               **{f"area_{k}_um2": v for k, v in layer.area_um2.items()}} for layer in rep.layers])
    rep.plot(out.path("breakdown.png"), title=f"{hw.name} / {tech.name}")
    out.json("run.json", run_info("energy", opts, seconds=time.perf_counter() - t0))
    table = rep.table()
    extra = "\n".join(texts)
    out.text("report.md", f"# Energy, latency, area, EDP\n\nModel: {Path(checkpoint).name}; {note}\n\nHardware: "
             f"{hw.describe()}\n\nTechnology: {tech.name} ({tech.description})\n\n```\n{table}\n```\n\n{extra}\n\n"
             "![breakdown](breakdown.png)\n")
    return f"{note}\n{table}" + (f"\n{extra}" if extra else "")


# ----------------------------------------------------------------------------- timesteps


def cmd_timesteps(out: OutputDir, opts: RunOptions, *, checkpoint, hws: list[HardwareConfig], tech: Technology,
                  thetas, tolerance: float, rule: str, data_dir, test_limit) -> str:
    net, meta, sp = load_study_inputs(checkpoint, data_dir, test_limit, opts)
    if net.kind != "snn":
        raise ConfigError(f"timesteps needs an SNN checkpoint; {checkpoint} holds a {net.kind.upper()}")
    if sp.y_hold.shape[0] == 0:
        raise ConfigError("timesteps needs held-out training samples to choose theta (train with --holdout > 0)")
    for hw in hws:
        fits(net, hw)
        check_evaluation_seeds(meta, [opts.chip_seed(hw)])
    t0 = time.perf_counter()
    ctx = context_for({"net": net}, sp, opts, tech)
    res = X.timesteps_studies(ctx, "net", hws, t_max=net.timesteps, thetas=thetas, rule=rule, tolerance=tolerance,
                              seed=opts.chip_seed(hws[0]), runner=opts.runner(out))
    text = write_timesteps(out, res, f"{Path(checkpoint).name}; {sp.ds.description}", tech, hws=hws)
    out.json("run.json", run_info("timesteps", opts, seconds=time.perf_counter() - t0,
                                  wall_s={f"{r['hardware']} {r['mode']} T={r['T_max']} theta={r['theta']:g}": r["wall_s"]
                                          for r in res["rows"]}))
    return text


def timesteps_text(res: dict) -> str:
    cols = ["hardware", "mode", "T_max", "theta", "accuracy", "avg_timesteps", "energy_J", "latency_s", "edp_Js",
            "edp_per_sample_Js"]
    text = markdown_table(res["rows"], cols, ["hardware", "mode", "T (max)", "theta", "acc %", "avg T", "energy J",
                                              "latency s", "EDP J*s", "EDP per sample J*s"])
    text += "\n\n" + "\n".join(f"- {X.headline(s)}" for s in res["summary"])
    return text


def write_timesteps(out: OutputDir, res: dict, what: str, tech: Technology, prefix: str = "", hws=()) -> str:
    rows = res["rows"]
    results = {k: v for k, v in res.items()}
    results["rows"] = [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]
    out.json(f"{prefix}timesteps.json", {"model": what, "technology": tech.name, **results})
    out.csv(f"{prefix}timesteps.csv", [{k: v for k, v in r.items() if k not in ("histogram", "energy_by_component_J",
                                                                                  "wall_s")} for r in rows])
    chosen = {s["hardware"]: s["theta"] for s in res["summary"]}
    pts = [{"x": r["edp_Js"], "y": r["accuracy"], "group": f"{r['hardware']} {r['mode']}",
            "label": f"T={r['T_max']}" if r["mode"] == "static" else
            (f"theta={r['theta']:.2g}" if r["theta"] == chosen[r["hardware"]] else None)} for r in rows]
    pareto(pts, out.path(f"{prefix}pareto.png"), title="Accuracy vs EDP: static T = 1..T_max and dynamic exits "
           "(theta sweep; the chosen theta labelled)")
    s0 = res["summary"][-1]
    pick = next((r for r in rows if r["hardware"] == s0["hardware"] and r["mode"] == "dynamic"
                 and r["theta"] == s0["theta"]), None)
    if pick is not None:
        histogram({int(k): v for k, v in pick["histogram"].items()}, out.path(f"{prefix}exit_histogram.png"),
                  "exit timestep", title=f"Exit timesteps, {s0['hardware']}, theta={s0['theta']:.3g}")
    text = timesteps_text(res)
    for hw in hws:  # a technology scaled to a chip it was not taken on: said, never silent
        text += "".join(f"\nnote ({hw.name}): {n}" for n in tech.scaling_notes(hw))
    out.text(f"{prefix}timesteps.md", f"# Static vs dynamic timesteps\n\nModel: {what}\n\nRule: {res['rule']}; theta "
             f"chosen on held-out training samples as the largest theta within {res['tolerance_pp']} pp of static "
             f"T={res['t_max']} there. EDP = mean energy x mean latency per inference; 'per sample' = mean of each "
             f"sample's energy x latency at its own exit.\n\n"
             + "\n".join(f"- {s['hardware']}: {s['architecture']}" for s in res["summary"])
             + f"\n\n{text}\n\n![pareto]({prefix}pareto.png)\n")
    return text


# ----------------------------------------------------------------------------- compare


def cmd_compare(out: OutputDir, opts: RunOptions, *, snn_ck, qnn_ck, hw, tech, data_dir, test_limit,
                platforms=("imc",), neuromorphic: str = "typical") -> str:
    snn, meta, sp = load_study_inputs(snn_ck, data_dir, test_limit, opts)
    qnn, qmeta = load_checkpoint(qnn_ck)
    for m in (meta, qmeta):
        check_evaluation_seeds(m, [opts.chip_seed(hw)])
    if snn.kind != "snn" or qnn.kind != "qnn":
        raise ConfigError("compare needs --snn with an SNN checkpoint and --qnn with a QNN checkpoint")
    if tuple(snn.arch.get("in_shape", ())) != tuple(qnn.arch.get("in_shape", ())):
        raise ConfigError("the SNN and QNN checkpoints take different input shapes")
    fits(snn, hw)
    fits(qnn, hw)
    t0 = time.perf_counter()
    ctx = context_for({"snn": snn, "qnn": qnn}, sp, opts, tech)
    res = opts.runner(out)(X.cost_study(ctx, ["snn", "qnn"], hw, seed=opts.chip_seed(hw)))
    cmp = X.snn_vs_qnn(res, snn, qnn, hw, tech, platforms=platforms, neuromorphic=neuromorphic)
    text = write_compare(out, cmp, hw, tech)
    out.json("run.json", run_info("compare", opts, seconds=time.perf_counter() - t0))
    return text


def write_compare(out: OutputDir, res: dict, hw, tech, prefix: str = "") -> str:
    c = res["comparison"]
    rows = [{"network": f"SNN T={res['timesteps']}", "accuracy": res["snn_accuracy"], **c["snn"]},
            {"network": f"QNN {res['qnn_bits']}-bit", "accuracy": res["qnn_accuracy"], **c["qnn"]}]
    be = res["breakeven_spike_rate"]
    text = f"Hardware: {hw.name} ({hw.architecture()}); technology {tech.name}\n\n"
    text += markdown_table(rows, ["network", "accuracy", "energy_J", "latency_s", "edp_Js", "area_mm2"],
                           ["network", "acc %", "energy J", "latency s", "EDP J*s", "area mm^2"])
    text += (f"\n\nSNN/QNN: energy x{c['energy_ratio']:.3g}, latency x{c['latency_ratio']:.3g}, EDP "
             f"x{c['edp_ratio']:.3g}, crossbar reads x{c['read_ratio']:.3g}. Measured activity-weighted spike rate "
             f"{res['snn_mean_spike_rate']:.3f}; "
             + ("break-even spike rate: none (the SNN costs more even without spikes)" if be is None else
                f"break-even spike rate {be:.4f} (the SNN costs less energy below it)")
             + f" [{res['breakeven_model']}].")
    be1 = res.get("breakeven_spike_rate_input_layer_once")
    if be is None and res.get("snn_input", "analog") == "analog":
        text += (" With direct encoding the analog input layer is read bit-serially at every timestep; if it were "
                 "computed once per inference (Network(static_input_once=True)) the break-even rate would be "
                 + ("none as well." if be1 is None else f"{be1:.4f}."))
    rs, rq = res["snn_report"], res["qnn_report"]
    for n in dict.fromkeys(rs.notes + rq.notes):
        text += f"\n\nnote: {n}"
    for name, rep in (("SNN", rs), ("QNN", rq)):
        for f in rep.findings():
            text += f"\n\n{name}: dominant: {f}"
    plat = ""
    if res.get("platforms"):
        plat = platforms_text(res["platforms"])
        text += "\n\n" + plat
        out.csv(f"{prefix}platforms.csv", res["platforms"])
        p = res["platforms"]
        platform_bars([r["platform"] for r in p], [r["snn_energy_J"] for r in p], [r["qnn_energy_J"] for r in p],
                      [r["breakeven_spike_rate"] for r in p], out.path(f"{prefix}platforms.png"),
                      title=f"SNN T={res['timesteps']} vs QNN {res['qnn_bits']}-bit on three platforms")
    out.json(f"{prefix}compare.json", {"hardware": hw.to_dict(), "technology": tech.name,
                                       **{k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in res.items()}})
    out.csv(f"{prefix}compare.csv", rows)
    res["snn_report"].plot(out.path(f"{prefix}snn_breakdown.png"), title=f"SNN T={res['timesteps']} on {hw.name}")
    res["qnn_report"].plot(out.path(f"{prefix}qnn_breakdown.png"), title=f"QNN {res['qnn_bits']}-bit on {hw.name}")
    out.text(f"{prefix}compare.md", f"# SNN vs QNN on the same hardware\n\n{text}\n\n"
             f"![SNN]({prefix}snn_breakdown.png) ![QNN]({prefix}qnn_breakdown.png)\n"
             + (f"\n![platforms]({prefix}platforms.png)\n" if plat else ""))
    return text


def platforms_text(rows: list[dict]) -> str:
    """The per-platform table and what each platform's model is."""
    def fmt(v, spec=".3g"):
        return "n/a" if v is None else format(v, spec)

    table = [{"platform": r["platform"], "snn": fmt(r["snn_energy_J"]), "qnn": fmt(r["qnn_energy_J"]),
              "ratio": fmt(r["energy_ratio"]), "ls": fmt(r["snn_latency_s"]), "lq": fmt(r["qnn_latency_s"]),
              "edp": fmt(r["edp_ratio"]), "be": "none" if r["breakeven_spike_rate"] is None else
              format(r["breakeven_spike_rate"], ".4f")} for r in rows]
    text = "SNN vs QNN on three platforms (energy and latency per inference; same measured activity):\n\n"
    text += markdown_table(table, ["platform", "snn", "qnn", "ratio", "ls", "lq", "edp", "be"],
                           ["platform", "SNN J", "QNN J", "SNN/QNN energy", "SNN latency s", "QNN latency s",
                            "SNN/QNN EDP", "break-even spike rate"])
    text += "\n\n" + "\n".join(f"- {r['platform']}: {r['model']}" for r in rows)
    text += ("\n\nBreak-even: the activity-weighted mean SNN input rate at which the SNN's energy equals the QNN's "
             "(measured per-layer profile scaled together). The neuromorphic model has no latency (n/a). What each "
             "platform ignores: docs/cost_model.md.")
    return text


# ----------------------------------------------------------------------------- demo


DEMO_SWEEP = ("device.variation", [0.0, 0.05, 0.1, 0.2, 0.3])


def cmd_demo(out: OutputDir, opts: RunOptions, *, timesteps: int = 4, chips: int = 3, train_seed: int = 0) -> str:
    """The main job on the embedded 8x8 digits: train an SNN and its QNN twin, map both onto
    crossbars, and report the four comparisons."""
    t0 = time.perf_counter()
    ds = load_dataset("digits")
    holdout = 200
    sp = splits(ds, holdout, None, opts.calibration_samples)
    hw = HardwareConfig.preset("rram")
    twin = hw.ideal_counterpart()
    tech = Technology.preset(DEFAULT_TECH)
    bits = qnn_bits_for(timesteps)
    nets = {}
    for kind, loss in (("snn", "per_timestep"), ("qnn", "mean")):
        net = build_model("mlp", ds, kind, timesteps, None, "if", (128,), (), train_seed).to(opts.device)
        train(net, sp.x_fit, sp.y_fit, TrainConfig(epochs=20, batch_size=64, lr=2e-3, loss=loss, seed=train_seed),
              progress=opts.progress)
        net = net.cpu().eval()
        save_checkpoint(out.path(f"{kind}.pt"), net, dataset="digits", data_dir=None, holdout=holdout, seed=train_seed,
                        split=ds.description)
        nets[kind] = net
    t_train = time.perf_counter() - t0
    runner = opts.runner(out)
    seed = opts.chip_seed(hw)
    ctx = context_for(nets, sp, opts, tech)
    sections = [f"# imcsim demo\n\nData: {ds.description}; the last {holdout} training samples are held out "
                f"(theta choice); ADC ranges calibrated on {sp.x_cal.shape[0]} training samples. Models: MLP 64-128-10, "
                f"SNN with IF neurons and T={timesteps}, QNN twin with {bits}-bit activations (= ceil(log2(T+1))).\n\n"
                f"Non-ideal hardware: {hw.describe()}\n\nIts ideal counterpart `{twin.name}`: the same architecture "
                f"({hw.architecture()}) with ideal devices and wires.\n\nTechnology: {tech.name} "
                f"({tech.description})\n\nChip instances: seeds {seed}..{seed + chips - 1}.\n"]

    # 1. accuracy: float, lossless ideal, ideal counterpart, non-ideal chips; + a sweep
    acc, sweeps = {}, {}
    for kind in nets:
        res = runner(X.accuracy_study(ctx, kind, hw, chips=chips, seed=seed, sweep=DEMO_SWEEP, name=f"{kind} accuracy"))
        a = X.accuracy_rows(res, kind, hw, chips, DEMO_SWEEP)
        acc[kind], sweeps[kind] = a["rows"], a["sweep"]
    series = {k.upper(): ([r["mean"] for r in sw["rows"]], [r["std"] for r in sw["rows"]]) for k, sw in sweeps.items()}
    errorbar_sweep(DEMO_SWEEP[1], None, None, out.path("accuracy_vs_variation.png"),
                   xlabel="programming variation (relative sigma)",
                   title=f"Accuracy vs device variation ({chips} chips each; rram otherwise)", series=series)
    acc_rows = [{"network": k.upper(), **r} for k, rows in acc.items() for r in rows]
    out.csv("accuracy.csv", [{**{k: r[k] for k in ("network", "hardware", "architecture", "mean", "std", "n")},
                              "ci95_low": r["test_ci95"][0], "ci95_high": r["test_ci95"][1], "se_pp": r["se_pp"]}
                             for r in acc_rows])
    out.csv("accuracy_vs_variation.csv", [{"network": k.upper(), "variation": r["value"], "mean": r["mean"],
                                           "std": r["std"], "n": r["n"]} for k, sw in sweeps.items() for r in sw["rows"]])
    acc_table = markdown_table([{"network": k.upper(), **r} for k in acc for r in _with_uncertainty(acc[k])],
                               ["network", "hardware", "architecture", "acc", "ci", "diff"],
                               ["network", "hardware", "architecture", "accuracy % (mean +- sample std over chips)",
                                "95 % test-set interval", "vs row above (pp)"])
    n_test = acc["snn"][0]["n_test"]
    sw_table = markdown_table([{"variation": v, **{k.upper(): _fmt_acc(sweeps[k]["rows"][i]) for k in sweeps}}
                               for i, v in enumerate(DEMO_SWEEP[1])], ["variation", "SNN", "QNN"])
    sections.append(f"## 1. Accuracy under non-idealities\n\n{acc_table}\n\n"
                    + UNCERTAINTY_NOTE.format(n=n_test, one=100 / n_test) + ". The rows are different chips: "
                    f"`ideal (lossless)` maps onto 128x128 tiles with a lossless read-out, `{twin.name}` onto "
                    f"{hw.name}'s 64x64 tiles with its 4-bit ADCs, so their roundings differ; a row above another "
                    "by less than its uncertainty is not a better chip, only another draw.\n\n"
                    f"Sweep of programming variation:\n\n{sw_table}\n\n"
                    "![accuracy vs variation](accuracy_vs_variation.png)\n")

    # 2. energy / latency / area / EDP (measured on the non-ideal chip) and SNN vs QNN
    cost = runner(X.cost_study(ctx, ["snn", "qnn"], hw, seed=seed, name="costs"))
    cmp = X.snn_vs_qnn(cost, nets["snn"], nets["qnn"], hw, tech, platforms=PLATFORMS)
    rep = cmp["snn_report"]
    sections.append(f"## 2. Energy, latency, area, EDP (SNN, T={timesteps}, measured events on {hw.name} chip "
                    f"instance seed {seed})\n\n```\n{rep.table()}\n```\n\n![SNN breakdown](snn_breakdown.png)\n")

    # 3. static vs dynamic timesteps, ideal counterpart and non-ideal chip (same architecture)
    ts = X.timesteps_studies(ctx, "snn", [twin, hw], t_max=timesteps, thetas=X.DEFAULT_THETAS, rule="entropy",
                             tolerance=0.0, seed=seed, runner=runner)
    ts_text = write_timesteps(out, ts, "demo SNN", tech, hws=[twin, hw])
    sections.append("## 3. Static vs dynamic timesteps (entropy exit; theta chosen on the held-out samples with no "
                    f"accuracy loss allowed there; chip instance seed {seed})\n\n{ts_text}\n\n"
                    "![pareto](pareto.png) ![exits](exit_histogram.png)\n")

    # 4. SNN vs QNN on the same hardware
    sections.append(f"## 4. SNN vs QNN (T={timesteps} vs {bits}-bit; accuracies and costs of chip instance seed "
                    f"{seed}, one of the {chips} chips of section 1)\n\n{write_compare(out, cmp, hw, tech)}\n\n"
                    "![platforms](platforms.png)\n")
    wall = time.perf_counter() - t0
    sections.append(f"\n---\nimcsim {__version__}; training seed {train_seed}; {opts.engine.name} engine.\n")
    out.text("report.md", "\n".join(sections))
    out.json("demo.json", {"accuracy": acc_rows, "variation_sweep": sweeps, "energy": rep.to_dict(),
                           "timesteps_summary": ts["summary"],
                           "snn_vs_qnn": {k: v for k, v in cmp.items() if not k.endswith("report")}})
    out.json("run.json", run_info("demo", opts, seconds=wall, train_seconds=t_train))
    c = cmp["comparison"]
    lines = ["accuracy (%):", acc_table, "",
             f"SNN on {hw.name}: energy {rep.energy_J:.3g} J, latency {rep.latency_s:.3g} s, EDP {rep.edp_Js:.3g} J*s, "
             f"area {rep.area_mm2:.3g} mm^2 per inference ({tech.name})",
             "static vs dynamic timesteps:", *[f"  {X.headline(s)}" for s in ts["summary"]],
             f"SNN/QNN on {hw.name}: energy x{c['energy_ratio']:.3g}, EDP x{c['edp_ratio']:.3g}; "
             + ("no break-even spike rate: the SNN costs more than its QNN twin even with no spikes at all"
                if cmp["breakeven_spike_rate"] is None else
                f"break-even spike rate {cmp['breakeven_spike_rate']:.4f} (the SNN costs less below it)"),
             "SNN/QNN energy on the digital platforms: " + ", ".join(
                 f"{r['platform']} x{r['energy_ratio']:.3g}" for r in cmp["platforms"] if r["platform"] != "imc"),
             f"done in {wall:.0f} s (training {t_train:.0f} s)"]
    return "\n".join(lines)
