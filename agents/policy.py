"""The one owner of "what next": which experiment an investigation runs, when a hypothesis round
is due, and when it stops (``decide``, read by the graph's ``plan`` node and routed by its edges).

Deterministic (no LLM): the same evidence gives the same choice, so ``--planner heuristic`` stays
reproducible, and an LLM planner that fails falls back to it. An LLM planner may choose another
experiment; ``review`` accepts its choice, except a finish before any hypothesis.

Routes: ``act`` (run an experiment), ``round`` (probe, hypothesize, test, revise) or ``report``.
The stop rules come first:

1. a stop (Ctrl-C, a batch stopping) or a budget spent (iterations, forward passes, time): a
   closing round when evidence came in since the last round, else the report;
2. the budget reserved for the closing round: when what is left of the time or forward-pass
   budget would not cover one more step and a round (the measured cost of the last round; before
   one, ``ROUND_PRIOR`` of the budget), the closing round runs now; after it, the report.

Then, with the adaptive policy:

3. no hypothesis yet: a round at once: it starts from the records explanation of the neuron's
   scan (the atlas read-off) and tests and revises it (``agents/revise.py``);
4. after a round: when the leader's margin interval overlaps a rival's, compare the two on
   prompts where they disagree (once per pair); when the leader lacks causal evidence (no
   ablation since it was stated, or one no stronger than random neurons), patch its peak
   activation into quiet prompts; test the leader on new prompts once;
5. finish when the leader's margin interval clears every rival's (lower bound above their upper
   bounds and above 0);
6. search while the top list grows (new prompts entered it at the last step), in the first half
   of the budget; attack when the search has stalled (no new best for ``STALLED`` steps, once a
   round); a new round when ``hypothesis_every`` steps have passed since the last; else search.

The fixed policy (``--policy fixed``, the schedule the adaptive one is measured against) searches
every step and holds a round every ``hypothesis_every`` steps, with the same stop rules.

The input is a ``Situation``, a small read of the graph state (``situation``), so the rules are
tested on hand-made situations without a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
ROUND_PRIOR = 0.35  # share of a time or pass budget reserved for a round before one is measured

Route = Literal["act", "round", "report"]


@dataclass(frozen=True)
class Candidate:
    """One scored candidate of the last hypothesis round."""

    text: str
    margin: float
    lo: float | None  # 95% interval of the margin over the floor
    hi: float | None


@dataclass(frozen=True)
class Budget:
    """What is left of the budgets, and what a step and a round cost (measured)."""

    stop: str | None = None  # why the run must stop now (a stop request, a budget spent)
    time_left_s: float | None = None
    passes_left: int | None = None
    step_s: float = 0.0  # the last step's cost
    step_passes: int = 0
    round_s: float | None = None  # the last round's cost (None: no round yet)
    round_passes: int | None = None
    time_budget_s: float | None = None
    pass_budget: int | None = None

    def closing(self) -> str | None:
        """Why the closing round must start now (one more step and a round would overrun what
        is left of a budget), or None."""
        if self.time_left_s is not None and self.time_budget_s:
            need = self.step_s + (self.round_s if self.round_s is not None
                                  else ROUND_PRIOR * self.time_budget_s)
            if self.time_left_s < need:
                return (f"{self.time_left_s:.0f} s left, a step and a round take ~{need:.0f} s")
        if self.passes_left is not None and self.pass_budget:
            need_p = self.step_passes + (self.round_passes if self.round_passes is not None
                                         else int(ROUND_PRIOR * self.pass_budget))
            if self.passes_left < need_p:
                return (f"{self.passes_left} forward passes left, a step and a round take "
                        f"~{need_p}")
        return None


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
    budget: Budget = field(default_factory=Budget)
    fixed: bool = False  # the fixed schedule, not the adaptive policy


@dataclass(frozen=True)
class Step:
    """The decision: where the graph goes next, the experiment to run there (``act``), and why."""

    route: Route
    reason: str
    action: Experiment | None = None
    stop: str | None = None  # the stop reason the run ends with (route ``report``, or closing)


def decide(s: Situation) -> Step:
    """What runs next (module docstring: the stop rules, then the policy's rules)."""
    fresh = s.steps_since_hypothesis is None or s.steps_since_hypothesis > 0
    if s.budget.stop is not None:
        if fresh and s.step > 0:
            return Step("round", f"{s.budget.stop}: a closing round on the evidence since the "
                        "last one", stop=s.budget.stop)
        return Step("report", s.budget.stop, stop=s.budget.stop)
    closing = s.budget.closing()
    if closing is not None:
        why = f"budget reserved for the closing round ({closing})"
        if fresh:
            return Step("round", why + ": the closing round now", stop=why)
        return Step("report", why + ": the last round was the closing round", stop=why)
    action = _fixed(s) if s.fixed else choose(s)
    return review(s, action)


def review(s: Situation, action: Experiment) -> Step:
    """The step for an experiment chosen at ``s`` (by this policy or by an LLM planner): a round
    and a finish are routes of the graph, not experiments; a finish before any hypothesis is
    refused (a round instead)."""
    if isinstance(action, RunHypothesis):
        return Step("round", action.reason or "the planner asked for a hypothesis round")
    if isinstance(action, Finish):
        if s.leading is None and s.steps_since_hypothesis is None:
            return Step("round", f"{action.reason} (finish refused: no hypothesis yet)")
        why = "finished: " + (action.reason or "decided")
        return Step("report", why, stop=why)
    return Step("act", action.reason, action)


def _fixed(s: Situation) -> Experiment:
    """The schedule: a prompt search every step, a round every ``hypothesis_every`` steps."""
    if s.step > 0 and s.step % s.hypothesis_every == 0 and s.steps_since_hypothesis != 0:
        return RunHypothesis(reason=f"the schedule: a round every {s.hypothesis_every} steps")
    return search("the schedule: a prompt search every step")


def choose(s: Situation) -> Experiment:
    """The next experiment of the adaptive policy, its ``reason`` said (a prompt search carries
    no prompts yet: the planner writes them)."""
    action, reason = _choose(s)
    return action.model_copy(update={"reason": reason})


def _choose(s: Situation) -> tuple[Experiment, str]:
    if s.steps_since_hypothesis is None:
        return RunHypothesis(), (
            "no hypothesis yet: start from the records explanation of the scan (the atlas "
            "read-off) and test and revise it on the model")
    lead = s.leading
    if lead is not None:
        for r in (r for r in s.rivals if overlaps(lead, r)):
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
    if s.grew and s.budget_used < SEARCH_SHARE:
        return search(), (
            f"the top list grew by {s.grew} prompt(s) at the last step: keep searching")
    if "ablate" not in s.evidence_kinds:
        return RunAblation(prompts=4), (
            "no causal evidence yet: ablate the neuron on its top prompts")
    if s.stalled >= STALLED and "attack" not in s.kinds_since_hypothesis:
        return RunAttack(), f"no new best for {s.stalled} steps: gradient-guided search"
    if s.steps_since_hypothesis >= s.hypothesis_every:
        return RunHypothesis(), (
            f"{s.steps_since_hypothesis} steps of new evidence since the last hypothesis")
    return search(), "search for stronger prompts"


def overlaps(a: Candidate, b: Candidate) -> bool:
    """Can the held-out score not tell ``a`` from ``b``? (either's margin inside the other's
    interval; without intervals, margins within 0.02)"""
    if a.lo is None or a.hi is None or b.lo is None or b.hi is None:
        return abs(a.margin - b.margin) < 0.02
    return b.hi >= a.margin or a.lo <= b.margin


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def budget_of(state: dict, cfg, stopping: str | None = None) -> Budget:
    """What is left of ``cfg``'s budgets at ``state`` and the measured costs (``state["costs"]``:
    the last step's and the last round's seconds and forward passes)."""
    step = state.get("iteration", 0)
    passes = state.get("forward_passes", 0)
    elapsed = state.get("elapsed_s", 0.0)
    stop = stopping
    if stop is None and step >= cfg.iterations:
        stop = f"iteration budget ({cfg.iterations})"
    if stop is None and cfg.max_forward_passes and passes >= cfg.max_forward_passes:
        stop = f"forward-pass budget ({cfg.max_forward_passes})"
    if stop is None and cfg.time_budget_s and elapsed >= cfg.time_budget_s:
        stop = f"time budget ({cfg.time_budget_s:.0f} s)"
    costs = state.get("costs") or {}
    return Budget(
        stop=stop,
        time_left_s=cfg.time_budget_s - elapsed if cfg.time_budget_s else None,
        passes_left=cfg.max_forward_passes - passes if cfg.max_forward_passes else None,
        step_s=costs.get("step_s", 0.0),
        step_passes=costs.get("step_passes", 0),
        round_s=costs.get("round_s"),
        round_passes=costs.get("round_passes"),
        time_budget_s=cfg.time_budget_s,
        pass_budget=cfg.max_forward_passes,
    )


def situation(state: dict, cfg, stopping: str | None = None) -> Situation:
    """Read the graph state (and the run's budgets) into a ``Situation``; ``stopping``: a stop
    request (Ctrl-C, a batch stopping)."""
    from neurosleuth.agents.findings import findings_of
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
    scored = [c for c in cands if c is not None]
    leading = next((c for c in scored if last and c.text == last["text"]), None)
    if leading is None and last and (last.get("score") or {}).get("margin") is not None:
        leading = _candidate({"text": last["text"], **last["score"]})  # a revision leads
    rivals = tuple(c for c in scored if leading is None or c.text != leading.text)
    found = findings_of(state)
    recent = frozenset(e["kind"] for e in state.get("experiments", [])
                       if last is None or e["step"] >= last["step"])
    ablations = [f.kl_z for f in found.ablations if f.kl_z is not None]
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
        causal_z=ablations[-1] if ablations else None,
        compared=found.compared_pairs(),
        tested=found.tested_hypotheses(),
        evidence_kinds=found.kinds(),
        budget=budget_of(state, cfg, stopping),
        fixed=cfg.policy == "fixed",
    )


def _candidate(c: dict) -> Candidate | None:
    if c.get("margin") is None:
        return None
    lo, hi = c.get("margin_ci") or (None, None)
    return Candidate(c["text"], float(c["margin"]), lo, hi)
