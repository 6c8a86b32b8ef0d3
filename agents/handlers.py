"""One handler per experiment type: ``HANDLERS[type(action)](context, action, state)`` runs it and
returns its outcome: ``rows`` measured (or rejected by the memory), ``forward_passes``, a
``summary`` line and, for experiments that find something, an ``evidence`` finding (and, when a
comparison overturns the leader, a ``hypothesis``). The ``act`` node dispatches through this
table; the ``probe`` node runs the causal probes through it too.

The prompt search and the attack live here; the causal probes in ``agents/probes.py``; patch,
test and compare in ``agents/experiments.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from neurosleuth.agents import experiments, probes
from neurosleuth.agents.actions import (
    CompareHypotheses,
    Experiment,
    ProposePrompts,
    RunAblation,
    RunAttack,
    RunAttribution,
    RunPatch,
    RunSteering,
    TestHypothesis,
)
from neurosleuth.agents.context import RunContext
from neurosleuth.agents.state import Outcome, PromptRow, State, heaps_of
from neurosleuth.agents.view import planner_view
from neurosleuth.tools.attack import AttackConfig, attack

# sources of prompts queued by the run itself (seeds, recoveries, requests), not by the planner
QUEUED_SOURCES = ("exemplar", "random", "attack", "mutation", "heuristic", "steer")


def run_prompts(ctx: RunContext, action: ProposePrompts, state: State) -> Outcome:
    """De-duplicate, then measure the accepted prompts in one batch. When an LLM's proposal
    is mostly rejected (a weak planner repeating itself), the batch is topped up with the
    heuristic's mutations of the best prompts, so every step still explores."""
    cfg = ctx.cfg
    source = state.get("action_source", "planner")
    prompts = [p[: cfg.max_prompt_chars] for p in action.prompts]
    sources = [source] * len(prompts)
    checked = ctx.memory.check(prompts, record=False)  # counted once, in record
    missing = cfg.prompts_per_step // 2 - len(checked.accepted)
    if missing > 0 and source not in QUEUED_SOURCES:
        extra = ctx.mutations.propose(planner_view(ctx, dict(state)), missing).prompts
        prompts += [p[: cfg.max_prompt_chars] for p in extra]
        sources += ["mutation"] * len(extra)
        checked = ctx.memory.check(prompts, record=False)  # same decisions for the first part
    origin = dict(zip(prompts, sources, strict=True))
    rows = [row(r.prompt, r.reason, origin[r.prompt], similarity=r.similarity)
            for r in checked.rejected]
    accepted = [p for p in checked.accepted if ctx.lm.encode(p)[ctx.lm.n_prefix :]]
    if accepted:
        res = ctx.measure(accepted)
        rows += [row(p, "accepted", origin[p], float(res.max_act[i, 0]), res.max_token(i))
                 for i, p in enumerate(accepted)]
    rows += shared_rows(ctx, accepted)
    best = max((r["activation"] for r in rows if r["activation"] is not None), default=None)
    return {
        "rows": rows,
        "forward_passes": len(accepted),
        "dedup": checked.to_dict(),
        "summary": f"{len(accepted)}/{len(prompts)} accepted, best {best}",
    }


def shared_rows(ctx: RunContext, mine: list[str]) -> list[PromptRow]:
    """In a layer-parallel group: post this step's prompts to the peers and take theirs
    (measured for this neuron in the same shared passes: cache reads, no forward pass), as rows
    with status ``shared`` and source ``neuron L:I``."""
    theirs = [(p, n) for p, n in ctx.peers.exchange(str(ctx.neuron), mine)
              if ctx.lm.encode(p)[ctx.lm.n_prefix :]]
    if not theirs:
        return []
    res = ctx.measure([p for p, _ in theirs])
    return [row(p, "shared", f"neuron {n}", float(res.max_act[i, 0]), res.max_token(i))
            for i, (p, n) in enumerate(theirs)]


def run_attack(ctx: RunContext, action: RunAttack, state: State) -> Outcome:
    """Gradient-guided prompt search (``tools/attack.py``) seeded with the best prompts so far;
    its prompts then go through the same memory filter and measurement as any proposal, so they
    are recorded, de-duplicated and counted the same way."""
    seeds = [r.prompt for r in heaps_of(state).top(2)]
    seeds += [s for _, _, s in ctx.exemplars.snippets[:1]]
    config = AttackConfig(
        steps=action.steps,
        length=action.length,
        position="max",
        direction=action.direction,
        seed=ctx.cfg.seed + state.get("iteration", 0),
        candidates=12,
        budget=action.steps * 4 * 12,
        keep=ctx.cfg.prompts_per_step,
    )
    result = attack(ctx.lm, ctx.neuron, init=[s for s in seeds if s], config=config)
    texts = [p.text[:1000] for p in result.prompts if p.text.strip()]
    outcome = run_prompts(ctx, ProposePrompts(prompts=texts or ["."]), {"action_source": "attack"})
    return {**outcome, "forward_passes": result.n_forward + outcome["forward_passes"],
            "summary": f"attack ({action.direction}): {outcome['summary']}"}


# (context, its action, the state) -> the outcome; the probes and experiments return it as a dict
Handler = Callable[[RunContext, Any, Any], Mapping[str, Any]]

# control actions (RunHypothesis, Finish) are not here: they are routes of the graph (``plan``)
HANDLERS: dict[type, Handler] = {
    ProposePrompts: run_prompts,
    RunAttack: run_attack,
    RunAblation: probes.run_ablation,
    RunAttribution: probes.run_attribution,
    RunSteering: probes.run_steering,
    RunPatch: experiments.run_patch,
    TestHypothesis: experiments.run_test,
    CompareHypotheses: experiments.run_compare,
}


def run(ctx: RunContext, action: Experiment, state: State) -> Outcome:
    return cast(Outcome, HANDLERS[type(action)](ctx, action, state))


def run_probes(ctx: RunContext, state: State, skip: frozenset[str] = frozenset(),
               deadline: float | None = None) -> tuple[list[dict], int]:
    """The causal probes of a hypothesis round (ablation, attribution, steering), but those in
    ``skip`` (run since the last round already) and those past ``deadline`` (a
    ``time.monotonic()``); returns their findings and forward passes."""
    findings: list[dict] = []
    passes = 0
    for action in (RunAblation(prompts=min(4, ctx.cfg.k)), RunAttribution(steps=16),
                   RunSteering()):
        if action.kind in skip or deadline is not None and time.monotonic() >= deadline:
            continue
        outcome = run(ctx, action, state)
        passes += outcome["forward_passes"]
        evidence = outcome.get("evidence")
        if evidence:
            findings.append(dict(evidence))
    return findings, passes


def row(prompt: str, status: str, source: str, activation: float | None = None,
        max_token: str | None = None, similarity: float | None = None) -> PromptRow:
    """One line of prompts.csv."""
    return {
        "prompt": prompt,
        "status": status,
        "activation": activation,
        "max_token": max_token,
        "source": source,
        "similarity": None if similarity is None else round(float(similarity), 4),
    }
