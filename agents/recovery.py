"""Stagnation recovery: the monitor (``memory/stagnation.py``) names a strategy when the search
stalls; each strategy here turns it into state changes (prompts or an experiment queued, a higher
planner temperature)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from neurosleuth.agents.actions import RunAttack
from neurosleuth.agents.context import RunContext
from neurosleuth.memory.seeds import random_prompts
from neurosleuth.memory.stagnation import DEFAULT_STRATEGIES


def exemplar_restart(ctx: RunContext, state: dict) -> dict[str, Any]:
    """The next unused dataset exemplars, queued (the first ones again when all were used)."""
    n, cur = ctx.cfg.prompts_per_step, state.get("exemplar_cursor", 0)
    snippets = ctx.exemplars.snippets
    picked = snippets[cur : cur + n] or snippets[:n]
    return {"pending": [{"prompt": s, "source": "exemplar"} for _, _, s in picked],
            "exemplar_cursor": cur + len(picked)}


def random_restart(ctx: RunContext, state: dict) -> dict[str, Any]:
    """Random prompts (seeded by the run's seed and step), queued."""
    rng = np.random.default_rng([ctx.cfg.seed, state["iteration"]])
    return {"pending": [{"prompt": p, "source": "random"}
                        for p in random_prompts(ctx.cfg.prompts_per_step, rng)]}


def raise_temperature(ctx: RunContext, state: dict) -> dict[str, Any]:
    return {"temperature": min(1.5, state.get("temperature", ctx.cfg.temperature) + 0.3)}


def queue_attack(ctx: RunContext, state: dict) -> dict[str, Any]:
    """The gradient-guided attack, queued as the next experiment."""
    return {"pending": [{"action": RunAttack(reason="stagnation recovery").model_dump(),
                         "source": "attack"}]}


STRATEGIES: dict[str, Callable[[RunContext, dict], dict[str, Any]]] = {
    "exemplar_restart": exemplar_restart,
    "random_prompts": random_restart,
    "raise_temperature": raise_temperature,
    "attack": queue_attack,
}
assert set(DEFAULT_STRATEGIES) <= set(STRATEGIES), "a default strategy without a handler"


def recover(ctx: RunContext, strategy: str, state: dict) -> dict[str, Any]:
    """State changes that carry out ``strategy``."""
    try:
        return STRATEGIES[strategy](ctx, state)
    except KeyError:
        raise ValueError(f"unknown recovery strategy {strategy!r}; known: "
                         f"{', '.join(STRATEGIES)}") from None
