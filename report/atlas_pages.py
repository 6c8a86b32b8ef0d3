"""The atlas's pages, one function each, called by the static export (``report/atlas_site.py``)
and by ``neurosleuth serve`` (``report/atlas_serve.py``) alike; both lay pages out the same way
under ``DIR/site/``:

- ``index.html``: what was scanned, one row per layer (neurons, mean simulation r, median density,
  how many neurons read a concept or a kind of text, dead ones), the best explained neurons, a
  search box (search by meaning: ``search?q=``, answered by the server) and, served, a form that
  lists every neuron by filters (``neurons.html``);
- ``layer-L.html``: the neurons of layer L in a table (explanation, r and its interval, the
  token-list r, density, max, kind). Exported: every row, sorted and filtered in the browser by
  two small scripts. Served: one page of rows, filtered, sorted and paged on the server from URL
  parameters (``atlas/table.Query``), with no script;
- ``n/L-I.html``: one neuron: explanation and evidence, scores, the tokens its output promotes and
  suppresses, its top, bottom and random windows as token heatmaps (cut around the peak), and a
  link to its deep-dive report when one exists.

Safety: every string from the model, the corpus, the explainer or the request passes through
``html.escape``; the two inline scripts only sort and hide rows (they read ``data-*`` attributes
and ``textContent`` and never build HTML); a Content-Security-Policy allows those scripts by hash
and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import numpy as np

from neurosleuth.report.blocks import Heatmap
from neurosleuth.report.html import esc, heatmap
from neurosleuth.report.site_style import CSS as TABLE_CSS
from neurosleuth.report.site_style import SORT_JS

if TYPE_CHECKING:
    from neurosleuth.atlas.search import Hit
    from neurosleuth.atlas.table import Listing, Query

Row = Mapping[str, Any]
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
.filters input[type=number] { width: 5rem; }
.muted { color: #57606a; font-size: .85rem; }
th a { color: inherit; }
"""
COLUMNS = (("neuron", "neuron"), ("explanation", None), ("r", "r"), ("95% CI", "r_lo"),
           ("token-list r", "list_r"), ("density", "density"), ("max", "max_act"),
           ("kind", "kind"))  # (heading, sort key served)


def _csp(*scripts: str) -> str:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in scripts)
    script = f"script-src {hashes}; " if scripts else ""
    return (f"default-src 'none'; {script}style-src 'unsafe-inline'; img-src data:; "
            "form-action 'self'")


def page(title: str, body: str, scripts: tuple[str, ...] = ()) -> str:
    """A whole HTML page: CSP allowing ``scripts`` by hash, the atlas CSS, ``body``."""
    js = "".join(f"<script>{s}</script>" for s in scripts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(_csp(*scripts))}">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}{js}</body></html>")


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _f(x: Any, fmt: str = ".2f") -> str:
    return "" if _missing(x) else format(x, fmt)


def _v(x: Any) -> str:  # a sortable data value
    return "" if _missing(x) else f"{float(x):.6g}"


def _windows(text: str | None, limit: int) -> str:
    """The first ``limit`` windows of a JSON column as heatmaps cut ``CUT`` tokens around the
    peak, scaled by each window's largest |activation|."""
    out = []
    for w in json.loads(text or "[]")[:limit]:
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


def _scores(row: Row) -> str:
    score = (f"simulation r {_f(row['r'], '+.3f')} (95% CI {_f(row['r_lo'], '+.3f')}.."
             f"{_f(row['r_hi'], '+.3f')}) on {int(row['held_windows'])} held-out top windows and "
             f"half the random sample (top only {_f(row['r_top'], '+.3f')}, random only "
             f"{_f(row['r_random'], '+.3f')})" if not _missing(row["r"])
             else "no score (nothing held out fires)")
    listed = (f"<li>token list {esc(row['list_explanation'])}: r {_f(row['list_r'], '+.3f')}</li>"
              if row.get("list_explanation") else "")
    facets = json.loads(row["facets"]) if isinstance(row.get("facets"), str) else []
    listed += "".join(f"<li>facet {i + 1}: {esc(f['facet'])}: r alone {_f(f['r'], '+.3f')}</li>"
                      for i, f in enumerate(facets))
    return (f"<h2>Scores</h2><ul><li>{esc(score)}</li>{listed}"
            f"<li>max {_f(row['max_act'], '.4g')}, min {_f(row['min_act'], '.4g')}, mean "
            f"{_f(row['mean'], '.3g')}, std {_f(row['std'], '.3g')}; density "
            f"{_f(row['density'], '.2%')} of random tokens reach a quarter of the max</li></ul>")


