"""The atlas site: the table ``atlas/build.py`` wrote, as a self-contained static site in
``DIR/site/`` that works from the file system and through ``neurosleuth serve``.

- ``index.html``: what was scanned, one row per layer (neurons, mean simulation r, median
  density, how many neurons read a concept or a kind of text), the best explained neurons, and a
  search box (search by meaning needs ``neurosleuth serve``, which answers ``site/search?q=``
  with the MiniLM + FAISS index of ``atlas/search.py``; from the file system the layer pages
  filter by words);
- ``layer-L.html``: every neuron of layer L in a sortable table (explanation, r and its interval,
  the token-list r, density, max, kind) with filters (words, minimum r, maximum density, kind);
- ``n/L-I.html``: one neuron: explanation and evidence, scores, the tokens its output promotes and
  suppresses, its top and bottom windows as token heatmaps (cut around the peak), and a link to
  its deep-dive report when one exists (``deep_dives``: neuron -> report path).

Safety, as the batch site (``report/site.py``): every string from the model, the corpus or the
explainer passes through ``html.escape``; the two inline scripts only sort rows and hide rows
(they read ``data-*`` attributes and ``textContent`` and never build HTML); a
Content-Security-Policy allows those scripts by hash and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from neurosleuth.report.blocks import Heatmap
from neurosleuth.report.html import esc, heatmap
from neurosleuth.report.site import CSS as TABLE_CSS
from neurosleuth.report.site import SORT_JS

if TYPE_CHECKING:
    from neurosleuth.atlas.search import AtlasIndex

CUT = 12  # tokens shown each side of a window's peak
FILTER_JS = """(function () {
  "use strict";
  var table = document.getElementById("neurons");
  var words = document.getElementById("f-words"), minR = document.getElementById("f-r");
  var maxD = document.getElementById("f-density"), kind = document.getElementById("f-kind");
  var shown = document.getElementById("f-shown");
  function apply() {
    var w = words.value.toLowerCase().trim(), r = parseFloat(minR.value);
    var d = parseFloat(maxD.value), k = kind.value, n = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var ok = (!w || row.textContent.toLowerCase().indexOf(w) >= 0) &&
        (isNaN(r) || parseFloat(row.getAttribute("data-r")) >= r) &&
        (isNaN(d) || parseFloat(row.getAttribute("data-density")) <= d) &&
        (!k || row.getAttribute("data-kind") === k);
      row.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = n + " shown";
  }
  [words, minR, maxD, kind].forEach(function (el) { el.addEventListener("input", apply); });
  apply();
})();"""

CSS = TABLE_CSS + """
code.heat .tok { border-radius: 2px; padding: 0 1px; }
code.heat .tok.max { outline: 1px solid #1f2328; }
.window { margin: .2rem 0 .6rem; }
.filters label { margin-right: 1rem; font-size: .85rem; }
.muted { color: #57606a; font-size: .85rem; }
"""


def _csp(*scripts: str) -> str:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in scripts)
    script = f"script-src {hashes}; " if scripts else ""
    return (f"default-src 'none'; {script}style-src 'unsafe-inline'; img-src data:; "
            "form-action 'self'")


def _page(title: str, body: str, scripts: tuple[str, ...] = ()) -> str:
    js = "".join(f"<script>{s}</script>" for s in scripts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(_csp(*scripts))}">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}{js}</body></html>")


def _f(x, fmt: str = ".2f") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _v(x) -> str:  # a sortable data value
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.6g}"


def _windows(text: str, limit: int) -> str:
    out = []
    for w in json.loads(text)[:limit]:
        acts = np.asarray(w["acts"], float)
        if not len(acts):
            continue
        peak = int(np.argmax(np.abs(acts)))
        lo, hi = max(0, peak - CUT), min(len(acts), peak + CUT + 1)
        scale = float(np.max(np.abs(acts))) or 1.0
        h = Heatmap(list(w["tokens"][lo:hi]), [float(a) for a in acts[lo:hi]], scale, peak - lo)
        out.append(f'<div class="window">{heatmap(h)} '
                   f'<span class="muted">max {acts[peak]:+.3g}</span></div>')
    return "".join(out) or '<p class="muted">none</p>'


def neuron_page(row: pd.Series, model: str, deep_dive: str | None) -> str:
    layer, index = int(row["layer"]), int(row["index"])
    promotes = ", ".join(repr(t) for t in json.loads(row["promotes"]))
    suppresses = ", ".join(repr(t) for t in json.loads(row["suppresses"]))
    link = (f'<p><a href="{esc(deep_dive)}">Deep-dive report</a> (a full investigation of this '
            "neuron)</p>" if deep_dive else
            f'<p class="muted">No deep-dive report yet: <code>neurosleuth investigate -n '
            f"{layer}:{index}</code> or <code>neurosleuth batch --from-atlas</code>.</p>")
    score = (f"simulation r {_f(row['r'], '+.3f')} (95% CI {_f(row['r_lo'], '+.3f')}.."
             f"{_f(row['r_hi'], '+.3f')}) on {int(row['held_windows'])} held-out top windows and "
             f"half the random sample (top only {_f(row['r_top'], '+.3f')}, random only "
             f"{_f(row['r_random'], '+.3f')})" if row["r"] is not None and not pd.isna(row["r"])
             else "no score (nothing held out fires)")
    listed = (f"<li>token list {esc(row['list_explanation'])}: r {_f(row['list_r'], '+.3f')}</li>"
              if row.get("list_explanation") else "")
    facets = json.loads(row.get("facets") or "[]") if isinstance(row.get("facets"), str) else []
    listed += "".join(f"<li>facet {i + 1}: {esc(f['facet'])}: r alone {_f(f['r'], '+.3f')}</li>"
                      for i, f in enumerate(facets))
    body = (f'<p><a href="../layer-{layer}.html">layer {layer}</a> · '
            f'<a href="../index.html">atlas</a></p>'
            f"<h1>Neuron {layer}:{index} <span class='muted'>{esc(model)}</span></h1>"
            f"<p><strong>{esc(row['explanation'])}</strong></p>"
            f"<p class='muted'>{esc(row['details'])}</p>{link}"
            f"<h2>Scores</h2><ul><li>{esc(score)}</li>{listed}"
            f"<li>max {_f(row['max_act'], '.4g')}, min {_f(row['min_act'], '.4g')}, mean "
            f"{_f(row['mean'], '.3g')}, std {_f(row['std'], '.3g')}; density "
            f"{_f(row['density'], '.2%')} of random tokens reach a quarter of the max</li></ul>"
            f"<h2>Output (weights)</h2><p>promotes {esc(promotes)}</p>"
            f"<p>suppresses {esc(suppresses)}</p>"
            f"<h2>Top windows</h2>{_windows(row['top_windows'], 5)}"
            f"<h2>Bottom windows</h2>{_windows(row['bottom_windows'], 3)}"
            f"<h2>Random windows</h2>{_windows(row['random_windows'], 2)}")
    return _page(f"neuron {layer}:{index}", body)


def _neuron_row(row: pd.Series, prefix: str = "") -> str:
    layer, index = int(row["layer"]), int(row["index"])
    kind = str(row["kind"])
    return (f'<tr data-i="{index}" data-r="{_v(row["r"])}" data-density="{_v(row["density"])}" '
            f'data-kind="{esc(kind)}"><td data-v="{layer * 100000 + index}">'
            f'<a href="{prefix}n/{layer}-{index}.html">{layer}:{index}</a></td>'
            f"<td>{esc(row['explanation'])}</td>"
            f'<td class="num" data-v="{_v(row["r"])}">{_f(row["r"], "+.3f")}</td>'
            f'<td class="num" data-v="{_v(row["r_lo"])}">{_f(row["r_lo"], "+.2f")}..'
            f'{_f(row["r_hi"], "+.2f")}</td>'
            f'<td class="num" data-v="{_v(row["list_r"])}">{_f(row["list_r"], "+.3f")}</td>'
            f'<td class="num" data-v="{_v(row["density"])}">{_f(row["density"], ".1%")}</td>'
            f'<td class="num" data-v="{_v(row["max_act"])}">{_f(row["max_act"], ".3g")}</td>'
            f"<td>{esc(kind)}</td></tr>")


HEAD = ("<thead><tr><th>neuron</th><th>explanation</th><th data-type='num'>r</th>"
        "<th data-type='num'>95% CI</th><th data-type='num'>token-list r</th>"
        "<th data-type='num'>density</th><th data-type='num'>max</th><th>kind</th></tr></thead>")


def layer_page(frame: pd.DataFrame, layer: int, model: str) -> str:
    rows = "".join(_neuron_row(r) for _, r in frame.iterrows())
    kinds = "".join(f'<option value="{esc(k)}">{esc(k)}</option>'
                    for k in sorted(frame["kind"].unique()))
    filters = ('<p class="filters"><label>words <input id="f-words" type="search"></label>'
               '<label>r &ge; <input id="f-r" type="number" step="0.05" size="5"></label>'
               '<label>density &le; <input id="f-density" type="number" step="0.01" size="5">'
               '</label><label>kind <select id="f-kind"><option value="">any</option>'
               f'{kinds}</select></label><span id="f-shown" class="muted"></span></p>')
    body = (f'<p><a href="index.html">atlas</a></p><h1>Layer {layer} of {esc(model)}</h1>'
            f"{filters}<table id='neurons'>{HEAD}<tbody>{rows}</tbody></table>")
    return _page(f"layer {layer}", body, (SORT_JS, FILTER_JS))


def index_page(frame: pd.DataFrame, meta: dict) -> str:
    model = str(meta.get("model", ""))
    rows = []
    for layer, g in frame.groupby("layer"):
        r = pd.to_numeric(g["r"], errors="coerce")
        rows.append(f'<tr data-i="{layer}"><td data-v="{layer}"><a href="layer-{layer}.html">'
                    f"{layer}</a></td><td class='num'>{len(g)}</td>"
                    f"<td class='num' data-v='{_v(r.mean())}'>{_f(r.mean(), '+.3f')}</td>"
                    f"<td class='num'>{_f(g['density'].median(), '.2%')}</td>"
                    f"<td class='num'>{int(g['concept'].notna().sum())}</td>"
                    f"<td class='num'>{int((g['kind'] == 'context').sum())}</td>"
                    f"<td class='num'>{int((g['kind'] == 'none').sum())}</td></tr>")
    best = frame.assign(_r=pd.to_numeric(frame["r"], errors="coerce")).nlargest(50, "_r")
    cfg = meta.get("config", {})
    timings = meta.get("timings", {})
    body = (f"<h1>Atlas of {esc(model)}</h1>"
            f"<p class='subtitle'>{len(frame):,} neurons in {frame['layer'].nunique()} layers, "
            f"from one scan of {int(timings.get('scan_tokens', 0)):,} corpus tokens "
            f"({esc(cfg.get('corpus') or 'the default corpus')}, windows of "
            f"{esc(cfg.get('window'))} tokens). Explanations and scores come from the scan's "
            "records alone: r is the simulation correlation on held-out windows.</p>"
            '<form action="search" method="get"><label>Search by meaning '
            '<input name="q" type="search" size="40" placeholder="colour words"></label> '
            '<button type="submit">search</button> <span class="muted">(through '
            "<code>neurosleuth serve</code>; from the file system, filter by words on a layer "
            "page)</span></form>"
            "<h2>Layers</h2><table id='neurons'><thead><tr><th>layer</th>"
            "<th data-type='num'>neurons</th><th data-type='num'>mean r</th>"
            "<th data-type='num'>median density</th><th data-type='num'>concepts</th>"
            "<th data-type='num'>kinds of text</th><th data-type='num'>dead</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            "<h2>Best explained</h2><table>" + HEAD +
            f"<tbody>{''.join(_neuron_row(r) for _, r in best.iterrows())}</tbody></table>"
            + _corpus_table(meta.get("corpus") or []))
    return _page(f"atlas of {model}", body, (SORT_JS,))


def _corpus_table(sources: list[dict]) -> str:
    """The scanned corpus by source (``tools/corpus.composition``), as the atlas recorded it."""
    if not sources:
        return ""
    rows = "".join(f"<tr><td>{esc(s['source'])}</td><td>{esc(s['kind'])}</td>"
                   f"<td>{esc(s['language'])}</td><td>{esc(s['package'])}</td>"
                   f"<td>{esc(s['licence'])}</td><td class='num'>{s['documents']:,}</td>"
                   f"<td class='num'>{s['share']:.1%}</td></tr>" for s in sources)
    return ("<h2>Corpus</h2><table><thead><tr><th>source</th><th>kind</th><th>language</th>"
            "<th>package</th><th>licence</th><th>documents</th><th>share of tokens</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>")


def search_page(query: str, hits: list, model: str) -> str:
    rows = "".join(f'<tr><td><a href="n/{esc(h.neuron.replace(":", "-"))}.html">{esc(h.neuron)}'
                   f"</a></td><td class='num'>{h.similarity:.3f}</td><td>{esc(h.explanation)}"
                   f"</td><td class='num'>{_f(h.r, '+.3f')}</td></tr>" for h in hits)
    body = (f'<p><a href="index.html">atlas</a></p><h1>Search {esc(model)}</h1>'
            '<form action="search" method="get"><input name="q" type="search" size="40" '
            f'value="{esc(query)}"> <button type="submit">search</button></form>'
            "<table><thead><tr><th>neuron</th><th>similarity</th><th>explanation</th>"
            f"<th>r</th></tr></thead><tbody>{rows}</tbody></table>")
    return _page(f"search: {query}", body)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_site(folder: Path, deep_dives: dict[str, str] | None = None) -> Path:
    """Write ``folder/site`` from ``folder/atlas.parquet``; returns its ``index.html``.
    ``deep_dives``: neuron ("L:I") -> path of its report.html, linked from its page."""
    frame = pd.read_parquet(folder / "atlas.parquet")
    meta = json.loads((folder / "atlas.json").read_text())
    site = folder / "site"
    (site / "n").mkdir(parents=True, exist_ok=True)
    model = str(meta.get("model", ""))
    deep_dives = deep_dives or {}
    for _, row in frame.iterrows():
        report = deep_dives.get(str(row["neuron"]))
        rel = os.path.relpath(report, site / "n") if report else None
        _write(site / "n" / f"{int(row['layer'])}-{int(row['index'])}.html",
               neuron_page(row, model, rel))
    for layer, g in frame.groupby("layer"):
        _write(site / f"layer-{layer}.html", layer_page(g, int(layer), model))
    _write(site / "index.html", index_page(frame, meta))
    return site / "index.html"


def deep_dives_in(runs_dir: Path, model: str) -> dict[str, str]:
    """Neuron -> report.html of the finished investigations of ``model`` under ``runs_dir``
    (run folders and batch folders one level down)."""
    out: dict[str, str] = {}
    if not runs_dir.is_dir():
        return out
    for config in list(runs_dir.glob("*/config.json")) + list(runs_dir.glob("*/*/config.json")):
        try:
            cfg = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        report = config.parent / "report.html"
        if cfg.get("model") == model and report.is_file() and cfg.get("neuron"):
            out[str(cfg["neuron"])] = str(report)
    return out


_INDEXES: dict[Path, AtlasIndex] = {}
_LOCK = threading.Lock()


def search_response(folder: Path, query: str) -> str:
    """The results page of ``query`` in the atlas at ``folder`` (for ``neurosleuth serve``)."""
    from neurosleuth.atlas.search import AtlasIndex, bulk_embedder

    with _LOCK:
        if folder not in _INDEXES:
            _INDEXES[folder] = AtlasIndex(folder, bulk_embedder())
        index = _INDEXES[folder]
        hits = index.search(query, 20)
    model = json.loads((folder / "atlas.json").read_text()).get("model", "")
    return search_page(query, hits, str(model))
