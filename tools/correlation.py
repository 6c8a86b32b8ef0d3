"""Pearson correlation: the one definition every reading and every score uses (the records
explainer choosing a reading, ``tools/records_explain.py``; the score's components,
``score/stats.py``; the benches).

Undefined (``nan``) when either side is constant or has fewer than two values: a simulation that
predicts the same value everywhere correlates with nothing. A caller that ranks by r says what a
``nan`` counts as (``records_explain.choose``: the worst r, -1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Floats = Sequence[float] | np.ndarray


def pearson(x: Floats, y: Floats) -> float:
    """Pearson r of ``x`` and ``y`` (module docstring: ``nan`` when either is constant)."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])
