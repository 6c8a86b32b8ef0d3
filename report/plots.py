"""Small PNG plots for the report, drawn with matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` and an explicit ``FigureCanvasAgg``, never
through ``pyplot``: no global figure registry, no GUI backend, nothing left open after a call, and
safe to use from any thread.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SIZE = (6.4, 3.2)  # inches; at 100 dpi a 640x320 PNG
DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    fig.clear()
    return buf.getvalue()


def activation_histogram(
    accepted: Sequence[float],
    quantiles: Mapping[str, float],
    dataset_max: float | None = None,
) -> bytes | None:
    """Histogram of the activations of accepted prompts, dataset quantiles as vertical lines
    (the extremes q0 and q1 left out: q1 is the dataset max, q0 would only stretch the axis);
    the legend sits beside the plot, never over the bars."""
    values = np.asarray([v for v in accepted if np.isfinite(v)], dtype=float)
    quantiles = {k: v for k, v in quantiles.items() if k not in ("q0", "q1")}
    if values.size == 0 and not quantiles:
        return None
    fig = Figure(figsize=(SIZE[0] * 1.3, SIZE[1]))
    ax = fig.add_subplot()
    if values.size:
        ax.hist(values, bins=min(40, max(5, values.size // 3)), color="#4c78a8", alpha=0.85,
                label=f"prompts tried ({values.size})")
    lines = sorted(quantiles.items(), key=lambda kv: kv[1])
    for i, (name, q) in enumerate(lines):
        colour = colormaps["plasma"](0.8 * i / max(1, len(lines) - 1))
        ax.axvline(q, color=colour, linestyle="--", linewidth=1.2,
                   label=f"dataset {name} = {q:.3g}")
    if dataset_max is not None:
        ax.axvline(dataset_max, color="#d62728", linewidth=1.5,
                   label=f"dataset max = {dataset_max:.3g}")
    ax.set_xlabel("max activation over the prompt's tokens")
    ax.set_ylabel("prompts")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return _png(fig)


def search_curve(
    x: Sequence[float],
    best: Sequence[float],
    xlabel: str,
    dataset_max: float | None = None,
) -> bytes | None:
    """Best activation so far against ``x`` (forward passes), dataset max as a horizontal line."""
    if len(x) == 0:
        return None
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    ax.step(np.asarray(x, dtype=float), np.asarray(best, dtype=float), where="post",
            color="#4c78a8", linewidth=1.8, label="best found by the agent")
    if dataset_max is not None:
        ax.axhline(dataset_max, color="#d62728", linestyle="--", linewidth=1.2,
                   label=f"best dataset exemplar = {dataset_max:.3g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best activation so far")
    ax.legend(fontsize=7, loc="lower right", frameon=False)
    return _png(fig)
