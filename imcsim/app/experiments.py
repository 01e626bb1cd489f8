"""Experiments that combine the pieces: accuracy under non-idealities, costs, static vs dynamic
timesteps, SNN vs QNN. Each returns plain dicts (JSON-ready); the CLI and scripts write them.
"""

from __future__ import annotations

import math
import statistics
import time

import torch

from ..convert import convert
from ..cost import (activity_weighted_rate, analytical_estimate, breakeven_spike_rate, compare_reports, estimate,
                    layer_specs, measured_activity)
from ..dynamic import choose_threshold, run_dynamic
from ..events import reset_events
from ..hardware import HardwareConfig
from ..models import Network
from ..cost.technology import Technology
from ..training import accuracy, predict_logits

DEFAULT_THETAS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


def input_bits(model: Network, hw: HardwareConfig) -> float:
    """Network input fetched from off-chip per inference: numel x input bits."""
    shape = model.arch.get("in_shape") if isinstance(model, Network) else None
    return float(math.prod(shape) * hw.inputs.bits) if shape else 0.0


def measured_cost(xnet: Network, x: torch.Tensor, hw: HardwareConfig, tech: Technology, *, y=None, batch_size=256,
                  seed=0, progress=False, latency_mode="sequential") -> dict:
    """Run ``xnet`` on ``x`` (all timesteps) and price the recorded events."""
    reset_events(xnet)
    t0 = time.perf_counter()
    logits = predict_logits(xnet, x, batch_size=batch_size, progress=progress, desc="measure")
    wall = time.perf_counter() - t0
    rep = estimate(xnet, tech, x.shape[0], timesteps=xnet.timesteps, latency_mode=latency_mode)
    out = {"report": rep, "wall_s": wall, "logits": logits}
    if y is not None:
        out["accuracy"] = 100.0 * float((logits.mean(0).argmax(-1) == y).float().mean())
    return out


def static_vs_dynamic(model: Network, hw: HardwareConfig, tech: Technology, *, x_adc, x_theta, y_theta, x_test, y_test,
                      t_max: int, thetas=DEFAULT_THETAS, rule="entropy", tolerance_pp=0.1, batch_size=256, seed=0,
                      chip_seed=None, progress=False) -> dict:
    """Static T = 1..t_max against dynamic exits on one hardware configuration.

    x_adc: calibration data for ADC / input ranges. (x_theta, y_theta): held-out split on
    which theta is chosen (largest theta within ``tolerance_pp`` of static t_max there).
    Every row is a real run of :func:`run_dynamic` on the test split, priced from its events.
    """
    xnet = convert(model, hw, calibration=x_adc, seed=chip_seed)

    def priced(theta, T, label):
        reset_events(xnet)
        run = run_dynamic(xnet, x_test, theta, T, rule=rule, y=y_test, batch_size=batch_size,
                          progress=progress, desc=label)
        rep = estimate(xnet, tech, x_test.shape[0], timesteps=run.avg_timesteps)
        return {"mode": "static" if theta == 0 else "dynamic", "T_max": T, "theta": theta, "accuracy": run.accuracy,
                "avg_timesteps": run.avg_timesteps, "histogram": run.histogram(), "energy_J": rep.energy_J,
                "latency_s": rep.latency_s, "edp_Js": rep.edp_Js, "wall_s": run.wall_s,
                "energy_by_component_J": rep.by_component()}

    rows = [priced(0.0, T, f"static T={T}") for T in range(1, t_max + 1)]
    cal_logits = predict_logits(xnet, x_theta, batch_size=batch_size, timesteps=t_max, desc="calibrate theta")
    choice = choose_threshold(cal_logits, y_theta, rule, tolerance_pp)
    sweep = sorted(set(float(t) for t in thetas) | {choice["theta"]})
    for th in sweep:
        if th > 0:
            rows.append(priced(th, t_max, f"theta={th:.3g}"))
    static = rows[t_max - 1]
    chosen = next((r for r in rows if r["mode"] == "dynamic" and r["theta"] == choice["theta"]), static)
    summary = {
        "hardware": hw.name,
        "theta": choice["theta"],
        "theta_choice": choice,
        "static_accuracy": static["accuracy"],
        "dynamic_accuracy": chosen["accuracy"],
        "accuracy_drop_pp": static["accuracy"] - chosen["accuracy"],
        "avg_timesteps": chosen["avg_timesteps"],
        "energy_saving": 1 - chosen["energy_J"] / static["energy_J"],
        "latency_saving": 1 - chosen["latency_s"] / static["latency_s"],
        "edp_saving": 1 - chosen["edp_Js"] / static["edp_Js"],
        "wall_time_ratio": chosen["wall_s"] / static["wall_s"],
    }
    return {"rows": rows, "summary": summary, "rule": rule, "t_max": t_max}


