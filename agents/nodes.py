"""Graph nodes of an investigation: small functions ``(context, state) -> update``, bound to the
run's frozen ``RunContext`` (the model, memory, planner and run files of a run) by the graph.

    seed -> plan --+--> act -> record -> plan
                   +--> probe -> hypothesize -> test -> revise -> plan   (a hypothesis round)
                   +--> report

``plan`` asks the policy (``agents/policy.py``, the one owner of "what next") and routes; the
round's nodes live in ``agents/round.py``.

Every node is safe to run twice (a kill between a node's side effects and its checkpoint makes
LangGraph run it again on resume): appends to run files are keyed by step and skipped when
already written; the FAISS memory records the step it last absorbed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, Literal

from neurosleuth.agents import handlers, policy
from neurosleuth.agents.actions import Experiment, ProposePrompts, action_from_dict, kind_of
from neurosleuth.agents.context import RunContext
from neurosleuth.agents.exemplars import seed_prompts
from neurosleuth.agents.findings import validated
from neurosleuth.agents.recovery import recover
from neurosleuth.agents.rundir import now_iso
from neurosleuth.agents.state import (
    Costs,
    InvestigationState,
    Mark,
    Steering,
    add_usage,
    heaps_of,
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
            ctx.observer(name, event, dict(state), update, ctx)
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
    """Take the researcher's steering, then ask the policy what runs next (``policy.decide``:
    the one owner of that choice): queued prompts (seeds, recoveries, requests) first, else the
    policy's experiment, which an LLM planner may change (``policy.review``), a hypothesis
    round, or the report. The route is an edge of the graph (``route_after_plan``)."""
    intake = take_steering(ctx, state)
    costs = measured_costs(state)
    now = {**state, **intake, "costs": costs}
    stopping = "interrupted (Ctrl-C)" if ctx.stopping() else None
    s = policy.situation(now, ctx.cfg, stopping)
    pending = list(now.get("pending", []))
    free = s.budget.stop is None and s.budget.closing() is None
    if pending and free:
        step, action, source, rest = _queued(s, pending, ctx.cfg.prompts_per_step)
        info = None
    else:
        step, rest, info = policy.decide(s), pending, None
        action, source = step.action, "policy"
        if step.route == "act":
            step, action, info = _ask_planner(ctx, now, s, step)
            source = info.source
    route = step.route
    write_summary(ctx, {**now, "stop_reason": step.stop},
                  "finishing" if route == "report" else "running")
    what = (f"{len(action.prompts)} prompts" if isinstance(action, ProposePrompts)
            else action.kind if action is not None else route)
    update: dict[str, Any] = {
        **intake,
        "pending": rest,
        "costs": costs,
        "route": route,
        "action": action.model_dump() if action is not None else None,
        "action_source": source,
        "stop_reason": step.stop,
        "done": route == "report",
        "mark": Mark(elapsed_s=state.get("elapsed_s", 0.0),
                     forward_passes=state.get("forward_passes", 0), route=route),
        "_event": {"action": what if route == "act" else route,
                   "summary": f"{what} from {source}", "reason": step.reason},
    }
    if info is not None:
        update["llm"] = add_usage(state.get("llm", zero_usage()), info.usage())
        update["_event"].update({"llm_tokens_in": info.tokens_in,
                                 "llm_tokens_out": info.tokens_out,
                                 "llm_failures": info.failures, "llm_errors": info.errors[:3]})
    return update


def _queued(s: policy.Situation, pending: list[dict], n: int):
    """The step for the head of the queue: a queued experiment (a researcher's request; a round
    or a finish is routed as the policy routes them), or a batch of queued prompts."""
    if pending[0].get("action"):
        action = action_from_dict(pending[0]["action"])
        step = policy.review(s, action) if isinstance(action, Experiment) else policy.Step(
            "act", "", None)
        return step, action, pending[0]["source"], pending[1:]
    batch, rest = pending[:n], pending[n:]
    why = QUEUED.get(batch[0]["source"], f"queued by {batch[0]['source']}")
    action = ProposePrompts(prompts=[p["prompt"] for p in batch], rationale="queued", reason=why)
    return policy.Step("act", why, action), action, batch[0]["source"], rest


def _ask_planner(ctx: RunContext, state: dict, s: policy.Situation, step: policy.Step):
    """The planner writes the prompts of a search; an adaptive run's planner may choose another
    experiment than the policy's (``policy.review`` routes it)."""
    view = planner_view(ctx, state)
    temperature = state.get("temperature", ctx.cfg.temperature)
    n = ctx.cfg.prompts_per_step
    suggestion = step.action
    assert suggestion is not None
    if ctx.cfg.policy == "fixed":
        action, info = ctx.planner.propose(view, n, temperature)
        return policy.Step("act", suggestion.reason, action), action, info
    action, info = ctx.planner.choose(view, suggestion, n, temperature)
    reviewed = policy.review(s, action)
    if reviewed.route == "act" and isinstance(action, ProposePrompts) and not action.prompts:
        written, more = ctx.planner.propose(view, n, temperature)
        action = written.model_copy(update={"reason": action.reason})
        info = info.and_then(more)
        reviewed = policy.Step("act", action.reason, action)
    return reviewed, reviewed.action, info


