"""One SNN-vs-QNN comparison across hardware platforms: the crossbar chip (imcsim's
event-driven cost model), a SATA-style digital systolic array (:mod:`.systolic`) and a
digital neuromorphic core (:mod:`.neuromorphic`), each fed the same measured per-layer
activity of the two networks.

Per platform: energy, latency and EDP per inference of each network, their ratios and the
break-even spike rate -- the activity-weighted mean SNN input rate (as for the crossbar,
:func:`.estimate.activity_weighted_rate`) at which the SNN's energy equals the QNN's, the
measured per-layer profile scaled together. Both digital models are linear in the rates,
so their break-even is closed form.
"""

from __future__ import annotations

from . import neuromorphic as N
from . import systolic as S
from .estimate import activity_weighted_rate

PLATFORMS = ("imc", "systolic", "neuromorphic")


def input_activity(report, n_layers: int) -> list[float]:
    """Per crossbar layer of a run, the fraction of its inputs that are nonzero per step:
    the preceding neuron layer's spike rate (SNN) or nonzero fraction (QNN); for the first
    layer, its measured row activity."""
    rates = report.spike_rates()  # per layer name: spike / nonzero fraction, or row activity
    out, last = [], None
    for layer in report.layers:
        if layer.kind in ("spiking", "quant") and layer.name in rates:
            last = rates[layer.name]
        elif layer.kind == "crossbar":
            out.append(rates.get(layer.name, 0.0) if last is None else last)
    if len(out) != n_layers:
        raise ValueError(f"the run has {len(out)} crossbar layers, the specs {n_layers}")
    return [min(1.0, max(0.0, float(x))) for x in out]


def _linear_breakeven(cost, profile, specs, target: float) -> float | None:
    """Activity-weighted rate at which ``cost(rates)`` (linear in the rates) reaches ``target``
    with the measured ``profile`` scaled together; None if the SNN costs more with no spikes."""
    w0 = activity_weighted_rate(specs, profile)
    base = list(profile)
    if w0 <= 0 or max(base) <= 0:
        base, w0 = [1.0] * len(profile), activity_weighted_rate(specs, [1.0] * len(profile)) or 1.0
    e0, e1 = cost([0.0] * len(base)), cost(base)
    if e0 >= target:
        return None
    a_max = w0 / max(base)
    if e1 <= e0:
        return a_max
    return min(a_max, w0 * (target - e0) / (e1 - e0))


def systolic_pair(snn_specs, qnn_specs, snn_act, qnn_act, T: int, qnn_bits: int, *,
                  snn_arch: str = "sata", qnn_arch: str = "eyeriss") -> dict:
    """Both networks on the systolic array: the SNN on SATA's spiking PE, T steps; the QNN on
    the MAC-PE baseline with its activation bits, one step."""
    s = S.systolic_estimate(snn_specs, snn_act, T, arch=snn_arch)
    q = S.systolic_estimate(qnn_specs, qnn_act, 1, arch=qnn_arch, act_bits=qnn_bits)
    be = _linear_breakeven(lambda r: S.systolic_estimate(snn_specs, r, T, arch=snn_arch)["energy_J"],
                           snn_act, snn_specs, q["energy_J"])
    return {"snn": s, "qnn": q, "breakeven": be,
            "model": f"SNN on {s['architecture']}, QNN on {q['architecture']} ({qnn_bits}-bit activations)"}


def neuromorphic_pair(snn_specs, qnn_specs, snn_act, qnn_act, T: int, qnn_bits: int, *, weight_bits: int,
                      setting: str = "typical") -> dict:
    hw = N.setting(setting)
    s = N.network_energy(snn_specs, snn_act, kind="snn", T=T, weight_bits=weight_bits, hw=hw)
    q = N.network_energy(qnn_specs, qnn_act, kind="qnn", bits=qnn_bits, weight_bits=weight_bits, hw=hw)
    be = _linear_breakeven(lambda r: N.network_energy(snn_specs, r, kind="snn", T=T, weight_bits=weight_bits,
                                                      hw=hw)["energy_J"], snn_act, snn_specs, q["energy_J"])
    return {"snn": s, "qnn": q, "breakeven": be, "model": f"analytical, '{hw.name}' setting, {weight_bits}-bit weights"}


def platform_table(pairs: dict) -> list[dict]:
    """Rows (one per platform) of energy / latency / EDP per inference and ratios."""
    rows = []
    for name, p in pairs.items():
        s, q = p["snn"], p["qnn"]
        ls, lq = s.get("latency_s"), q.get("latency_s")
        row = {"platform": name, "snn_energy_J": s["energy_J"], "qnn_energy_J": q["energy_J"],
               "energy_ratio": s["energy_J"] / q["energy_J"] if q["energy_J"] else float("nan"),
               "snn_latency_s": ls, "qnn_latency_s": lq,
               "snn_edp_Js": s["energy_J"] * ls if ls is not None else None,
               "qnn_edp_Js": q["energy_J"] * lq if lq is not None else None,
               "breakeven_spike_rate": p["breakeven"], "model": p["model"]}
        row["edp_ratio"] = (row["snn_edp_Js"] / row["qnn_edp_Js"]) if row["qnn_edp_Js"] else None
        rows.append(row)
    return rows
