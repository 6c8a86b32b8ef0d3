"""Activation records from elsewhere, with no model: ``neurosleuth explain --records FILE`` and
``neurosleuth score --records FILE --hypothesis ...`` (OpenAI neuron-explainer records,
Neuronpedia exports, JSONL of ``{tokens, activations}``: ``tools/records.py``).

Who simulates: with ``--planner heuristic`` (the default) the records pattern simulates the
explanation it wrote and the concept-aware keyword writer (``score/writer.py``) simulates any
other hypothesis; with an LLM planner (``embedded``, ``ollama``, ``auto``) the LLM predicts each
token's activation (0-10, as OpenAI's simulator), falling back to the heuristic per failed
request.

Held out: ``explain`` learns from alternate top records that fire (1st, 3rd, ...) and the
even-numbered random ones, and scores on the others (``score/records.explain_held_out``, the split
the atlas makes too); ``score`` scores on every record (the hypothesis came from elsewhere). The
token-list reading of the same explanation is scored beside it (OpenAI's token look-up baseline
is of this kind).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from neurosleuth.cli import console, err_console, fail, friendly_errors

PlannerOpt = Annotated[str, typer.Option(
    help="who simulates: heuristic (records pattern and keywords, fast), embedded, ollama, "
         "auto (Ollama, else embedded)")]
RecordsOpt = Annotated[Path, typer.Option("--records", help="records file (OpenAI neuron "
                                          "records, Neuronpedia export or JSONL)")]


def register(app: typer.Typer) -> None:
    app.command()(explain)


def _writer(planner: str, ollama_model: str | None, neuron: str):
    """(writer, note): the score's writer for ``planner``, loaded without a target model."""
    from neurosleuth.agents.config import resolve_config
    from neurosleuth.agents.planner import PlannerUnavailable, make_planner
    from neurosleuth.agents.scoring import planner_writer

    cfg = resolve_config(None, planner=planner, ollama_model=ollama_model)
    try:
        chosen, note = make_planner(cfg)
    except PlannerUnavailable as err:
        fail(str(err))
    return planner_writer(chosen, neuron or "(unnamed)", "records"), note


def _neurons(path: Path, neuron: str | None):
    from neurosleuth.tools.records import read

    found = read(path)
    if neuron is None:
        return found
    picked = [nr for nr in found if nr.neuron == neuron]
    if not picked:
        fail(f"{path.name}: no records for neuron {neuron} (it has "
             f"{', '.join(nr.neuron or '(unnamed)' for nr in found)})")
    return picked


def _simulator(writer, text: str):
    return lambda tokens: writer.simulate(text, tokens)


def _r(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.3f}"


def _fmt(s) -> str:
    if math.isnan(s.r):
        return "n/a (constant prediction)"
    return f"{_r(s.r)} [{_r(s.lo)}, {_r(s.hi)}]"


def _table(title: str) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    for col in ("neuron", "hypothesis", "r (95% CI)", "top r", "random r", "records"):
        table.add_column(col, overflow="fold")
    return table


def _row(table: Table, neuron: str, text: str, s) -> None:
    table.add_row(neuron or "-", text, _fmt(s), _r(s.top_r), _r(s.random_r),
                  f"{s.records} ({s.tokens} tokens)")


@friendly_errors
def explain(
    records: RecordsOpt,
    neuron: Annotated[str | None, typer.Option("--neuron", "-n",
                                               help="only this neuron of the file")] = None,
    planner: PlannerOpt = "heuristic",
    ollama_model: Annotated[str | None, typer.Option(help="Ollama model")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write results")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Explain neurons from their activation records alone (no model): the tokens that fire,
    required context, the concept they share, the kind of text; each explanation scored by
    simulation on held-out records."""
    from neurosleuth.score.records import explain_held_out
    from neurosleuth.tools.explain import variants
    from neurosleuth.tools.records_explain import RecordsExplainer

    neurons = _neurons(records, neuron)
    writer, note = _writer(planner, ollama_model, neurons[0].neuron)
    err_console.print(f"simulator: {note}", markup=False, highlight=False)
    table, out = _table(f"explanations from {records.name}"), []
    for nr in neurons:
        held = explain_held_out(RecordsExplainer(nr.neuron), nr.top, nr.random)
        if not held.top:
            fail(f"{records.name}: neuron {nr.neuron or '(unnamed)'} has fewer than two top "
                 "records that fire: nothing left to score on")
        ex = held.explanation
        rows = []
        for text, pattern in variants(ex):
            writer.patterns[text] = pattern
            s = held.score(_simulator(writer, text), seed=seed)
            _row(table, nr.neuron, text, s)
            rows.append({"hypothesis": text, **s.to_dict()})
        table.add_section()
        out.append({"neuron": nr.neuron, "explanation": ex.sentence, "details": ex.details,
                    "pattern": ex.pattern.to_dict(), "scores": rows,
                    "learned_from": {"top": len(held.learned_top),
                                     "random": len(held.learned_random)}})
    console.print(table)
    for o in out:
        console.print(f"{o['neuron'] or '-'}: {o['details']}", markup=False, highlight=False)
    console.print(f"simulator: {note}; {writer.stats.calls} LLM calls, {writer.stats.fallbacks} "
                  "heuristic fallbacks", markup=False, highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(out, indent=1))
        console.print(f"wrote {json_out}")


def score_records(records: Path, hypothesis: str, neuron: str | None, planner: str,
                  ollama_model: str | None, json_out: Path | None, seed: int) -> None:
    """``score --records``: the hypothesis simulated on every record of each neuron."""
    from neurosleuth.score.records import simulation_r

    neurons = _neurons(records, neuron)
    writer, note = _writer(planner, ollama_model, neurons[0].neuron)
    table, out = _table(f"simulation score on {records.name}"), []
    for nr in neurons:
        s = simulation_r(_simulator(writer, hypothesis), nr.top, nr.random, seed=seed)
        _row(table, nr.neuron, hypothesis, s)
        out.append({"neuron": nr.neuron, "hypothesis": hypothesis, **s.to_dict()})
    console.print(table)
    console.print(f"simulator: {note}; {writer.stats.calls} LLM calls, {writer.stats.fallbacks} "
                  "heuristic fallbacks", markup=False, highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(out if len(out) > 1 else out[0], indent=1))
        console.print(f"wrote {json_out}")
