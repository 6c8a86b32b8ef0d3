"""``neurosleuth serve`` holds against a careless or hostile local client: the real server on an
ephemeral port in a thread, spoken to with ``http.client`` and raw sockets.

Nothing outside the root is served or written (links resolved), ``Host`` is checked on every
route, every bad request gets a 4xx (an unexpected error a 500) and never a dropped connection, a
damaged search cache is rebuilt, a silent client is dropped, and a port in use or out of range is
one line and exit 2."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neurosleuth.atlas import search as atlas_search
from neurosleuth.atlas.search import AtlasIndex, write_atomic
from neurosleuth.report.serve import MAX_BODY, SiteServer, make_server
from neurosleuth.report.serve_guard import allowed_hosts, is_loopback

SECRET = "root:x:0:0:secret"


class WordEmbedder:
    """Bag of hashed words in 16 dimensions: texts sharing words are near."""

    dim = 16

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in text.lower().replace(".", " ").replace(",", " ").split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out

    def __repr__(self) -> str:  # the cache digest names the embedder
        return "WordEmbedder(16)"


def write_atlas(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = [("0:0", "token", "colour words like red and blue", ["red", "blue"]),
            ("0:1", "token", "numbers and digits", ["1", "2"]),
            ("0:2", "none", "", [])]
    pd.DataFrame({"neuron": [r[0] for r in rows], "kind": [r[1] for r in rows],
                  "explanation": [r[2] for r in rows], "concept": [""] * 3, "context": [""] * 3,
                  "triggers": [json.dumps(r[3]) for r in rows], "r": [0.9, 0.5, None]}
                 ).to_parquet(folder / "atlas.parquet")
    (folder / "atlas.json").write_text(json.dumps({"model": "tiny"}))
    return folder


def search_page(folder: Path, query: str) -> str:
    return " ".join(h.neuron for h in AtlasIndex(folder, WordEmbedder()).search(query, 3))


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A served root with links inside and out, and a folder outside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "run1").mkdir(parents=True)
    (root / "run1" / "report.html").write_text("<p>report</p>")
    outside.mkdir()
    (outside / "passwd").write_text(SECRET)
    (root / "leak").symlink_to(outside / "passwd")  # a file link leaving the root
    (root / "out").symlink_to(outside, target_is_directory=True)  # a folder link leaving it
    (root / "same").symlink_to(root / "run1", target_is_directory=True)  # one staying inside
    write_atlas(root / "atlas")
    write_atlas(outside / "atlas")
    (root / "far").symlink_to(outside / "atlas", target_is_directory=True)
    return root, outside


@contextlib.contextmanager
def serving(root: Path, **kw) -> Iterator[SiteServer]:
    server = make_server(root, port=0, **kw)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def hostport(server: SiteServer) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


def request(server: SiteServer, path: str, method: str = "GET", host: str | None = None,
            body: bytes | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or hostport(server))
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out


def raw(server: SiteServer, data: bytes) -> tuple[int, bytes]:
    """Send ``data`` as is and read the whole answer: (status, body); a dropped connection fails."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    assert answer.startswith(b"HTTP/1."), f"no HTTP answer to {data[:60]!r}: {answer!r}"
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_nothing_outside_the_root_is_served(tree):
    root, _ = tree
    with serving(root) as server:
        assert request(server, "/run1/report.html") == (200, b"<p>report</p>")
        assert request(server, "/same/report.html")[0] == 200  # a link inside the root
        for path in ("/leak", "/out/passwd", "/out/", "/../outside/passwd",
                     "/%2e%2e/outside/passwd", "/run1/..%2f..%2foutside%2fpasswd"):
            status, body = raw(server, f"GET {path} HTTP/1.1\r\nHost: {hostport(server)}\r\n\r\n"
                               .encode())
            assert status in (403, 404) and SECRET.encode() not in body, path
            assert request(server, path, "HEAD")[0] in (403, 404), path


def test_search_is_neither_answered_nor_cached_through_a_link_leaving_the_root(tree):
    root, outside = tree
    (outside / "victim.json").write_text("keep")
    (root / "atlas" / "search.json").symlink_to(outside / "victim.json")  # a planted cache link
    with serving(root, atlas_search=search_page) as server:
        assert request(server, "/far/site/search?q=red")[0] == 404
        assert not list((outside / "atlas").glob("search.*"))
        status, body = request(server, "/atlas/site/search?q=red+colour")
        assert status == 200 and body.split()[0] == b"0:0"
    assert (outside / "victim.json").read_text() == "keep"  # the link was replaced, not followed
    assert not (root / "atlas" / "search.json").is_symlink()
    assert (root / "atlas" / "search.faiss").is_file()


