"""Experiments as studies: each builds its tasks (:mod:`.tasks`), runs them on an engine
(:mod:`.engines`) and merges the results into plain dicts (JSON-ready). The command line
and scripts write them; nothing here depends on which engine ran the tasks.

Chip seeds: chip instance ``c`` of a study with base seed ``s`` is ``s + c`` (programming
variation, faults and the read-noise key all follow from it); ``--seed`` sets ``s``,
defaulting to the hardware config's ``seed``.
"""

from __future__ import annotations

import dataclasses
import statistics

from ..cost import (CostReport, activity_weighted_rate, analytical_estimate, breakeven_spike_rate, compare_reports,
                    layer_specs, measured_activity)
from ..errors import ConfigError
from ..hardware import HardwareConfig
from ..stats import paired_difference, uncertainty
from .study import Study, Task, fingerprint, run_study
from .tasks import report_of, unpack_mask

DEFAULT_THETAS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
CALIBRATION_SAMPLES = 128


def make_context(models: dict, *, x_cal, x_test, y_test, x_hold=None, y_hold=None, tech=None, batch_size=256) -> dict:
    """The shared context of a study (see :mod:`.tasks`)."""
    ctx = {"models": {k: v.cpu().eval() for k, v in models.items()}, "x_cal": x_cal, "x_test": x_test,
           "y_test": y_test, "x_hold": x_hold, "y_hold": y_hold, "tech": tech, "batch_size": int(batch_size)}
    ctx["uid"] = fingerprint(ctx)
    return ctx


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (n - 1) and n of chip-instance results."""
    n = len(values)
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if n > 1 else 0.0, "n": n,
            "values": list(values)}


def default_runner(engine, journal=None, resume=False, progress=False, stats=None):
    """A function running a study on ``engine`` with one journal (every study its own id)."""
    return lambda study: run_study(study, engine, journal=journal, resume=resume, progress=progress, stats=stats)


# ------------------------------------------------------------------------------ accuracy


def _same_chip(a: HardwareConfig, b: HardwareConfig) -> bool:
    """Whether two configs are the same noise-free chip under different names (or seeds,
    which then decide nothing)."""
    noise_free = dataclasses.replace(a.ideal_counterpart(), name=a.name) == a
    return noise_free and dataclasses.replace(a, name="x", seed=0) == dataclasses.replace(b, name="x", seed=0)


def reference_configs(hw: HardwareConfig) -> list[tuple[str, str, HardwareConfig | None]]:
    """(key, label, hardware) of the reference rows beside ``hw``: the float model, the
    lossless ideal crossbar, ``hw``'s ideal counterpart -- each only if it is not the same
    chip as a later row (``--preset ideal`` needs no counterpart)."""
    out = [("float", "float (digital)", None)]
    counterpart = hw.ideal_counterpart()
    ideal = HardwareConfig.ideal()
    if not (_same_chip(ideal, counterpart) or _same_chip(ideal, hw)):
        out.append(("ideal", "ideal (lossless)", ideal))
    if not _same_chip(counterpart, hw):
        out.append(("counterpart", counterpart.name, counterpart))
    return out


# Run time of the reference rows relative to a non-ideal chip's (MNIST conv SNN on rram, one
# thread: float 1.0 s, lossless ideal 3.1 s, rram-ideal 4.8 s, an rram chip 12 s): a
# scheduling hint only, so that the engines start the chips first.
REFERENCE_COST = {"float": 0.1, "ideal": 0.25, "counterpart": 0.4}


def slice_bounds(n: int, slices: int) -> list[tuple[int, int]]:
    """[start, stop) of ``slices`` contiguous, near-equal parts of ``n`` samples."""
    if not 1 <= slices <= n:
        raise ConfigError(f"--slices must be between 1 and the {n} test samples, got {slices}")
    return [(i * n // slices, (i + 1) * n // slices) for i in range(slices)]


def _slice_key(key: str, i: int) -> str:
    return f"{key}/slice/{i}"


def _accuracy_tasks(key: str, params: dict, cost: float, bounds: list[tuple[int, int]]) -> list[Task]:
    """One accuracy task, or one per data slice when there are several."""
    if len(bounds) == 1:
        return [Task(key, "accuracy", params, cost=cost)]
    n = bounds[-1][1]
    return [Task(_slice_key(key, i), "accuracy", {**params, "start": a, "stop": b}, cost=cost * (b - a) / n)
            for i, (a, b) in enumerate(bounds)]


def _counts_of(results: dict, key: str, slices: int) -> tuple[int, int]:
    """(correct, samples) of ``key`` from the integer counts of its task or of its slices."""
    parts = [results[key]] if slices == 1 else [results[_slice_key(key, i)] for i in range(slices)]
    return sum(p["correct"] for p in parts), sum(p["n"] for p in parts)


def _mask_of(results: dict, key: str, slices: int):
    """Which test samples ``key`` got right (bool array, the slices in order)."""
    import numpy as np

    parts = [results[key]] if slices == 1 else [results[_slice_key(key, i)] for i in range(slices)]
    return np.concatenate([unpack_mask(p["mask"], p["n"]) for p in parts])


def _paired(rows: list[dict], masks: list[list]) -> None:
    """Each row's difference to the row above, paired on the same samples and chips."""
    for i in range(1, len(rows)):
        d, se = paired_difference(masks[i], masks[i - 1])
        rows[i]["diff_pp"], rows[i]["diff_se_pp"] = d, se


