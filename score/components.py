"""Score a hypothesis about a neuron: predictive, causal and robustness evidence combined into one
interpretability score with bootstrap intervals. Pure: this module takes texts, judgments and
predictions already written (by an LLM or the keyword heuristic, ``score/writer.py``) and
activations already measured (``score/evidence.py``), and computes the components.

Components, each in [0, 1] with a 95% bootstrap interval (``score/stats.py``):

- **selectivity**: the mean of (a) the AUROC of the neuron's activation on prompts written to
  fire (positive) vs. not to fire (negative) under the hypothesis, and (b) the balanced accuracy
  of a judge that says, from the hypothesis alone, whether each held-out corpus window should
  fire; a window's label is "its max activation >= threshold" (default: the neuron's 0.99
  token quantile in the corpus scan). Reported beside it: Cohen's d, mean activations, the judge's
  AUPRC. Chance is 0.5 on both parts.
- **simulation**: Pearson r between predicted per-token activations (0-10) and the real ones,
  pooled over held-out windows (Bills et al. 2023, "Language models can explain neurons in
  language models", scored all at once); the component is max(0, r). Chance is 0.
- **causality**: z-score of the KL divergence caused by ablating the neuron on its top contexts,
  against random neurons of the same layer (``tools/ablate.py``); mapped by
  C = z+ / (z+ + 3) with z+ = max(0, z): z = 3 gives 0.5, z = 9 gives 0.75, z <= 0 gives 0.
- **robustness**: mean over top contexts and perturbations (token dropout away from the peak,
  case change, paraphrase) of activation(perturbed) / activation(original), clipped to [0, 1].
- **human** (optional): Spearman rho between the neuron's activation on user-rated texts and the
  ratings (as the earlier InterpScore tool's human-consistency score); max(0, rho).

Causality, robustness and human describe the neuron, not the hypothesis: they are the same for
every hypothesis about one neuron, and the **floor** (the same score for control hypotheses: one
written for another neuron, and the empty one) differs only in selectivity and simulation. The
margin over the floor is therefore a paired difference whose interval reflects the predictive
evidence alone.

**Aggregate**: weighted mean of the components present (default weights as the earlier tool's
S C R H = 0.3 0.3 0.2 0.2, with S split into selectivity 0.3 and simulation 0.3; human 0.2 when
given), renormalised to sum to 1; its interval from the paired bootstrap samples.

Caveat: chance levels differ (0.5 for selectivity, 0 for simulation), and causality/robustness
are not about the hypothesis; read a score next to its floor, not alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from neurosleuth.score.selectivity import auroc, cohens_d
from neurosleuth.score.stats import (
    N_BOOT,
    Component,
    average_precision,
    balanced_accuracy,
    bootstrap,
    combine,
    difference,
    json_safe,
    pearson,
    spearman,
)

COMPONENTS = ("selectivity", "simulation", "causality", "robustness", "human")
PREDICTIVE = ("selectivity", "simulation")
DEFAULT_WEIGHTS = {"selectivity": 0.3, "simulation": 0.3, "causality": 0.2, "robustness": 0.2,
                   "human": 0.2}
WEIGHT_KEYS = {"s": "selectivity", "selectivity": "selectivity", "m": "simulation",
               "sim": "simulation", "simulation": "simulation", "c": "causality",
               "causality": "causality", "r": "robustness", "robustness": "robustness",
               "h": "human", "human": "human"}
CAUSALITY_SCALE = 3.0  # z at which the causality component is 0.5
JUDGE_CUT = 5.0  # judge scores (0-10) at or above this predict "fires"


def parse_weights(spec: str | dict | None) -> dict[str, float]:
    """``"S=1,C=1,R=1,H=1"`` (S selectivity, M simulation, C causality, R robustness, H human;
    full names work too) or a dict, merged over ``DEFAULT_WEIGHTS``."""
    weights = dict(DEFAULT_WEIGHTS)
    if not spec:
        return weights
    parts = [] if isinstance(spec, dict) else [p for p in spec.split(",") if p.strip()]
    items = spec.items() if isinstance(spec, dict) else (
        p.split("=", 1) if "=" in p else (p, "") for p in parts)
    for key, value in items:
        name = WEIGHT_KEYS.get(str(key).strip().lower())
        if name is None:
            raise ValueError(f"unknown weight {key!r}: use S, M, C, R, H (or full component names)")
        try:
            w = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"weight {key!r} needs a number, e.g. {key}=0.5") from None
        if w < 0 or math.isnan(w):
            raise ValueError(f"weight {key!r} must be >= 0, got {value}")
        weights[name] = w
    return weights


@dataclass(frozen=True)
class HypothesisEvidence:
    """What was written and measured for one hypothesis (all arrays float)."""

    hypothesis: str
    positive: tuple[str, ...]  # prompts written to make the neuron fire
    positive_acts: np.ndarray  # (P,) max activation of each
    negative: tuple[str, ...]
    negative_acts: np.ndarray  # (N,)
    windows: tuple[str, ...]  # held-out windows shown to the judge
    judge_scores: np.ndarray  # (W,) 0-10, >= JUDGE_CUT means "predicted to fire"
    window_max: np.ndarray  # (W,) real max activation
    sim_predicted: tuple[np.ndarray, ...] = ()  # per simulated window: (T_i,) predicted 0-10
    sim_real: tuple[np.ndarray, ...] = ()  # (T_i,) real activations


def selectivity(ev: HypothesisEvidence, threshold: float, *, seed: int = 0,
                n_boot: int = N_BOOT) -> Component:
    pos, neg = np.asarray(ev.positive_acts, float), np.asarray(ev.negative_acts, float)
    labels = np.asarray(ev.window_max, float) >= threshold
    predicted = np.asarray(ev.judge_scores, float) >= JUDGE_CUT

    def parts(ip, ineg, iw) -> tuple[float, float]:
        a = auroc(pos[ip], neg[ineg])
        return (math.nan if a is None else a), balanced_accuracy(labels[iw], predicted[iw])

    def stat(ip, ineg, iw) -> float:
        vals = [v for v in parts(ip, ineg, iw) if not math.isnan(v)]
        return float(np.mean(vals)) if vals else math.nan

    full = [np.arange(len(pos)), np.arange(len(neg)), np.arange(len(labels))]
    a, ba = parts(*full)
    details = {"auroc": a, "cohens_d": cohens_d(pos, neg),
               "mean_pos": float(pos.mean()) if pos.size else None,
               "mean_neg": float(neg.mean()) if neg.size else None,
               "balanced_accuracy": ba,
               "auprc": average_precision(labels, ev.judge_scores),
               "windows": int(labels.size), "windows_above": int(labels.sum()),
               "threshold": threshold}
    return bootstrap("selectivity", stat, [len(pos), len(neg), len(labels)], seed=seed,
                     n_boot=n_boot, details=details)


def simulation(ev: HypothesisEvidence, *, seed: int = 0, n_boot: int = N_BOOT) -> Component:
    pred = [np.asarray(p, float) for p in ev.sim_predicted]
    real = [np.asarray(r, float) for r in ev.sim_real]

    def stat(iw) -> float:
        if len(iw) == 0:
            return math.nan
        return pearson(np.concatenate([pred[i] for i in iw]), np.concatenate([real[i] for i in iw]))

    tokens = int(sum(len(r) for r in real))
    return bootstrap("simulation", stat, [len(pred)], seed=seed, n_boot=n_boot,
                     transform=lambda r: max(0.0, r), details={"tokens": tokens})


def causality(target_kl: np.ndarray, baseline_kl: np.ndarray, *, scale: float = CAUSALITY_SCALE,
              seed: int = 0, n_boot: int = N_BOOT, details: dict | None = None) -> Component:
    """From per-prompt KL of the target ablation (P,) and mean KL of each random neuron (R,)."""
    t, b = np.asarray(target_kl, float), np.asarray(baseline_kl, float)
    t, b = t[~np.isnan(t)], b[~np.isnan(b)]

    def stat(it, ib) -> float:
        if len(it) == 0 or len(ib) < 2:
            return math.nan
        sd = b[ib].std(ddof=1)
        diff = t[it].mean() - b[ib].mean()
        return diff / sd if sd > 0 else (math.copysign(math.inf, diff) if diff else 0.0)

    def squash(z: float) -> float:
        zp = max(0.0, z)
        return 1.0 if math.isinf(zp) else zp / (zp + scale)

    info = {"kl": float(t.mean()) if t.size else None,
            "baseline_mean": float(b.mean()) if b.size else None,
            "baseline_std": float(b.std(ddof=1)) if b.size > 1 else None,
            "mapping": f"z+/(z+ + {scale:g})", **(details or {})}
    comp = bootstrap("causality", stat, [len(t), len(b)], seed=seed, n_boot=n_boot,
                     transform=squash, details=info)
    comp.details["z"] = comp.details["raw"]
    return comp


def robustness(ratios: dict[str, np.ndarray], *, seed: int = 0, n_boot: int = N_BOOT,
               details: dict | None = None) -> Component:
    """``ratios[kind]``: perturbed / original activation per top context (clipped to [0, 1])."""
    flat = np.concatenate([np.clip(np.asarray(v, float), 0, 1) for v in ratios.values()]
                          ) if ratios else np.zeros(0)
    info = {f"{k}_mean": float(np.clip(v, 0, 1).mean()) if len(v) else None
            for k, v in ratios.items()}

    def stat(i) -> float:
        return float(flat[i].mean()) if len(i) else math.nan

    return bootstrap("robustness", stat, [flat.size], seed=seed, n_boot=n_boot,
                     details={**info, **(details or {})})


def human(acts: np.ndarray, ratings: np.ndarray, *, seed: int = 0, n_boot: int = N_BOOT
          ) -> Component:
    a, r = np.asarray(acts, float), np.asarray(ratings, float)

    def stat(i) -> float:
        return spearman(a[i], r[i]) if len(i) > 2 else math.nan

    return bootstrap("human", stat, [a.size], seed=seed, n_boot=n_boot,
                     transform=lambda rho: max(0.0, rho))


def predictive(ev: HypothesisEvidence, threshold: float, *, seed: int = 0,
               n_boot: int = N_BOOT) -> dict[str, Component]:
    """The hypothesis-dependent components: selectivity and simulation."""
    return {"selectivity": selectivity(ev, threshold, seed=seed, n_boot=n_boot),
            "simulation": simulation(ev, seed=seed, n_boot=n_boot)}


def aggregate(components: dict[str, Component], weights: dict[str, float]) -> Component:
    names = [n for n in COMPONENTS if n in components and weights.get(n, 0) > 0]
    if not names:
        raise ValueError("every component present has weight 0")
    w = [weights[n] for n in names]
    total = sum(w)
    return combine("aggregate", [components[n] for n in names], w,
                   {"weights": {n: wi / total for n, wi in zip(names, w, strict=True)}})


def counterexamples(ev: HypothesisEvidence, threshold: float, limit: int = 5
                    ) -> dict[str, Any]:
    """Where the hypothesis was wrong: predicted to fire but the neuron stayed below
    ``threshold`` (``predicted_high``), and predicted quiet but it fired (``predicted_low``)."""
    # each: {"text": str, "activation": float, "source": str}
    high: list[dict[str, Any]] = [
        {"text": t, "activation": float(a), "source": "positive prompt"}
        for t, a in zip(ev.positive, ev.positive_acts, strict=True) if a < threshold]
    low: list[dict[str, Any]] = [{"text": t, "activation": float(a), "source": "negative prompt"}
           for t, a in zip(ev.negative, ev.negative_acts, strict=True) if a >= threshold]
    for t, s, a in zip(ev.windows, ev.judge_scores, ev.window_max, strict=True):
        fired, said = a >= threshold, s >= JUDGE_CUT
        if said and not fired:
            high.append({"text": t, "activation": float(a), "source": "held-out window"})
        elif fired and not said:
            low.append({"text": t, "activation": float(a), "source": "held-out window"})
    return {"predicted_high": sorted(high, key=lambda d: d["activation"])[:limit],
            "predicted_low": sorted(low, key=lambda d: -d["activation"])[:limit],
            "threshold": threshold}


@dataclass(frozen=True)
class ControlScore:
    """The score of a control hypothesis (the floor): its predictive components, the shared
    neuron-level ones, and its aggregate."""

    label: str  # "other-neuron" or "empty"
    hypothesis: str
    components: dict[str, Component]
    aggregate: Component

    def to_dict(self) -> dict:
        return {"label": self.label, "hypothesis": self.hypothesis,
                "components": {k: c.to_dict() for k, c in self.components.items()},
                "aggregate": self.aggregate.to_dict()}


@dataclass(frozen=True)
class ScoreResult:
    """A hypothesis's score: components, aggregate, floor (best control), margin over it."""

    model: str
    neuron: str
    hypothesis: str
    components: dict[str, Component]
    aggregate: Component
    weights: dict[str, float]
    controls: tuple[ControlScore, ...]
    floor: Component  # aggregate of the strongest control
    margin: Component  # aggregate - floor (paired bootstrap)
    counterexamples: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)  # the written prompts and their activations
    llm: dict = field(default_factory=dict)  # backend, calls, failures, fallbacks, tokens, seconds
    seconds: float = 0.0
    config: dict = field(default_factory=dict)

    @property
    def llm_failures(self) -> int:
        return int(self.llm.get("failures", 0))

    @property
    def floor_control(self) -> ControlScore | None:
        return max(self.controls, key=lambda c: c.aggregate.value, default=None)

    def to_dict(self) -> dict:
        return json_safe({
            "model": self.model, "neuron": self.neuron, "hypothesis": self.hypothesis,
            "components": {k: c.to_dict() for k, c in self.components.items()},
            "aggregate": self.aggregate.to_dict(), "weights": self.weights,
            "controls": [c.to_dict() for c in self.controls], "floor": self.floor.to_dict(),
            "margin": self.margin.to_dict(), "counterexamples": self.counterexamples,
            "evidence": self.evidence, "llm": self.llm, "llm_failures": self.llm_failures,
            "seconds": self.seconds, "config": self.config})

    def to_record(self) -> dict:
        """The compact, JSON-safe form an investigation keeps per hypothesis (the shape the
        report reads): ``aggregate`` and ``components`` as numbers, intervals, floor, margin,
        and ``details`` (sub-measures, counterexamples, the written test prompts)."""
        sel, sim = self.components["selectivity"].details, self.components["simulation"].details
        cau = self.components["causality"].details
        ce = self.counterexamples
        return json_safe({
            "aggregate": self.aggregate.value, "ci": [self.aggregate.lo, self.aggregate.hi],
            "components": {k: c.value for k, c in self.components.items()},
            "intervals": {k: [c.lo, c.hi] for k, c in self.components.items()},
            "floor": self.floor.value, "margin": self.margin.value,
            "margin_ci": [self.margin.lo, self.margin.hi],
            "details": {
                "floor_control": self.floor.details.get("control"), "auroc": sel.get("auroc"),
                "cohens_d": sel.get("cohens_d"), "judge_balanced_accuracy":
                    sel.get("balanced_accuracy"), "judge_auprc": sel.get("auprc"),
                "simulation_r": sim.get("raw"), "causality_z": cau.get("z"),
                "predicted_high_but_low": [[e["text"], e["activation"]]
                                           for e in ce.get("predicted_high", [])],
                "predicted_low_but_high": [[e["text"], e["activation"]]
                                           for e in ce.get("predicted_low", [])],
                "positive": self.evidence.get("positive", []),
                "negative": self.evidence.get("negative", []),
                "llm_failures": self.llm_failures, "seconds": self.seconds}})

    def to_frame(self) -> pd.DataFrame:
        """One row per component, then aggregate, floor and margin: value, lo, hi, n, the
        floor control's value of the same component, and the weight used."""
        ctl = self.floor_control
        used = self.aggregate.details.get("weights", {})
        rows = [{"component": k, "value": c.value, "lo": c.lo, "hi": c.hi, "n": c.n,
                 "floor": ctl.components[k].value if ctl and k in ctl.components else None,
                 "weight": used.get(k, 0.0)}
                for k, c in self.components.items()]
        for c in (self.aggregate, self.floor, self.margin):
            rows.append({"component": c.name, "value": c.value, "lo": c.lo, "hi": c.hi, "n": c.n,
                         "floor": self.floor.value if c is self.aggregate else None,
                         "weight": None})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """One line, e.g. ``score 0.71 [0.62, 0.80], floor 0.35, margin +0.36 [0.24, 0.47]``."""
        a, m = self.aggregate, self.margin
        return (f"score {a.value:.2f} [{a.lo:.2f}, {a.hi:.2f}], floor {self.floor.value:.2f}, "
                f"margin {m.value:+.2f} [{m.lo:+.2f}, {m.hi:+.2f}]")