def test_host_is_checked_on_every_route(tree):
    root, _ = tree
    with serving(root, lm=object(), model_spec="tiny", atlas_search=search_page) as server:
        port = server.server_address[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                     f"[::1]:{port}"):
            assert request(server, "/", host=host)[0] == 200, host
        post = {"body": b'{"run": "run1", "text": ""}',
                "headers": {"Content-Type": "application/json"}}
        for host in (f"evil.example:{port}", "evil.example", "127.0.0.1", f"localhost:{port + 1}",
                     f"127.0.0.1:{port}.evil.example"):
            for method, path, kw in (("GET", "/", {}), ("GET", "/run1/report.html", {}),
                                     ("HEAD", "/", {}), ("GET", "/atlas/site/search?q=red", {}),
                                     ("GET", "/_neurosleuth/live.js", {}),
                                     ("POST", "/api/measure", post)):
                assert request(server, path, method, host, **kw)[0] in (421, 403), (host, path)
        assert raw(server, b"GET / HTTP/1.0\r\n\r\n")[0] == 421  # no Host at all
    hosts = allowed_hosts("10.1.2.3", 80)
    assert {"10.1.2.3:80", "10.1.2.3", "localhost", "[::1]:80"} <= hosts
    assert "evil.example" not in hosts and "evil.example:80" not in hosts
    assert is_loopback("127.0.0.1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")


def test_every_bad_request_gets_a_4xx_never_a_dropped_connection(tree):
    root, _ = tree

    def search_breaks(folder: Path, query: str) -> str:
        raise RuntimeError("boom")

    with serving(root, lm=object(), model_spec="tiny", atlas_search=search_breaks) as server:
        host = f"Host: {hostport(server)}\r\n"
        for line, status in ((b"GET /run1\x00x HTTP/1.1", 400), (b"GET /%00 HTTP/1.1", 400),
                             (b"GET /run1/%00report.html HTTP/1.1", 400),
                             (b"GET /%zz HTTP/1.1", 400), (b"GET /a% HTTP/1.1", 400),
                             (b"GET /%ff%fe HTTP/1.1", 400), (b"GET /%1b[31m HTTP/1.1", 400),
                             (b"GET /" + b"a" * 5000 + b" HTTP/1.1", 414),
                             (b"GET /" + b"a" * 70000 + b" HTTP/1.1", 414),
                             (b"GET /" + b"a" * 300 + b" HTTP/1.1", 404),
                             (b"PUT / HTTP/1.1", 405), (b"DELETE /run1 HTTP/1.1", 405),
                             (b"OPTIONS /api/measure HTTP/1.1", 405), (b"BREW / HTTP/1.1", 405),
                             (b"GARBAGE", 400)):
            assert raw(server, line + b"\r\n" + host.encode() + b"\r\n")[0] == status, line[:40]
        assert raw(server, b"GET / HTTP/1.1\r\n" + host.encode() + b"X-Long: "
                   + b"a" * 70000 + b"\r\n\r\n")[0] == 431

        json_headers = {"Content-Type": "application/json"}
        for body, status in ((b"[" * 50000, 400), (b'{"run": ' * 8000, 400), (b"{", 400),
                             (b"\xff\xfe", 400), (b"[1, 2]", 400), (b'"text"', 400),
                             (b'{"run": "../..", "text": "x"}', 400),
                             (b'{"run": "run1\\u0000", "text": "x"}', 400),
                             (b"x" * (MAX_BODY + 1), 413)):
            assert request(server, "/api/measure", "POST", body=body,
                           headers=json_headers)[0] == status, body[:30]
        base = f"POST /api/measure HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
        for extra, status in (("", 411), ("Content-Length: abc\r\n", 411),
                              ("Content-Length: -5\r\n", 411),
                              ("Transfer-Encoding: chunked\r\n", 411),
                              (f"Content-Length: {10 ** 9}\r\n", 413)):
            assert raw(server, (base + extra + "\r\n").encode())[0] == status, extra
        assert request(server, "/api/measure", "POST", body=b'{"text": "x"}',
                       headers={"Content-Type": "text/plain"})[0] == 403
        assert request(server, "/atlas/site/search?q=red")[0] == 500  # answered, not dropped
        assert request(server, "/run1/report.html")[0] == 200  # and still serving


def test_a_silent_client_is_dropped_after_the_timeout(tree):
    root, _ = tree
    with serving(root, idle_timeout=0.3) as server:
        for sent in (b"", b"GET /run1/report.html HTTP/1.1\r\nHo"):  # silent, then stalled
            with socket.create_connection(("127.0.0.1", server.server_address[1])) as s:
                s.settimeout(10)
                s.sendall(sent)
                start = time.monotonic()
                assert s.recv(100) == b""  # closed by the server
                assert time.monotonic() - start < 5
        assert request(server, "/run1/report.html")[0] == 200
    with serving(root, idle_timeout=5, max_connections=2) as server:
        idle = [socket.create_connection(("127.0.0.1", server.server_address[1]))
                for _ in range(2)]
        try:
            time.sleep(0.2)
            assert raw(server, b"")[0] == 503  # the third waits for nobody: busy, closed
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 5
        while raw(server, f"GET / HTTP/1.0\r\nHost: {hostport(server)}\r\n\r\n".encode()
                  )[0] == 503:
            assert time.monotonic() < deadline, "slots not freed after the clients left"
            time.sleep(0.05)


