"""Plots (PNG, matplotlib with the non-interactive Agg backend), written atomically."""

from __future__ import annotations

import io
from pathlib import Path

from ..io import _atomic_write_bytes


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


def stacked_energy_bars(report, path, title=None) -> Path:
    """Energy per inference of each layer (pJ), stacked by component."""
    from ..cost import COMPONENTS

    plt = _plt()
    layers = [layer for layer in report.layers if layer.total_pJ > 0]
    comps = [c for c in COMPONENTS if any(layer.energy_pJ.get(c, 0) for layer in layers)]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(layers) + 3), 4))
    bottom = [0.0] * len(layers)
    cmap = plt.get_cmap("tab10")
    for i, c in enumerate(comps):
        vals = [layer.energy_pJ.get(c, 0.0) for layer in layers]
        ax.bar(range(len(layers)), vals, bottom=bottom, label=c, color=cmap(i % 10))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([layer.name for layer in layers], rotation=45, ha="right")
    ax.set_ylabel("energy per inference (pJ)")
    ax.set_title(title or f"Energy breakdown ({report.technology})")
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def errorbar_sweep(xs, means, stds, path, xlabel, ylabel="accuracy (%)", title=None, series=None) -> Path:
    """Accuracy (mean +- std over chip instances) against a swept non-ideality.
    ``series``: optional {label: (means, stds)} for several curves on the same x."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = series or {ylabel: (means, stds)}
    for label, (m, s) in curves.items():
        ax.errorbar(xs, m, yerr=s, marker="o", capsize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if series:
        ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def pareto(points, path, title=None) -> Path:
    """Accuracy vs EDP. points: list of dicts with keys x (EDP), y (accuracy), label, group."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = {}
    for p in points:
        groups.setdefault(p.get("group", ""), []).append(p)
    markers = ["o", "s", "^", "D", "v"]
    for i, (g, pts) in enumerate(groups.items()):
        pts = sorted(pts, key=lambda p: p["x"])
        ax.plot([p["x"] for p in pts], [p["y"] for p in pts], marker=markers[i % len(markers)], label=g or None)
        labelled = pts if len(pts) <= 6 else pts[:: max(1, len(pts) // 4)]  # keep the plot readable
        for p in labelled:
            if p.get("label"):
                ax.annotate(p["label"], (p["x"], p["y"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("EDP per inference (J*s)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Accuracy vs EDP")
    ax.grid(alpha=0.3, which="both")
    if len(groups) > 1 or next(iter(groups)):
        ax.legend(fontsize=8)
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