def _accuracy_of(results: dict, key: str, slices: int) -> float:
    """Accuracy (%) of ``key`` from the integer counts of its task or of its slices."""
    correct, n = _counts_of(results, key, slices)
    return 100.0 * correct / n


def accuracy_study(ctx: dict, model: str, hw: HardwareConfig, *, chips: int, seed: int, sweep=None,
                   references: bool = True, name: str = "accuracy", slices: int = 1, tag: str | None = None) -> Study:
    """Tasks: the reference rows, ``chips`` instances of ``hw`` and of every sweep point.
    slices > 1 splits every row's test split into that many tasks (each programs and
    calibrates its own copy of the chip): for clusters with more CPUs than rows, or chips
    whose whole test set takes too long for one task. The merged counts, and so the
    results, do not depend on it. ``tag``: the key prefix of the chip and sweep tasks
    (default: the model), to run a second variant of ``hw`` beside the first."""
    tag = tag or model
    bounds = slice_bounds(int(ctx["y_test"].shape[0]), slices)
    tasks = []
    if references:
        for key, _, ref in reference_configs(hw):
            params = {"model": model} if ref is None else {"model": model, "hw": ref.to_dict(), "chip_seed": seed}
            tasks += _accuracy_tasks(f"{model}/{key}", params, REFERENCE_COST[key], bounds)
    for c in range(chips):
        tasks += _accuracy_tasks(f"{tag}/chip/{c}", {"model": model, "hw": hw.to_dict(), "chip_seed": seed + c},
                                 1.0, bounds)
    if sweep:
        field, values = sweep
        for i, v in enumerate(values):
            h = hw.replace(**{field: v}).to_dict()
            for c in range(chips):
                tasks += _accuracy_tasks(f"{tag}/sweep/{i}/{c}", {"model": model, "hw": h, "chip_seed": seed + c},
                                         1.0, bounds)
    return Study(name, ctx, tasks)


def accuracy_rows(results: dict, model: str, hw: HardwareConfig, chips: int, sweep=None, references=True,
                  slices: int = 1, tag: str | None = None) -> dict:
    """Rows: float model, lossless ideal crossbar, the preset's ideal counterpart (same
    architecture), the preset over ``chips`` instances; and the sweep. Every row carries its
    uncertainty (:func:`imcsim.stats.uncertainty`: the test set's binomial interval and the
    spread over chips)."""
    tag = tag or model

    def pre(key):  # the references run under the model's name, the chips and sweep under the tag
        return f"{tag if key.startswith(('chip/', 'sweep/')) else model}/{key}"

    def acc(key):
        return _accuracy_of(results, pre(key), slices)

    n_test = _counts_of(results, pre("chip/0"), slices)[1]

    def row(keys):
        s = spread([acc(k) for k in keys])
        return {**s, **uncertainty(s["mean"], s["std"], s["n"], n_test)}

    def masks(keys):
        return [_mask_of(results, pre(k), slices) for k in keys]

    rows, keys = [], []
    if references:
        for key, label, ref in reference_configs(hw):
            rows.append({"hardware": label, "architecture": "-" if ref is None else ref.architecture(), **row([key])})
            keys.append([key])
    chip_keys = [f"chip/{c}" for c in range(chips)]
    rows.append({"hardware": hw.name, "architecture": hw.architecture(), **row(chip_keys)})
    keys.append(chip_keys)
    _paired(rows, [masks(k) for k in keys])
    out = {"rows": rows}
    if sweep:
        field, values = sweep
        sk = [[f"sweep/{i}/{c}" for c in range(chips)] for i in range(len(values))]
        srows = [{"value": v, "label": sweep_label(field, v), **row(sk[i])} for i, v in enumerate(values)]
        _paired(srows, [masks(k) for k in sk])
        out["sweep"] = {"field": field, "base": hw.name, "chips": chips, "rows": srows}
    return out