def test_a_damaged_search_cache_is_logged_and_rebuilt(tmp_path, caplog):
    atlas = write_atlas(tmp_path / "atlas")
    hits = AtlasIndex(atlas, WordEmbedder()).search("red colour", 2)
    assert hits[0].neuron == "0:0"
    index, meta = atlas / "search.faiss", atlas / "search.json"
    good = index.read_bytes()
    for path, damage in ((index, good[: len(good) // 2]), (index, good[:-8]), (index, b""),
                         (index, b"x" * 100), (meta, b'{"digest": '), (meta, b"[]"),
                         (meta, b'{"digest": 7}'.replace(b"7", json.dumps(
                             json.loads(meta.read_text())["digest"]).encode()))):
        path.write_bytes(damage)  # truncated, garbage, not an object, rows missing
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=atlas_search.__name__):
            assert AtlasIndex(atlas, WordEmbedder()).search("red colour", 2) == hits
        assert "damaged atlas search index" in caplog.text, damage[:20]
        assert index.read_bytes() == good and json.loads(meta.read_text())["rows"] == [0, 1]
    assert not list(atlas.glob(".*.tmp"))  # no temporary file left behind


def test_an_interrupted_cache_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "search.json"
    path.write_text("old")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atlas_search.os, "replace", crash)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["search.json"]


def _one_line(output: str) -> str:
    lines = [x for x in output.splitlines() if x.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_a_port_in_use_or_out_of_range_is_one_line_and_exit_2(tmp_path, monkeypatch):
    from neurosleuth.cli import app

    runner = CliRunner()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = runner.invoke(app, ["serve", str(tmp_path), "--port", str(port)])
    assert res.exit_code == 2 and _one_line(res.output).startswith(f"error: port {port} on "
                                                                   "127.0.0.1 is in use")
    for bad in ("70000", "-1"):
        res = runner.invoke(app, ["serve", str(tmp_path), "--port", bad])
        assert res.exit_code == 2, res.output
        assert _one_line(res.output).startswith(f"error: port {bad} out of range")
    res = runner.invoke(app, ["serve", str(tmp_path), "--host", "no-such-host.invalid"])
    assert res.exit_code == 2 and _one_line(res.output).startswith("error: cannot listen on")


def test_serve_host_warns_when_it_listens_beyond_this_machine(tmp_path, monkeypatch):
    from neurosleuth.cli import app

    monkeypatch.setattr(SiteServer, "serve_forever", lambda self, *a, **k: None)
    res = CliRunner().invoke(app, ["serve", str(tmp_path), "--host", "0.0.0.0", "--port", "0"])
    assert res.exit_code == 0, res.output
    assert "warning: listening on 0.0.0.0, beyond this machine" in res.output
    res = CliRunner().invoke(app, ["serve", str(tmp_path), "--port", "0"])
    assert res.exit_code == 0 and "warning" not in res.output and "127.0.0.1" in res.output


class GatedEmbedder(WordEmbedder):
    """``WordEmbedder`` whose first ``embed`` waits for ``gate`` (an index being built) and
    raises when ``fail`` is set (an index that cannot be built)."""

    def __init__(self) -> None:
        self.gate, self.fail = threading.Event(), False

    def embed(self, texts):
        if self.fail:
            raise RuntimeError("embedder gone")
        self.gate.wait(10)
        return super().embed(texts)


def test_a_search_index_is_built_in_the_background(tmp_path, monkeypatch):
    """A search while the index is being built is answered 503 with Retry-After, not held for
    minutes; the same search is answered once the build is done; a failed build is a 500 and the
    next search builds again."""
    from neurosleuth.atlas import search as search_mod
    from neurosleuth.report import atlas_site

    atlas = write_atlas(tmp_path / "root" / "atlas")
    embedder = GatedEmbedder()
    monkeypatch.setattr(search_mod, "bulk_embedder", lambda: embedder)
    indexes = atlas_site.SearchIndexes()
    indexes.WAIT_S = 1.0  # a build that fails is over by then; the gated one is not
    monkeypatch.setattr(atlas_site, "INDEXES", indexes)
    with serving(atlas.parent, atlas_search=atlas_site.search_response) as server:
        embedder.fail = True
        status, body = request(server, "/atlas/site/search?q=red")
        assert status == 500 and b"embedder gone" in body
        embedder.fail = False
        thread = indexes.start(atlas.resolve())  # what `serve ATLAS` does as it starts
        assert thread is not None and indexes.start(atlas.resolve()) is thread  # one build
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.request("GET", "/atlas/site/search?q=red", headers={"Host": hostport(server)})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 503 and resp.getheader("Retry-After") == "30", body
        assert b"being built" in body
        assert list(indexes.building) == [atlas.resolve()]  # the search waited on that build
        embedder.gate.set()
        thread.join(10)
        status, body = request(server, "/atlas/site/search?q=red+blue")
        assert status == 200 and b"0:0" in body
        assert indexes.start(atlas.resolve()) is None  # built: nothing more to build