def neuron_page(row: Row, model: str, deep_dive: str | None) -> str:
    """``n/L-I.html`` from one whole atlas row; ``deep_dive``: a link to its report, if any."""
    layer, index = int(row["layer"]), int(row["index"])
    promotes = ", ".join(repr(t) for t in json.loads(row["promotes"]))
    suppresses = ", ".join(repr(t) for t in json.loads(row["suppresses"]))
    link = (f'<p><a href="{esc(deep_dive)}">Deep-dive report</a> (a full investigation of this '
            "neuron)</p>" if deep_dive else
            f'<p class="muted">No deep-dive report yet: <code>neurosleuth investigate -n '
            f"{layer}:{index}</code> or <code>neurosleuth batch --from-atlas</code>.</p>")
    body = (f'<p><a href="../layer-{layer}.html">layer {layer}</a> · '
            f'<a href="../index.html">atlas</a></p>'
            f"<h1>Neuron {layer}:{index} <span class='muted'>{esc(model)}</span></h1>"
            f"<p><strong>{esc(row['explanation'])}</strong></p>"
            f"<p class='muted'>{esc(row['details'])}</p>{link}{_scores(row)}"
            f"<h2>Output (weights)</h2><p>promotes {esc(promotes)}</p>"
            f"<p>suppresses {esc(suppresses)}</p>"
            f"<h2>Top windows</h2>{_windows(row['top_windows'], 5)}"
            f"<h2>Bottom windows</h2>{_windows(row['bottom_windows'], 3)}"
            f"<h2>Random windows</h2>{_windows(row['random_windows'], 2)}")
    return page(f"neuron {layer}:{index}", body)


def neuron_row(row: Row) -> str:
    """One neuron as a table row (its ``data-*`` values feed the exported page's scripts)."""
    layer, index = int(row["layer"]), int(row["index"])
    kind = str(row["kind"])
    return (f'<tr data-i="{index}" data-r="{_v(row["r"])}" data-density="{_v(row["density"])}" '
            f'data-kind="{esc(kind)}"><td data-v="{layer * 100000 + index}">'
            f'<a href="n/{layer}-{index}.html">{layer}:{index}</a></td>'
            f"<td>{esc(row['explanation'])}</td>"
            f'<td class="num" data-v="{_v(row["r"])}">{_f(row["r"], "+.3f")}</td>'
            f'<td class="num" data-v="{_v(row["r_lo"])}">{_f(row["r_lo"], "+.2f")}..'
            f'{_f(row["r_hi"], "+.2f")}</td>'
            f'<td class="num" data-v="{_v(row["list_r"])}">{_f(row["list_r"], "+.3f")}</td>'
            f'<td class="num" data-v="{_v(row["density"])}">{_f(row["density"], ".1%")}</td>'
            f'<td class="num" data-v="{_v(row["max_act"])}">{_f(row["max_act"], ".3g")}</td>'
            f"<td>{esc(kind)}</td></tr>")


def _href(q: Query, fixed: bool, **change: Any) -> str:
    """A link to listing ``q`` with ``change`` (``fixed``: the layer is in the page's name)."""
    params = q.params(**change)
    if fixed:
        params.pop("layer", None)
    return "?" + urlencode(params)


def _head(query: Query | None = None, fixed: bool = False) -> str:
    """The neuron table's head; served (``query``), each heading links its server-side sort."""
    cells = []
    for title, key in COLUMNS:
        num = " data-type='num'" if key not in (None, "neuron", "kind") else ""
        if query is None or key is None:
            cells.append(f"<th{num}>{esc(title)}</th>")
            continue
        desc = query.sort == key and not query.desc  # a second click reverses
        mark = (" ▼" if query.desc else " ▲") if query.sort == key else ""
        href = _href(query, fixed, sort=key, desc=desc, page=1)
        cells.append(f'<th{num}><a href="{esc(href)}">{esc(title)}</a>{mark}</th>')
    return f"<thead><tr>{''.join(cells)}</tr></thead>"


