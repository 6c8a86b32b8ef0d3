"""Selectivity of a neuron between two sets of texts: AUROC and Cohen's d.

AUROC is the probability that a random positive text activates the neuron more than a random
negative one (ties count half; Mann-Whitney U / (n_pos n_neg)). Cohen's d uses the pooled
standard deviation. Both are undefined (None) when a side is empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Floats = Sequence[float] | np.ndarray  # numbers as a sequence or a 1-D array


def auroc(pos: Floats, neg: Floats) -> float | None:
    p, n = np.asarray(pos, float), np.asarray(neg, float)
    if p.size == 0 or n.size == 0:
        return None
    greater = (p[:, None] > n[None, :]).sum()
    ties = (p[:, None] == n[None, :]).sum()
    return float((greater + 0.5 * ties) / (p.size * n.size))


def cohens_d(pos: Floats, neg: Floats) -> float | None:
    p, n = np.asarray(pos, float), np.asarray(neg, float)
    if p.size < 2 or n.size < 2:
        return None
    pooled = np.sqrt(
        ((p.size - 1) * p.var(ddof=1) + (n.size - 1) * n.var(ddof=1)) / (p.size + n.size - 2)
    )
    return float((p.mean() - n.mean()) / pooled) if pooled > 0 else None


def selectivity(pos: Sequence[float], neg: Sequence[float]) -> dict:
    """``{"aggregate": AUROC, "components": {auroc, cohens_d, mean_pos, mean_neg}}``."""
    a = auroc(pos, neg)
    return {
        "aggregate": a,
        "components": {
            "auroc": a,
            "cohens_d": cohens_d(pos, neg),
            "mean_pos": float(np.mean(pos)) if len(pos) else None,
            "mean_neg": float(np.mean(neg)) if len(neg) else None,
        },
    }
