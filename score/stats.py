"""Statistics behind the hypothesis score (``components.py``): ranking and correlation metrics,
and a seeded percentile bootstrap that returns a ``Component`` (point value, 95% interval, and
the bootstrap samples the aggregate is built from).

Metrics (numpy only):

- ``balanced_accuracy``: (true-positive rate + true-negative rate) / 2; ``nan`` when a class is
  absent.
- ``average_precision`` (AUPRC): mean precision at the rank of each positive, ties in the score
  ranked together (precision taken at the end of a tied group); ``nan`` without positives.
- ``pearson`` (``tools/correlation.py``, the one Pearson): ``nan`` when either side is constant;
  ``spearman``: Pearson of average ranks.

Bootstrap: ``n_boot`` resamples (with replacement) of the units a statistic is computed over
(prompts, windows, perturbations, ratings), drawn from ``numpy.random.default_rng([seed, salt])``
so that two hypotheses scored with the same seed and the same number of units resample the same
units (paired samples: their difference has a tighter interval). A resample on which the
statistic is undefined (e.g. one class missing) takes the point value, which slightly narrows the
interval; the count of such resamples is kept in ``Component.details["undefined_resamples"]``.
The interval is the 2.5 and 97.5 percentiles (Efron & Tibshirani 1993, ch. 13).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from neurosleuth.tools.correlation import pearson as pearson  # re-exported: the one Pearson

N_BOOT = 1000

# Numbers or flags, as a sequence or a 1-D array: the metrics read them with np.asarray.
Floats = Sequence[float] | np.ndarray
Bools = Sequence[bool] | np.ndarray


@dataclass(frozen=True)
class Component:
    """One score component: ``value`` in [0, 1] (margins may be negative), its 95% bootstrap
    interval [``lo``, ``hi``], ``n`` units it was computed over, and named sub-measures."""

    name: str
    value: float
    lo: float
    hi: float
    n: int
    samples: np.ndarray = field(repr=False)  # (n_boot,) bootstrap values
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "value": _num(self.value), "lo": _num(self.lo),
                "hi": _num(self.hi), "n": self.n, "details": _json_safe(self.details)}


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (float, np.floating)):
        return _num(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def json_safe(obj):
    """``obj`` with numpy types, ``nan`` and ``inf`` made JSON-safe (``None`` for non-finite)."""
    return _json_safe(obj)


# ---------------------------------------------------------------- metrics


def balanced_accuracy(labels: Bools, predicted: Bools) -> float:
    y, p = np.asarray(labels, bool), np.asarray(predicted, bool)
    if y.all() or not y.any():
        return math.nan
    return float(0.5 * (p[y].mean() + (~p[~y]).mean()))


def average_precision(labels: Bools, scores: Floats) -> float:
    y, s = np.asarray(labels, bool), np.asarray(scores, float)
    if not y.any():
        return math.nan
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    # the end index of each group of tied scores: precision is read there for the whole group
    ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    group_end = np.repeat(ends, np.diff(np.r_[-1, ends]))
    tp_at = np.cumsum(y)[group_end]
    precision = tp_at / (group_end + 1)
    return float(precision[y].mean())


def ranks(x: Floats) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), 0-based."""
    a = np.asarray(x, float)
    order = np.argsort(a, kind="stable")
    r = np.empty(a.size)
    r[order] = np.arange(a.size)
    _, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=r)
    return sums[inv] / counts[inv]


def spearman(x: Floats, y: Floats) -> float:
    return pearson(ranks(x), ranks(y))


# ---------------------------------------------------------------- bootstrap


def rng_for(seed: int, salt: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(salt.encode())])


def boot_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) resampling indices (empty rows when n == 0)."""
    return rng.integers(0, max(n, 1), size=(n_boot, n))


def bootstrap(name: str, stat: Callable[..., float], groups: Sequence[int], *, seed: int = 0,
              n_boot: int = N_BOOT, transform: Callable[[float], float] = lambda v: v,
              details: dict | None = None) -> Component:
    """``transform(stat(*index_arrays))`` on the full data and on ``n_boot`` resamples.

    ``groups``: the size of each independently resampled set of units (e.g. ``[n_pos, n_neg]``);
    ``stat`` gets one index array per group. Undefined (nan) values map to the point value, and
    an undefined point value gives a component of 0 with a [0, 0] interval (nothing to score)."""
    full = [np.arange(g) for g in groups]
    raw = stat(*full)
    point = transform(raw) if not math.isnan(raw) else math.nan
    rng = rng_for(seed, name)
    idx = [boot_indices(g, n_boot, rng) for g in groups]
    samples = np.array([stat(*(ix[b] for ix in idx)) for b in range(n_boot)], dtype=float)
    undefined = int(np.isnan(samples).sum())
    if math.isnan(point):
        samples = np.zeros(n_boot)
        point = 0.0
    else:
        samples = np.array([point if math.isnan(s) else transform(s) for s in samples])
    lo, hi = np.percentile(samples, [2.5, 97.5]) if samples.size else (point, point)
    info = {"raw": raw, "undefined_resamples": undefined, **(details or {})}
    return Component(name, float(point), float(lo), float(hi), int(sum(groups)),
                     samples, info)


def combine(name: str, parts: Sequence[Component], weights: Sequence[float] | None = None,
            details: dict | None = None) -> Component:
    """Weighted mean of components, sample by sample (their bootstrap samples stay paired)."""
    if not parts:
        raise ValueError(f"{name}: nothing to combine")
    w = np.ones(len(parts)) if weights is None else np.asarray(weights, float)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{name}: weights must be non-negative and not all zero")
    w = w / w.sum()
    value = float(sum(wi * c.value for wi, c in zip(w, parts, strict=True)))
    samples = sum(wi * c.samples for wi, c in zip(w, parts, strict=True))
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return Component(name, value, float(lo), float(hi), min(c.n for c in parts),
                     np.asarray(samples, float), details or {})


def difference(name: str, a: Component, b: Component) -> Component:
    """``a - b`` with paired samples (the same resampled units where both used them)."""
    samples = a.samples - b.samples
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return Component(name, a.value - b.value, float(lo), float(hi), min(a.n, b.n), samples,
                     {"of": a.name, "minus": b.name})