def nonideality_sweep(model: Network, base: HardwareConfig, field: str, values, *, x_cal, x_test, y_test, chips=3,
                      batch_size=256, seed=0, progress=False) -> dict:
    """Accuracy (mean, std over ``chips`` chip instances) with one config field swept."""
    from tqdm.auto import tqdm

    rows = []
    bar = tqdm(total=len(values) * chips, desc=f"sweep {field}", disable=not progress, leave=False)
    for v in values:
        hw = base.replace(**{field: v})
        accs = []
        for c in range(chips):
            xnet = convert(model, hw, calibration=x_cal, seed=hw.seed + c)
            accs.append(accuracy(xnet, x_test, y_test, batch_size=batch_size))
            bar.update(1)
        rows.append({"value": v, "mean": statistics.fmean(accs), "std": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
                     "chips": accs})
    bar.close()
    return {"field": field, "rows": rows, "base": base.name, "chips": chips}


def snn_vs_qnn(snn: Network, qnn: Network, hw: HardwareConfig, tech: Technology, *, x_cal, x_test, y_test,
               batch_size=256, seed=0, progress=False) -> dict:
    """Accuracy and measured cost of an SNN (T steps) and its QNN twin on the same hardware,
    their ratios, and the average spike rate below which the SNN would cost less."""
    res = {}
    for name, net in (("snn", snn), ("qnn", qnn)):
        xnet = convert(net, hw, calibration=x_cal)
        m = measured_cost(xnet, x_test, hw, tech, y=y_test, batch_size=batch_size, seed=seed, progress=progress)
        res[name] = m
    cmp = compare_reports(res["snn"]["report"], res["qnn"]["report"])
    # Break-even: the same analytical model for both networks, each at its measured per-layer
    # activity; the SNN's activity profile is scaled to find where it costs what the QNN does.
    shape = tuple(snn.arch["in_shape"])
    snn_specs, qnn_specs = layer_specs(snn, shape, hw), layer_specs(qnn, shape, hw)
    snn_prof = measured_activity(res["snn"]["report"], snn_specs)
    qnn_prof = measured_activity(res["qnn"]["report"], qnn_specs)
    in_rate = snn_prof[0] if snn_specs[0].input == "analog" else 0.5
    q = analytical_estimate(qnn_specs, hw, tech, 1, qnn_prof, input_rate=qnn_prof[0] if qnn_specs[0].input == "analog" else 0.5)
    measured_rate = activity_weighted_rate(snn_specs, snn_prof)
    be = breakeven_spike_rate(snn_specs, hw, tech, snn.timesteps, q.energy_J, profile=snn_prof, input_rate=in_rate,
                              static_input_once=snn.static_input_once)
    # The same if the layers fed by the constant (direct-encoded) input ran once per inference.
    be_once = breakeven_spike_rate(snn_specs, hw, tech, snn.timesteps, q.energy_J, profile=snn_prof, input_rate=in_rate,
                                   static_input_once=True)
    return {
        "timesteps": snn.timesteps,
        "qnn_bits": qnn.arch.get("bits"),
        "snn_accuracy": res["snn"]["accuracy"],
        "qnn_accuracy": res["qnn"]["accuracy"],
        "comparison": cmp,
        "snn_mean_spike_rate": measured_rate,
        "breakeven_model": "analytical model for both networks at their measured per-layer input activity; rates are "
                           "activity-weighted means over the spike-fed layers",
        "breakeven_spike_rate": be,
        "breakeven_spike_rate_input_layer_once": be_once,
        "snn_report": res["snn"]["report"],
        "qnn_report": res["qnn"]["report"],
    }