def assemble(model: str, neuron: str, main: HypothesisEvidence,
             shared: dict[str, Component], controls: list[tuple[str, HypothesisEvidence]],
             threshold: float, weights: dict[str, float] | None = None, *, seed: int = 0,
             n_boot: int = N_BOOT, **extra) -> ScoreResult:
    """Build the ``ScoreResult``: the hypothesis's predictive components plus the ``shared``
    neuron-level ones (causality, robustness, human), the same for each control, the floor
    (the control with the highest aggregate) and the margin."""
    weights = parse_weights(weights)
    comps = {**predictive(main, threshold, seed=seed, n_boot=n_boot), **shared}
    comps = {k: comps[k] for k in COMPONENTS if k in comps}
    agg = aggregate(comps, weights)
    scored = []
    for label, ev in controls:
        c = {**predictive(ev, threshold, seed=seed, n_boot=n_boot), **shared}
        c = {k: c[k] for k in COMPONENTS if k in c}
        scored.append(ControlScore(label, ev.hypothesis, c, aggregate(c, weights)))
    best = max(scored, key=lambda s: s.aggregate.value, default=None)
    floor = best.aggregate if best else combine("floor", [agg], None)
    floor = Component("floor", floor.value, floor.lo, floor.hi, floor.n, floor.samples,
                      {"control": best.label if best else None})
    return ScoreResult(model, neuron, main.hypothesis, comps, agg, weights, tuple(scored),
                       floor, difference("margin", agg, floor),
                       counterexamples(main, threshold), **extra)