def sweep_label(field: str, value) -> str:
    """How a swept value reads in tables, CSV and plots (the word the user gave for the
    categorical ones: 'lossless', 'pair', 'true')."""
    if value is None:
        return "lossless" if field == "adc.bits" else "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------ attribution

# Each non-ideality a chip can have, and the fields that switch it off. Weight quantisation is
# "off" at 16 bits (the widest imcsim maps), the ADC at a lossless read-out, the on/off ratio
# at g_off = 0 (an infinite ratio).
NONIDEALITIES = {
    "variation": {"device.variation": 0.0},
    "read noise": {"device.read_noise": 0.0},
    "stuck-at faults": {"device.p_stuck_on": 0.0, "device.p_stuck_off": 0.0},
    "wires": {"wires.r_row": 0.0, "wires.r_col": 0.0, "wires.r_src": 0.0, "wires.r_sink": 0.0},
    "on/off ratio": {"device.g_off": 0.0},
    "ADC resolution": {"adc.bits": None},
    "weight quantisation": {"weight_bits": 16},
}
_SEEDED = ("variation", "read noise", "stuck-at faults")  # what a chip seed draws


def _present(hw: HardwareConfig) -> list[str]:
    """The non-idealities ``hw`` has (a field away from its 'off' value)."""
    flat = hw.to_dict()

    def value(field):
        v = flat
        for part in field.replace("weight_bits", "weights.bits").split("."):
            v = v[part]
        return v

    return [k for k, off in NONIDEALITIES.items()
            if any(value(f) != (o if f != "weight_bits" else 16) for f, o in off.items())]


def attribution_configs(hw: HardwareConfig) -> list[tuple[str, str, HardwareConfig, bool]]:
    """(key, label, hardware, seeded) of the attribution rows: every non-ideality of ``hw``
    off, each one alone, each one left out, all on (``hw`` itself). ``seeded``: whether chip
    seeds change the row (variation, read noise or faults in it)."""
    present = _present(hw)
    out = [("none", "none (all of them off)", _switched_off(hw, present), False)]
    for k in present:
        out.append((f"alone/{k}", f"{k} alone", _switched_off(hw, [j for j in present if j != k]), k in _SEEDED))
        out.append((f"without/{k}", f"all but {k}", _switched_off(hw, [k]), any(j in _SEEDED for j in present if j != k)))
    out.append(("all", f"all ({hw.name})", hw, any(k in _SEEDED for k in present)))
    return out


def _switched_off(hw: HardwareConfig, which) -> HardwareConfig:
    """``hw`` with the non-idealities ``which`` off. An infinite on/off ratio is g_off = 0,
    except where wires stay on (the circuit solve needs a conductance in every cell): there
    g_off = g_on / 10^6."""
    fields = {f: v for k in which for f, v in NONIDEALITIES[k].items()}
    wires_on = "wires" not in which and any(v for v in dataclasses.asdict(hw.wires).values())
    if "device.g_off" in fields and wires_on:
        fields["device.g_off"] = hw.device.g_on * 1e-6
    return hw.replace(**fields)


def attribution_study(ctx: dict, model: str, hw: HardwareConfig, *, chips: int, seed: int,
                      name: str = "attribution") -> Study:
    """Accuracy with each non-ideality of ``hw`` alone and each left out, over the same chip
    seeds (one chip where no seed changes the result)."""
    bounds = slice_bounds(int(ctx["y_test"].shape[0]), 1)
    tasks = []
    for key, _, h, seeded in attribution_configs(hw):
        for c in range(chips if seeded else 1):
            tasks += _accuracy_tasks(f"{model}/attr/{key}/{c}", {"model": model, "hw": h.to_dict(),
                                                                   "chip_seed": seed + c}, 1.0, bounds)
    return Study(name, ctx, tasks)


