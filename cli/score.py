"""``neurosleuth score``: how well a hypothesis predicts a neuron, with its floor and intervals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import JustifyMethod
from rich.table import Table

from neurosleuth.cli import (
    CORPUS_HELP,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    console,
    err_console,
    fail,
    friendly_errors,
    load,
    neuron_checked,
    precheck,
)


def register(app: typer.Typer) -> None:
    app.command()(score)


def _ci(c) -> str:
    return f"[{c.lo:.2f}, {c.hi:.2f}]"


def _note(name: str, d: dict) -> str:
    def f(key: str, fmt: str = ".2f") -> str:
        v = d.get(key)
        return "n/a" if v is None else format(v, fmt)

    if name == "selectivity":
        return (f"AUROC {f('auroc')}, d {f('cohens_d')}, judge bal. acc. {f('balanced_accuracy')}"
                f", AUPRC {f('auprc')} ({d.get('windows_above', 0)}/{d.get('windows', 0)} "
                f"windows >= {f('threshold', '.3g')})")
    if name == "simulation":
        return f"r {f('raw')} over {d.get('tokens', 0)} tokens"
    if name == "causality":
        return f"{d.get('headline', '')} -> {d.get('mapping', '')}"
    if name == "robustness":
        parts = [f"{k[:-5]} {v:.2f}" for k, v in d.items() if k.endswith("_mean") and v is not None]
        return ", ".join(parts) + f" ({d.get('paraphrase_source', '')})"
    if name == "human":
        return f"Spearman {f('raw')}"
    return ""


def print_result(r) -> None:
    console.rule(f"score of a hypothesis about neuron {r.neuron} ({r.model})")
    console.print(f"hypothesis: {r.hypothesis!r}", markup=False, highlight=False)
    ctl = r.floor_control
    used = r.aggregate.details.get("weights", {})
    table = Table(show_header=True, header_style="bold")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("component", "left"), ("score", "right"), ("95% CI", "right"), ("floor", "right"),
        ("weight", "right"), ("evidence", "left"))
    for col, just in columns:
        table.add_column(col, justify=just)
    for name, c in r.components.items():
        fl = ctl.components[name].value if ctl else None
        table.add_row(name, f"{c.value:.2f}", _ci(c), "" if fl is None else f"{fl:.2f}",
                      f"{used.get(name, 0):.2f}", _note(name, c.details))
    table.add_section()
    table.add_row("aggregate", f"{r.aggregate.value:.2f}", _ci(r.aggregate),
                  f"{r.floor.value:.2f}", "", "weighted mean of the components")
    table.add_row("floor", f"{r.floor.value:.2f}", _ci(r.floor), "", "",
                  f"best control: {ctl.label} {ctl.hypothesis!r}" if ctl else "")
    table.add_row("margin", f"{r.margin.value:+.2f}", f"[{r.margin.lo:+.2f}, {r.margin.hi:+.2f}]",
                  "", "", "aggregate - floor (paired bootstrap)")
    console.print(table)
    for kind, label in (("predicted_high", "predicted to fire, stayed low"),
                        ("predicted_low", "predicted quiet, fired")):
        rows = r.counterexamples.get(kind, [])[:3]
        if rows:
            console.print(f"counterexamples ({label}):")
            for e in rows:
                console.print(f"  {e['activation']:.3f}  {e['text'][:90]!r}  [{e['source']}]",
                              markup=False, highlight=False)
    llm = r.llm
    console.print(f"writer: {llm.get('backend')}  LLM calls {llm.get('calls', 0)}, failures "
                  f"{llm.get('failures', 0)}, heuristic fallbacks {llm.get('fallbacks', 0)}; "
                  f"{r.seconds:.1f} s", markup=False, highlight=False)


def result_row(r) -> dict:
    row = {"model": r.model, "neuron": r.neuron, "hypothesis": r.hypothesis}
    for c in [*r.components.values(), r.aggregate, r.floor, r.margin]:
        row.update({c.name: c.value, f"{c.name}_lo": c.lo, f"{c.name}_hi": c.hi})
    row.update({"floor_control": r.floor.details.get("control"), "llm_failures": r.llm_failures,
                "seconds": round(r.seconds, 2)})
    return row


def _pairs(path: Path) -> list[tuple[str, str]]:
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"no pairs file {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"neuron", "hypothesis"} <= set(frame.columns):
        raise ValueError(f"{path} needs columns 'neuron' and 'hypothesis'")
    return list(zip(frame["neuron"], frame["hypothesis"], strict=True))


@friendly_errors
def score(
    neuron: Annotated[str | None, typer.Option("--neuron", "-n", help="LAYER:INDEX")] = None,
    hypothesis: Annotated[str | None, typer.Option(help="what the neuron responds to")] = None,
    model: ModelOpt = "smollm2-135m",
    planner: Annotated[str, typer.Option(
        help="who writes test prompts, judgments, simulations: heuristic (keywords, fast), "
             "embedded, ollama, auto (Ollama, else embedded)")] = "heuristic",
    weights: Annotated[str | None, typer.Option(
        help="e.g. S=1,M=1,C=1,R=1,H=1 (selectivity, simulation, causality, robustness, "
             "human); unnamed keep their defaults")] = None,
    human: Annotated[Path | None, typer.Option(help="CSV with columns text,rating")] = None,
    pairs: Annotated[Path | None, typer.Option(help="CSV with columns neuron,hypothesis")] = None,
    records: Annotated[Path | None, typer.Option(
        help="score on activation records, no model (OpenAI neuron records, Neuronpedia "
             "export or JSONL): simulation r; --neuron picks one neuron of the file")] = None,
    out: Annotated[Path | None, typer.Option(help="CSV of results (with --pairs)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write full results")] = None,
    control: Annotated[str | None, typer.Option(
        help="control hypothesis (default: written for a random other neuron)")] = None,
    corpus: Annotated[str | None, typer.Option(help=CORPUS_HELP)] = None,
    exemplar_tokens: Annotated[int | None, typer.Option(help="corpus tokens to scan")] = None,
    ollama_model: Annotated[str | None, typer.Option(help="Ollama model")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Score a hypothesis about a neuron: selectivity, simulation, causality, robustness (and
    human ratings), against the floor of control hypotheses, with 95% bootstrap intervals. With
    --records: its simulation r on activation records from elsewhere, with no model."""
    if records is not None:
        if hypothesis is None:
            fail("give --hypothesis to score on --records")
        from neurosleuth.cli.records import score_records

        return score_records(records, hypothesis, neuron, planner, ollama_model, json_out, seed)
    if pairs is None and (neuron is None or hypothesis is None):
        fail("give --neuron and --hypothesis, or --pairs FILE")
    if out is not None and pairs is None:
        fail("--out writes the results of --pairs; for one score use --json")
    from neurosleuth.score.components import parse_weights

    parse_weights(weights)  # a bad spec fails before the model loads
    if pairs:
        todo = _pairs(pairs)
    else:
        assert neuron is not None and hypothesis is not None  # or it failed above
        todo = [(neuron, hypothesis)]
    precheck(model, [spec for spec, _ in todo])  # before the writer and the model load
    from neurosleuth.agents.config import resolve_config
    from neurosleuth.agents.planner import PlannerUnavailable, make_planner
    from neurosleuth.agents.scoring import planner_control, planner_writer, score_config
    from neurosleuth.score.run import score_hypothesis

    cfg = resolve_config(None, model=model, planner=planner, seed=seed, corpus=corpus,
                         exemplar_tokens=exemplar_tokens, ollama_model=ollama_model)
    try:
        chosen, note = make_planner(cfg)
    except PlannerUnavailable as err:
        fail(str(err))
    err_console.print(f"writer: {chosen.name} ({note})", markup=False, highlight=False)
    lm = load(model, device, dtype, device_map)
    config = score_config(cfg)
    results = []
    for spec, text in todo:
        n = neuron_checked(lm, spec)
        with err_console.status(f"scoring {n} ..."):
            r = score_hypothesis(lm, n, text, writer=planner_writer(chosen, n, lm.name),
                                 hypothesize=planner_control(chosen), config=config,
                                 control=control, human=human, weights=weights)
        results.append(r)
        print_result(r)
    if out is not None:
        import pandas as pd

        pd.DataFrame([result_row(r) for r in results]).to_csv(out, index=False)
        console.print(f"wrote {out}")
    if json_out is not None:
        data = [r.to_dict() for r in results]
        json_out.write_text(json.dumps(data if pairs else data[0], indent=1))
        console.print(f"wrote {json_out}")