HEAD = _head()


def layer_page(rows: Sequence[Row], layer: int, model: str) -> str:
    """The exported ``layer-L.html``: every row, sorted and filtered in the browser."""
    kinds = "".join(f'<option value="{esc(k)}">{esc(k)}</option>'
                    for k in sorted({str(r["kind"]) for r in rows}))
    filters = ('<p class="filters"><label>words <input id="f-words" type="search"></label>'
               '<label>r &ge; <input id="f-r" type="number" step="0.05" size="5"></label>'
               '<label>density &le; <input id="f-density" type="number" step="0.01" size="5">'
               '</label><label>kind <select id="f-kind"><option value="">any</option>'
               f'{kinds}</select></label><span id="f-shown" class="muted"></span></p>')
    body = (f'<p><a href="index.html">atlas</a></p><h1>Layer {layer} of {esc(model)}</h1>'
            f"{filters}<table id='neurons'>{HEAD}<tbody>"
            f"{''.join(neuron_row(r) for r in rows)}</tbody></table>")
    return page(f"layer {layer}", body, (SORT_JS, FILTER_JS))


def _options(values: Sequence[tuple[str, str]], chosen: str) -> str:
    return "".join(f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(t)}'
                   "</option>" for v, t in values)


def _filter_form(q: Query, kinds: Sequence[str], layers: Sequence[int] | None) -> str:
    """The served listing's filters as a GET form (``layers``: a layer choice, on
    ``neurons.html``)."""
    def number(name: str, label: str, value: float | None, step: str) -> str:
        return (f'<label>{label} <input name="{name}" type="number" step="{step}" size="5" '
                f'value="{esc(_v(value))}"></label>')

    layer = ("" if layers is None else "<label>layer <select name='layer'>" + _options(
        [("", "any")] + [(str(x), str(x)) for x in layers],
        "" if q.layer is None else str(q.layer)) + "</select></label>")
    sorts = [(key, title) for title, key in COLUMNS if key]
    return ('<form class="filters" method="get">'
            f'<label>words <input name="q" type="search" value="{esc(q.text)}"></label>{layer}'
            "<label>kind <select name='kind'>"
            f"{_options([('', 'any')] + [(k, k) for k in kinds], q.kind)}</select></label>"
            f"{number('r_min', 'r &ge;', q.r_min, '0.05')}"
            f"{number('r_max', 'r &le;', q.r_max, '0.05')}"
            f"{number('density_min', 'density &ge;', q.density_min, '0.01')}"
            f"{number('density_max', 'density &le;', q.density_max, '0.01')}"
            "<label>token lists <select name='bare'>"
            f"{_options([('any', 'any'), ('only', 'only'), ('none', 'none')], q.bare)}"
            "</select></label>"
            f"<label>sort <select name='sort'>{_options(sorts, q.sort)}</select></label>"
            f"<label><input name='desc' type='checkbox' value='1'{' checked' * q.desc}> "
            "descending</label><label>per page <select name='per_page'>"
            f"{_options([(str(n), str(n)) for n in (25, 50, 100, 200)], str(q.per_page))}"
            "</select></label><button type='submit'>show</button></form>")


def _pager(listing: Listing, fixed: bool) -> str:
    q, pages = listing.query, listing.pages
    links = [(t, p) for t, p in (("first", 1), ("previous", q.page - 1), ("next", q.page + 1),
                                 ("last", pages)) if 1 <= p <= pages and p != q.page]
    nav = " · ".join(f'<a href="{esc(_href(q, fixed, page=p))}">{t}</a>'
                     for t, p in links)
    return (f"<p class='muted'>{listing.total:,} neurons; page {q.page:,} of {pages:,}"
            f"{' · ' + nav if nav else ''}</p>")


def listing_page(listing: Listing, kinds: Sequence[str], model: str,
                 layers: Sequence[int] | None = None) -> str:
    """A served listing: ``layer-L.html`` (``listing.query.layer`` fixed by the path) or
    ``neurons.html`` (``layers``: the layer choice), one page of rows, sorted and filtered on the
    server, with no script."""
    q, fixed = listing.query, layers is None
    title = "Neurons" if not fixed else f"Layer {q.layer}"
    body = (f'<p><a href="index.html">atlas</a></p><h1>{title} of {esc(model)}</h1>'
            f"{_filter_form(q, kinds, layers)}{_pager(listing, fixed)}<table id='neurons'>"
            f"{_head(q, fixed)}<tbody>{''.join(neuron_row(r) for r in listing.rows)}</tbody>"
            f"</table>{_pager(listing, fixed) if listing.rows else ''}")
    return page(title.lower() if not fixed else f"layer {q.layer}", body)


