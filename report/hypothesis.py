"""The hypothesis sections of the report: the latest hypothesis with its score (components with
their 95% intervals, the floor set by control hypotheses, the margin over it), where it was wrong
(counterexamples as tables of text with the max token marked, and their activation), the score's
internals folded away, and the history of every hypothesis stated.

A score record is the compact form ``ScoreResult.to_record`` writes into ``hypotheses.json``;
every part of it may be absent (older runs, unscored hypotheses). Counterexamples are stored as
(text, activation) pairs; their max token is marked only when the report was given the model and
re-measuring the text alone reproduces the recorded activation (a held-out window measured in
its corpus context may not: it is then shown unmarked).
"""

from __future__ import annotations

from typing import Any

from neurosleuth.report.blocks import (
    Details,
    Heatmap,
    Missing,
    Para,
    Prompt,
    Quote,
    Section,
    Table,
    fmt,
    fmt_interval,
)
from neurosleuth.report.data import ModelAnalysis, RunData, as_float

COUNTEREXAMPLES = (  # details key, what went wrong
    ("predicted_high_but_low", "Predicted to fire, but stayed below the firing threshold"),
    ("predicted_low_but_high", "Predicted quiet, but fired"),
)
TEST_PROMPTS = (("positive", "written to fire"), ("negative", "written to stay quiet"))
INTERNALS = {  # score detail -> what it measures
    "auroc": "AUROC: written prompts, fire vs stay quiet",
    "cohens_d": "Cohen's d: the same two groups",
    "judge_balanced_accuracy": "judge's balanced accuracy on held-out windows",
    "judge_auprc": "judge's AUPRC on held-out windows",
    "simulation_r": "correlation of simulated and real per-token activations",
    "causality_z": "ablation effect, z-score against random neurons",
    "floor_control": "the control hypothesis that set the floor",
    "llm_failures": "writer (LLM) calls that failed",
    "seconds": "time to score (s)",
}


def _sub(d: dict[str, Any], key: str) -> dict[str, Any]:
    """``d[key]`` where it is a dict, else {} (a missing or malformed part of a JSON file)."""
    value = d.get(key)
    return value if isinstance(value, dict) else {}


def last_score(data: RunData) -> dict[str, Any] | None:
    """The score record of the latest hypothesis, if it was scored."""
    score = data.hypotheses[-1].get("score") if data.hypotheses else None
    return score if isinstance(score, dict) else None


def score_texts(data: RunData) -> list[str]:
    """Counterexample and test-prompt texts of the latest score (to re-measure per token)."""
    details = (last_score(data) or {}).get("details")
    if not isinstance(details, dict):
        return []
    keys = [k for k, _ in COUNTEREXAMPLES] + [k for k, _ in TEST_PROMPTS]
    return [text for k in keys for text, _ in _pairs(details.get(k))]


def hypothesis_section(data: RunData, analysis: ModelAnalysis, scale: float) -> Section:
    title = "Hypothesis"
    if not data.hypotheses:
        why = (data.why_missing("hypotheses.json") if "hypotheses.json" in data.missing
               else "not available (the agent has not stated a hypothesis yet)")
        return Section(title, [Missing(why)])
    h = data.hypotheses[-1]
    blocks: list = [Quote(str(h.get("text") or "(empty hypothesis)"))]
    if h.get("explanation"):
        blocks.append(Para(str(h["explanation"])))
    blocks.append(Para(f"Stated at step {h.get('step', '?')} by the {h.get('source', '?')}; "
                       f"{len(data.hypotheses)} hypothesis(es) in the run."))
    score = last_score(data)
    if score is None:
        return Section(title, [*blocks, Missing("Not scored yet.")])
    blocks += [score_table(score), Para(_margin_text(score))]
    details = _sub(score, "details")
    blocks += counterexample_blocks(details, data, analysis, scale)
    if details:
        blocks.append(internals(details, analysis, scale))
    return Section(title, blocks)


def score_table(score: dict[str, Any]) -> Table:
    """Aggregate, components, floor and margin, each with its 95% bootstrap interval."""
    comps = _sub(score, "components")
    ints = _sub(score, "intervals")
    rows: list[list[Any]] = [["aggregate", as_float(score.get("aggregate")),
                              fmt_interval(score.get("ci"))]]
    rows += [[f"component: {k}", as_float(v), fmt_interval(ints.get(k))]
             for k, v in comps.items()]
    if "floor" in score:
        rows.append(["floor (best control hypothesis)", as_float(score.get("floor")), None])
    if "margin" in score:
        rows.append(["margin over the floor", as_float(score.get("margin")),
                     fmt_interval(score.get("margin_ci"))])
    return Table(["score", "value", "95% interval"], rows)


