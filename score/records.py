"""Simulation score on activation records, as OpenAI's neuron-explainer scores an explanation
(Bills et al. 2023): a simulator predicts each token's activation from the hypothesis alone, and
the score is the Pearson correlation between predicted and real activations over all tokens of
the records pooled ("all at once": top and random records together, so the scale between them
counts), also reported on the top and on the random records alone.

Interval: a seeded percentile bootstrap over records, top and random resampled separately
(``score/stats.py``), so two hypotheses scored on the same records with the same seed are paired.
The value is the raw r (it can be negative), not clipped as the hypothesis score's component is;
undefined (nan, ``None`` in JSON) when the simulator predicts the same value for every token.

Held out (``explain_held_out``, the one "explain, then score on held-out records" of the atlas,
``explain --records`` and ``bench/explain.py``): any ``Explainer`` (``tools/pattern.py``) learns
from one half of a neuron's records and is scored on the other. The split is decided here alone:
the top records that fire (max > 0), strongest first, and the random records, each by alternate
ranks (``split``: 1st, 3rd, ... explain; 2nd, 4th, ... held out), so both halves span the range
of activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from neurosleuth.score.stats import N_BOOT, bootstrap
from neurosleuth.tools.pattern import Explainer, Explanation
from neurosleuth.tools.records import Record

Simulator = Callable[[list[str]], np.ndarray]  # tokens -> predicted activation per token


@dataclass(frozen=True)
class RecordsScore:
    r: float  # all records pooled
    lo: float
    hi: float
    top_r: float
    random_r: float
    records: int
    tokens: int

    def to_dict(self) -> dict:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(float(x), 4)

        return {"r": num(self.r), "lo": num(self.lo), "hi": num(self.hi),
                "top_r": num(self.top_r), "random_r": num(self.random_r),
                "records": self.records, "tokens": self.tokens}


def simulation_r(simulate: Simulator, top: Sequence[Record], random: Sequence[Record] = (),
                 *, seed: int = 0, n_boot: int = N_BOOT) -> RecordsScore:
    """Score a simulator on records (module docstring)."""
    recs = [*top, *random]
    pred = [np.asarray(simulate(list(r.tokens)), dtype=float) for r in recs]
    real = [r.acts for r in recs]
    nt = len(top)
    # per record: n, sums of x, y, xx, yy, xy (a resample's pooled r from its records' sums)
    sums = np.array([[len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()]
                     for x, y in zip(pred, real, strict=True)]).reshape(-1, 6)

    def r_of(idx: np.ndarray) -> float:
        return _pooled_r(sums[np.asarray(idx, int)])

    def stat(it, ir) -> float:
        return r_of(np.concatenate([np.asarray(it, int), nt + np.asarray(ir, int)]))

    comp = bootstrap("records", stat, [nt, len(random)], seed=seed, n_boot=n_boot)
    if math.isnan(comp.details["raw"]):  # a constant prediction: no correlation to report
        comp = replace(comp, value=math.nan, lo=math.nan, hi=math.nan)
    return RecordsScore(comp.value, comp.lo, comp.hi, r_of(np.arange(nt)),
                        r_of(np.arange(nt, len(recs))), len(recs), int(sum(len(x) for x in real)))


def _pooled_r(rows: np.ndarray) -> float:
    """Pearson r of the tokens of the records whose sums are ``rows`` (as ``stats.pearson``:
    nan when either side is constant)."""
    n, sx, sy, sxx, syy, sxy = rows.sum(axis=0) if len(rows) else np.zeros(6)
    if n < 2:
        return math.nan
    vx, vy = sxx - sx * sx / n, syy - sy * sy / n
    if vx <= 1e-12 * max(sxx, 1.0) or vy <= 1e-12 * max(syy, 1.0):
        return math.nan
    return float(np.clip((sxy - sx * sy / n) / math.sqrt(vx * vy), -1.0, 1.0))


def split(records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
    """Records to explain from and to score on: alternate ranks (1st, 3rd, ... explain; 2nd,
    4th, ... held out), so both halves span the range of activations (of top records, strongest
    first) or the sample (of random ones)."""
    return list(records[0::2]), list(records[1::2])


@dataclass(frozen=True)
class HeldOut:
    """An explanation learned from one half of a neuron's records, and the other half, held out,
    that it is scored on."""

    explanation: Explanation
    learned_top: list[Record]
    learned_random: list[Record]
    top: list[Record]  # held out
    random: list[Record]  # held out

    def score(self, simulate: Simulator | None = None, *, seed: int = 0,
              n_boot: int = N_BOOT) -> RecordsScore:
        """``simulate`` (default: the explanation's own pattern) scored on the held-out records
        (``simulation_r``)."""
        return simulation_r(simulate or self.explanation.pattern.simulate, self.top, self.random,
                            seed=seed, n_boot=n_boot)


def explain_held_out(explainer: Explainer, top: Sequence[Record],
                     random: Sequence[Record] = ()) -> HeldOut:
    """``explainer`` on one half of a neuron's records (``top``, strongest first, and ``random``),
    the other half held out to score it on (module docstring)."""
    learn_top, held_top = split([r for r in top if r.max > 0])
    learn_random, held_random = split(random)
    return HeldOut(explainer(learn_top, learn_random), learn_top, learn_random, held_top,
                   held_random)
