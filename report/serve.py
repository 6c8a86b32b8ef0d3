"""``neurosleuth serve``: a small local web server for run and batch folders (stdlib
``http.server``, bound to 127.0.0.1 only).

It serves the folder's files as they are (batch ``index.html`` pages, run ``report.html``
pages) and, at ``/`` when the folder has no ``index.html``, a page listing its batches and runs.

``--live`` loads the model once and adds a "try your own text" box to every run report served:
the server rewrites the report's Content-Security-Policy to also allow a same-origin script
(``/_neurosleuth/live.js``) and same-origin requests, and appends the box. The script POSTs
``{"run", "neuron", "text"}`` as JSON to ``/api/measure``, which runs
``tools.measure.measure`` on the loaded model and answers the per-token activations; the script
draws the heatmap with ``textContent`` and inline colours only (never HTML from strings).

Requests to ``/api/measure`` must name this server in ``Host`` (and ``Origin``, when sent) and be
``application/json`` (so a page on another site cannot post to it without a CORS preflight, which
is never granted). A report whose run used another model than the one loaded is refused.

An atlas site under the folder (``report/atlas_site.py``) gets search by meaning:
``.../site/search?q=`` is answered by ``atlas_search`` (given by the command line, which loads the
embedder on the first search), as a page built on the server with every string escaped.
"""

from __future__ import annotations

import functools
import html
import json
import re
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

HOST = "127.0.0.1"
MAX_TEXT = 2000
MAX_BODY = 64 * 1024
MAX_QUERY = 200  # characters of an atlas search
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


def esc(x: object) -> str:
    return html.escape(str(x), quote=True)


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


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, port: int, live: LiveModel | None, quiet: bool,
                 atlas_search: Callable[[Path, str], str] | None = None):
        self.root, self.live, self.quiet = Path(root).resolve(), live, quiet
        self.atlas_search = atlas_search  # (atlas folder, query) -> results page
        handler = functools.partial(SiteHandler, directory=str(self.root))
        super().__init__((HOST, port), handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


class SiteHandler(SimpleHTTPRequestHandler):
    server: SiteServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if not self.server.quiet:
            super().log_message(format, *args)

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        path = unquote(urlsplit(self.path).path)
        if path == "/_neurosleuth/live.js" and self.server.live:
            return self._send(200, LIVE_JS.encode(), "text/javascript; charset=utf-8")
        if path.endswith("/site/search") and self.server.atlas_search is not None:
            folder = Path(self.translate_path(path)).parent.parent
            if (folder / "atlas.parquet").is_file() and folder.is_relative_to(self.server.root):
                query = parse_qs(urlsplit(self.path).query).get("q", [""])[0][:MAX_QUERY]
                page = self.server.atlas_search(folder, query)
                return self._send(200, page.encode(), "text/html; charset=utf-8")
        if path == "/" and not (self.server.root / "index.html").is_file():
            return self._send(200, listing(self.server.root).encode(), "text/html; charset=utf-8")
        if self.server.live and path.endswith("/report.html"):
            target = Path(self.translate_path(self.path))
            if target.is_file():
                page = live_report(target, self.server.root, self.server.live)
                return self._send(200, page.encode(), "text/html; charset=utf-8")
        return super().do_GET()

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/api/measure":
            return self._json(404, {"error": "not found"})
        if not self.server.live:
            return self._json(404, {"error": "start the server with --live to measure text"})
        problem = self._request_problem()
        if problem:
            return self._json(HTTPStatus.FORBIDDEN, {"error": problem})
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= MAX_BODY:
                raise ValueError(f"request body must be 1..{MAX_BODY} bytes")
            data = json.loads(self.rfile.read(length))
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            self._json(200, measure_for_run(self.server, data))
        except (ValueError, KeyError, TypeError) as err:
            self._json(400, {"error": str(err).splitlines()[0] if str(err) else "bad request"})

    def _request_problem(self) -> str | None:
        port = self.server.server_address[1]
        hosts = {f"{HOST}:{port}", f"localhost:{port}"}
        if self.headers.get("Host") not in hosts:
            return "unexpected Host header"
        origin = self.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in hosts}:
            return "cross-origin request refused"
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return "Content-Type must be application/json"
        return None


def _run_config(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def _dataset_max(run_dir: Path) -> float | None:
    try:
        value = json.loads((run_dir / "summary.json").read_text()).get("dataset_max")
        return float(value) if value is not None else None
    except (OSError, ValueError, TypeError):
        return None


def measure_for_run(server: SiteServer, data: dict[str, Any]) -> dict[str, Any]:
    """Measure ``data["text"]`` on the neuron of run ``data["run"]`` (a folder under the root)."""
    live = server.live
    assert live is not None
    run_dir = (server.root / str(data.get("run", ""))).resolve()
    if server.root != run_dir and server.root not in run_dir.parents:
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


def listing(root: Path) -> str:
    """The root page when the folder has no index.html: its batches and runs."""
    items = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (d / "index.html").is_file():
            items.append(f'<li>batch <a href="{esc(d.name)}/index.html">{esc(d.name)}</a></li>')
        elif (d / "report.html").is_file():
            items.append(f'<li>run <a href="{esc(d.name)}/report.html">{esc(d.name)}</a></li>')
    body = "\n".join(items) or "<li>no batch or run with a report yet</li>"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\"><title>neurosleuth runs</title></head><body>"
            f"<h1>{esc(root.name)}</h1><ul>\n{body}\n</ul></body></html>\n")


def make_server(root: str | Path, port: int = 8000, lm=None, model_spec: str | None = None,
                quiet: bool = True, atlas_search: Callable[[Path, str], str] | None = None
                ) -> SiteServer:
    """A server for ``root`` on 127.0.0.1:``port`` (0: any free port); live measuring when
    ``lm`` is given (``model_spec``: the model name runs must have used); ``atlas_search``
    answers ``.../site/search?q=`` of an atlas folder under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}")
    live = LiveModel(lm, model_spec or lm.name) if lm is not None else None
    return SiteServer(root, port, live, quiet, atlas_search)


def first_run_model(root: Path) -> str | None:
    """The model named by the first run config found under ``root`` (for ``--live``)."""
    for cfg in sorted(Path(root).glob("**/config.json")):
        model = _run_config(cfg.parent).get("model")
        if model:
            return model
    return None
