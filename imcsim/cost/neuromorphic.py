"""A digital neuromorphic core, priced analytically after Yan et al. ("Reconsidering the
energy efficiency of spiking neural networks", arXiv 2409.08290): a T-step rate-coded SNN
against the QNN with ceil(log2(T + 1))-bit activations on the same hardware, counting
compute, weight and state memory, and on-chip movement of activations.

The terms, per layer with fan-in ``n`` (synapses per target neuron), ``m`` target neurons
and ``src`` source neurons (the layer's inputs), all energies in pJ. Movement is counted per
delivery to a target neuron (each target receives its ``n`` inputs over the network-on-chip),
as the per-synapse accounting of weights ("an SNN touches each weight about T * s_r times,
the QNN once") suggests:

SNN, input spike rate ``r`` (spikes per input per step), output rate ``r_out``:
  synaptic events  S = m * n * T * r, each: E_acc + b_w * e_mem (weight read)
                   + spike_bits * hops * e_sparse (the event's delivery)
  neurons          m * T * (E_cmp + 2 * b_v * e_mem)   threshold test, membrane read + write per step
                   + m * T * r_out * E_sub             reset by subtraction per output spike
  events           src * T * r * e_event               a per-spike fetch (the worst case: one DRAM read)
QNN, b_q-bit activations, fraction ``gamma`` of them zero (skipped by the MAC, not by the NoC):
  MACs             m * n * (1 - gamma) * (b_q * E_acc + b_w * e_mem)   a b_q x b_w multiply as b_q adds
  neurons          m * E_cmp                           requantisation
  movement         m * n * b_q * hops * e_dense        dense delivery of every activation

The SNN's energy is linear in ``r``, so the break-even spike rate is closed form. With no
memory or movement cost a 1-bit QNN at gamma = 1 - r costs exactly one SNN step's
synaptic work (a check in the tests). Sources of each constant are in
``presets/neuromorphic/settings.toml``; Yan et al.'s own equations could not be checked
(only their abstracts are reachable from here), so this model is ours, built from the
quantities and constants they name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

from ..errors import ConfigError

PRESET_FILE = Path(__file__).resolve().parent.parent / "presets" / "neuromorphic" / "settings.toml"


@dataclass(frozen=True)
class NeuromorphicHW:
    """Per-event energies of a digital neuromorphic core (pJ; ``hops``: mean NoC hops)."""

    name: str = "typical"
    e_acc: float = 0.05448
    e_cmp: float = 0.05448
    e_sub: float = 0.05448
    e_mem_bit: float = 0.0
    e_sparse_bit_hop: float = 0.0
    e_dense_bit_hop: float = 0.0
    e_event: float = 0.0
    hops: float = 0.64
    spike_bits: int = 1
    membrane_bits: int = 16
    source: str = ""

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("name", "source"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"neuromorphic setting {self.name!r}: {f.name} must be a finite number >= 0, got {v!r}")


@lru_cache(maxsize=None)
def _presets() -> dict:
    from ..tomlio import load_toml

    return load_toml(PRESET_FILE, "neuromorphic settings")


def available_settings() -> list[str]:
    return sorted(_presets())


def setting(name_or_path) -> NeuromorphicHW:
    """A shipped setting ('minimum', 'typical', 'worst-sparse') or a user TOML file with the
    fields of :class:`NeuromorphicHW` (missing ones from 'typical')."""
    from ..tomlio import load_toml

    p = _presets()
    if isinstance(name_or_path, NeuromorphicHW):
        return name_or_path
    if name_or_path in p:
        d = dict(p[name_or_path])
        d.setdefault("name", name_or_path)
    elif str(name_or_path).endswith(".toml"):
        d = {**p["typical"], "name": Path(name_or_path).stem, "source": f"user file {name_or_path}"}
        d.update(load_toml(name_or_path, "neuromorphic setting"))
    else:
        raise ConfigError(f"unknown neuromorphic setting {name_or_path!r} (shipped: {', '.join(sorted(p))}; "
                          "or a .toml file)")
    known = {f.name for f in fields(NeuromorphicHW)}
    bad = sorted(set(d) - known)
    if bad:
        raise ConfigError(f"neuromorphic setting {d['name']!r}: unknown field(s) {bad} (known: {sorted(known)})")
    return NeuromorphicHW(**d)


def qnn_bits(T: int) -> int:
    """Activation bits of the QNN that represents a T-step rate code: ceil(log2(T + 1))."""
    return math.ceil(math.log2(int(T) + 1))


@dataclass(frozen=True)
class Layer:
    """One layer for the analytical model: ``fan_in`` synapses per target neuron,
    ``targets`` neurons, ``sources`` input neurons (for movement)."""

    fan_in: int
    targets: int
    sources: int


def _check(name, v, lo=0.0, hi=1.0):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ConfigError(f"{name} must be in [{lo}, {hi}], got {v!r}")


def snn_terms(L: Layer, T: int, rate: float, hw: NeuromorphicHW, *, weight_bits: int = 4,
              out_rate: float | None = None) -> dict:
    """SNN energy terms of one layer (pJ)."""
    _check("spike rate", rate)
    r_out = rate if out_rate is None else out_rate
    S = L.targets * L.fan_in * T * rate
    return {"compute": S * hw.e_acc + L.targets * T * hw.e_cmp + L.targets * T * r_out * hw.e_sub,
            "weights": S * weight_bits * hw.e_mem_bit,
            "state": L.targets * T * 2 * hw.membrane_bits * hw.e_mem_bit,
            "movement": S * hw.spike_bits * hw.hops * hw.e_sparse_bit_hop + L.sources * T * rate * hw.e_event}


def qnn_terms(L: Layer, bits: int, zero_fraction: float, hw: NeuromorphicHW, *, weight_bits: int = 4) -> dict:
    """QNN energy terms of one layer (pJ)."""
    _check("QNN sparsity", zero_fraction)
    macs = L.targets * L.fan_in * (1.0 - zero_fraction)
    return {"compute": macs * bits * hw.e_acc + L.targets * hw.e_cmp,
            "weights": macs * weight_bits * hw.e_mem_bit,
            "state": 0.0,
            "movement": L.targets * L.fan_in * bits * hw.hops * hw.e_dense_bit_hop}


def _total(terms: dict) -> float:
    return sum(terms.values())


def breakeven_rate(layers, T: int, hw: NeuromorphicHW, *, qnn_zero_fraction: float = 0.0, weight_bits: int = 4,
                   bits: int | None = None) -> float | None:
    """Uniform SNN spike rate below which the SNN costs less than its ceil(log2(T+1))-bit QNN
    twin; None when the SNN costs more even without spikes, 1.0 when it wins at any rate.
    Closed form: the SNN's energy is a + b * r."""
    b_q = bits or qnn_bits(T)
    q = sum(_total(qnn_terms(L, b_q, qnn_zero_fraction, hw, weight_bits=weight_bits)) for L in layers)
    a = sum(_total(snn_terms(L, T, 0.0, hw, weight_bits=weight_bits)) for L in layers)
    b = sum(_total(snn_terms(L, T, 1.0, hw, weight_bits=weight_bits)) for L in layers) - a
    if a >= q:
        return None
    return min(1.0, (q - a) / b) if b > 0 else 1.0


