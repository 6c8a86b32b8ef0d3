"""The experiment-design policy: which experiment an investigation runs next, and why.

Deterministic (no LLM): the same evidence gives the same choice, so ``--planner heuristic`` stays
reproducible, and an LLM planner that fails falls back to it. Its rules, in order:

1. search while the top list grows (new prompts entered it at the last step), in the first half
   of the budget;
2. before the first hypothesis: causal evidence first (ablation on the top prompts), then the
   explainer once the top list stops growing;
3. after a hypothesis round: when the leader's margin interval overlaps a rival's, compare the
   two on prompts where they disagree (once per pair); when the leader lacks causal evidence
   (no ablation since it was stated, or one no stronger than random neurons), patch its peak
   activation into quiet prompts; test the leader on new prompts once;
4. stop when the leader's margin interval clears every rival's (lower bound above their upper
   bounds and above 0);
5. attack when the search has stalled (no new best for ``STALLED`` steps); a new hypothesis
   round when ``hypothesis_every`` steps have passed since the last; else search.

The input is a ``Situation``, a small read of the graph state (``situation``), so the rules are
tested on hand-made situations without a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from neurosleuth.agents.actions import (
    CompareHypotheses,
    Experiment,
    Finish,
    RunAblation,
    RunAttack,
    RunHypothesis,
    RunPatch,
    TestHypothesis,
    search,
)

SEARCH_SHARE = 0.5  # search while the top list grows, up to this share of the budget
STALLED = 2  # steps without a new best before the attack (once per hypothesis round)
CAUSAL_Z = 2.0  # an ablation effect this many SDs above random neurons is causal evidence


@dataclass(frozen=True)
class Candidate:
    """One scored candidate of the last hypothesis round."""

    text: str
    margin: float
    lo: float | None  # 95% interval of the margin over the floor
    hi: float | None


@dataclass(frozen=True)
class Situation:
    """What the policy reads of the state at a step."""

    step: int
    budget_used: float  # share of the tightest budget spent (iterations, passes, time)
    grew: int  # prompts of the last step that entered the top list
    stalled: int  # steps since the best activation last rose (the stagnation monitor's count)
    hypothesis_every: int
    steps_since_hypothesis: int | None  # None: no hypothesis yet
    leading: Candidate | None = None
    rivals: tuple[Candidate, ...] = ()
    kinds_since_hypothesis: frozenset[str] = frozenset()  # experiments since the last round
    causal_z: float | None = None  # newest ablation's KL z-score
    compared: frozenset[tuple[str, str]] = frozenset()  # pairs compared already
    tested: frozenset[str] = frozenset()  # hypotheses tested on new prompts already
    evidence_kinds: frozenset[str] = field(default_factory=frozenset)  # ever gathered


def choose(s: Situation) -> Experiment:
    """The next experiment, its ``reason`` said (a prompt search carries no prompts yet: the
    planner writes them)."""
    action, reason = _choose(s)
    return action.model_copy(update={"reason": reason})


def _choose(s: Situation) -> tuple[Experiment, str]:
    if s.grew and s.budget_used < SEARCH_SHARE:
        return search(), (
            f"the top list grew by {s.grew} prompt(s) at the last step: keep searching")
    if s.steps_since_hypothesis is None:
        if "ablate" not in s.evidence_kinds:
            return RunAblation(prompts=4), (
                "no causal evidence yet: ablate the neuron on its top prompts before explaining")
        return RunHypothesis(), (
            f"the top list stopped growing ({s.stalled} step(s) without a new best)"
            if not s.grew else "half the budget is spent") + ": explain the evidence"
    lead = s.leading
    if lead is not None:
        close = [r for r in s.rivals if overlaps(lead, r)]
        for r in close:
            pair = tuple(sorted((lead.text, r.text)))
            if pair not in s.compared:
                return CompareHypotheses(a=lead.text, b=r.text), (
                    f"{_short(lead.text)!r} (margin {lead.margin:+.3f}) and {_short(r.text)!r} "
                    f"(margin {r.margin:+.3f}) are within each other's intervals: compare them "
                    "where they disagree")
        if "patch" not in s.kinds_since_hypothesis and (
                s.causal_z is None or s.causal_z < CAUSAL_Z):
            why = ("no ablation yet" if s.causal_z is None
                   else f"ablation z {s.causal_z:.1f} is within random neurons' range")
            return RunPatch(), (
                f"the leading hypothesis lacks causal evidence ({why}): patch its peak "
                "activation into quiet prompts")
        if lead.text not in s.tested:
            return TestHypothesis(hypothesis=lead.text), (
                "the leading hypothesis has not been tested on new prompts")
        if lead.lo is not None and lead.lo > 0 and all(
                r.hi is not None and lead.lo > r.hi for r in s.rivals):
            return Finish(), (
                f"the leader's margin interval ({lead.lo:+.3f}..) clears every rival's")
    if s.stalled >= STALLED and "attack" not in s.kinds_since_hypothesis:
        return RunAttack(), f"no new best for {s.stalled} steps: gradient-guided search"
    if s.steps_since_hypothesis >= s.hypothesis_every:
        return RunHypothesis(), (
            f"{s.steps_since_hypothesis} steps of new evidence since the last hypothesis")
    return search(), "search for stronger prompts"


def overlaps(a: Candidate, b: Candidate) -> bool:
    """Can the held-out score not tell ``a`` from ``b``? (either's margin inside the other's
    interval; without intervals, margins within 0.02)"""
    if None in (a.lo, a.hi, b.lo, b.hi):
        return abs(a.margin - b.margin) < 0.02
    return b.hi >= a.margin or a.lo <= b.margin  # type: ignore[operator]


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def situation(state: dict, cfg) -> Situation:
    """Read the graph state (and the run's budgets) into a ``Situation``."""
    from neurosleuth.memory.topk import ActivationHeaps

    step = state.get("iteration", 0)
    heaps = ActivationHeaps.from_dict(state["heaps"])
    grew = sum(1 for r in heaps.top() if r.step == step and step > 0)
    used = step / cfg.iterations
    if cfg.max_forward_passes:
        used = max(used, state.get("forward_passes", 0) / cfg.max_forward_passes)
    if cfg.time_budget_s:
        used = max(used, state.get("elapsed_s", 0.0) / cfg.time_budget_s)
    hyps = state.get("hypotheses") or []
    last = hyps[-1] if hyps else None
    since = None if last is None else step - last["step"]
    cands = [_candidate(c) for c in (last or {}).get("candidates", [])]
    cands = [c for c in cands if c is not None]
    leading = next((c for c in cands if last and c.text == last["text"]), None)
    rivals = tuple(c for c in cands if leading is None or c.text != leading.text)
    evidence = state.get("evidence", [])
    recent = frozenset(e["kind"] for e in state.get("experiments", [])
                       if last is None or e["step"] >= last["step"])
    ablations = [e for e in evidence if e["kind"] == "ablate" and e.get("kl_z") is not None]
    compared = frozenset(tuple(sorted((e["a"], e["b"]))) for e in evidence
                         if e["kind"] == "compare")
    tested = frozenset(e["hypothesis"] for e in evidence if e["kind"] == "test")
    stagnation = state.get("stagnation") or {}
    return Situation(
        step=step,
        budget_used=min(1.0, used),
        grew=grew,
        stalled=int(stagnation.get("stale", 0)),
        hypothesis_every=cfg.hypothesis_every,
        steps_since_hypothesis=since,
        leading=leading,
        rivals=rivals,
        kinds_since_hypothesis=recent,
        causal_z=ablations[-1]["kl_z"] if ablations else None,
        compared=compared,
        tested=tested,
        evidence_kinds=frozenset(e["kind"] for e in evidence),
    )


def _candidate(c: dict) -> Candidate | None:
    if c.get("margin") is None:
        return None
    lo, hi = c.get("margin_ci") or (None, None)
    return Candidate(c["text"], float(c["margin"]), lo, hi)
