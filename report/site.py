"""The report site of a batch: ``DIR/ID/index.html``, one self-contained page with a sortable
table of its neurons, each neuron linking to its run's ``report.html`` by a relative link (so the
page works from the file system and through ``neurosleuth serve``). Also the same rows as a
DataFrame (``summary --csv/--parquet``) and as neuron-explainer style JSON.

Safety: every string from a run (hypotheses, prompts, reasons, errors) passes through
``html.escape``. The one inline script only reorders existing table rows (``appendChild``) and
reads ``data-v`` attributes and ``textContent``; it never builds HTML from strings. A
Content-Security-Policy meta tag allows that script by its SHA-256 hash and nothing else (no
external resource, no other script), as a second line of defence.

Score columns are the components of the last hypothesis's score in each run's
``hypotheses.json`` (selectivity, simulation, causality, robustness); the aggregate is shown as
"score". "dataset max" is the max of the batch's corpus scan, which may be a sample of the corpus:
the subtitle says how many tokens it covers (read from one run's ``exemplars.json``: a batch
shares one scan). Columns that are empty in every row (no neuron was picked for a reason, none
failed) are left out.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from neurosleuth.batch.queue import BatchQueue
from neurosleuth.report.site_style import CSS, SORT_JS
from neurosleuth.tools.records import NeuronRecords, from_windows


@dataclass(frozen=True)
class NeuronRow:
    neuron: str
    layer: int
    index: int
    status: str
    run_id: str
    hypothesis: str | None
    explanation: str | None
    score: float | None  # aggregate of the last hypothesis's score
    components: dict[str, float | None] = field(default_factory=dict)
    best_activation: float | None = None
    dataset_max: float | None = None
    best_prompt: str | None = None
    iterations: int | None = None
    seconds: float | None = None
    reason: str | None = None
    error: str | None = None
    report: str | None = None  # relative link, when the run wrote one

    @property
    def best_vs_max(self) -> float | None:
        if self.best_activation is None or not self.dataset_max:
            return None
        return self.best_activation / self.dataset_max


def _json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def batch_rows(folder: str | Path) -> tuple[BatchQueue, list[NeuronRow]]:
    """The queue and one row per neuron, read from the batch folder and its run folders."""
    queue = BatchQueue.load(folder)
    rows = []
    for e in queue.batch.entries:
        run = queue.folder / e.run_id
        summary = _json(run / "summary.json", {})
        hyps = _json(run / "hypotheses.json", [])
        last = hyps[-1] if isinstance(hyps, list) and hyps else {}
        score = last.get("score") or {}
        layer, index = (int(x) for x in e.neuron.split(":"))
        rows.append(NeuronRow(
            neuron=e.neuron, layer=layer, index=index, status=e.status, run_id=e.run_id,
            hypothesis=last.get("text"), explanation=last.get("explanation"),
            score=_num(score.get("aggregate")),
            components={k: _num(v) for k, v in (score.get("components") or {}).items()},
            best_activation=_num(summary.get("best_activation")),
            dataset_max=_num(summary.get("dataset_max")), best_prompt=summary.get("best_prompt"),
            iterations=summary.get("iterations"), seconds=e.seconds or None, reason=e.reason,
            error=e.error,
            report=f"{e.run_id}/report.html" if (run / "report.html").is_file() else None,
        ))
    return queue, rows


def scan_depth_note(queue: BatchQueue) -> str:
    """'dataset max: of 49,984 corpus tokens scanned (about 1.0% of the corpus)', from the first
    run that has an ``exemplars.json``; '' when none has."""
    for e in queue.batch.entries:
        ex = _json(queue.folder / e.run_id / "exemplars.json", None)
        if not isinstance(ex, dict):
            continue
        tokens, total = _num(ex.get("tokens_scanned")), _num(ex.get("corpus_tokens"))
        if tokens is None:
            continue
        if ex.get("whole_corpus") is True:
            return f"dataset max: over the whole corpus ({tokens:,.0f} tokens)"
        share = f" (about {tokens / total:.1%} of the corpus)" if total else ""
        return (f"dataset max: the max of {tokens:,.0f} corpus tokens scanned{share}, so a best "
                "prompt can pass it; each report estimates the max at full depth")
    return ""


def component_names(rows: list[NeuronRow]) -> list[str]:
    names: list[str] = []
    for r in rows:
        names += [k for k in r.components if k not in names]
    return names


def rows_frame(rows: list[NeuronRow]) -> pd.DataFrame:
    """One row per neuron, score components as columns (for CSV/Parquet)."""
    names = component_names(rows)
    records = []
    for r in rows:
        d = asdict(r)
        d.pop("components")
        d["best_vs_max"] = r.best_vs_max
        d.update({f"score_{k}": r.components.get(k) for k in names})
        records.append(d)
    return pd.DataFrame.from_records(records)


def batch_records(queue: BatchQueue, rows: list[NeuronRow]) -> list[NeuronRecords]:
    """Each finished neuron's top dataset windows (its run's ``exemplars.json``) as activation
    records (``tools/records.py``). No random sample: a run keeps only its top and bottom
    windows, and the bottom ones are not a random sample."""
    model = str(queue.batch.run_config.get("model", ""))
    out = []
    for r in rows:
        path = queue.folder / r.run_id / "exemplars.json"
        if r.status != "done" or not path.is_file():
            continue
        top = json.loads(path.read_text()).get("top") or []
        if top:
            out.append(from_windows(r.neuron, top, model=model))
    return out


def explainer_records(rows: list[NeuronRow], model: str) -> list[dict[str, Any]]:
    """One record per neuron with a hypothesis, shaped like the explanations of OpenAI's
    automated-interpretability release, flattened: ``layer`` and ``neuron`` are their
    ``NeuronId.layer_index`` / ``neuron_index``, ``explanation`` the text of the top
    ``ScoredExplanation``. ``score`` is our simulation component: max(0, Pearson r) of the
    writer's 0-10 per-token predictions with the real activations on held-out windows, the
    logprob-free analogue of their simulation correlation (``score_method`` says so; their
    simulator and windows differ, so compare with care); ``aggregate`` is our combined score."""
    return [{"layer": r.layer, "neuron": r.index, "explanation": r.hypothesis,
             "score": r.components.get("simulation"), "aggregate": r.score,
             "score_method": "simulation correlation, max(0, r), held-out windows",
             "model": model}
            for r in rows if r.hypothesis]


# ------------------------------------------------------------------ HTML

def esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SORT_JS.encode()).digest()).decode()
    return (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
            "img-src data:")


def _fmt(x: float | None, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}g}"


def _score_td(x: float | None) -> str:
    """A score in [0, 1] with a fixed 3 decimals, so that a column of them lines up."""
    return _num_td(x, None if x is None else f"{x:.3f}")


def _num_td(x: float | None, text: str | None = None) -> str:
    value = "" if x is None else repr(float(x))
    return f'<td class="num" data-v="{esc(value)}">{esc(_fmt(x) if text is None else text)}</td>'


def _text_td(text: str | None, cls: str = "", code: bool = False) -> str:
    body = esc(text or "")
    body = f"<code>{body}</code>" if code and text else body
    return f'<td class="{cls}">{body}</td>' if cls else f"<td>{body}</td>"


OPTIONAL = ("picked because", "error")  # columns shown only when some row has a value


def _row(i: int, r: NeuronRow, names: list[str], optional: tuple[str, ...] = OPTIONAL) -> str:
    link = f'<a href="{esc(r.report)}">{esc(r.neuron)}</a>' if r.report else esc(r.neuron)
    ratio = r.best_vs_max
    cells = [
        f'<td data-v="{r.layer:06d}:{r.index:08d}">{link}</td>',
        f'<td class="s-{esc(r.status)}">{esc(r.status)}</td>',
        _text_td(r.hypothesis, "hyp"),
        _score_td(r.score),
        *(_score_td(r.components.get(k)) for k in names),
        _num_td(r.best_activation), _num_td(r.dataset_max),
        _num_td(ratio, "" if ratio is None else f"{ratio:.0%}"),
        _text_td(r.best_prompt, "small", code=True),
        _num_td(None if r.iterations is None else float(r.iterations), str(r.iterations or "")),
        _num_td(r.seconds, "" if r.seconds is None else f"{r.seconds:.0f} s"),
        *([_text_td(r.reason, "small")] if "picked because" in optional else []),
        *([_text_td(r.error, "small")] if "error" in optional else []),
    ]
    return f'<tr data-i="{i}">' + "".join(cells) + "</tr>"


HEAD_TITLES = {  # header tooltips
    "neuron": "layer:index; the link opens its report",
    "best act": "the highest activation the agent found",
    "dataset max": "the highest activation in the corpus scan (a sample unless it covered the "
                   "whole corpus)",
    "best/max": "best act over dataset max: above 100% the agent beat the scanned corpus",
}


def render_index(queue: BatchQueue, rows: list[NeuronRow]) -> str:
    """The index page as one HTML string (escaped, scripted only by ``SORT_JS``)."""
    b = queue.batch
    names = component_names(rows)
    optional = tuple(h for h, has in (("picked because", any(r.reason for r in rows)),
                                      ("error", any(r.error for r in rows))) if has)
    heads = [("neuron", "text"), ("status", "text"), ("hypothesis", "text"), ("score", "num"),
             *((k, "num") for k in names), ("best act", "num"), ("dataset max", "num"),
             ("best/max", "num"), ("best prompt", "text"), ("iterations", "num"),
             ("time", "num"), *((h, "text") for h in optional)]
    th = "".join(f'<th data-type="{t}" scope="col"'
                 + (f' title="{esc(HEAD_TITLES[h])}"' if h in HEAD_TITLES else "")
                 + f">{esc(h)}</th>" for h, t in heads)
    body = "\n".join(_row(i, r, names, optional) for i, r in enumerate(rows))
    counts = ", ".join(f"{v} {k}" for k, v in b.counts().items() if v)
    budget = f", budget {b.time_budget_s:.0f} s" if b.time_budget_s else ""
    subtitle = (f"model {b.run_config.get('model')} · planner {b.run_config.get('planner')} · "
                f"{len(rows)} neurons ({counts}) · status {b.status}{budget} · "
                f"updated {b.updated_at}")
    depth = scan_depth_note(queue)
    depth = f'<p class="subtitle">{esc(depth)}.</p>\n' if depth else ""
    refresh = '<meta http-equiv="refresh" content="30">\n' if b.status == "running" else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp())}">\n{refresh}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc('batch ' + b.batch_id)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{esc('Batch ' + b.batch_id)}</h1>\n<p class=\"subtitle\">{esc(subtitle)}</p>\n"
        f"{depth}<p class=\"subtitle\">Click a column header to sort; click again to reverse."
        "</p>\n"
        f'<table id="neurons">\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}\n</tbody>\n'
        f"</table>\n<script>{SORT_JS}</script>\n</body>\n</html>\n"
    )


def write_site(folder: str | Path) -> Path:
    """Write ``folder/index.html`` atomically; returns its path."""
    queue, rows = batch_rows(folder)
    path = queue.folder / "index.html"
    tmp = queue.folder / ".index.html.tmp"
    tmp.write_text(render_index(queue, rows), encoding="utf-8")
    os.replace(tmp, path)
    return path
