"""The nodes of a hypothesis round: probe -> hypothesize -> test -> revise (``agents/graph.py``).

- ``probe``: causal evidence for the hypothesis (ablation against random neurons, attribution,
  steering), but the probes the planner ran since the last round;
- ``hypothesize``: candidates from every source (``agents/candidates.py``): the records
  explanation of the scan (the atlas read-off, where a deep dive starts), the deep-dive
  explainer's sentences, the planner's, the previous best, the researcher's;
- ``test``: every candidate scored on the same held-out windows; the best margin wins, unless the
  round's concept or kind experiment decides between close readings; the attack then looks for
  counterexamples;
- ``revise``: the leader's clauses are tested on the model, edited where refuted, and the edit
  rescored (``agents/revise.py``): the revised hypothesis leads when it holds up.
"""

from __future__ import annotations

import time
from typing import Any

from neurosleuth.agents import candidates, handlers, scoring
from neurosleuth.agents.context import RunContext
from neurosleuth.agents.findings import validated
from neurosleuth.agents.revise import revise as revise_hypothesis
from neurosleuth.agents.state import InvestigationState, add_usage, leader
from neurosleuth.agents.summary import save_hypotheses
from neurosleuth.agents.view import planner_view
from neurosleuth.tools.pattern import Pattern


def deadline_of(ctx: RunContext, state: InvestigationState) -> float | None:
    """When the run's time budget ends, as a ``time.monotonic()`` (None: no time budget). A
    round's nodes do what fits before it: the probes and the candidates in order, and at least
    one candidate scored."""
    if not ctx.cfg.time_budget_s:
        return None
    return time.monotonic() + max(0.0, ctx.cfg.time_budget_s - state.get("elapsed_s", 0.0))


