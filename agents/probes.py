"""Causal probes as agent tools: before each hypothesis the agent ablates the neuron on its top
prompts (effect on the next-token distribution and the loss, next to random neurons of the same
layer: ``tools/ablate.py``) and attributes the best prompt's activation to its input tokens
(integrated gradients: ``tools/attribute.py``). The findings are small records kept in the graph
state, shown to the planner, saved in ``evidence.json`` and printed in the report."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurosleuth.agents.actions import RunAblation, RunAttribution, RunSteering
from neurosleuth.agents.context import RunContext
from neurosleuth.agents.state import heaps_of
from neurosleuth.tools.ablate import ablate
from neurosleuth.tools.attribute import attribute
from neurosleuth.tools.steer import steer

BASELINE_NEURONS = 8  # random neurons of the same layer per probe (z-scores)


def run_ablation(ctx: RunContext, action: RunAblation, state: dict) -> dict:
    prompts = [r.prompt for r in heaps_of(state).top(action.prompts)]
    if not prompts:
        return nothing("ablation: no prompts measured yet")
    result = ablate(
        ctx.lm, prompts, ctx.neuron, action.mode, baseline=BASELINE_NEURONS, seed=ctx.cfg.seed
    )
    s = result.summary()
    finding = {
        "kind": "ablate",
        "step": state.get("iteration", 0),
        "mode": action.mode,
        "prompts": len(prompts),
        "kl": s.get("kl"),
        "kl_z": result.zscore("kl"),
        "loss_change": s.get("d_loss"),
        "loss_z": zscore_of(result, "d_loss"),
        "top1_change": s.get("top1_change"),
        "headline": result.headline("kl"),
    }
    return {
        "rows": [],
        "forward_passes": len(prompts) * (BASELINE_NEURONS + 2),
        "evidence": finding,
        "summary": f"{action.mode}-ablation: {finding['headline']}",
    }


def run_attribution(ctx: RunContext, action: RunAttribution, state: dict) -> dict:
    top = heaps_of(state).top(1)
    if not top:
        return nothing("attribution: no prompts measured yet")
    att = attribute(ctx.lm, ctx.neuron, top[0].prompt, method="ig", steps=action.steps)
    order = np.argsort(-np.abs(att.scores))[:5]
    drivers = [[att.tokens[i], round(float(att.scores[i]), 4)] for i in sorted(order)]
    finding = {
        "kind": "attribute",
        "step": state.get("iteration", 0),
        "prompt": att.text,
        "peak_token": att.tokens[att.position],
        "activation": att.activation,
        "drivers": drivers,
        "completeness_gap": att.completeness_gap,
        "headline": "tokens driving the peak: " + ", ".join(f"{t!r} {v:+.3f}" for t, v in drivers),
    }
    return {
        "rows": [],
        "forward_passes": action.steps + 1,
        "evidence": finding,
        "summary": finding["headline"],
    }


def run_steering(ctx: RunContext, action: RunSteering, state: dict) -> dict:
    """Steer with the neuron's output direction on its bottom prompts (where it is quiet), so
    the shift shows what the neuron adds when it fires; the promoted tokens are the finding."""
    heaps = heaps_of(state)
    prompts = [r.prompt for r in heaps.bottom(2)] or [r.prompt for r in heaps.top(2)]
    if not prompts:
        return nothing("steering: no prompts measured yet")
    result = steer(
        ctx.lm,
        prompts,
        ctx.neuron,
        action.alpha,
        at="last",
        baseline=BASELINE_NEURONS,
        seed=ctx.cfg.seed,
    )
    up = [[t, round(float(d), 3)] for t, d in result.promoted[:6]]
    finding = {
        "kind": "steer",
        "step": state.get("iteration", 0),
        "alpha": action.alpha,
        "kl": result.summary().get("kl"),
        "kl_z": zscore_of(result, "kl"),
        "promoted": up,
        "headline": f"adding {action.alpha:g} x its output promotes "
        + ", ".join(f"{t!r}" for t, _ in up)
        + f" ({result.headline('kl')})",
    }
    return {
        "rows": [],
        "forward_passes": len(prompts) * (BASELINE_NEURONS + 2),
        "evidence": finding,
        "summary": finding["headline"],
    }


def zscore_of(result: Any, metric: str) -> float | None:
    try:
        z = result.zscore(metric)
    except (KeyError, ValueError):
        return None
    return None if z is None or np.isnan(z) else float(z)


def nothing(summary: str) -> dict:
    return {"rows": [], "forward_passes": 0, "evidence": None, "summary": summary}