def index_page(meta: Mapping[str, Any], layers: Sequence[Row], best: Sequence[Row],
               served: bool) -> str:
    """``index.html``: ``layers`` (``atlas/table.layer_summary``), ``best`` neuron rows; served,
    a form to list neurons by filters."""
    model = str(meta.get("model", ""))
    rows = "".join(
        f'<tr data-i="{s["layer"]}"><td data-v="{s["layer"]}"><a href="layer-{s["layer"]}.html">'
        f"{s['layer']}</a></td><td class='num'>{s['neurons']}</td>"
        f"<td class='num' data-v='{_v(s['mean_r'])}'>{_f(s['mean_r'], '+.3f')}</td>"
        f"<td class='num'>{_f(s['median_density'], '.2%')}</td>"
        f"<td class='num'>{s['concepts']}</td><td class='num'>{s['contexts']}</td>"
        f"<td class='num'>{s['dead']}</td></tr>" for s in layers)
    cfg, timings = meta.get("config", {}), meta.get("timings", {})
    listing = ('<form action="neurons.html" method="get"><label>Every neuron, by words '
               '<input name="q" type="search" size="30"></label> <label>r &ge; <input '
               'name="r_min" type="number" step="0.05" size="5"></label> <button type="submit">'
               "list</button> <span class='muted'>(filters, sorts and pages on "
               "<code>neurons.html</code>)</span></form>" if served else "")
    body = (f"<h1>Atlas of {esc(model)}</h1>"
            f"<p class='subtitle'>{sum(s['neurons'] for s in layers):,} neurons in {len(layers)} "
            f"layers, from one scan of {int(timings.get('scan_tokens', 0)):,} corpus tokens "
            f"({esc(cfg.get('corpus') or 'the default corpus')}, windows of "
            f"{esc(cfg.get('window'))} tokens). Explanations and scores come from the scan's "
            "records alone: r is the simulation correlation on held-out windows.</p>"
            '<form action="search" method="get"><label>Search by meaning '
            '<input name="q" type="search" size="40" placeholder="colour words"></label> '
            '<button type="submit">search</button> <span class="muted">(through '
            "<code>neurosleuth serve</code>; from the file system, filter by words on a layer "
            f"page)</span></form>{listing}"
            "<h2>Layers</h2><table id='neurons'><thead><tr><th>layer</th>"
            "<th data-type='num'>neurons</th><th data-type='num'>mean r</th>"
            "<th data-type='num'>median density</th><th data-type='num'>concepts</th>"
            "<th data-type='num'>kinds of text</th><th data-type='num'>dead</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            "<h2>Best explained</h2><table>" + HEAD +
            f"<tbody>{''.join(neuron_row(r) for r in best)}</tbody></table>"
            + _corpus_table(meta.get("corpus") or []))
    return page(f"atlas of {model}", body, (SORT_JS,))


def _corpus_table(sources: Sequence[Mapping[str, Any]]) -> str:
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


def search_page(query: str, hits: Sequence[Hit], model: str) -> str:
    """The results of a search by meaning, best first."""
    rows = "".join(f'<tr><td><a href="n/{esc(h.neuron.replace(":", "-"))}.html">{esc(h.neuron)}'
                   f"</a></td><td class='num'>{h.similarity:.3f}</td><td>{esc(h.explanation)}"
                   f"</td><td class='num'>{_f(h.r, '+.3f')}</td></tr>" for h in hits)
    body = (f'<p><a href="index.html">atlas</a></p><h1>Search {esc(model)}</h1>'
            '<form action="search" method="get"><input name="q" type="search" size="40" '
            f'value="{esc(query)}"> <button type="submit">search</button></form>'
            "<table><thead><tr><th>neuron</th><th>similarity</th><th>explanation</th>"
            f"<th>r</th></tr></thead><tbody>{rows}</tbody></table>")
    return page(f"search: {query}", body)
