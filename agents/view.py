"""What the planner sees at a step (``PlannerView``, rendered by ``agents/prompts.py``): the best
and worst prompts, the dataset exemplars, the leading hypothesis and its rivals, the latest
findings, the researcher's messages, feedback on rejected prompts and counterexamples, and where
the investigation stands (budget used, growth, stalls)."""

from __future__ import annotations

from typing import Any

from neurosleuth.agents import candidates, policy
from neurosleuth.agents.context import RunContext
from neurosleuth.agents.prompts import PlannerView
from neurosleuth.agents.state import heaps_of


def planner_view(ctx: RunContext, state: dict, explanation: Any = None) -> PlannerView:
    heaps = heaps_of(state)
    last = (state.get("hypotheses") or [None])[-1]
    return PlannerView(
        neuron=str(ctx.neuron),
        model=ctx.cfg.model,
        top=[(r.activation, r.max_token, r.prompt) for r in heaps.top(10)],
        bottom=[(r.activation, r.max_token, r.prompt) for r in heaps.bottom(5)],
        exemplars=ctx.exemplars.snippets[:8],
        hypothesis=last["text"] if last else None,
        steering=[m["message"] for m in state.get("steering", [])],
        feedback=feedback(state),
        iteration=state.get("iteration", 0),
        evidence=latest_findings(state.get("evidence", [])),
        findings=candidates.findings(explanation) if explanation is not None else [],
        candidates=[candidate_line(c) for c in (last or {}).get("candidates", [])
                    if c.get("margin") is not None],
        status=status(ctx, state),
    )


def status(ctx: RunContext, state: dict) -> str:
    """Where the investigation stands, for the planner's experiment choice."""
    s = policy.situation(state, ctx.cfg)
    parts = [f"step {s.step} of {ctx.cfg.iterations}, {100 * s.budget_used:.0f}% of the "
             "budget used", f"the top list grew by {s.grew} at the last step",
             f"{s.stalled} step(s) without a new best"]
    if s.steps_since_hypothesis is None:
        parts.append("no hypothesis yet")
    else:
        parts.append(f"last hypothesis round {s.steps_since_hypothesis} step(s) ago")
    if s.kinds_since_hypothesis:
        parts.append("run since: " + ", ".join(sorted(s.kinds_since_hypothesis)))
    return "; ".join(parts) + "."


def feedback(state: dict) -> str:
    """Rejections so far, and the last hypothesis's counterexamples (to refine it)."""
    parts = []
    stats = state.get("stats", {})
    dup, sem = stats.get("rejected_duplicate", 0), stats.get("rejected_semantic", 0)
    if dup or sem:
        parts.append(f"{dup} exact repeats and {sem} near-repeats were rejected so far; "
                     "write texts unlike the ones above.")
    last = (state.get("hypotheses") or [None])[-1]
    details = ((last or {}).get("score") or {}).get("details") or {}
    for key, what in (
        ("predicted_high_but_low", "the hypothesis predicted firing, but the neuron stayed low"),
        ("predicted_low_but_high", "the hypothesis predicted nothing, but the neuron fired"),
    ):
        examples = [repr(t) for t, _ in details.get(key, [])[:2]]
        if examples:
            parts.append(f"Counterexamples ({what}): " + ", ".join(examples) + ".")
    return " ".join(parts)


def candidate_line(c: dict) -> str:
    lo, hi = c.get("margin_ci") or (None, None)
    interval = f" ({lo:+.3f}..{hi:+.3f})" if lo is not None and hi is not None else ""
    return f"{c['text']!r}: margin {c['margin']:+.3f}{interval}"


def latest_findings(evidence: list[dict]) -> list[str]:
    """The headline of the newest finding of each kind (ablation, attribution)."""
    latest: dict[str, str] = {}
    for e in evidence:
        latest[e["kind"]] = e["headline"]
    return [f"{kind}: {text}" for kind, text in latest.items()]
