"""Graph nodes of an investigation: small functions ``(context, state) -> update``, bound to the
run's frozen ``RunContext`` (the model, memory, planner and run files of a run) by the graph.

seed -> plan -> act -> record -> check -> (plan | probe -> hypothesize -> test -> (plan | report))

Every node is safe to run twice (a kill between a node's side effects and its checkpoint makes
LangGraph run it again on resume): appends to run files are keyed by step and skipped when
already written; the FAISS memory records the step it last absorbed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel

from neurosleuth.agents import candidates, handlers, policy, scoring
from neurosleuth.agents.actions import Finish, ProposePrompts, action_from_dict
from neurosleuth.agents.context import RunContext
from neurosleuth.agents.exemplars import seed_prompts
from neurosleuth.agents.recovery import recover
from neurosleuth.agents.rundir import now_iso
from neurosleuth.agents.state import (
    InvestigationState,
    add_usage,
    heaps_of,
    leader,
    zero_usage,
)
from neurosleuth.agents.summary import finish, save_hypotheses, write_summary
from neurosleuth.agents.view import planner_view
from neurosleuth.memory.dedup import DedupResult, RejectedPrompt
from neurosleuth.memory.stagnation import StagnationMonitor
from neurosleuth.memory.topk import ActivationHeaps, Record, SearchStats


def timed(ctx: RunContext, name: str, fn: Callable[[InvestigationState], dict]) -> Callable:
    """Run a node, add its wall time to ``elapsed_s`` (and, less the other neurons' turns in a
    layer-parallel group, to ``own_s``) and log one event line."""

    def node(state: InvestigationState) -> dict[str, Any]:
        start, others = time.perf_counter(), ctx.peers.others_s()
        update = fn(state)
        event = update.pop("_event", {})
        duration = time.perf_counter() - start
        update["elapsed_s"] = state.get("elapsed_s", 0.0) + duration
        own = max(0.0, duration - (ctx.peers.others_s() - others))
        update["own_s"] = state.get("own_s", state.get("elapsed_s", 0.0)) + own
        ctx.files.append_event(
            {
                "step": update.get("iteration", state.get("iteration", 0)),
                "node": name,
                "duration_s": round(duration, 4),
                **event,
            }
        )
        if ctx.observer is not None:
            ctx.observer(name, event, state, update, ctx)
        return update

    return node


def seed(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Dataset exemplars (corpus scan, cached per layer) become the first prompts."""
    if "iteration" in state:  # already seeded (resume)
        return {}
    snippets = ctx.load_exemplars()
    seeds = seed_prompts(ctx.exemplars.data, ctx.cfg.prompts_per_step)
    pending = [{"prompt": s, "source": "exemplar"} for s in seeds]
    steering = [{"message": m, "received_at": now_iso(), "applied_step": 0} for m in ctx.cfg.steer]
    monitor = StagnationMonitor(patience=ctx.cfg.patience)
    return {
        "iteration": 0,
        "forward_passes": 0,
        "elapsed_s": 0.0,
        "own_s": 0.0,
        "model_s": 0.0,
        "llm": zero_usage(),
        "planner_used": ctx.planner.name,
        "temperature": ctx.cfg.temperature,
        "action": None,
        "outcome": None,
        "heaps": ActivationHeaps(k=ctx.cfg.k).to_dict(),
        "stats": SearchStats().to_dict(),
        "stagnation": monitor.to_dict(),
        "pending": pending,
        "exemplar_cursor": len(pending),
        "steering": steering,
        "steer_seen": 0,
        "hypothesis_due": False,
        "done": False,
        "stop_reason": None,
        "_event": {
            "action": "seed",
            "summary": f"{len(snippets)} exemplar snippets, "
                       f"dataset max {ctx.exemplars.dataset_max}",
            "planner": ctx.planner_note,
        },
    }


QUEUED = {  # why queued prompts run, by their source
    "exemplar": "dataset exemplars: the top corpus windows start the search (or restart it)",
    "random": "stagnation recovery: random prompts",
}


