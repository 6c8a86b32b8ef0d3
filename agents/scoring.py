"""The agent's side of the score (``score/``, which knows nothing of the agent): the score settings
of a run, from its config, so that the score reads the run's cached exemplar scan."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from neurosleuth.agents.config import RunConfig
from neurosleuth.score.run import ScoreConfig


def score_config(cfg: RunConfig, **changes: Any) -> ScoreConfig:
    """The settings of ``cfg``'s exemplar scan and its seed, then ``changes``."""
    return replace(
        ScoreConfig(
            seed=cfg.seed,
            corpus=cfg.corpus,
            window=cfg.window,
            max_tokens=cfg.exemplar_tokens,
            k=max(cfg.k, 2 * cfg.prompts_per_step),
        ),
        **changes,
    )
