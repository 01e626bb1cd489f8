"""The `imcsim` commands as functions: each takes plain arguments and an :class:`OutputDir`,
writes JSON / CSV / PNG / Markdown into it and returns a short text summary for stdout."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .. import __version__
from ..convert import convert
from ..cost import analytical_estimate, layer_specs, spikesim_estimate, spikesim_layers
from ..datasets import Dataset, load_dataset
from ..errors import ConfigError
from .experiments import DEFAULT_THETAS, measured_cost, nonideality_sweep, snn_vs_qnn, static_vs_dynamic
from ..hardware import HardwareConfig
from ..models import Network, convnet, mlp, qnn_bits_for
from ..io import machine_info
from .outputs import OutputDir, markdown_table
from ..plots import errorbar_sweep, histogram, pareto
from ..cost.technology import Technology
from ..training import TrainConfig, accuracy, load_checkpoint, save_checkpoint, train

DEFAULT_TECH = "spikesim-65nm-rram"


# ----------------------------------------------------------------------------- helpers


def device_of(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available on this machine (use --device cpu)")
    return torch.device(name)


def hardware(config: str | None, preset: str | None, default: str = "rram") -> HardwareConfig:
    if config:
        return HardwareConfig.from_toml(config)
    return HardwareConfig.preset(preset or default)


def split(ds: Dataset, holdout: int):
    """(fit x, fit y, holdout x, holdout y): the holdout is the last ``holdout`` training
    samples, used for theta choice and calibration but never for fitting weights."""
    n = ds.x_train.shape[0]
    if not 0 <= holdout < n:
        raise ConfigError(f"--holdout must be in [0, {n - 1}] for {n} training samples, got {holdout}")
    cut = n - holdout
    return ds.x_train[:cut], ds.y_train[:cut], ds.x_train[cut:], ds.y_train[cut:]


def seeded_model(builder, seed: int, **kw) -> Network:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(**kw)


def build_model(model: str, ds: Dataset, kind: str, timesteps: int, bits: int | None, neuron: str, hidden, channels,
                seed: int, encoding: str = "direct") -> Network:
    common = dict(in_shape=ds.in_shape, num_classes=ds.num_classes, kind=kind, timesteps=timesteps, bits=bits,
                  neuron=neuron, encoding=encoding)
    if model == "mlp":
        return seeded_model(mlp, seed, hidden=tuple(hidden), **common)
    if model == "convnet":
        return seeded_model(convnet, seed, channels=tuple(channels), hidden=hidden[0] if hidden else 128, **common)
    raise ConfigError(f"--model must be mlp or convnet, got {model!r}")


def checkpoint_data(meta: dict, data_dir: str | None):
    """The dataset (and sample limits) a checkpoint was trained with."""
    ds = load_dataset(meta["dataset"], data_dir or meta.get("data_dir"))
    if meta.get("n_train") or meta.get("n_test"):
        ds = ds.subset(meta.get("n_train"), meta.get("n_test"))
    return ds


def run_info(command: str, **kw) -> dict:
    return {"command": command, "imcsim": __version__, **machine_info(), **kw}


# ----------------------------------------------------------------------------- train


def cmd_train(out: OutputDir, *, dataset: str, data_dir, model: str, kind: str, timesteps: int, bits, neuron: str,
              hidden, channels, epochs: int, batch_size: int, lr: float, loss: str, activity_lambda: float,
              weight_noise: float, holdout: int | None, train_limit, test_limit, encoding: str, seed: int, device,
              progress: bool, download: bool = False) -> str:
    ds = load_dataset(dataset, data_dir, download=download)
    if train_limit or test_limit:
        ds = ds.subset(train_limit, test_limit)
    holdout = holdout if holdout is not None else ds.x_train.shape[0] // 8
    x_fit, y_fit, x_hold, y_hold = split(ds, holdout)
    net = build_model(model, ds, kind, timesteps, bits, neuron, hidden, channels, seed, encoding).to(device)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, activity_lambda=activity_lambda,
                      weight_noise=weight_noise, seed=seed)
    t0 = time.perf_counter()
    hist = train(net, x_fit, y_fit, cfg, progress=progress)
    wall = time.perf_counter() - t0
    acc = accuracy(net, ds.x_test, ds.y_test)
    meta = dict(dataset=dataset, data_dir=str(Path(data_dir).resolve()) if data_dir else None, n_train=train_limit, n_test=test_limit,
                holdout=holdout, split=ds.description, train=asdict(cfg), history=hist, test_accuracy=acc, seed=seed)
    save_checkpoint(out.path("model.pt"), net.cpu(), **meta)
    out.csv("history.csv", hist)
    out.json("train.json", run_info("train", **meta, train_seconds=wall, arch=net.arch))
    desc = f"{kind.upper()} {model}" + (f", T={timesteps}" if kind == "snn" else f", {net.arch['bits']}-bit activations")
    out.text("report.md", f"# Training\n\n- model: {desc}\n- data: {ds.description}; last {holdout} training samples held out\n"
             f"- loss: {loss}, epochs {epochs}, batch {batch_size}, lr {lr}, seed {seed}\n"
             f"- test accuracy (float model): {acc:.2f} %\n- time: {wall:.1f} s\n")
    return f"trained {desc} on {ds.description}\ntest accuracy {acc:.2f} % ({wall:.1f} s); checkpoint {out.target / 'model.pt'}"


# ----------------------------------------------------------------------------- evaluate


def parse_sweep(spec: str):
    """'device.variation=0,0.05,0.1' -> ('device.variation', [0.0, 0.05, 0.1])."""
    if "=" not in spec:
        raise ConfigError(f"--sweep must look like FIELD=V1,V2,..., got {spec!r}")
    field, vals = spec.split("=", 1)
    out = []
    for v in vals.split(","):
        v = v.strip()
        try:
            out.append(int(v) if v.lstrip("-").isdigit() else float(v))
        except ValueError:
            out.append(None if v in ("none", "lossless") else v)
    if not out or not field:
        raise ConfigError(f"--sweep must look like FIELD=V1,V2,..., got {spec!r}")
    allowed = HardwareConfig.sweepable_fields()
    if field not in allowed:
        raise ConfigError(f"--sweep: unknown field {field!r}; sweepable: {', '.join(allowed)}")
    return field, out


def cmd_evaluate(out: OutputDir, *, checkpoint, hw: HardwareConfig, sweep: str | None, chips: int, data_dir, test_limit,
                 batch_size: int, seed: int, device, progress: bool) -> str:
    net, meta = load_checkpoint(checkpoint)
    net = net.to(device)
    ds = checkpoint_data(meta, data_dir)
    x_fit, _, _, _ = split(ds, meta.get("holdout", 0))
    x_cal = x_fit[:512]
    x_test, y_test = ds.x_test[:test_limit], ds.y_test[:test_limit]
    rows = [{"hardware": "float (digital)", "mean": accuracy(net, x_test, y_test, batch_size=batch_size), "std": 0.0}]
    ideal = convert(net, HardwareConfig.ideal(), calibration=x_cal)
    rows.append({"hardware": "ideal crossbar", "mean": accuracy(ideal, x_test, y_test, batch_size=batch_size), "std": 0.0})
    base = nonideality_sweep(net, hw, "seed", [hw.seed], x_cal=x_cal, x_test=x_test, y_test=y_test, chips=chips,
                             batch_size=batch_size, seed=seed, progress=progress)["rows"][0]
    rows.append({"hardware": hw.name, "mean": base["mean"], "std": base["std"]})
    result = {"run": run_info("evaluate", checkpoint=str(checkpoint), data=ds.description, chips=chips),
              "hardware": hw.to_dict(), "accuracy": rows}
    lines = [markdown_table(rows, ["hardware", "mean", "std"], ["hardware", "accuracy %", "std (chips)"])]
    if sweep:
        field, values = parse_sweep(sweep)
        sw = nonideality_sweep(net, hw, field, values, x_cal=x_cal, x_test=x_test, y_test=y_test, chips=chips,
                               batch_size=batch_size, seed=seed, progress=progress)
        result["sweep"] = sw
        out.csv("sweep.csv", [{"field": field, "value": r["value"], "mean": r["mean"], "std": r["std"]} for r in sw["rows"]])
        numeric = all(isinstance(r["value"], (int, float)) for r in sw["rows"])
        xs = [r["value"] if numeric else i for i, r in enumerate(sw["rows"])]
        errorbar_sweep(xs, [r["mean"] for r in sw["rows"]], [r["std"] for r in sw["rows"]], out.path("sweep.png"),
                       xlabel=field, title=f"Accuracy vs {field} ({chips} chips each, {hw.name} otherwise)")
        lines.append(f"\nSweep of {field} ({chips} chip instances each):\n")
        lines.append(markdown_table(sw["rows"], ["value", "mean", "std"], [field, "accuracy %", "std"]))
    out.json("evaluate.json", result)
    out.csv("accuracy.csv", rows)
    text = "\n".join(lines)
    out.text("report.md", f"# Accuracy under non-idealities\n\nModel: {Path(checkpoint).name}; data: {ds.description}\n\n"
             f"Hardware: {hw.describe()}\n\n{text}\n")
    return text


# ----------------------------------------------------------------------------- energy


def cmd_energy(out: OutputDir, *, checkpoint, hw: HardwareConfig, tech: Technology, analytical: bool, spike_rate,
               data_dir, test_limit, batch_size, seed, device, progress, latency_mode="sequential") -> str:
    net, meta = load_checkpoint(checkpoint)
    net = net.to(device)
    shape = tuple(net.arch["in_shape"])
    if analytical:
        specs = layer_specs(net, shape, hw)
        rep = analytical_estimate(specs, hw, tech, net.timesteps, spike_rate, latency_mode=latency_mode,
                                  static_input_once=net.static_input_once)
        note = f"analytical estimate, assumed activity {spike_rate:g}"
    else:
        ds = checkpoint_data(meta, data_dir)
        x_fit, _, _, _ = split(ds, meta.get("holdout", 0))
        xnet = convert(net, hw, calibration=x_fit[:512]).to(device)
        m = measured_cost(xnet, ds.x_test[:test_limit], hw, tech, y=ds.y_test[:test_limit], batch_size=batch_size,
                          seed=seed, progress=progress, latency_mode=latency_mode)
        rep = m["report"]
        note = f"measured on {rep.n_inferences:g} test samples (accuracy {m['accuracy']:.2f} %)"
    result = {"run": run_info("energy", checkpoint=str(checkpoint), note=note), "report": rep.to_dict()}
    if net.arch.get("name") == "convnet":
        result["spikesim_compatible"] = spikesim_estimate(spikesim_layers(layer_specs(net, shape, hw)),
                                                          net.timesteps)
    out.json("energy.json", result)
    out.csv("breakdown.csv", [{"layer": layer.name, **rep.layer_energy_pJ(layer),
                               "total_pJ": sum(rep.layer_energy_pJ(layer).values()), "latency_ns": layer.latency_ns,
                               **{f"area_{k}_um2": v for k, v in layer.area_um2.items()}} for layer in rep.layers])
    rep.plot(out.path("breakdown.png"), title=f"Energy per inference, {hw.name} / {tech.name}")
    table = rep.table()
    out.text("report.md", f"# Energy, latency, EDP\n\nModel: {Path(checkpoint).name}; {note}\n\nHardware: {hw.describe()}\n\n"
             f"Technology: {tech.name} ({tech.description})\n\n```\n{table}\n```\n")
    return f"{note}\n{table}"


# ----------------------------------------------------------------------------- timesteps


def cmd_timesteps(out: OutputDir, *, checkpoint, hws: list[HardwareConfig], tech: Technology, thetas, tolerance: float,
                  rule: str, data_dir, test_limit, batch_size, seed, device, progress) -> str:
    net, meta = load_checkpoint(checkpoint)
    if net.kind != "snn":
        raise ConfigError(f"timesteps needs an SNN checkpoint; {checkpoint} holds a {net.kind.upper()}")
    net = net.to(device)
    ds = checkpoint_data(meta, data_dir)
    x_fit, _, x_hold, y_hold = split(ds, meta.get("holdout", 0))
    if x_hold.shape[0] == 0:
        raise ConfigError("timesteps needs held-out training samples to choose theta (train with --holdout > 0)")
    res = timesteps_study(net, hws, tech, x_fit[:512], x_hold, y_hold, ds.x_test[:test_limit], ds.y_test[:test_limit],
                          thetas, tolerance, rule, batch_size, seed, progress)
    write_timesteps(out, res, f"{Path(checkpoint).name}; {ds.description}")
    return res["text"]


def timesteps_study(net, hws, tech, x_adc, x_hold, y_hold, x_test, y_test, thetas, tolerance, rule, batch_size, seed, progress):
    studies = {}
    for hw in hws:
        studies[hw.name] = static_vs_dynamic(net, hw, tech, x_adc=x_adc, x_theta=x_hold, y_theta=y_hold, x_test=x_test,
                                             y_test=y_test, t_max=net.timesteps, thetas=thetas, rule=rule,
                                             tolerance_pp=tolerance, batch_size=batch_size, seed=seed, progress=progress)
    rows = [dict(hardware=h, **r) for h, s in studies.items() for r in s["rows"]]
    summ = [s["summary"] for s in studies.values()]
    cols = ["hardware", "mode", "T_max", "theta", "accuracy", "avg_timesteps", "energy_J", "latency_s", "edp_Js", "wall_s"]
    text = markdown_table(rows, cols, ["hardware", "mode", "T (max)", "theta", "acc %", "avg T", "energy J", "latency s",
                                       "EDP J*s", "wall s"])
    text += "\n\n" + markdown_table(summ, ["hardware", "theta", "static_accuracy", "dynamic_accuracy", "avg_timesteps",
                                           "energy_saving", "edp_saving", "wall_time_ratio"],
                                    ["hardware", "chosen theta", f"static T={net.timesteps} acc %", "dynamic acc %",
                                     "avg T", "energy saving", "EDP saving", "wall-time ratio"],
                                    fmt={"energy_saving": lambda v: f"{100 * v:.1f} %", "edp_saving": lambda v: f"{100 * v:.1f} %"})
    return {"studies": studies, "rows": rows, "summary": summ, "text": text, "tech": tech.name, "rule": rule,
            "tolerance_pp": tolerance, "t_max": net.timesteps}


def write_timesteps(out: OutputDir, res: dict, what: str, prefix: str = "") -> None:
    rows = res["rows"]
    out.json(f"{prefix}timesteps.json", {"run": run_info("timesteps", model=what), **{k: v for k, v in res.items() if k != "text"}})
    out.csv(f"{prefix}timesteps.csv", [{k: v for k, v in r.items() if k not in ("histogram", "energy_by_component_J")} for r in rows])
    pts = [{"x": r["edp_Js"], "y": r["accuracy"], "group": f"{r['hardware']} {r['mode']}",
            "label": f"T={r['T_max']}" if r["mode"] == "static" else f"{r['theta']:.2g}"} for r in rows]
    pareto(pts, out.path(f"{prefix}pareto.png"), title="Accuracy vs EDP: static T and dynamic theta")
    s0 = res["summary"][-1]
    chosen = next(r for r in rows if r["hardware"] == s0["hardware"] and r["mode"] == "dynamic" and r["theta"] == s0["theta"]) \
        if any(r["mode"] == "dynamic" and r["theta"] == s0["theta"] for r in rows) else rows[0]
    histogram(chosen["histogram"], out.path(f"{prefix}exit_histogram.png"), "exit timestep",
              title=f"Exit timesteps, {s0['hardware']}, theta={s0['theta']:.3g}")
    out.text(f"{prefix}timesteps.md", f"# Static vs dynamic timesteps\n\nModel: {what}\n\nRule: {res['rule']}; theta chosen on "
             f"held-out training samples as the largest theta within {res['tolerance_pp']} pp of static "
             f"T={res['t_max']} there.\n\n{res['text']}\n")


# ----------------------------------------------------------------------------- compare


def cmd_compare(out: OutputDir, *, snn_ck, qnn_ck, hw, tech, data_dir, test_limit, batch_size, seed, device, progress) -> str:
    snn, meta = load_checkpoint(snn_ck)
    qnn, _ = load_checkpoint(qnn_ck)
    if snn.kind != "snn" or qnn.kind != "qnn":
        raise ConfigError("compare needs --snn with an SNN checkpoint and --qnn with a QNN checkpoint")
    ds = checkpoint_data(meta, data_dir)
    x_fit, _, _, _ = split(ds, meta.get("holdout", 0))
    res = snn_vs_qnn(snn.to(device), qnn.to(device), hw, tech, x_cal=x_fit[:512], x_test=ds.x_test[:test_limit],
                     y_test=ds.y_test[:test_limit], batch_size=batch_size, seed=seed, progress=progress)
    text = write_compare(out, res, hw, tech)
    return text


def write_compare(out: OutputDir, res: dict, hw, tech, prefix: str = "") -> str:
    c = res["comparison"]
    rows = [
        {"network": f"SNN T={res['timesteps']}", "accuracy": res["snn_accuracy"], **c["snn"]},
        {"network": f"QNN {res['qnn_bits']}-bit", "accuracy": res["qnn_accuracy"], **c["qnn"]},
    ]
    be = res["breakeven_spike_rate"]
    text = markdown_table(rows, ["network", "accuracy", "energy_J", "latency_s", "edp_Js"],
                          ["network", "acc %", "energy J", "latency s", "EDP J*s"])
    text += (f"\n\nSNN/QNN: energy x{c['energy_ratio']:.3g}, latency x{c['latency_ratio']:.3g}, EDP x{c['edp_ratio']:.3g}, "
             f"crossbar reads x{c['read_ratio']:.3g}. Measured mean spike rate {res['snn_mean_spike_rate']:.3f}; "
             + ("break-even spike rate: none (the SNN costs more even without spikes)" if be is None else
                f"break-even spike rate {be:.4f} (the SNN costs less in energy below it)") + ".")
    be1 = res.get("breakeven_spike_rate_input_layer_once")
    if be is None:
        text += (" With direct encoding the analog input layer is read bit-serially at every timestep; if it were "
                 "computed once per inference (Network(static_input_once=True)) the break-even rate would be "
                 + ("none as well." if be1 is None else f"{be1:.4f}."))
    out.json(f"{prefix}compare.json", {"run": run_info("compare"), "hardware": hw.to_dict(), "technology": tech.name,
                                       **{k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in res.items()}})
    out.csv(f"{prefix}compare.csv", rows)
    res["snn_report"].plot(out.path(f"{prefix}snn_breakdown.png"), title=f"SNN T={res['timesteps']}: energy per inference")
    res["qnn_report"].plot(out.path(f"{prefix}qnn_breakdown.png"), title=f"QNN {res['qnn_bits']}-bit: energy per inference")
    out.text(f"{prefix}compare.md", f"# SNN vs QNN on the same hardware\n\nHardware: {hw.describe()}\n\nTechnology: {tech.name}\n\n{text}\n")
    return text


# ----------------------------------------------------------------------------- demo


def cmd_demo(out: OutputDir, *, seed: int, device, progress: bool, timesteps: int = 4, chips: int = 3) -> str:
    """The main job on the embedded 8x8 digits: train an SNN and its QNN twin, map both onto
    crossbars, and report the four comparisons."""
    t0 = time.perf_counter()
    ds = load_dataset("digits")
    holdout = 200
    x_fit, y_fit, x_hold, y_hold = split(ds, holdout)
    x_cal = x_fit[:512]
    hw, ideal = HardwareConfig.preset("rram"), HardwareConfig.ideal()
    tech = Technology.preset(DEFAULT_TECH)
    bits = qnn_bits_for(timesteps)
    nets = {}
    for kind, loss in (("snn", "per_timestep"), ("qnn", "mean")):
        net = build_model("mlp", ds, kind, timesteps, None, "if", (128,), (), seed).to(device)
        train(net, x_fit, y_fit, TrainConfig(epochs=20, batch_size=64, lr=2e-3, loss=loss, seed=seed), progress=progress)
        save_checkpoint(out.path(f"{kind}.pt"), net.cpu(), dataset="digits", data_dir=None, holdout=holdout, seed=seed,
                        split=ds.description)
        nets[kind] = net.to(device)
    sections = [f"# imcsim demo\n\nData: {ds.description}; the last {holdout} training samples are held out "
                f"(theta choice). Models: MLP 64-128-10, SNN with IF neurons and T={timesteps}, QNN twin with "
                f"{bits}-bit activations (= ceil(log2(T+1))).\n\nNon-ideal hardware: {hw.describe()}\n\n"
                f"Technology: {tech.name} ({tech.description})\n"]

    # 1. accuracy: float, ideal crossbar, non-ideal crossbar over chip instances, + a sweep
    acc_rows = []
    for kind, net in nets.items():
        row = {"network": kind.upper(), "float": accuracy(net, ds.x_test, ds.y_test),
               "ideal": accuracy(convert(net, ideal, calibration=x_cal), ds.x_test, ds.y_test)}
        chip = nonideality_sweep(net, hw, "seed", [hw.seed], x_cal=x_cal, x_test=ds.x_test, y_test=ds.y_test,
                                 chips=chips, seed=seed)["rows"][0]
        row.update({"rram_mean": chip["mean"], "rram_std": chip["std"]})
        acc_rows.append(row)
    sweep_field, sweep_values = "device.variation", [0.0, 0.05, 0.1, 0.2, 0.3]
    series, sweeps = {}, {}
    for kind, net in nets.items():
        sw = nonideality_sweep(net, hw, sweep_field, sweep_values, x_cal=x_cal, x_test=ds.x_test, y_test=ds.y_test,
                               chips=chips, seed=seed, progress=progress)
        sweeps[kind] = sw
        series[kind.upper()] = ([r["mean"] for r in sw["rows"]], [r["std"] for r in sw["rows"]])
    errorbar_sweep(sweep_values, None, None, out.path("accuracy_vs_variation.png"), xlabel="programming variation (relative sigma)",
                   title=f"Accuracy vs device variation ({chips} chips each; rram otherwise)", series=series)
    out.csv("accuracy.csv", acc_rows)
    out.csv("accuracy_vs_variation.csv", [{"network": k.upper(), "variation": r["value"], "mean": r["mean"], "std": r["std"]}
                                          for k, sw in sweeps.items() for r in sw["rows"]])
    acc_table = markdown_table(acc_rows, ["network", "float", "ideal", "rram_mean", "rram_std"],
                               ["network", "float %", "ideal crossbar %", f"rram % (mean of {chips} chips)", "std"])
    sw_table = markdown_table([{"variation": v, **{k.upper(): f"{sweeps[k]['rows'][i]['mean']:.2f} +- {sweeps[k]['rows'][i]['std']:.2f}" for k in sweeps}}
                               for i, v in enumerate(sweep_values)], ["variation", "SNN", "QNN"])
    sections.append(f"## 1. Accuracy under non-idealities\n\n{acc_table}\n\nSweep of programming variation:\n\n{sw_table}\n\n"
                    "![accuracy vs variation](accuracy_vs_variation.png)\n")

    # 2. energy / latency / EDP with breakdown (measured on the non-ideal chip)
    xsnn = convert(nets["snn"], hw, calibration=x_cal)
    m = measured_cost(xsnn, ds.x_test, hw, tech, y=ds.y_test, seed=seed)
    rep = m["report"]
    rep.plot(out.path("energy_breakdown.png"), title=f"SNN T={timesteps} on {hw.name}: energy per inference")
    out.json("energy.json", rep.to_dict())
    sections.append(f"## 2. Energy, latency, EDP (SNN, T={timesteps}, measured events)\n\n```\n{rep.table()}\n```\n\n"
                    "![energy breakdown](energy_breakdown.png)\n")

    # 3. static vs dynamic timesteps, ideal and non-ideal
    ts = timesteps_study(nets["snn"], [ideal, hw], tech, x_cal, x_hold, y_hold, ds.x_test, ds.y_test, DEFAULT_THETAS,
                         0.0, "entropy", 256, seed, progress)
    write_timesteps(out, ts, "demo SNN")
    sections.append(f"## 3. Static vs dynamic timesteps (entropy exit, theta chosen on the held-out samples: no accuracy "
                    f"loss allowed there)\n\n{ts['text']}\n\n![pareto](pareto.png) ![exits](exit_histogram.png)\n")

    # 4. SNN vs QNN on the same hardware
    cmp = snn_vs_qnn(nets["snn"], nets["qnn"], hw, tech, x_cal=x_cal, x_test=ds.x_test, y_test=ds.y_test, seed=seed)
    sections.append(f"## 4. SNN vs QNN (T={timesteps} vs {bits}-bit)\n\n{write_compare(out, cmp, hw, tech)}\n")

    wall = time.perf_counter() - t0
    sections.append(f"\n---\nimcsim {__version__}, seed {seed}, {wall:.0f} s on {torch.get_num_threads()} threads.\n")
    out.text("report.md", "\n".join(sections))
    out.json("demo.json", {"run": run_info("demo", seed=seed, seconds=wall), "accuracy": acc_rows,
                           "variation_sweep": sweeps, "energy": rep.to_dict(),
                           "timesteps_summary": ts["summary"], "snn_vs_qnn": {k: v for k, v in cmp.items() if not k.endswith("report")}})
    s = ts["summary"]
    c = cmp["comparison"]
    lines = ["accuracy (%):", acc_table, "",
             f"SNN energy {rep.energy_J:.3g} J, latency {rep.latency_s:.3g} s, EDP {rep.edp_Js:.3g} J*s per inference ({tech.name})",
             "dynamic vs static timesteps: " + "; ".join(
                 f"{x['hardware']}: theta {x['theta']:.3g}, acc {x['dynamic_accuracy']:.2f} vs {x['static_accuracy']:.2f} %, "
                 f"avg T {x['avg_timesteps']:.2f}, EDP -{100 * x['edp_saving']:.0f} %" for x in s),
             f"SNN/QNN: energy x{c['energy_ratio']:.3g}, EDP x{c['edp_ratio']:.3g}, break-even spike rate "
             + ("none" if cmp["breakeven_spike_rate"] is None else f"{cmp['breakeven_spike_rate']:.4f}"),
             f"done in {wall:.0f} s"]
    return "\n".join(lines)
