"""The agent's side of the score (``score/``, which knows nothing of the agent): the score settings
of a run, from its config, so that the score reads the run's cached exemplar scan; the writer a
planner gives the score; the planner writing the score's other-neuron control; and the run's
explainer, score and counterexample search, on its context."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.context import RunContext
from neurosleuth.agents.planner import LLMPlanner
from neurosleuth.agents.prompts import PlannerView
from neurosleuth.agents.state import State, heaps_of
from neurosleuth.score.run import Hypothesize, ScoreConfig
from neurosleuth.score.writer import HeuristicWriter, LLMWriter
from neurosleuth.tools.neurons import NeuronId


def score_config(cfg: RunConfig, **changes: Any) -> ScoreConfig:
    """``cfg``'s corpus scan (``RunConfig.scan``) and its seed, then ``changes``."""
    return replace(ScoreConfig(scan=cfg.scan(), seed=cfg.seed), **changes)


def planner_writer(planner: Any, neuron: NeuronId | str, model: str) -> HeuristicWriter:
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


def explain(ctx: RunContext, state: State):
    """The evidence explainer (``tools/explain.py``) on the best prompts, the top dataset windows
    and the scan's random sample (where words do not fire); saved as ``explanation.json``."""
    from neurosleuth.tools.exemplars import random_records
    from neurosleuth.tools.explain import ExplainConfig
    from neurosleuth.tools.explain import explain as explain_neuron

    top = ctx.exemplars.top
    texts = [r.prompt for r in heaps_of(state).top(8)]
    texts += ["".join(e["tokens"][: int(e["argmax"]) + 1]) for e in top]
    windows = [(e["tokens"], np.asarray(e["acts"], dtype=float)) for e in top]
    cfg = ctx.cfg
    others = random_records(ctx.lm, ctx.neuron, cfg.corpus, max(cfg.k, 2 * cfg.prompts_per_step),
                            cfg.window, cfg.exemplar_tokens)
    result = explain_neuron(ctx.lm, ctx.neuron, texts, windows, others=others,
                            config=ExplainConfig(sweep=sweep_limit(ctx, state)))
    ctx.files.write_json("explanation.json", {"step": state.get("iteration", 0),
                                              **result.to_dict()})
    return result


SWEEP_TIME_SHARE = 0.25  # of the time left, at most, for the vocabulary sweep


def sweep_limit(ctx: RunContext, state: State) -> int | None:
    """How many vocabulary words the explainer's sweep (``tools/vocab_sweep.py``) may measure,
    commonest first: ``--sweep-words`` when given, and all of them (None) in a run without a
    budget; within a forward-pass budget, a quarter of the passes left; within a time budget,
    what ``SWEEP_TIME_SHARE`` of the time left affords at the model's measured scan rate, halved
    (a sweep's sequences are a few tokens long, and a short sequence costs more a token than a
    corpus window)."""
    from neurosleuth.agents.config import SCAN_RATE, measured_scan_rate, scan_device
    from neurosleuth.tools.vocab_sweep import CONTEXT

    cfg = ctx.cfg
    limits = [] if cfg.sweep_words is None else [cfg.sweep_words]
    if cfg.max_forward_passes:
        limits.append(max(0, (cfg.max_forward_passes - state.get("forward_passes", 0)) // 4))
    if cfg.time_budget_s:
        kind = scan_device(cfg.device)
        rate = measured_scan_rate(cfg.model, kind) or SCAN_RATE[kind]
        left = max(0.0, cfg.time_budget_s - state.get("elapsed_s", 0.0))
        limits.append(int(SWEEP_TIME_SHARE * left * rate / 2 / (CONTEXT + 1)))
    return min(limits) if limits else None


def read_off(ctx: RunContext) -> dict | None:
    """The records explanation a deep dive starts from (the atlas read-off): the neuron's atlas
    entry when it was picked from one (``cfg.atlas``, ``batch --from-atlas``), else the records
    explainer (``tools/records_explain.py``) on the run's own scan: its top windows and random
    sample, no forward pass. ``{"text", "pattern", "source"}``, saved as ``readoff.json``; None
    when there is nothing to read."""
    saved = ctx.files.read_json("readoff.json")
    if saved:
        return saved
    entry = _atlas_entry(ctx)
    if entry is None:
        from neurosleuth.tools.exemplars import scan_records
        from neurosleuth.tools.records_explain import RecordsExplainer

        records = scan_records(ctx.lm, ctx.neuron, ctx.cfg.scan())
        if not records.top:
            return None
        ex = RecordsExplainer(str(ctx.neuron))(records.top, records.random)
        if ex.pattern.kind == "none":
            return None
        entry = {"text": ex.sentence, "pattern": ex.pattern.to_dict(), "source": "records"}
    ctx.files.write_json("readoff.json", entry)
    return entry


def _atlas_entry(ctx: RunContext) -> dict | None:
    """The neuron's row of ``cfg.atlas`` (``atlas.parquet``), or None (no atlas, no row)."""
    if not ctx.cfg.atlas:
        return None
    import json
    from pathlib import Path

    import pandas as pd

    path = Path(ctx.cfg.atlas) / "atlas.parquet"
    if not path.is_file():
        return None
    frame = pd.read_parquet(path, columns=["neuron", "explanation", "pattern"])
    rows = frame[frame["neuron"] == str(ctx.neuron)]
    if rows.empty or not rows.iloc[0]["pattern"]:
        return None
    row = rows.iloc[0]
    return {"text": row["explanation"], "pattern": json.loads(row["pattern"]), "source": "atlas"}


JUDGED = 8  # held-out windows judged, of each kind (the run's validation top windows, random)


def score(ctx: RunContext, hypothesis: str, writer: Any = None):
    """Score a hypothesis (``score/run.py``): with ``writer``, else the run's planner writes.
    Every judged window is simulated when the writer simulates without an LLM (a pattern or
    keywords: no cost but arithmetic); an LLM writer simulates two (a call each)."""
    from neurosleuth.score.run import score_hypothesis

    writer = writer or planner_writer(ctx.planner, ctx.neuron, ctx.lm.name)
    sims = 2 if isinstance(writer, LLMWriter) else 2 * JUDGED
    config = score_config(ctx.cfg, sim_windows=sims, top_windows=JUDGED, random_windows=JUDGED,
                          n_prompts=6, paraphrases=2, baseline=10, n_boot=500)
    return score_hypothesis(
        ctx.lm,
        ctx.neuron,
        hypothesis,
        writer=writer,
        hypothesize=planner_control(ctx.planner),
        config=config,
        exemplars=ctx.exemplars.data,
        cache=ctx.score_cache,
    )


def attack_counterexamples(ctx: RunContext, hypothesis: str, state: State, threshold: float,
                           writer: Any = None):
    """Prompts the attack drives above ``threshold`` that the hypothesis does not cover, as
    judged by ``writer`` (the one that scored it; else the planner's)."""
    from neurosleuth.score.run import attack_counterexamples as search

    return search(
        ctx.lm,
        ctx.neuron,
        hypothesis,
        [r.prompt for r in heaps_of(state).top(2)],
        threshold,
        seed=ctx.cfg.seed + state.get("iteration", 0),
        writer=writer or planner_writer(ctx.planner, ctx.neuron, ctx.lm.name),
    )
