"""The hypothesis report of one run: ``report.md`` and a self-contained ``report.html``.

``write_report`` reads the run directory (``report/data.py``), optionally re-measures per-token
activations and projects the neuron's output weights with the model, builds the report as typed
blocks (this module and ``report/evidence.py``) and renders them twice (``report/markdown.py``,
``report/html.py``). Every part of the run directory may be missing: the section it feeds then says
"not available" and why. The HTML embeds its plots as base64 PNGs, has no script and no external
resource, and escapes every string that came from a user, the planner or the model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from neurosleuth.report import evidence as ev
from neurosleuth.report import experiments, revisions
from neurosleuth.report import explanation as xp
from neurosleuth.report import hypothesis as hyp
from neurosleuth.report.blocks import (
    Document,
    Image,
    Link,
    Missing,
    Para,
    Prompt,
    Section,
    Table,
    fmt,
)
from neurosleuth.report.data import (
    ModelAnalysis,
    RunData,
    analyse,
    as_float,
    load_run,
    neuron_of,
)
from neurosleuth.report.html import render_html
from neurosleuth.report.markdown import render_markdown
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId

ASSETS = "report_assets"  # folder next to report.md holding its PNGs
REJECTED_EXAMPLES = 3  # per rejection reason


@dataclass(frozen=True)
class Context:
    """What a section builder reads: the run files, the model analyses, the colour scale."""

    data: RunData
    analysis: ModelAnalysis
    neuron: NeuronId | None
    scale: float  # heatmap colours saturate at +-scale


def _evidence_intro(ctx: Context) -> Section:
    return Section("Evidence", [Para("What the neuron responds to, and what it writes.")])


# The report, in order: (title, builder). A new section is one function and one entry here.
SECTIONS: tuple[tuple[str, Callable[[Context], Section]], ...] = (
    ("Hypothesis", lambda c: hyp.hypothesis_section(c.data, c.analysis, c.scale)),
    ("Candidates", lambda c: xp.candidates_section(c.data)),
    ("Explanation pattern", lambda c: xp.pattern_section(c.data)),
    ("Hypothesis history", lambda c: hyp.history_section(c.data)),
    ("Revisions", lambda c: revisions.revisions_section(c.data)),
    ("Experiment log", lambda c: experiments.experiment_log_section(c.data)),
    ("Evidence", _evidence_intro),
    ("Top prompts", lambda c: ev.prompts_section(c.data, c.analysis, "top", c.scale)),
    ("Bottom prompts", lambda c: ev.prompts_section(c.data, c.analysis, "bottom", c.scale)),
    ("Dataset exemplars", lambda c: ev.exemplars_section(c.data, c.scale)),
    ("Activation histogram", lambda c: ev.histogram_section(c.data)),
    ("Vocabulary projection", lambda c: ev.vocab_section(c.analysis)),
    ("Causal evidence", lambda c: ev.causal_section(c.data)),
    ("Search curve", lambda c: ev.curve_section(c.data)),
    ("What the agent tried and rejected", lambda c: tried_section(c.data)),
    ("Steering", lambda c: steering_section(c.data)),
    ("Planner and model", lambda c: planner_section(c.data)),
    ("Cost", lambda c: cost_section(c.data)),
    ("Run status", lambda c: status_section(c.data)),
)
SECTION_TITLES = tuple(title for title, _ in SECTIONS)


def write_report(
    run_dir: str | Path, lm: LoadedModel | None = None, neuron: NeuronId | None = None
) -> tuple[Path, Path]:
    """Write ``report.md`` (+ its PNGs under ``report_assets/``) and ``report.html`` into
    ``run_dir``; return their paths. ``neuron`` defaults to the one the run names."""
    data = load_run(run_dir)
    neuron = neuron_of(data, neuron)
    doc = build_document(data, analyse(data, lm, neuron, hyp.score_texts(data)), neuron)
    md_path, html_path = data.run_dir / "report.md", data.run_dir / "report.html"
    assets = data.run_dir / ASSETS
    for section in doc.sections:
        for block in section.blocks:
            if isinstance(block, Image):
                assets.mkdir(exist_ok=True)
                _write_atomic(assets / block.name, block.png)
    _write_atomic(md_path, render_markdown(doc, ASSETS).encode("utf-8"))
    _write_atomic(html_path, render_html(doc).encode("utf-8"))
    return md_path, html_path


def _write_atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def build_document(data: RunData, analysis: ModelAnalysis, neuron: NeuronId | None) -> Document:
    """The whole report as sections of blocks (see ``report/blocks.py``), in ``SECTIONS`` order."""
    model = str(data.value("model", "unknown model"))
    ctx = Context(data, analysis, neuron, ev.colour_scale(data, analysis))
    status = data.value("status", "unknown")
    subtitle = f"Run {data.value('run_id', data.run_dir.name)} · status {status}"
    if data.value("stop_reason"):
        subtitle += f" ({data.value('stop_reason')})"
    sections = [build(ctx) for _, build in SECTIONS]
    title = f"Neuron {neuron if neuron is not None else data.value('neuron', '?')} in {model}"
    return Document(title, subtitle, sections)


def tried_section(data: RunData) -> Section:
    """Counts by status and source, examples of rejected prompts, stagnation recoveries."""
    blocks: list = []
    stats = data.summary.get("stats") if isinstance(data.summary.get("stats"), dict) else {}
    keys = ("generated", "accepted", "rejected_duplicate", "rejected_semantic", "rejected_junk")
    if stats:
        rows = [[k.replace("_", " "), stats.get(k)] for k in keys if k in stats]
        gen, acc = as_float(stats.get("generated")), as_float(stats.get("accepted"))
        if gen and acc is not None:
            rows.append(["acceptance rate", f"{acc / gen:.0%}"])
        blocks.append(Table(["prompts", "count"], rows))
    df = data.prompts
    if df is not None and {"status", "source"} <= set(df.columns) and len(df):
        source = df["source"].astype(str)
        theirs = source.str.startswith("neuron ") & (df["status"].astype(str) == "shared")
        if theirs.any():
            names = sorted(set(source[theirs].str.removeprefix("neuron ")))
            blocks.append(Para(
                f"{int(theirs.sum())} prompts came from the searches of other neurons of this "
                f"layer-parallel batch ({len(names)}: {', '.join(names[:12])}"
                f"{', ...' if len(names) > 12 else ''}), measured for this neuron in the same "
                "passes (status shared; the top and bottom lists name the neuron as source)."))
        source = source.where(~theirs, "other neurons")
        table = pd.crosstab(source, df["status"].astype(str), margins=True, margins_name="total")
        blocks.append(Para("Prompts by source (rows) and status (columns):"))
        blocks.append(Table(["source", *map(str, table.columns)],
                            [[str(i), *map(int, r)]
                             for i, r in zip(table.index, table.values, strict=True)]))
        blocks += _rejected_examples(df)
    elif not stats:
        blocks.append(Missing(data.why_missing("prompts.csv", "summary.json")))
    blocks.append(_recoveries(data))
    return Section("What the agent tried and rejected", blocks)


def _rejected_examples(df: pd.DataFrame) -> list:
    rejected = df[~df["status"].astype(str).isin(["accepted", "shared"])]
    if rejected.empty:
        return [Para("No prompt was rejected.")]
    picked = rejected.groupby(rejected["status"].astype(str), sort=True).tail(REJECTED_EXAMPLES)
    rows = [[r.get("step"), str(r.get("status")), as_float(r.get("similarity")),
             str(r.get("source", "")), Prompt(str(r.get("prompt", "")))]
            for r in picked.to_dict("records")]
    return [Para(f"Examples of rejected prompts (the last {REJECTED_EXAMPLES} of each reason; "
                 "similarity to the nearest earlier prompt):"),
            Table(["step", "reason", "similarity", "source", "prompt"], rows)]


def _recoveries(data: RunData) -> Para | Table | Missing:
    recs = [r for r in data.summary.get("recoveries") or [] if isinstance(r, dict)]
    if not recs:
        return (Missing(data.why_missing("summary.json")) if "summary.json" in data.missing
                else Para("Stagnation recoveries: none were needed."))
    return Table(["recovery at iteration", "strategy", "best at the time"],
                 [[r.get("iteration"), str(r.get("strategy", "")), as_float(r.get("best"))]
                  for r in recs])


def steering_section(data: RunData) -> Section:
    """Each message: where it came from, when it arrived, the step at which the planner saw it."""
    cli = [str(m) for m in data.config.get("steer") or []]
    live = [s for s in data.summary.get("steering") or [] if isinstance(s, dict)]
    seen = {str(s.get("message", "")) for s in live}
    rows: list[list[Any]] = [["--steer", "run start", m, "from the start"]
                             for m in cli if m not in seen]
    for s in live:
        msg, step = str(s.get("message", "")), s.get("applied_step")
        rows.append(["--steer" if msg in cli else "neurosleuth steer",
                     str(s.get("received_at", "?")), msg,
                     f"step {step}" if step is not None else "not applied yet"])
    if not rows:
        if {"summary.json", "config.json"} <= set(data.missing):
            return Section("Steering", [Missing(data.why_missing("summary.json"))])
        return Section("Steering", [Para("No steering messages: the agent ran on its own.")])
    return Section("Steering", [Table(["from", "received", "message", "took effect"], rows)])


def _backoff_text(found) -> str:
    """'none', or each tool with how many times its batch was halved."""
    if not isinstance(found, dict) or not found:
        return "none"
    return ", ".join(f"{what}: {n} halving{'s' * (n != 1)}" for what, n in found.items())


def atlas_page(data: RunData) -> str | None:
    """The relative path from the report to its neuron's atlas page, when the run was picked
    from an atlas (``batch --from-atlas``) and the page exists: exported, or rendered by
    ``neurosleuth serve`` from the atlas's table (served from a folder that holds both)."""
    atlas, neuron = data.config.get("atlas"), str(data.value("neuron", ""))
    if not atlas or ":" not in neuron:
        return None
    page = Path(atlas) / "site" / "n" / (neuron.replace(":", "-") + ".html")
    exists = page.is_file() or (Path(atlas) / "atlas.parquet").is_file()
    return os.path.relpath(page, data.run_dir) if exists else None


