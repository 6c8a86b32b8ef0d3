"""A per-token heatmap as a PNG (attribution scores or activations over a prompt's tokens).

Drawn with matplotlib's Agg canvas and an explicit ``Figure`` (no pyplot, no GUI backend, safe from
any thread), like ``report/plots.py``. Tokens are laid out left to right and wrapped into rows;
the colour is diverging (red negative, blue positive) and symmetric around 0.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def token_heatmap_png(tokens: Sequence[str], scores: Sequence[float], title: str = "",
                      mark: int | None = None, per_row: int = 12) -> bytes:
    """PNG bytes: each token in a cell coloured by its score; ``mark`` outlines one token."""
    values = np.asarray(scores, dtype=float)
    if len(tokens) != len(values) or not len(tokens):
        raise ValueError("tokens and scores must be non-empty and of the same length")
    n_rows = (len(tokens) + per_row - 1) // per_row
    vmax = float(np.abs(values).max()) or 1.0
    norm, cmap = Normalize(-vmax, vmax), colormaps["RdBu"]
    fig = Figure(figsize=(min(per_row, len(tokens)) * 0.9 + 1.6, n_rows * 0.55 + 0.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (tok, v) in enumerate(zip(tokens, values, strict=True)):
        row, col = divmod(i, per_row)
        edge = "black" if i == mark else "white"
        ax.add_patch(_cell(col, n_rows - 1 - row, cmap(norm(v)), edge))
        label = tok.replace("\n", "\\n").replace("\t", "\\t") or " "
        ax.text(col + 0.5, n_rows - 1 - row + 0.5, label, ha="center", va="center", fontsize=8,
                color="white" if abs(norm(v) - 0.5) > 0.35 else "black")
    ax.set_xlim(0, min(per_row, len(tokens)))
    ax.set_ylim(0, n_rows)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, fraction=0.03, pad=0.02)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    fig.clear()
    return buf.getvalue()


def _cell(x: int, y: int, colour, edge: str) -> Rectangle:
    return Rectangle((x, y), 1, 1, facecolor=colour, edgecolor=edge, linewidth=1.5)


def save_token_heatmap(path: str | Path, tokens: Sequence[str], scores: Sequence[float],
                       title: str = "", mark: int | None = None) -> Path:
    """Write the PNG to ``path`` (folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(token_heatmap_png(tokens, scores, title, mark))
    return path
