"""Plots (PNG, matplotlib with the non-interactive Agg backend), written atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path

from .io import _atomic_write_bytes


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)
    _atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _unit(values, units):
    """(scale, name): the unit whose range suits the largest value (no axis offset needed)."""
    top = max([abs(v) for v in values] + [0.0])
    for scale, name in units:
        if top < 1000 * scale or scale == units[-1][0]:
            return scale, name
    return units[-1]


KIND_LABELS = {"crossbar": "crossbar", "spiking": "neurons", "quant": "quantiser", "digital": "digital",
               "input": "off-chip", "chip": "chip"}


def display_name(name: str, kind: str | None = None) -> str:
    """A readable layer name: the module path without the ``body.`` prefix of imcsim
    networks, and what the layer is (the same in measured and analytical reports)."""
    base = name[5:] if name.startswith("body.") else name
    return f"{base} ({KIND_LABELS.get(kind, kind)})" if kind and kind != "input" else base


def cost_breakdown(report, path, title=None) -> Path:
    """Energy per inference and area of each layer, stacked by component (two panels)."""
    from .cost import AREA_COMPONENTS, COMPONENTS

    plt = _plt()
    layers = report.layers
    energies = [report.layer_energy_pJ(layer) for layer in layers]
    keep = [i for i, e in enumerate(energies) if sum(e.values()) > 0 or layers[i].total_area_um2 > 0]
    layers, energies = [layers[i] for i in keep], [energies[i] for i in keep]
    names = [display_name(layer.name, layer.kind) for layer in layers]
    fig, (ax_e, ax_a) = plt.subplots(1, 2, figsize=(max(9, 0.9 * len(layers) + 5), 4.6))
    cmap = plt.get_cmap("tab20")
    colors = {c: cmap(i % 20) for i, c in enumerate(COMPONENTS)}
    e_scale, e_unit = _unit([sum(e.values()) for e in energies], [(1, "pJ"), (1e3, "nJ"), (1e6, "uJ"), (1e9, "mJ")])
    a_scale, a_unit = _unit([layer.total_area_um2 for layer in layers], [(1, "um$^2$"), (1e6, "mm$^2$")])
    handles = {}
    for ax, comps, vals_of, scale, unit, what in (
            (ax_e, COMPONENTS, lambda i, c: energies[i].get(c, 0.0), e_scale, e_unit, "energy per inference"),
            (ax_a, AREA_COMPONENTS, lambda i, c: layers[i].area_um2.get(c, 0.0), a_scale, a_unit, "area")):
        bottom = [0.0] * len(layers)
        for c in comps:
            vals = [vals_of(i, c) / scale for i in range(len(layers))]
            if not any(vals):
                continue
            handles[c] = ax.bar(range(len(layers)), vals, bottom=bottom, label=c, color=colors[c])
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{what} ({unit})")
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.grid(axis="y", alpha=0.3)
    order = [c for c in COMPONENTS if c in handles]
    fig.legend([handles[c] for c in order], order, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               title="component", title_fontsize=8)  # one legend for both panels, beside them
    ax_e.set_title(f"Energy: {report.energy_J / e_scale * 1e12:.4g} {e_unit} per inference", fontsize=10)
    ax_a.set_title(f"Area: {report.area_mm2:.4g} mm$^2$", fontsize=10)
    fig.suptitle(title or f"Cost breakdown ({report.technology})", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def errorbar_sweep(xs, means, stds, path, xlabel, ylabel="accuracy (%)", title=None, series=None,
                   ticks=None, logx: bool = False) -> Path:
    """Accuracy (mean +- std over chip instances) against a swept non-ideality.
    ``series``: optional {label: (means, stds)} for several curves on the same x; ``ticks``:
    labels of categorical x values (at positions ``xs``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = series or {ylabel: (means, stds)}
    for label, (m, s) in curves.items():
        ax.errorbar(xs, m, yerr=s, marker="o", capsize=3, label=label)
    if ticks is not None:  # categorical sweeps: each value by its name
        ax.set_xticks(list(xs))
        ax.set_xticklabels(ticks)
    elif logx:
        ax.set_xscale("log")
    elif all(isinstance(x, int) and not isinstance(x, bool) for x in xs):  # integer sweeps: integer ticks
        ax.set_xticks(sorted(set(xs)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if series:
        ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _sci(v, _pos=None) -> str:
    """2e-10 -> $2\\times10^{-10}$ (1e-9 -> $10^{-9}$)."""
    if v <= 0:
        return ""
    e = math.floor(math.log10(v) + 1e-9)
    m = round(v / 10**e, 6)
    return f"$10^{{{e}}}$" if m == 1 else f"${m:g}\\times10^{{{e}}}$"


def pareto(points, path, title=None) -> Path:
    """Accuracy vs EDP. points: dicts with x (EDP), y (accuracy), group, and an optional
    label (give labels only to the points worth naming: static T values, the chosen theta)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    groups = {}
    for p in points:
        groups.setdefault(p.get("group", ""), []).append(p)
    markers = ["o", "s", "^", "D", "v", "P"]
    for i, (g, pts) in enumerate(groups.items()):
        pts = sorted(pts, key=lambda p: p["x"])
        static = "static" in g  # static T: a dotted line in T order; dynamic thetas: points only
        ax.plot([p["x"] for p in pts], [p["y"] for p in pts], marker=markers[i % len(markers)], label=g or None,
                linestyle=":" if static else "none", markersize=7 if static else 5, alpha=0.9)
        for j, p in enumerate(p for p in pts if p.get("label")):
            dy = 6 if (i + j) % 2 == 0 else -11  # alternate above / below: labels of close points do not collide
            ax.annotate(p["label"], (p["x"], p["y"]), fontsize=7, xytext=(4, dy), textcoords="offset points")
    ax.set_xscale("log")
    from matplotlib import ticker  # labels at 1, 2, 5 per decade only: crowded minor labels overlap

    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(_sci))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("EDP per inference (J s, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Accuracy vs EDP", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if len(groups) > 1 or next(iter(groups), ""):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: covers no point
    return _save(fig, path)


def histogram(counts: dict, path, xlabel, title=None) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar([str(k) for k in counts], list(counts.values()))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def attribution_bars(names, alone, alone_err, recovered, recovered_err, path, title=None) -> Path:
    """Per non-ideality: the accuracy it costs alone (against a chip with none) and what
    leaving it out recovers (against the full chip), pp, with 1.96 x standard-error bars."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(names) + 1.6))
    y = list(range(len(names)))
    h = 0.38
    ax.barh([v - h / 2 for v in y], alone, h, xerr=[1.96 * e for e in alone_err], capsize=3,
            label="accuracy lost with it alone (vs none)", color="#c44e52")
    ax.barh([v + h / 2 for v in y], recovered, h, xerr=[1.96 * e for e in recovered_err], capsize=3,
            label="accuracy recovered without it (vs all)", color="#4c72b0")
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("percentage points (bars: 95 % of the combined uncertainty)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def platform_bars(platforms, snn_J, qnn_J, breakeven, path, title=None) -> Path:
    """SNN and QNN energy per inference on each platform (grouped bars, log scale), the
    SNN/QNN ratio and the break-even spike rate written over each group."""
    plt = _plt()
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(platforms))
    ax.bar(x - 0.2, snn_J, 0.4, label="SNN")
    ax.bar(x + 0.2, qnn_J, 0.4, label="QNN")
    ax.set_yscale("log")
    top = max(max(snn_J), max(qnn_J))
    for i, (s, q, be) in enumerate(zip(snn_J, qnn_J, breakeven)):
        txt = f"SNN/QNN x{s / q:.3g}" + ("\nbreak-even: none" if be is None else f"\nbreak-even {be:.3g}")
        ax.annotate(txt, (x[i], max(s, q)), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8)
    ax.set_ylim(top=top * 8)
    ax.set_xticks(x, platforms)
    ax.set_ylabel("energy per inference (J, log scale)")
    ax.set_title(title or "SNN vs QNN energy per platform", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="y", which="both")
    return _save(fig, path)