def planner_section(data: RunData) -> Section:
    c = data.config
    rows = [
        ["planner used", data.value("planner_used")],
        ["why this planner", data.value("planner_note")],
        ["planner requested", c.get("planner")],
        ["planner model", c.get("planner_model")],
        ["model studied", data.value("model")],
        ["model description", data.value("model_desc")],
        ["placement (requested)", f"device {c.get('device') or 'auto'}, dtype "
                                  f"{c.get('dtype') or 'auto'}, device map "
                                  f"{c.get('device_map') or 'none'}"],
        ["out-of-memory back-offs", _backoff_text(data.value("oom_backoffs"))],
        ["neuron", data.value("neuron")],
        ["seed", c.get("seed")],
        ["dedup threshold", as_float(c.get("dedup_threshold"))],
        ["patience (iterations)", c.get("patience")],
        ["heap size k", c.get("k")],
        ["budget: iterations", c.get("iterations")],
        ["budget: time (s)", as_float(c.get("time_budget_s"))],
        ["budget: forward passes", c.get("max_forward_passes")],
        ["corpus scan: tokens (exemplar_tokens)", c.get("exemplar_tokens")],
    ]
    if data.value("llm_errors"):  # the planner's last failures: a server that died, a bad reply
        rows.insert(2, ["last LLM errors", "; ".join(map(str, data.value("llm_errors")))])
    blocks: list = [Table(["setting", "value"], _kv(rows))]
    page = atlas_page(data)
    if page is not None:
        blocks.append(Link("This neuron in the atlas it was picked from", page))
    if "config.json" in data.missing:
        blocks.insert(0, Missing("Run config " + data.why_missing("config.json") + "."))
    return Section("Planner and model", blocks)