def layers_from_specs(specs) -> list[Layer]:
    """imcsim layer specs -> analytical layers (fan-in: inputs per output; targets: outputs x
    positions; sources: the layer's input activations)."""
    return [Layer(int(s.in_features), int(s.out_features) * max(1, int(s.positions)),
                  int(s.input_numel or s.in_features)) for s in specs]


def network_energy(specs, rates, *, kind: str, T: int = 1, bits: int | None = None, weight_bits: int = 4,
                   hw: NeuromorphicHW | str = "typical") -> dict:
    """Energy (J) of an imcsim network on the neuromorphic core from measured per-layer
    input activity: ``rates`` are spike rates for an SNN (kind 'snn') and nonzero fractions
    for a QNN (kind 'qnn', zero fraction = 1 - rate). Returns per-term and total energies."""
    hw = setting(hw)
    layers = layers_from_specs(specs)
    if len(rates) != len(layers):
        raise ConfigError(f"rates: one per layer ({len(layers)}), got {len(rates)}")
    terms = {"compute": 0.0, "weights": 0.0, "state": 0.0, "movement": 0.0}
    for L, r in zip(layers, rates):
        r = min(1.0, max(0.0, float(r)))
        t = (snn_terms(L, T, r, hw, weight_bits=weight_bits) if kind == "snn" else
             qnn_terms(L, bits or 8, 1.0 - r, hw, weight_bits=weight_bits))
        for k, v in t.items():
            terms[k] += v
    return {"setting": hw.name, "energy_J": _total(terms) * 1e-12, "terms_J": {k: v * 1e-12 for k, v in terms.items()}}