def act(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Run the tool the action asks for (dispatch by action type)."""
    data = state.get("action")
    action = action_from_dict(data) if data else None
    if not isinstance(action, Experiment):
        raise RuntimeError(f"act runs an experiment; the plan gave {data!r}")
    start = time.perf_counter()
    outcome = handlers.run(ctx, action, state)
    model_s = time.perf_counter() - start
    fp = state.get("forward_passes", 0) + outcome["forward_passes"]
    step = state.get("iteration", 0) + 1
    kind = kind_of(action)
    experiment = {"step": step, "kind": kind,
                  "source": state.get("action_source", "planner"),
                  "reason": getattr(action, "reason", ""), "summary": outcome["summary"]}
    return {
        "outcome": outcome,
        "forward_passes": fp,
        "model_s": state.get("model_s", 0.0) + model_s,
        "experiments": [experiment],
        "_event": {"action": kind, "summary": outcome["summary"],
                   "source": experiment["source"], "reason": experiment["reason"]},
    }


def record(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """Fold the outcome into heaps, stats, memory, files; trigger stagnation recovery."""
    step = state["iteration"] + 1
    outcome = state.get("outcome")
    if outcome is None:
        raise RuntimeError("record runs after act: no outcome in the state")
    rows = outcome["rows"]
    heaps = heaps_of(state)
    stats = SearchStats.from_dict(state["stats"])
    measured = [r for r in rows if r["status"] == "accepted" and r["activation"] is not None]
    shared = [r for r in rows if r["status"] == "shared" and r["activation"] is not None]
    for r in measured + shared:  # shared: another neuron's search (batch)
        heaps.push(Record(float(r["activation"] or 0.0), r["prompt"], r["max_token"] or "",
                          step, r["source"]))
    rejected = [SimpleNamespace(reason=r["status"]) for r in rows
                if r["status"] not in ("accepted", "shared")]
    stats.record_check(SimpleNamespace(accepted=measured, rejected=rejected))
    stats.record_measured([float(r["activation"] or 0.0) for r in measured])
    stats.end_iteration(step)
    remember(ctx, step, measured, outcome.get("dedup"))
    ctx.files.append_prompts(step, [dict(r) for r in rows])
    update: dict[str, Any] = {
        "iteration": step,
        "heaps": heaps.to_dict(),
        "stats": stats.to_dict(),
        "outcome": None,
        "curve": [[state["forward_passes"], step, heaps.best]] if heaps.best is not None else [],
    }
    evidence, overturned = outcome.get("evidence"), outcome.get("hypothesis")
    if evidence:  # a finding of an experiment the planner chose
        update["evidence"] = [validated({**evidence, "step": step})]
    if overturned:  # a comparison overturned the leader
        update["hypotheses"] = [{**overturned, "step": step}]
        save_hypotheses(ctx, state.get("hypotheses", []) + update["hypotheses"])
    monitor = StagnationMonitor.from_dict(state["stagnation"])
    strategy = monitor.update(step, heaps.best)
    update["stagnation"] = monitor.to_dict()
    if strategy:
        update.update(recover(ctx, strategy, dict(state)))
        update["recoveries"] = [{"iteration": step, "strategy": strategy, "best": heaps.best}]
    update["_event"] = {
        "action": "record",
        "summary": f"{len(measured)} measured"
        + (f" (+{len(shared)} from other neurons)" if shared else "")
        + f", best {heaps.best}",
        "recovery": strategy,
    }
    return update


def take_steering(ctx: RunContext, state: InvestigationState) -> dict[str, Any]:
    """The researcher's new steering lines (``steer.jsonl``): messages for the planner,
    hypotheses to score, experiments queued before the planner's next choice."""
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
            steering.append(Steering(message=str(msg.get("message", "")),
                                     received_at=msg.get("received_at") or "",
                                     applied_step=state.get("iteration", 0) + 1))
    return {"steering": steering, "user_hypotheses": users,
            "pending": requests + list(state.get("pending", [])),
            "steer_seen": state.get("steer_seen", 0) + len(new)}


def measured_costs(state: InvestigationState) -> Costs:
    """The last step's and the last round's cost in seconds and forward passes, measured from
    the previous ``plan`` (``mark``) to this one; the policy reserves them in the budget."""
    costs = Costs(**(state.get("costs") or {}))
    mark = state.get("mark")
    if mark:
        ds = round(state.get("elapsed_s", 0.0) - mark["elapsed_s"], 3)
        dp = state.get("forward_passes", 0) - mark["forward_passes"]
        if mark["route"] == "act":
            costs["step_s"], costs["step_passes"] = ds, dp
        elif mark["route"] == "round":
            costs["round_s"], costs["round_passes"] = ds, dp
    return costs


def remember(ctx: RunContext, step: int, measured: Sequence[Mapping[str, Any]],
             checked: Mapping[str, Any] | None) -> None:
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


def route_after_plan(state: InvestigationState) -> Literal["act", "probe", "report"]:
    """The plan's route: an experiment, a hypothesis round (it starts with the probes), or the
    report."""
    route = state.get("route")
    if route == "round":
        return "probe"
    if route == "report":
        return "report"
    return "act"
