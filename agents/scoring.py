"""The agent's side of the score (``score/``, which knows nothing of the agent): the score settings
of a run, from its config, so that the score reads the run's cached exemplar scan; the writer a
planner gives the score; and the planner writing the score's other-neuron control."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.planner import LLMPlanner
from neurosleuth.agents.prompts import PlannerView
from neurosleuth.score.run import Hypothesize, ScoreConfig
from neurosleuth.score.writer import HeuristicWriter, LLMWriter
from neurosleuth.tools.neurons import NeuronId


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


def planner_writer(planner: Any, neuron: NeuronId, model: str) -> HeuristicWriter:
    """The score's writer for ``planner``: an LLM planner's chat model writes (``LLMWriter`` asks
    it through ``LLMPlanner.ask``); a planner without one leaves the writing to keywords."""
    if isinstance(planner, LLMPlanner):
        return LLMWriter(planner, str(neuron), model)
    return HeuristicWriter(str(neuron), model)


def planner_control(planner: Any) -> Hypothesize:
    """The score's other-neuron control, written by ``planner`` as it writes its own hypotheses,
    from a view of that neuron's top snippets (the heuristic planner reads their peak tokens)."""

    def hypothesize(neuron, model, snippets):
        view = PlannerView(neuron=neuron, model=model, exemplars=snippets, top=snippets)
        action, info = planner.hypothesize(view)
        return action.text, info

    return hypothesize
