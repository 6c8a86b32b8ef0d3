"""The experiment log (as MAIA's, Shaham et al. 2024): every experiment of a run in order, read from
``events.jsonl``: what was run, who asked for it, its result, and what it changed (the best
activation, the leading hypothesis). Prompt proposals are summed into the search rows; the
experiments are the corpus scan, the attack, stagnation recoveries, the causal probes, the
explainer with its concept-or-list experiment, and the scoring of the candidates."""

from __future__ import annotations

import re
from typing import Any

from neurosleuth.report.blocks import Missing, Para, Section, Table
from neurosleuth.report.data import RunData

BEST = re.compile(r"best (-?[\d.]+(?:e-?\d+)?)")
WINS = re.compile(r"wins of \d+: (.+?) \((?:aggregate|margin)")
WHO = {
    "seed": "the schedule (start of the run)",
    "probe": "the schedule (before each hypothesis round)",
    "hypothesize": "the schedule (a hypothesis round is due)",
    "test": "the schedule (after each hypothesis round)",
    "revise": "the schedule (after each hypothesis round)",
}
WHAT = {
    "seed": "corpus scan: top dataset windows become the first prompts",
    "probe": "causal probes: ablation vs random neurons, attribution, steering",
    "hypothesize": "evidence explainer (prune, occlude, substitute)",
    "test": "score every candidate on held-out windows; attack for counterexamples",
    "revise": "test each clause of the leader on the model, revise, rescore",
}


def _best(summary: str) -> float | None:
    m = BEST.search(summary or "")
    return float(m.group(1)) if m else None


def asked_by(source: str | None) -> str:
    """Who chose an experiment, from its ``source`` in the event log."""
    source = source or ""
    if source == "heuristic":
        return "the experiment-design policy"
    if source == "heuristic-fallback":
        return "the experiment-design policy (the LLM gave no usable choice)"
    if source == "steer":
        return "the researcher (steer)"
    if source in ("attack", "exemplar", "random", "mutation"):
        return "the stagnation monitor"
    return f"the planner ({source})" if source else "the planner"


def experiment_rows(events: list[dict[str, Any]]) -> list[list[Any]]:
    """[step, experiment, asked by, why, result, what it changed] for each experiment event."""
    rows: list[list[Any]] = []
    best: float | None = None
    leading: str | None = None
    searched = 0
    chose_round: tuple[str, str] | None = None  # (who, why) of a hypothesis round the planner chose
    for e in events:
        node, summary = e.get("node"), str(e.get("summary") or "")
        if node == "record":
            value = _best(summary)
            if value is not None and (best is None or value > best + 1e-9):
                if best is not None and searched:
                    rows.append([e.get("step"), "prompt search", "the planner", "",
                                 f"{searched} step(s) of proposed prompts",
                                 f"best activation {best:.3f} -> {value:.3f}"])
                    searched = 0
                best = value
            if e.get("recovery"):
                rows.append([e.get("step"), f"stagnation recovery: {e['recovery']}",
                             "the stagnation monitor", "the search stalled", summary, ""])
            continue
        if node == "act" and e.get("action") == "propose_prompts":
            searched += 1
            continue
        if node == "act" and e.get("action") == "hypothesize":
            chose_round = (asked_by(e.get("source")), str(e.get("reason") or ""))
            continue
        if node == "act":
            changed = _changed_best(summary, best)
            if e.get("action") == "compare" and " wins" in summary:
                changed = "the comparison decides between the two"
            rows.append([e.get("step"), str(e.get("action")), asked_by(e.get("source")),
                         str(e.get("reason") or ""), summary, changed])
            continue
        if node not in WHAT:
            continue
        what, changed = WHAT[node], ""
        who, why = WHO[node], ""
        if node in ("probe", "hypothesize", "test", "revise") and chose_round is not None:
            who, why = chose_round
        if node == "revise":
            chose_round = None
            if summary.startswith("revised to"):
                changed = "leading hypothesis revised"
        if node == "seed":
            best = None
        if node == "hypothesize" and "experiment:" in summary:
            what += (" + kind-of-text experiment (the same content in another kind)"
                     if "same content" in summary else
                     " + concept-or-list experiment (unseen members in the neuron's contexts)")
        if node == "test":
            m = WINS.search(summary)
            if m:
                text = m.group(1)
                changed = (f"leading hypothesis: {text}" if text != leading
                           else "leading hypothesis unchanged")
                leading = text
            if "decided by the" in summary:
                changed += ("; decided by the kind-of-text experiment"
                            if "decided by the same content" in summary
                            else "; decided by the concept-or-list experiment")
        rows.append([e.get("step"), what, who, why, summary, changed])
    return rows


def _changed_best(summary: str, best: float | None) -> str:
    value = _best(summary)
    if value is None or best is None:
        return ""
    return f"found {value:.3f} (best so far {best:.3f})"


def experiment_log_section(data: RunData) -> Section:
    title = "Experiment log"
    if not data.events:
        return Section(title, [Missing(data.why_missing("events.jsonl"))])
    rows = experiment_rows(data.events)
    if not rows:
        return Section(title, [Missing("no experiment has run yet")])
    intro = ("Each experiment in order, who asked for it and why, its result and what it "
             "changed. Under the adaptive policy the planner (or, without an LLM, the "
             "experiment-design policy) chooses every experiment; under the fixed schedule the "
             "probes and hypothesis rounds come every few steps. Recoveries come from the "
             "stagnation monitor, requests from a researcher's steering.")
    return Section(title, [Para(intro), Table(["step", "experiment", "asked by", "why", "result",
                                               "what it changed"], rows)])