def plan(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Queued prompts (seeds, recoveries) first; otherwise ask the planner for prompts."""
    pending = list(state.get("pending", []))
    n = ctx.cfg.prompts_per_step
    if pending and pending[0].get("action"):
        action: BaseModel = action_from_dict(pending[0]["action"])
        return {
            "action": action.model_dump(),
            "action_source": pending[0]["source"],
            "pending": pending[1:],
            "_event": {"action": action.kind, "summary": f"queued by {pending[0]['source']}",
                       "reason": getattr(action, "reason", "")},
        }
    if pending:
        batch, rest = pending[:n], pending[n:]
        why = QUEUED.get(batch[0]["source"], f"queued by {batch[0]['source']}")
        action = ProposePrompts(prompts=[p["prompt"] for p in batch], rationale="queued",
                                reason=why)
        return {
            "action": action.model_dump(),
            "action_source": batch[0]["source"],
            "pending": rest,
            "_event": {
                "action": "propose_prompts",
                "summary": f"queued {batch[0]['source']} prompts",
                "reason": why,
            },
        }
    view = planner_view(ctx, state)
    temperature = state.get("temperature", ctx.cfg.temperature)
    if ctx.cfg.policy == "fixed":  # the schedule: a prompt search every step
        action, info = ctx.planner.propose(view, n, temperature)
    else:
        suggestion = policy.choose(policy.situation(state, ctx.cfg))
        action, info = ctx.planner.choose(view, suggestion, n, temperature)
        if isinstance(action, Finish) and not state.get("hypotheses"):
            action = suggestion.model_copy(update={"reason": (
                f"{suggestion.reason} (finish refused: no hypothesis yet)")})
            if isinstance(action, ProposePrompts) and not action.prompts:
                written, more = ctx.planner.propose(view, n, temperature)
                action = written.model_copy(update={"reason": action.reason})
                info = info.and_then(more)
    reason = getattr(action, "reason", "")
    what = (f"{len(action.prompts)} prompts" if isinstance(action, ProposePrompts)
            else action.kind)
    return {
        "action": action.model_dump(),
        "action_source": info.source,
        "llm": add_usage(state.get("llm", zero_usage()), info.usage()),
        "_event": {
            "action": action.kind,
            "summary": f"{what} from {info.source}",
            "reason": reason,
            "llm_tokens_in": info.tokens_in,
            "llm_tokens_out": info.tokens_out,
            "llm_failures": info.failures,
            "llm_errors": info.errors[:3],
        },
    }


def act(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Run the tool the action asks for (dispatch by action type)."""
    action = action_from_dict(state["action"])
    start = time.perf_counter()
    outcome = handlers.run(ctx, action, state)
    model_s = time.perf_counter() - start
    fp = state.get("forward_passes", 0) + outcome["forward_passes"]
    step = state.get("iteration", 0) + 1
    experiment = {"step": step, "kind": action.kind,
                  "source": state.get("action_source", "planner"),
                  "reason": getattr(action, "reason", ""), "summary": outcome["summary"]}
    return {
        "outcome": outcome,
        "forward_passes": fp,
        "model_s": state.get("model_s", 0.0) + model_s,
        "experiments": [experiment],
        "_event": {"action": action.kind, "summary": outcome["summary"],
                   "source": experiment["source"], "reason": experiment["reason"]},
    }


def record(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Fold the outcome into heaps, stats, memory, files; trigger stagnation recovery."""
    step = state["iteration"] + 1
    rows = state["outcome"]["rows"]
    heaps = heaps_of(state)
    stats = SearchStats.from_dict(state["stats"])
    measured = [r for r in rows if r["status"] == "accepted"]
    shared = [r for r in rows if r["status"] == "shared"]  # another neuron's search (batch)
    for r in measured + shared:
        heaps.push(Record(r["activation"], r["prompt"], r["max_token"], step, r["source"]))
    rejected = [SimpleNamespace(reason=r["status"]) for r in rows
                if r["status"] not in ("accepted", "shared")]
    stats.record_check(SimpleNamespace(accepted=measured, rejected=rejected))
    stats.record_measured([r["activation"] for r in measured])
    stats.end_iteration(step)
    remember(ctx, step, measured, state["outcome"].get("dedup"))
    ctx.files.append_prompts(step, rows)
    update: dict[str, Any] = {
        "iteration": step,
        "heaps": heaps.to_dict(),
        "stats": stats.to_dict(),
        "outcome": None,
        "curve": [[state["forward_passes"], step, heaps.best]] if heaps.best is not None else [],
    }
    outcome = state["outcome"]
    if outcome.get("evidence"):  # a finding of an experiment the planner chose
        update["evidence"] = [{**outcome["evidence"], "step": step}]
    if outcome.get("hypothesis"):  # a comparison overturned the leader
        update["hypotheses"] = [{**outcome["hypothesis"], "step": step}]
        save_hypotheses(ctx, state.get("hypotheses", []) + update["hypotheses"])
    monitor = StagnationMonitor.from_dict(state["stagnation"])
    strategy = monitor.update(step, heaps.best)
    update["stagnation"] = monitor.to_dict()
    if strategy:
        update.update(recover(ctx, strategy, state))
        update["recoveries"] = [{"iteration": step, "strategy": strategy, "best": heaps.best}]
    update["_event"] = {
        "action": "record",
        "summary": f"{len(measured)} measured"
        + (f" (+{len(shared)} from other neurons)" if shared else "")
        + f", best {heaps.best}",
        "recovery": strategy,
    }
    return update


def check(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Budgets, Ctrl-C, live steering, and whether a hypothesis is due."""
    new = ctx.files.read_steering(state.get("steer_seen", 0))
    steering = list(state.get("steering", []))
    users = list(state.get("user_hypotheses", []))
    requests = []
    for msg in new:
        if msg.get("kind") == "hypothesis":
            users.append(msg["message"])
        elif msg.get("kind") == "experiment":  # run as it is, before the planner's next choice
            requests.append({"action": {**msg["request"], "reason": msg["message"]},
                             "source": "steer"})
        else:
            steering.append({**msg, "applied_step": state["iteration"] + 1})
    reason = stop_reason(ctx, state)
    last = state.get("hypotheses", [])
    if ctx.cfg.policy == "fixed":  # the schedule: every ``hypothesis_every`` steps
        due = state["iteration"] % ctx.cfg.hypothesis_every == 0
    else:  # the planner asked; or it went twice the schedule's interval without one
        since = state["iteration"] - (last[-1]["step"] if last else 0)
        due = ((state.get("action") or {}).get("kind") == "hypothesize"
               or since >= 2 * ctx.cfg.hypothesis_every)
    due = due or reason is not None
    if last and last[-1]["step"] == state["iteration"]:
        due = False
    write_summary(ctx, {**state, "steering": steering},
                  "running" if reason is None else "finishing")
    return {
        "steering": steering,
        "user_hypotheses": users,
        **({"pending": requests + list(state.get("pending", []))} if requests else {}),
        "steer_seen": state.get("steer_seen", 0) + len(new),
        "done": reason is not None,
        "stop_reason": reason,
        "hypothesis_due": due,
        "_event": {
            "action": "check",
            "summary": reason or "continue",
            "steering_applied": [m["message"] for m in new if m.get("kind") != "hypothesis"],
        },
    }


def probe(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Causal evidence before a hypothesis: ablation vs random neurons, token attribution."""
    start = time.perf_counter()
    skip: frozenset[str] = frozenset()
    if ctx.cfg.policy != "fixed":  # probes the planner ran since the last hypothesis
        last = (leader(state) or {"step": 0})["step"]
        skip = frozenset(e["kind"] for e in state.get("experiments", []) if e["step"] > last)
    findings, passes = handlers.run_probes(ctx, state, skip)
    return {
        "evidence": findings,
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
    action, info = ctx.planner.hypothesize(planner_view(ctx, state, explanation))
    last = leader(state)
    users = [ctx.cfg.hypothesis] if ctx.cfg.hypothesis else []
    cands = candidates.gather(
        candidates.from_explainer(explanation),
        [{"text": action.text, "source": info.source, "explanation": action.explanation}],
        [{"text": last["text"], "source": "previous best",
          "explanation": last.get("explanation", "")}] if last else [],
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
    draft = state["pending_hypothesis"]
    scored, written = candidates.score_all(ctx, draft["candidates"], state)
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


def stop_reason(ctx: RunContext, state: InvestigationState) -> str | None:
    """Why the run stops now, or None: a stop request (Ctrl-C, a batch stopping), the planner's
    finish (once there is a hypothesis), or a budget spent."""
    cfg = ctx.cfg
    if ctx.stopping():
        return "interrupted (Ctrl-C)"
    if (state.get("action") or {}).get("kind") == "finish" and state.get("hypotheses"):
        return "planner finished: " + (state["action"].get("reason") or "decided")
    if state["iteration"] >= cfg.iterations:
        return f"iteration budget ({cfg.iterations})"
    if cfg.max_forward_passes and state["forward_passes"] >= cfg.max_forward_passes:
        return f"forward-pass budget ({cfg.max_forward_passes})"
    if cfg.time_budget_s and state.get("elapsed_s", 0.0) >= cfg.time_budget_s:
        return f"time budget ({cfg.time_budget_s:.0f} s)"
    return None


def remember(ctx: RunContext, step: int, measured: list[dict], checked: dict | None) -> None:
    """Fold one step into the FAISS memory: its filter decisions (adaptive threshold) and its
    measured prompts. Once per step: a re-run after a kill is skipped."""
    if step <= ctx.files.read_json("dedup_step.json", {"step": 0})["step"]:
        return
    if checked:
        rejected = [RejectedPrompt(**r) for r in checked["rejected"]]
        ctx.memory.observe(DedupResult(checked["accepted"], rejected, checked["threshold"],
                                       checked.get("exploit", 0)))
    if measured:
        ctx.memory.add([r["prompt"] for r in measured], [r["activation"] for r in measured])
    ctx.memory.save(ctx.files / "dedup")
    ctx.files.write_json("dedup_step.json", {"step": step})


def report(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    status = "interrupted" if ctx.stopping() else "finished"
    finish(ctx, state, status)
    return {"_event": {"action": "report", "summary": status}}


def route_after_check(state: InvestigationState) -> str:
    if state.get("hypothesis_due"):
        return "probe"
    return "report" if state.get("done") else "plan"


def route_after_test(state: InvestigationState) -> str:
    return "report" if state.get("done") else "plan"
