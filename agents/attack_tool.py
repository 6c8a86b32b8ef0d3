"""The attack as an agent tool: gradient-guided prompt search (``tools/attack.py``) seeded with
the best prompts so far; its prompts then go through the same memory filter and measurement as
any proposal, so they are recorded, de-duplicated and counted the same way."""

from __future__ import annotations

from typing import Any

from neurosleuth.agents.actions import ProposePrompts
from neurosleuth.tools.attack import AttackConfig, attack


def attack_rows(inv: Any, seeds: list[str], steps: int, length: int, iteration: int,
                direction: str = "up") -> dict:
    """The outcome of measuring the attack's prompts (rows with source ``attack``), with the
    forward passes of the search added."""
    cfg = AttackConfig(
        steps=steps,
        length=length,
        position="max",
        direction=direction,
        seed=inv.cfg.seed + iteration,
        candidates=12,
        budget=steps * 4 * 12,
        keep=inv.cfg.prompts_per_step,
    )
    result = attack(inv.lm, inv.neuron, init=[s for s in seeds if s], config=cfg)
    texts = [p.text for p in result.prompts]
    proposal = ProposePrompts(prompts=[t[:1000] for t in texts if t.strip()] or ["."])
    outcome = inv.run_prompts(proposal, {"action_source": "attack"})
    return {**outcome, "forward_passes": result.n_forward + outcome["forward_passes"]}