def probe(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Causal evidence before a hypothesis: ablation vs random neurons, token attribution."""
    start = time.perf_counter()
    skip: frozenset[str] = frozenset()
    if ctx.cfg.policy != "fixed":  # probes the planner ran since the last hypothesis
        last = (leader(state) or {"step": 0})["step"]
        skip = frozenset(e["kind"] for e in state.get("experiments", []) if e["step"] > last)
    findings, passes = handlers.run_probes(ctx, state, skip, deadline_of(ctx, state))
    return {
        "evidence": [validated(f) for f in findings],
        "forward_passes": state["forward_passes"] + passes,
        "model_s": state.get("model_s", 0.0) + time.perf_counter() - start,
        "_event": {"action": "probe", "summary": "; ".join(f["headline"] for f in findings)},
    }


def hypothesize(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Candidates from every source (``agents/candidates.py``): the explainer's, the planner's
    (which sees the explainer's findings), the previous best, the researcher's."""
    start = time.perf_counter()
    explanation = scoring.explain(ctx, state)
    experiment = (candidates.concept_experiment(ctx.lm, ctx.neuron, explanation)
                  or candidates.kind_experiment(ctx.lm, ctx.neuron, explanation))
    model_s = time.perf_counter() - start
    action, info = ctx.planner.hypothesize(planner_view(ctx, dict(state), explanation))
    last = leader(state)
    users = [ctx.cfg.hypothesis] if ctx.cfg.hypothesis else []
    cands = candidates.gather(  # in order of preference: what a short budget scores first
        candidates.from_read_off(scoring.read_off(ctx)),
        candidates.from_explainer(explanation),
        [{"text": action.text, "source": info.source, "explanation": action.explanation}],
        [{"text": last["text"], "source": "previous best",  # a revision keeps its pattern
          "explanation": last.get("explanation", ""),
          **({"pattern": last["pattern"]} if last.get("pattern") else {})}] if last else [],
        [{"text": u, "source": "researcher", "explanation": ""}
         for u in users + list(state.get("user_hypotheses", []))],
    )
    draft = {"step": state["iteration"], "candidates": cands, **cands[0],
             "experiment": experiment}
    summary = f"{len(cands)} candidates; explainer: {explanation.sentence}"
    if experiment:
        summary += f"; experiment: {experiment['summary']}"
    return {
        "pending_hypothesis": draft,
        "llm": add_usage(state["llm"], info.usage()),
        "forward_passes": state["forward_passes"] + explanation.forward_passes
        + (experiment or {}).get("forward_passes", 0),
        "model_s": state.get("model_s", 0.0) + model_s,
        "_event": {
            "action": "hypothesis",
            "summary": summary,
            "llm_tokens_out": info.tokens_out,
            "llm_failures": info.failures,
        },
    }


def test(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Score every candidate on the same held-out windows (``score/run.py``); the best margin over
    the floor becomes the hypothesis. A scoring error is recorded, never fatal to the run."""
    draft = state.get("pending_hypothesis")
    if draft is None:
        raise RuntimeError("test runs after hypothesize: no drafted hypothesis in the state")
    deadline = deadline_of(ctx, state)
    scored, written = candidates.score_all(ctx, draft["candidates"], state, deadline)
    winner = candidates.best(scored)
    decided = None
    if winner is not None:
        winner, decided = candidates.decide(scored, winner, draft.get("experiment"))
    table = [{k: c.get(k) for k in ("text", "source", "explanation", "rejected", "score_error",
                                     "score")}
             | {"summary": summary_of(c.get("score")),
                "margin": (c.get("score") or {}).get("margin"),
                "margin_ci": (c.get("score") or {}).get("margin_ci"),
                **({"pattern": c["pattern"]} if c.get("pattern") else {})} for c in scored]
    if winner is None:
        first = next((c for c in scored if not c.get("rejected")), scored[0])
        hyp = {**draft, **_without_score(first), "score": None, "candidates": table,
               "score_error": first.get("score_error") or "no candidate could be scored"}
        hyp.pop("pattern", None)
        save_hypotheses(ctx, state.get("hypotheses", []) + [hyp])
        return {
            "hypotheses": [hyp],
            "pending_hypothesis": None,
            "_event": {"action": "score", "summary": f"failed: {hyp['score_error'][:200]}"},
        }
    record = winner["score"]
    found: list[dict] = []
    attack_passes = 0
    if deadline is None or time.monotonic() < deadline:
        found, attack_passes = scoring.attack_counterexamples(
            ctx, winner["text"], state, record.get("threshold", 0.0),
            candidates.writer_for(ctx, draft["candidates"]),
        )
    details = record["details"]
    details["attack_counterexamples"] = [[e["text"], e["activation"]] for e in found]
    details["predicted_low_but_high"] = details["attack_counterexamples"] + details.get(
        "predicted_low_but_high", []
    )
    hyp = {**draft, **_without_score(winner), "score": record, "candidates": table,
           "decided_by": decided}
    hyp.pop("pattern", None)
    if winner.get("pattern"):
        hyp["pattern"] = winner["pattern"]  # what the revision tests and edits
    save_hypotheses(ctx, state.get("hypotheses", []) + [hyp])
    return {
        "hypotheses": [hyp],
        "pending_hypothesis": None,
        "forward_passes": state["forward_passes"] + written + attack_passes,
        "_event": {
            "action": "score",
            "summary": f"{winner['source']} wins of {len(scored)}: {winner['text']} "
            f"({summary_of(record)}); the attack found {len(found)} counterexample(s)"
            + (f"; decided by the {decided['experiment']} experiment ({decided['verdict']})"
               if decided and decided["changed"] else ""),
        },
    }


def _without_score(c: dict) -> dict:
    return {k: v for k, v in c.items() if k not in ("score", "pattern", "rejected")}


def summary_of(record: dict | None) -> str:
    if not record:
        return ""
    lo, hi = record.get("margin_ci", [None, None])
    return (f"aggregate {record['aggregate']:.3f}, margin {record['margin']:+.3f}"
            + (f" (95% CI {lo:+.3f}..{hi:+.3f})" if lo is not None else ""))




def revise(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Test the round's leader clause by clause, revise, rescore (``agents/revise.py``). A leader
    without a pattern (an LLM's or the researcher's sentence) is not edited: the best candidate
    with one is revised instead, and its revision leads on the same terms as a revision of the
    leader (a margin the held-out score cannot tell from the leader's, or higher)."""
    hyps: list[dict[str, Any]] = [dict(h) for h in state.get("hypotheses", [])]
    last = hyps[-1] if hyps else None
    if not last or last.get("step") != state["iteration"] or not last.get("score"):
        return {"_event": {"action": "revise", "summary": "nothing to revise"}}
    base: dict[str, Any] = last
    if not last.get("pattern"):
        with_pattern = [c for c in last.get("candidates", []) if c.get("pattern") and c.get(
            "score")]
        if not with_pattern:
            return {"_event": {"action": "revise", "summary": "no candidate has a pattern"}}
        best = max(with_pattern, key=lambda c: c["score"]["margin"])
        base = {**last, **{k: best[k] for k in ("text", "source", "score", "pattern")}}
    start = time.perf_counter()
    revised, history, passes = revise_hypothesis(ctx, base, Pattern.from_dict(base["pattern"]),
                                                 deadline_of(ctx, state), state)
    step = state["iteration"]
    findings = [validated({"kind": "revise", "step": step, "headline": h["outcome"],
                           **{k: h.get(k) for k in ("round", "before", "after", "margin_before",
                                                    "margin_after", "kept", "outcome",
                                                    "tests", "sentences_by")}}) for h in history]
    update: dict[str, Any] = {
        "evidence": findings,
        "forward_passes": state["forward_passes"] + passes,
        "model_s": state.get("model_s", 0.0) + time.perf_counter() - start,
    }
    summary = "; ".join(h["outcome"] for h in history) or "no revision round"
    hi = (revised["score"].get("margin_ci") or [None, None])[1]
    if revised is not base and (base is last or hi is not None
                                and hi >= last["score"]["margin"]):  # as a revision of the leader
        new = {**revised, "step": step, "revisions": history, "candidates": last["candidates"],
               "revised_from": last["text"]}
        save_hypotheses(ctx, hyps + [new])
        update["hypotheses"] = [new]
        summary = f"revised to {new['text']!r} ({summary})"
    update["_event"] = {"action": "revise", "summary": summary}
    return update
