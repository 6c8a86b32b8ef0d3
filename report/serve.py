"""``neurosleuth serve``: a small web server for run and batch folders (stdlib ``http.server``,
bound to 127.0.0.1 unless ``--host`` says otherwise).

It serves the folder's files as they are (batch ``index.html`` pages, run ``report.html``
pages) and, at ``/`` when the folder has no ``index.html``, a page listing its batches and runs.
``--live`` adds a box to try text on each run report (``report/serve_live.py``).

It holds against a careless or hostile client (``report/serve_guard.py``): nothing whose real path
(links resolved) leaves the folder is served; every request must name this server in ``Host``
(DNS rebinding); a malformed request (NUL or bad escape in the path, an over-long path, a wrong
method, a missing, oversized or invalid JSON body) gets a 4xx and an unexpected error a 500, never
a dropped connection; a connection silent for ``idle_timeout`` seconds is closed, and at most
``max_connections`` are open at once.

Requests to ``/api/measure`` must also name this server in ``Origin``, when sent, and be
``application/json`` (so a page on another site cannot post to it without a CORS preflight, which
is never granted). A report whose run used another model than the one loaded is refused.

An atlas under the folder (any folder with ``atlas.parquet`` and ``atlas.json``, the served
folder itself included) is rendered from its table on request at ``ATLAS/site/``
(``report/atlas_serve.py``): the index, layer pages and a listing of every neuron with filters,
sort and pages, neuron pages, and search by meaning (``site/search?q=``, answered by
``atlas_search``, given by the command line, which loads the embedder on the first search). The
atlas folder and its files must lie under the root once resolved, so nothing is read or cached
elsewhere; a bad parameter is a 400, a missing layer, neuron or page a 404.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import socket
import threading
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from neurosleuth.report.atlas_serve import AtlasPages, PageError, is_atlas, split
from neurosleuth.report.html import esc
from neurosleuth.report.serve_guard import WILDCARDS, allowed_hosts, inside, path_problem, url_host
from neurosleuth.report.serve_live import LIVE_JS, LiveModel, live_report, measure_for_run
from neurosleuth.report.serve_live import first_run_model as first_run_model

HOST = "127.0.0.1"
METHODS = ("GET", "HEAD", "POST")
IDLE_TIMEOUT = 30.0  # seconds a connection may stay silent
MAX_CONNECTIONS = 64  # open at once
BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
        b"Connection: close\r\n\r\nbusy\n")
MAX_BODY = 64 * 1024
DRAIN = 1024 * 1024  # a body up to this size is read and dropped before a 413


class SiteServer(ThreadingHTTPServer):
    """Serves ``root``; each connection gets ``idle_timeout`` seconds per read or write and at
    most ``max_connections`` are open at once (the next is answered 503 and closed)."""

    daemon_threads = True

    def __init__(self, root: Path, port: int, live: LiveModel | None, quiet: bool,
                 atlas_search: Callable[[Path, str], str] | None = None, host: str = HOST,
                 idle_timeout: float = IDLE_TIMEOUT, max_connections: int = MAX_CONNECTIONS):
        self.root, self.live, self.quiet = Path(root).resolve(), live, quiet
        self.atlas_search = atlas_search  # (atlas folder, query) -> results page
        self.atlas = AtlasPages(self.root, atlas_search)
        self.host, self.idle_timeout = host.strip("[]"), idle_timeout  # "[::1]" -> "::1"
        self.slots = threading.BoundedSemaphore(max_connections)
        if ":" in self.host:
            self.address_family = socket.AF_INET6
        handler = functools.partial(SiteHandler, directory=str(self.root))
        super().__init__((self.host, port), handler)
        self.hosts = allowed_hosts(self.host, self.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in WILDCARDS else url_host(self.host)
        return f"http://{host}:{self.server_address[1]}/"

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.settimeout(self.idle_timeout)  # a silent client is dropped (stdlib: timed out)
        return conn, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class SiteHandler(SimpleHTTPRequestHandler):
    """Every request is checked (``serve_guard``) before any route sees it, and every failure is
    answered with a status: a refused request gets a 4xx, an unexpected error a 500."""

    server: SiteServer
    status: int | None = None  # of the response begun for this request
    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if not self.server.quiet:
            super().log_message(format, *args)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        if not format.startswith("Request timed out"):  # a browser's unused preconnection
            super().log_error(format, *args)

    def send_response(self, code: int, message: str | None = None) -> None:
        self.status = code
        super().send_response(code, message)

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def handle_one_request(self) -> None:
        self.status = None
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):  # the client went away or stalled mid-request
            self.close_connection = True
        except Exception:  # noqa: BLE001 (answer, log, and keep serving)
            self.close_connection = True
            self.log_error("error answering %r:\n%s", getattr(self, "path", ""),
                           traceback.format_exc())
            if self.status is None:
                with contextlib.suppress(OSError):
                    self.refuse(500, "internal error")

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        problem = path_problem(self.path)
        if problem is None and (self.headers.get("Host") or "").lower() not in self.server.hosts:
            problem = (HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
        if problem is None and self.command not in METHODS:
            problem = (HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed")
        if problem is not None:
            self._drain()
            self.refuse(*problem)
            return False
        return True

    def refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` with ``reason`` as text and close the connection."""
        body = f"{int(status)} {reason}\n".encode()
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ", ".join(METHODS))
        if status == HTTPStatus.SERVICE_UNAVAILABLE:  # a search index being built
            self.send_header("Retry-After", "30")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _inside(self, path: str | Path) -> Path | None:
        return inside(self.server.root, path)

    def send_head(self) -> io.BytesIO | BinaryIO | None:
        """The stdlib's file or folder answer, for a path whose real location is under the root."""
        if self._inside(self.translate_path(self.path)) is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        return super().send_head()

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        path = unquote(urlsplit(self.path).path)
        if path == "/_neurosleuth/live.js" and self.server.live:
            return self._send(200, LIVE_JS.encode(), "text/javascript; charset=utf-8")
        if self._atlas_page(path):
            return None
        if path == "/" and is_atlas(self.server.root):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", "/site/")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if path == "/" and not (self.server.root / "index.html").is_file():
            return self._send(200, listing(self.server.root).encode(), "text/html; charset=utf-8")
        if self.server.live and path.endswith("/report.html"):
            target = self._inside(self.translate_path(self.path))
            if target is not None and target.is_file():
                page = live_report(target, self.server.root, self.server.live)
                return self._send(200, page.encode(), "text/html; charset=utf-8")
        return super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802 (stdlib name)
        if not self._atlas_page(unquote(urlsplit(self.path).path)):
            super().do_HEAD()

    def _atlas_page(self, path: str) -> bool:
        """Answer ``path`` when it is a page of an atlas under the root (``atlas_serve``);
        False when it is none, for the file routes to answer."""
        found = split(path)
        if found is None:
            return False
        url_folder, match = found
        folder = self._inside(self.server.root / url_folder.lstrip("/"))
        if folder is None or not is_atlas(folder) or not all(
                self._inside(folder / f) for f in ("atlas.parquet", "atlas.json")):
            return False
        try:
            page = self.server.atlas.answer(folder, url_folder, match, urlsplit(self.path).query)
        except PageError as err:
            self.refuse(err.status, err.reason)
            return True
        self._send(200, page.encode(), "text/html; charset=utf-8")
        return True

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()  # read first: closing with a body unread can reset the answer
        if body is None:
            return None
        if urlsplit(self.path).path != "/api/measure":
            return self._json(404, {"error": "not found"})
        if not self.server.live:
            return self._json(404, {"error": "start the server with --live to measure text"})
        problem = self._request_problem()
        if problem:
            return self._json(HTTPStatus.FORBIDDEN, {"error": problem})
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            self._json(200, measure_for_run(self.server.root, self.server.live, data))
        except RecursionError:
            self._json(400, {"error": "JSON nested too deeply"})
        except (ValueError, KeyError, TypeError) as err:
            self._json(400, {"error": str(err).splitlines()[0] if str(err) else "bad request"})

    def _length(self) -> int | None:
        try:
            return int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None

    def _drain(self) -> None:
        """Read and drop a body of up to DRAIN bytes, so that closing does not reset the answer."""
        left = self._length() or 0
        while 0 < left <= DRAIN and (chunk := self.rfile.read(min(left, MAX_BODY))):
            left -= len(chunk)

    def _body(self) -> bytes | None:
        """The request body, or None after answering why it cannot be read (411, 400, 413)."""
        length = self._length()
        if self.headers.get("Transfer-Encoding") or length is None or length <= 0:
            self.close_connection = True
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "send a JSON body with its "
                                                    "Content-Length"})
            return None
        if length <= MAX_BODY:
            return self.rfile.read(length)
        self.close_connection = True
        self._drain()
        self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                   {"error": f"request body must be 1..{MAX_BODY} bytes"})
        return None

    def _request_problem(self) -> str | None:
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() not in {f"http://{h}" for h in self.server.hosts}:
            return "cross-origin request refused"
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return "Content-Type must be application/json"
        return None