def attribution_rows(results: dict, model: str, hw: HardwareConfig, chips: int) -> dict:
    """Rows per configuration (with uncertainty), and per non-ideality: the accuracy it
    costs alone (against none) and what leaving it out recovers (against all), in pp."""
    n_test = _counts_of(results, f"{model}/attr/none/0", 1)[1]
    rows, by_key, masks = [], {}, {}
    for key, label, h, seeded in attribution_configs(hw):
        runs = [f"{model}/attr/{key}/{c}" for c in range(chips if seeded else 1)]
        s = spread([_accuracy_of(results, r, 1) for r in runs])
        row = {"key": key, "config": label, "chips": len(runs), **s, **uncertainty(s["mean"], s["std"], s["n"], n_test),
               "hardware": h.to_dict()}
        rows.append(row)
        by_key[key] = row
        masks[key] = [_mask_of(results, r, 1) for r in runs]
    effects = []
    for k in _present(hw):  # paired: the same test images and chip seeds
        lost, lost_se = paired_difference(masks["none"], masks[f"alone/{k}"])
        back, back_se = paired_difference(masks[f"without/{k}"], masks["all"])
        effects.append({"nonideality": k, "loss_alone_pp": lost, "loss_alone_se_pp": lost_se,
                        "recovered_when_left_out_pp": back, "recovered_se_pp": back_se,
                        "switched_off_by": {f: v for f, v in NONIDEALITIES[k].items()}})
    return {"rows": rows, "effects": effects, "off_values": "weight quantisation off = 16-bit weights; ADC "
            "resolution off = lossless read-out; on/off ratio off = g_off 0 (infinite ratio; g_on / 10^6 where "
            "wires stay on)"}


# ------------------------------------------------------------------------------ costs


def cost_study(ctx: dict, models: list[str], hw: HardwareConfig, *, seed: int, latency_mode="sequential",
               name="cost") -> Study:
    return Study(name, ctx, [Task(f"{m}/cost", "measured_cost", {"model": m, "hw": hw.to_dict(), "chip_seed": seed,
                                                                   "latency_mode": latency_mode}) for m in models])


def analytical_at_measured(net, hw: HardwareConfig, tech, report: CostReport, latency_mode="sequential") -> CostReport:
    """The analytical estimate at the per-layer input activity a run measured."""
    shape = tuple(net.arch["in_shape"])
    specs = layer_specs(net, shape, hw)
    act = measured_activity(report, specs)
    T = net.timesteps if net.kind == "snn" else 1
    return analytical_estimate(specs, hw, tech, T, act, input_rate=act[0] if specs[0].input == "analog" else 0.5,
                               latency_mode=latency_mode, static_input_once=net.static_input_once)


