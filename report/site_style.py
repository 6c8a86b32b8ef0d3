"""The sortable table's script and style, shared by the batch index (``report/site.py``) and the
atlas pages (``report/atlas_pages.py``), in a module of their own so that the atlas pages (and
``neurosleuth serve``) import neither the batch queue nor the model tools.

``SORT_JS`` sorts the rows of the table ``#neurons`` by a clicked heading (numbers by their
``data-v``, text by its lower case, missing values last); it reads attributes and text only and
never builds HTML, and pages allow it by its hash in their Content-Security-Policy.
"""

from __future__ import annotations

SORT_JS = """(function () {
  "use strict";
  var table = document.getElementById("neurons");
  var heads = table.tHead.rows[0].cells;
  function key(cell, numeric) {
    var v = cell.getAttribute("data-v");
    if (numeric) {
      var x = parseFloat(v);
      return isNaN(x) ? null : x;
    }
    return (v === null ? cell.textContent : v).toLowerCase();
  }
  function sortBy(col) {
    var th = heads[col];
    var numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
      if (x === null && y === null) { return a.getAttribute("data-i") - b.getAttribute("data-i"); }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      if (x < y) { return -dir; }
      if (x > y) { return dir; }
      return a.getAttribute("data-i") - b.getAttribute("data-i");
    });
    rows.forEach(function (r) { body.appendChild(r); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(col); });
    th.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(col); }
    });
  });
})();"""

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem 1rem;
       color: #1f2328; }
.subtitle { color: #57606a; }
table { border-collapse: collapse; font-size: .84rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .35rem; vertical-align: top; text-align: left; }
th { background: #f6f8fa; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.hyp { min-width: 14rem; max-width: 28rem; }
td.small { font-size: .8rem; color: #57606a; min-width: 9rem; max-width: 18rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .8rem;
       white-space: pre-wrap; word-break: break-word; }
.s-done { color: #1a7f37; } .s-failed { color: #cf222e; } .s-running { color: #9a6700; }
"""
