"""``neurosleuth serve --live``: the "try your own text" box of a run report and the model
behind it.

``--live`` loads the model once and adds a "try your own text" box to every run report served:
the server rewrites the report's Content-Security-Policy to also allow a same-origin script
(``/_neurosleuth/live.js``) and same-origin requests, and appends the box. The script POSTs
``{"run", "neuron", "text"}`` as JSON to ``/api/measure``, which runs
``tools.measure.measure`` on the loaded model and answers the per-token activations; the script
draws the heatmap with ``textContent`` and inline colours only (never HTML from strings).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

from neurosleuth.report.html import esc

MAX_TEXT = 2000
LIVE_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'self'; "
            "connect-src 'self'")

LIVE_JS = """(function () {
  "use strict";
  var box = document.getElementById("ns-live");
  var text = document.getElementById("ns-live-text");
  var out = document.getElementById("ns-live-out");
  var status = document.getElementById("ns-live-status");
  function colour(a, scale) {
    var x = scale > 0 ? Math.max(-1, Math.min(1, a / scale)) : 0;
    return (x >= 0 ? "rgba(22,163,74," : "rgba(220,38,38,") + Math.abs(x).toFixed(2) + ")";
  }
  function show(data) {
    while (out.firstChild) { out.removeChild(out.firstChild); }
    var code = document.createElement("code");
    code.className = "heat";
    data.tokens.forEach(function (tok, i) {
      var span = document.createElement("span");
      span.className = i === data.argmax ? "tok max" : "tok";
      span.textContent = tok;
      span.style.background = colour(data.acts[i], data.scale);
      span.title = (data.acts[i] >= 0 ? "+" : "") + data.acts[i].toPrecision(4);
      code.appendChild(span);
    });
    out.appendChild(code);
    status.textContent = "max " + data.max.toPrecision(4) + " at token " + (data.argmax + 1) +
      (data.dataset_max ? " (dataset max " + data.dataset_max.toPrecision(4) + ")" : "");
  }
  document.getElementById("ns-live-go").addEventListener("click", function () {
    status.textContent = "measuring ...";
    fetch("/api/measure", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({run: box.getAttribute("data-run"),
                            neuron: box.getAttribute("data-neuron"), text: text.value})
    }).then(function (r) { return r.json(); }).then(function (data) {
      if (data.error) { status.textContent = "error: " + data.error; } else { show(data); }
    }).catch(function (err) { status.textContent = "error: " + err; });
  });
})();
"""

LIVE_BOX = """<section id="ns-live" data-run="{run}" data-neuron="{neuron}">
<h2>Try your own text</h2>
<p>Neuron {neuron} of {model}, measured live on the loaded model.</p>
<textarea id="ns-live-text" rows="3" cols="80" maxlength="{max_text}"></textarea><br>
<button id="ns-live-go" type="button">Measure</button> <span id="ns-live-status"></span>
<div id="ns-live-out"></div>
</section>
<script src="/_neurosleuth/live.js"></script>
"""


class LiveModel:
    """The model behind ``/api/measure``: loaded once, used by one request at a time."""

    def __init__(self, lm, spec: str):
        self.lm, self.spec = lm, spec
        self.lock = threading.Lock()

    def measure(self, neuron_spec: str, text: str) -> dict[str, Any]:
        from neurosleuth.tools.measure import measure
        from neurosleuth.tools.neurons import NeuronId

        if not isinstance(text, str) or not text.strip():
            raise ValueError("type some text first")
        if len(text) > MAX_TEXT:
            raise ValueError(f"text longer than {MAX_TEXT} characters")
        neuron = NeuronId.parse(str(neuron_spec)).validate(self.lm.n_layers, self.lm.d_mlp)
        with self.lock:
            res = measure(self.lm, [text], [neuron])
        acts = [float(a) for a in res.per_token(0)]  # (T,)
        if not acts:
            raise ValueError("the text has no tokens")
        argmax = max(range(len(acts)), key=acts.__getitem__)
        return {"neuron": str(neuron), "tokens": list(res.tokens[0]), "acts": acts,
                "argmax": argmax, "max": acts[argmax]}


def _read_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} when it is missing, damaged or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_config(run_dir: Path) -> dict[str, Any]:
    return _read_object(run_dir / "config.json")


def _dataset_max(run_dir: Path) -> float | None:
    try:
        value = _read_object(run_dir / "summary.json").get("dataset_max")
        return float(value) if value is not None else None
    except (ValueError, TypeError):
        return None


def measure_for_run(root: Path, live: LiveModel, data: dict[str, Any]) -> dict[str, Any]:
    """Measure ``data["text"]`` on the neuron of run ``data["run"]`` (a folder under ``root``,
    resolved)."""
    run_dir = (root / str(data.get("run", ""))).resolve()
    if root != run_dir and root not in run_dir.parents:
        raise ValueError("run outside the served folder")
    cfg = _run_config(run_dir)
    if cfg.get("model") and cfg["model"] != live.spec:
        raise ValueError(f"this run used model {cfg['model']}; the server loaded {live.spec}")
    out = live.measure(str(data.get("neuron") or cfg.get("neuron") or ""), data.get("text", ""))
    dmax = _dataset_max(run_dir)
    out["dataset_max"] = dmax
    out["scale"] = max([abs(a) for a in out["acts"]] + [abs(dmax or 0.0)])
    return out


def live_report(report: Path, root: Path, live: LiveModel) -> str:
    """A run's report page with the live box appended and its CSP widened to allow it."""
    page = report.read_text(encoding="utf-8")
    run_dir = report.parent
    cfg = _run_config(run_dir)
    box = LIVE_BOX.format(run=esc(run_dir.relative_to(root).as_posix()),
                          neuron=esc(cfg.get("neuron", "")), model=esc(live.spec),
                          max_text=MAX_TEXT)
    page = re.sub(r'(<meta http-equiv="Content-Security-Policy" content=")[^"]*(")',
                  lambda m: m.group(1) + LIVE_CSP + m.group(2), page, count=1)
    if "</body>" in page:
        return page.replace("</body>", box + "</body>", 1)
    return page + box


def first_run_model(root: Path) -> str | None:
    """The model named by the first run config found under ``root`` (for ``--live``)."""
    for cfg in sorted(Path(root).glob("**/config.json")):
        model = _run_config(cfg.parent).get("model")
        if model:
            return model
    return None