def _margin_text(score: dict[str, Any]) -> str:
    """What the floor and the margin mean, and what this margin says."""
    text = ("The aggregate weighs the components; the floor is the aggregate of the best control "
            "hypothesis (one written for another neuron, or the empty one); the margin is the "
            "aggregate minus the floor.")
    ci = score.get("margin_ci")
    lo, hi = (as_float(ci[0]), as_float(ci[1])) if isinstance(ci, list) and len(ci) == 2 else (
        None, None)
    if lo is not None and lo > 0:
        return text + " Its interval is above 0: the hypothesis explains more than a control."
    if hi is not None and hi < 0:
        return text + " Its interval is below 0: a control hypothesis scores better than this one."
    if lo is not None and hi is not None:
        return text + " Its interval holds 0: the hypothesis is not distinguishable from a control."
    return text


def counterexample_blocks(details: dict[str, Any], data: RunData, analysis: ModelAnalysis,
                          scale: float) -> list:
    """One table per kind of mistake; a sentence when the score found none."""
    kinds = [(k, what, _pairs(details.get(k))) for k, what in COUNTEREXAMPLES if k in details]
    if not kinds:
        return []
    if not any(pairs for _, _, pairs in kinds):
        return [Para("Counterexamples: none. Every test prompt and judged window behaved as the "
                     "hypothesis predicted.")]
    q = as_float((data.exemplars.get("quantiles") or {}).get("q0.99"))
    threshold = f" (the 0.99 quantile over the corpus scan, {q:.3f}, by default)" if q else ""
    blocks: list = [Para("Where the hypothesis was wrong: test prompts the writer wrote and "
                         "held-out corpus windows the judge rated, against the neuron's firing "
                         f"threshold{threshold}.")]
    sources = {text: src for key, src in TEST_PROMPTS for text, _ in _pairs(details.get(key))}
    for _, what, pairs in kinds:
        if not pairs:
            blocks.append(Para(f"{what}: none."))
            continue
        rows = [[i, act, *_marked(text, act, analysis, scale),
                 sources.get(text, "held-out window")]
                for i, (text, act) in enumerate(pairs, 1)]
        blocks += [Para(f"{what} ({len(pairs)}):"),
                   Table(["#", "activation", "max token", "text", "from"], rows)]
    if analysis.token_acts and any(r[2] is None for b in blocks if isinstance(b, Table)
                                   for r in b.rows):
        blocks.append(Para("A max token shown as – : the text measured alone does not reach its "
                           "recorded activation (a held-out window was measured in its corpus "
                           "context), so its peak is not marked."))
    return blocks


def internals(details: dict[str, Any], analysis: ModelAnalysis, scale: float) -> Details:
    """The sub-measures and the written test prompts, folded (the record is hypotheses.json)."""
    known = [k for k in INTERNALS if k in details]
    others = [k for k, v in details.items() if k not in INTERNALS and _scalar(v)]
    rows = [[k, _cell(details[k]), INTERNALS.get(k, "")] for k in known + others]
    blocks: list = [Table(["measure", "value", "what it is"], rows)] if rows else []
    prompts = [[src, act, *_marked(text, act, analysis, scale)]
               for key, src in TEST_PROMPTS for text, act in _pairs(details.get(key))]
    if prompts:
        blocks += [Para("The test prompts the writer wrote for this hypothesis:"),
                   Table(["written", "activation", "max token", "text"], prompts)]
    return Details("Score internals (sub-measures and test prompts; the full record is in "
                   "hypotheses.json)", blocks)


def history_section(data: RunData) -> Section:
    title = "Hypothesis history"
    if not data.hypotheses:
        return Section(title, [Missing(data.why_missing("hypotheses.json"))])
    rows = []
    for h in data.hypotheses:
        score = _sub(h, "score")
        comps = _sub(score, "components")
        comp_text = ", ".join(f"{k} {fmt(as_float(v))}" for k, v in comps.items())
        rows.append([h.get("step"), str(h.get("source", "")), str(h.get("text", "")),
                     as_float(score.get("aggregate")), comp_text or None])
    return Section(title, [Table(["step", "source", "hypothesis", "score", "components"], rows)])


def _marked(text: str, act: float | None, analysis: ModelAnalysis, scale: float
            ) -> list[Prompt | Heatmap | str | None]:
    """[max token, text]: a heatmap when re-measuring the text alone gives back ``act``."""
    ta = analysis.token_acts.get(text)
    if ta is not None and len(ta.acts) and act is not None:
        if abs(float(ta.acts.max()) - act) <= 1e-2 + 0.05 * abs(act):
            return [Prompt(ta.tokens[ta.argmax]),
                    Heatmap(ta.tokens, ta.acts.tolist(), scale, ta.argmax, text)]
    return [None, Prompt(text)]


def _pairs(value: Any) -> list[tuple[str, float | None]]:
    """[[text, activation], ...] as (text, activation) tuples; anything else is skipped."""
    if not isinstance(value, list):
        return []
    return [(item[0], as_float(item[1])) for item in value
            if isinstance(item, list | tuple) and len(item) >= 2 and isinstance(item[0], str)]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, int | float | str | bool)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return as_float(value)
    return value if value is None or isinstance(value, int | bool) else str(value)