def snn_vs_qnn(results: dict, snn, qnn, hw: HardwareConfig, tech, platforms=("imc",),
               neuromorphic: str = "typical") -> dict:
    """Measured SNN and QNN costs on the same hardware, their ratios, and the break-even
    spike rate (the same analytical model for both, each at its measured activity).
    ``platforms`` beyond 'imc' ('systolic', 'neuromorphic') price the same two networks, fed
    the same measured per-layer activity, on the digital platforms of :mod:`imcsim.cost.platforms`."""
    rs, rq = report_of(results["snn/cost"]), report_of(results["qnn/cost"])
    shape = tuple(snn.arch["in_shape"])
    snn_specs, qnn_specs = layer_specs(snn, shape, hw), layer_specs(qnn, shape, hw)
    snn_prof, qnn_prof = measured_activity(rs, snn_specs), measured_activity(rq, qnn_specs)
    in_rate = snn_prof[0] if snn_specs[0].input == "analog" else 0.5
    q = analytical_estimate(qnn_specs, hw, tech, 1, qnn_prof,
                            input_rate=qnn_prof[0] if qnn_specs[0].input == "analog" else 0.5)
    be = breakeven_spike_rate(snn_specs, hw, tech, snn.timesteps, q.energy_J, profile=snn_prof, input_rate=in_rate,
                              static_input_once=snn.static_input_once)
    be_once = breakeven_spike_rate(snn_specs, hw, tech, snn.timesteps, q.energy_J, profile=snn_prof,
                                   input_rate=in_rate, static_input_once=True)
    extra = {}
    if set(platforms) - {"imc"}:
        from ..cost import platforms as P

        pairs = {"imc": {"snn": {"energy_J": rs.energy_J, "latency_s": rs.latency_s},
                         "qnn": {"energy_J": rq.energy_J, "latency_s": rq.latency_s}, "breakeven": be,
                         "model": f"crossbar chip {hw.name}, event-driven costs ({tech.name})"}}
        s_act, q_act = P.input_activity(rs, len(snn_specs)), P.input_activity(rq, len(qnn_specs))
        bits = int(qnn.arch.get("bits") or 8)
        if "systolic" in platforms:
            pairs["systolic"] = P.systolic_pair(snn_specs, qnn_specs, s_act, q_act, snn.timesteps, bits)
        if "neuromorphic" in platforms:
            pairs["neuromorphic"] = P.neuromorphic_pair(snn_specs, qnn_specs, s_act, q_act, snn.timesteps, bits,
                                                        weight_bits=hw.weight_bits, setting=neuromorphic)
        extra = {"platforms": P.platform_table({k: pairs[k] for k in P.PLATFORMS if k in pairs}),
                 "platform_activity": {"snn": s_act, "qnn": q_act}}
    return {**extra, "timesteps": snn.timesteps, "qnn_bits": qnn.arch.get("bits"), "hardware": hw.name,
            "snn_input": snn_specs[0].input,
            "architecture": hw.architecture(), "snn_accuracy": results["snn/cost"]["accuracy"],
            "qnn_accuracy": results["qnn/cost"]["accuracy"], "comparison": compare_reports(rs, rq),
            "snn_mean_spike_rate": activity_weighted_rate(snn_specs, snn_prof),
            "breakeven_model": "analytical model for both networks at their measured per-layer input activity; rates "
                               "are activity-weighted means over the spike-fed layers",
            "breakeven_spike_rate": be, "breakeven_spike_rate_input_layer_once": be_once,
            "snn_report": rs, "qnn_report": rq}


# ------------------------------------------------------------------------------ timesteps


def _samples(ctx: dict, split: str) -> int:
    y = ctx.get(f"y_{split}")
    return 0 if y is None else int(y.shape[0])


def timesteps_studies(ctx: dict, model: str, hws: list[HardwareConfig], *, t_max: int, thetas, rule: str,
                      tolerance: float, seed: int, runner) -> dict:
    """Static T = 1..t_max against dynamic exits on each hardware config (one chip instance,
    ``seed``): theta chosen on the held-out split (largest within ``tolerance`` pp of static
    t_max there), every point a real run on the test split priced from its events."""
    first = []
    for hw in hws:
        h = hw.to_dict()
        # cost hints (start the longest runs first): timesteps x samples, relative to T_max on the test split
        first.append(Task(f"{hw.name}/choice", "theta_choice", {"model": model, "hw": h, "chip_seed": seed,
                                                                "rule": rule, "tolerance": tolerance, "t_max": t_max},
                          cost=_samples(ctx, "hold") / max(1, _samples(ctx, "test"))))
        first += [Task(f"{hw.name}/static/{T}", "timestep_point", {"model": model, "hw": h, "chip_seed": seed,
                                                                   "theta": 0.0, "t_max": T, "rule": rule},
                       cost=T / t_max)
                  for T in range(1, t_max + 1)]
    r1 = runner(Study("timesteps (static)", ctx, first))
    second, sweeps = [], {}
    for hw in hws:
        chosen = r1[f"{hw.name}/choice"]["theta"]
        sweeps[hw.name] = sorted({float(t) for t in thetas if t > 0} | ({chosen} if chosen > 0 else set()))
        second += [Task(f"{hw.name}/dynamic/{th!r}", "timestep_point", {"model": model, "hw": hw.to_dict(),
                                                                        "chip_seed": seed, "theta": th, "t_max": t_max,
                                                                        "rule": rule})
                   for th in sweeps[hw.name]]
    r2 = runner(Study("timesteps (dynamic)", ctx, second)) if second else {}
    rows, summary = [], []
    for hw in hws:
        static = [dict(hardware=hw.name, **r1[f"{hw.name}/static/{T}"]) for T in range(1, t_max + 1)]
        dynamic = [dict(hardware=hw.name, **r2[f"{hw.name}/dynamic/{th!r}"]) for th in sweeps[hw.name]]
        rows += static + dynamic
        summary.append({**_summary(hw, r1[f"{hw.name}/choice"], static, dynamic, tolerance),
                        "n_test": _samples(ctx, "test")})
    return {"rows": rows, "summary": summary, "rule": rule, "tolerance_pp": tolerance, "t_max": t_max}