def listing(root: Path) -> str:
    """The root page when the folder has no index.html: its batches and runs."""
    items = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (d / "index.html").is_file():
            items.append(f'<li>batch <a href="{esc(d.name)}/index.html">{esc(d.name)}</a></li>')
        elif is_atlas(d):
            items.append(f'<li>atlas <a href="{esc(d.name)}/site/">{esc(d.name)}</a></li>')
        elif (d / "report.html").is_file():
            items.append(f'<li>run <a href="{esc(d.name)}/report.html">{esc(d.name)}</a></li>')
    body = "\n".join(items) or "<li>no batch, run or atlas yet</li>"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\"><title>neurosleuth runs</title></head><body>"
            f"<h1>{esc(root.name)}</h1><ul>\n{body}\n</ul></body></html>\n")


def make_server(root: str | Path, port: int = 8000, lm=None, model_spec: str | None = None,
                quiet: bool = True, atlas_search: Callable[[Path, str], str] | None = None,
                host: str = HOST, idle_timeout: float = IDLE_TIMEOUT,
                max_connections: int = MAX_CONNECTIONS) -> SiteServer:
    """A server for ``root`` on ``host``:``port`` (0: any free port); live measuring when
    ``lm`` is given (``model_spec``: the model name runs must have used); atlases under ``root``
    are rendered at ``ATLAS/site/``, ``atlas_search`` answering their ``site/search?q=``. Raises
    ValueError, in one line, when it cannot listen there (port in use or out of range, unknown
    host)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range: use 1..65535, or 0 for any free port")
    live = LiveModel(lm, model_spec or lm.name) if lm is not None else None
    try:
        return SiteServer(root, port, live, quiet, atlas_search, host, idle_timeout,
                          max_connections)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is in use: stop the other server, or pick "
                             "another --port (0: any free port)") from None
        raise ValueError(f"cannot listen on {url_host(host)}:{port}: "
                         f"{err.strerror or err}") from None