def cost_section(data: RunData) -> Section:
    s = data.summary
    if not s:
        return Section("Cost", [Missing(data.why_missing("summary.json"))])
    wall, plan, model = (as_float(s.get(k)) for k in ("wall_s", "planner_s", "model_s"))
    counts = ("forward_passes", "llm_calls", "llm_tokens_in", "llm_tokens_out", "llm_failures",
              "llm_repairs", "llm_fallbacks")
    rows: list[list[Any]] = [[k.replace("_", " "), s.get(k)] for k in counts]
    rows.append(["wall time (s)", wall])
    own = as_float(s.get("own_s"))
    if wall and own is not None and own < 0.99 * wall:
        rows.append(["own time (s)", f"{own:.1f} ({own / wall:.0%}; the rest: the other "
                     "neurons' turns in its layer-parallel group)"])
    for label, v in (("planner (LLM) time (s)", plan), ("model time (s)", model)):
        rows.append([label, v if not wall or v is None else f"{v:.1f} ({v / wall:.0%})"])
    if wall and plan is not None and model is not None:
        rest = wall - plan - model
        rows.append(["other time (s)", f"{rest:.1f} ({rest / wall:.0%})"])
    blocks: list = [Table(["cost", "value"], rows)]
    nodes = _time_by_node(data.events)
    if nodes:
        blocks += [Para(f"Time by graph node, from {len(data.events)} events:"),
                   Table(["node", "steps", "time (s)"], nodes)]
    return Section("Cost", blocks)


def _time_by_node(events: list[dict[str, Any]]) -> list[list[Any]]:
    totals: dict[str, list[float]] = {}
    for e in events:
        t = totals.setdefault(str(e.get("node", "?")), [0, 0.0])
        t[0] += 1
        t[1] += as_float(e.get("duration_s")) or 0.0
    return [[k, int(n), s] for k, (n, s) in sorted(totals.items(), key=lambda kv: -kv[1][1])]


def status_section(data: RunData) -> Section:
    rows = [[k.replace("_", " "), data.value(k)] for k in (
        "status", "stop_reason", "iterations", "started_at", "finished_at")]
    best, dmax = as_float(data.value("best_activation")), as_float(data.value("dataset_max"))
    rows += [["best activation", best], ["best dataset exemplar", dmax]]
    if data.exemplars:
        rows.append(["dataset max covers", ev.depth_short(data)])
    if best is not None and dmax:
        rows.append(["best / dataset max", f"{best / dmax:.2f}"])
    rows = _kv(rows)
    if isinstance(data.value("best_prompt"), str):
        rows.append(["best prompt", Prompt(data.value("best_prompt"))])
    blocks: list = [Table(["", "value"], rows)]
    if data.missing:
        missing = [[k, v] for k, v in sorted(data.missing.items())]
        blocks.append(Table(["run file", "state"], missing))
    else:
        blocks.append(Para("Every file of the run directory was read."))
    return Section("Run status", blocks)


def _kv(rows: list[list[Any]]) -> list[list[Any]]:
    """Rows of a setting/value table as text: numbers formatted, so that they sit left-aligned
    next to their label like the text values around them."""
    return [[k, fmt(v) if v is None or isinstance(v, int | float) else str(v)] for k, v in rows]