def _saving(new: float, old: float) -> float:
    """1 - new / old; 0 when both are 0 (a technology whose every energy is 0)."""
    return 1 - new / old if old else 0.0


def _summary(hw: HardwareConfig, choice: dict, static: list[dict], dynamic: list[dict], tolerance: float) -> dict:
    """The chosen dynamic point against the static points: the best static point at equal
    or better accuracy (lowest EDP), whether a static T beats the dynamic point outright,
    and the test-split accuracy change beside the tolerance it was chosen with."""
    t_max = static[-1]
    chosen = next((r for r in dynamic if r["theta"] == choice["theta"]), t_max)
    at_least = [r for r in static if r["accuracy"] >= chosen["accuracy"]]
    best = min(at_least, key=lambda r: r["edp_Js"]) if at_least else t_max
    wins = [r for r in at_least if r["edp_Js"] <= chosen["edp_Js"]]
    drop = t_max["accuracy"] - chosen["accuracy"]
    return {
        "hardware": hw.name, "architecture": hw.architecture(), "theta": choice["theta"], "theta_choice": choice,
        "dynamic_accuracy": chosen["accuracy"], "avg_timesteps": chosen["avg_timesteps"],
        "static_tmax_accuracy": t_max["accuracy"], "test_drop_pp": drop, "tolerance_pp": tolerance,
        "drop_exceeds_tolerance": drop > tolerance + 1e-9,
        "best_static_T": best["T_max"], "best_static_accuracy": best["accuracy"],
        "best_static_has_accuracy": bool(at_least),
        "energy_saving_vs_best_static": _saving(chosen["energy_J"], best["energy_J"]),
        "edp_saving_vs_best_static": _saving(chosen["edp_Js"], best["edp_Js"]),
        "edp_saving_vs_tmax": _saving(chosen["edp_Js"], t_max["edp_Js"]),
        "static_wins": bool(wins), "static_winner_T": min(wins, key=lambda r: r["edp_Js"])["T_max"] if wins else None,
        "dynamic_edp_Js": chosen["edp_Js"], "dynamic_edp_per_sample_Js": chosen["edp_per_sample_Js"],
    }


def _change(saving: float) -> str:
    return f"{100 * saving:.0f} % lower" if saving >= 0 else f"{-100 * saving:.0f} % higher"


def headline(s: dict) -> str:
    """One honest sentence about a timesteps summary."""
    head = (f"{s['hardware']}: dynamic exit (theta {s['theta']:.3g}) {s['dynamic_accuracy']:.2f} % at "
            f"{s['avg_timesteps']:.2f} average timesteps")
    if s["static_wins"]:
        head += (f"; static T={s['static_winner_T']} wins: at least as accurate at lower or equal EDP, so dynamic "
                 "timesteps do not pay off here")
    elif s["best_static_has_accuracy"]:
        head += (f"; against the best static point at equal or better accuracy, T={s['best_static_T']} "
                 f"({s['best_static_accuracy']:.2f} %): {_change(s['edp_saving_vs_best_static'])} EDP, "
                 f"{_change(s['energy_saving_vs_best_static'])} energy")
    else:
        head += (f"; no static T reaches that accuracy; against static T={s['best_static_T']} "
                 f"({s['best_static_accuracy']:.2f} %): {_change(s['edp_saving_vs_best_static'])} EDP")
    n = s.get("n_test")
    samples = f", {round(abs(s['test_drop_pp']) * n / 100)} of {n} test samples" if n else ""
    head += (f". Test-split change vs static T_max: {-s['test_drop_pp']:+.2f} pp{samples} (theta chosen with "
             f"tolerance {s['tolerance_pp']:g} pp on held-out samples)")
    if s["drop_exceeds_tolerance"]:
        head += " -- WARNING: the test-split loss exceeds the tolerance"
    return head + "."
