"""Figures of evaluation results: per-class AP bars and precision-recall curves, written as PNG.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no change to the global backend), so this
works without a display and does not disturb a caller's own matplotlib state.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from s3d_det.utils.io import atomic_write

__all__ = ["plot_per_class_ap", "plot_pr_curves"]


def _save(fig: Figure, path: str) -> None:
    FigureCanvasAgg(fig)
    with atomic_write(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_per_class_ap(ap: Mapping[str, float], path: str, mean: Optional[float] = None, title: str = "AP") -> None:
    """Horizontal bar chart of per-class AP (percent, one bar a class, in the order of ``ap``), with ``mean``
    drawn as a dashed line when given; written to ``path`` as PNG, atomically."""
    names = list(ap)
    values = np.array([ap[n] for n in names], dtype=np.float64)
    fig = Figure(figsize=(7, 1.5 + 0.3 * max(len(names), 1)))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, values, color="tab:blue")
    ax.set_yticks(y, labels=names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP (%)")
    for yi, v in zip(y, values):
        ax.text(min(v + 1, 88), yi, f"{v:.1f}", va="center", fontsize=8)
    if mean is not None:
        ax.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.2f}")
        ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def plot_pr_curves(
    precision: Mapping[str, np.ndarray],
    recall: Mapping[str, np.ndarray],
    path: str,
    ap: Optional[Mapping[str, float]] = None,
    title: str = "precision-recall",
) -> None:
    """One small precision-recall panel per class (recall on x, precision on y, both in [0, 1]), in a grid;
    the panel title carries the class name and, with ``ap`` (percent), its AP. Written to ``path`` as PNG,
    atomically."""
    names = list(precision)
    cols = max(1, math.ceil(math.sqrt(len(names))))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(2.6 * cols, 2.4 * rows + 0.4))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(np.asarray(recall[name]), np.asarray(precision[name]), color="tab:blue", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{name} ({ap[name]:.1f})" if ap is not None else name, fontsize=8)
        ax.tick_params(labelsize=6)
        if i % cols == 0:
            ax.set_ylabel("precision", fontsize=7)
        if i >= len(names) - cols:
            ax.set_xlabel("recall", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
