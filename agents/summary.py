"""The run's files written from its state: ``summary.json`` after every plan (status, budgets,
LLM usage, best activation), ``hypotheses.json`` after every round, and at the end the heaps,
the curve, the evidence and the report (through the run's ``reporter``, given from above:
``agents/context.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from neurosleuth.agents.context import RunContext
from neurosleuth.agents.rundir import RunSummary, now_iso
from neurosleuth.agents.state import State, heaps_of
from neurosleuth.tools import backoff


def save_hypotheses(ctx: RunContext, hypotheses: Sequence[Mapping[str, Any]]) -> None:
    ctx.files.write_json("hypotheses.json", hypotheses)


def write_summary(ctx: RunContext, state: State, status: str) -> RunSummary:
    top = heaps_of(state).top(1)
    llm = state.get("llm", {})
    previous = ctx.files.read_json("summary.json", {}) or {}
    errors = list(getattr(ctx.planner, "last_errors", None) or previous.get("llm_errors", []))
    summary: RunSummary = {
        "run_id": ctx.cfg.run_id,
        "model": ctx.cfg.model,
        "model_desc": ctx.lm.describe(),
        "neuron": str(ctx.neuron),
        "planner_used": ctx.planner.name,
        "planner_note": ctx.planner_note,
        "status": status,
        "stop_reason": state.get("stop_reason"),
        "iterations": state.get("iteration", 0),
        "forward_passes": state.get("forward_passes", 0),
        "llm_calls": llm.get("calls", 0),
        "llm_tokens_in": llm.get("tokens_in", 0),
        "llm_tokens_out": llm.get("tokens_out", 0),
        "llm_failures": llm.get("failures", 0),
        "llm_repairs": llm.get("repairs", 0),
        "llm_fallbacks": llm.get("fallbacks", 0),
        "llm_errors": errors,  # the last distinct LLM errors (the planner keeps them)
        "wall_s": round(state.get("elapsed_s", 0.0), 3),
        "own_s": round(state.get("own_s", state.get("elapsed_s", 0.0)), 3),
        "oom_backoffs": backoff.summary(ctx.backoffs_at_start),
        "planner_s": round(llm.get("seconds", 0.0), 3),
        "model_s": round(state.get("model_s", 0.0), 3),
        "best_activation": top[0].activation if top else None,
        "best_prompt": top[0].prompt if top else None,
        "dataset_max": ctx.exemplars.dataset_max,
        "stats": state.get("stats", {}),
        "recoveries": state.get("recoveries", []),
        "steering": state.get("steering", []),
        "started_at": previous.get("started_at", now_iso()),
        "finished_at": None,
    }
    if status in ("finished", "interrupted", "failed"):
        summary["finished_at"] = now_iso()
    ctx.files.write_json("summary.json", summary)
    return summary


def finish(ctx: RunContext, state: State, status: str) -> None:
    """Final files, then the report when the run has a reporter."""
    write_summary(ctx, state, status)
    heaps = heaps_of(state)
    ctx.files.write_json("heaps.json", {"k": ctx.cfg.k,
                                        "top": [r.to_dict() for r in heaps.top()],
                                        "bottom": [r.to_dict() for r in heaps.bottom()]})
    ctx.files.write_curve(state.get("curve", []))
    save_hypotheses(ctx, state.get("hypotheses", []))
    ctx.files.write_json("evidence.json", state.get("evidence", []))
    if ctx.reporter is not None:
        ctx.reporter(ctx.files.path, ctx.lm, ctx.neuron)
