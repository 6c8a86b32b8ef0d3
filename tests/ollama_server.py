"""A stand-in Ollama server for tests: the parts of Ollama's HTTP API that ``langchain-ollama``
(ChatOllama) and the ``ollama`` client use, on 127.0.0.1, answering from the embedded SmolLM2.

Endpoints (as Ollama 0.x speaks them, https://github.com/ollama/ollama/blob/main/docs/api.md):

- ``GET /api/tags``: the pulled models (``ollama.Client.list``, our ``auto`` probe);
- ``POST /api/chat``: ``{model, messages, stream, format, tools, options, ...}``. ``format`` is
  a JSON schema (ChatOllama's ``with_structured_output``), ``"json"`` or absent. ``tools``
  (``bind_tools``: ``[{type: "function", function: {name, description, parameters}}]``) makes the
  reply one tool call, ``message.tool_calls: [{function: {name, arguments}}]``, generated under
  the grammar of "one of these names with its parameters" after a system message listing the
  tools (what Ollama's chat templates render); ``options`` carries
  ``temperature``, ``seed``, ``top_p``, ``num_predict``, ``stop``. ``stream: false`` answers one
  JSON object; ``stream: true`` answers newline-delimited JSON chunks over chunked transfer
  encoding, the last with ``done: true`` and the token counts. An unknown model is a 404 with
  Ollama's ``{"error": ...}`` body.

Answers come from ``EmbeddedChatModel`` with the request's schema compiled to an xgrammar grammar
(the embedded planner's constrained decoding), loaded on the first generated reply. A test can
queue misbehaviours in ``script`` (one ``Reply`` per chat request, then generation resumes):
canned text (not JSON), a delay (past the client's timeout), or death mid-reply (half the stream
is sent, every connection is cut and the listener is closed, like a killed ``ollama serve``).
Loopback only; every wait is bounded or ends when the server stops.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNK_CHARS = 12  # characters of content per streamed chunk


@dataclass
class Reply:
    """How the server answers one ``/api/chat`` request (the default: generate, at once)."""

    text: str | None = None  # canned content instead of generation
    tool_call: dict[str, Any] | None = None  # canned {"name", "arguments"} instead of generation
    error: str | None = None  # answer 400 with Ollama's {"error": ...} body
    delay_s: float = 0.0  # wait this long before the response starts
    die: bool = False  # send half the reply, then cut every connection and stop listening


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _full_name(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


class FakeOllama:
    """``FakeOllama().start()`` listens on a free loopback port; ``host`` is its URL."""

    def __init__(self, models: tuple[str, ...] = ("llama3.1:latest",), max_new_tokens: int = 96):
        self.models = [_full_name(m) for m in models]
        self.max_new_tokens = max_new_tokens
        self.tags_delay_s = 0.0  # a wedged server: /api/tags answers this late
        self.script: list[Reply] = []
        self.requests: list[dict[str, Any]] = []  # {"path", "body"} in arrival order
        self.dead = threading.Event()
        self._lock = threading.Lock()
        self._chat_model = None
        self._sockets: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # life cycle -------------------------------------------------------------------------------
    def start(self) -> FakeOllama:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() first"
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Die like a killed server: stop listening and cut every open connection."""
        if self.dead.is_set():
            return
        self.dead.set()
        with self._lock:
            for sock in list(self._sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    stop = kill

    def chats(self) -> list[dict[str, Any]]:
        """The bodies of the ``/api/chat`` requests received so far."""
        return [r["body"] for r in self.requests if r["path"] == "/api/chat"]

    # answers ----------------------------------------------------------------------------------
    def next_reply(self) -> Reply:
        with self._lock:
            return self.script.pop(0) if self.script else Reply()

    def generate_tool_call(self, body: dict[str, Any]) -> tuple[dict[str, Any] | None, int, int]:
        """A tool call for a request with ``tools``: (call or None when the reply does not
        parse, prompt tokens, tokens out)."""
        tools = [t["function"] for t in body.get("tools", []) if t.get("type") == "function"]
        listing = "\n".join(f"- {t['name']}: {t.get('description', '')}" for t in tools)
        system = {"role": "system", "content": "Call exactly one of these tools; answer with "
                  f'JSON {{"name": ..., "arguments": {{...}}}}:\n{listing}'}
        schema = {"anyOf": [{"type": "object", "properties": {
            "name": {"type": "string", "enum": [t["name"]]},
            "arguments": t.get("parameters") or {"type": "object"}},
            "required": ["name", "arguments"]} for t in tools]}
        text, n_in, n_out = self.generate({**body, "messages": [system, *body.get("messages", [])],
                                           "format": schema})
        try:
            call = json.loads(text)
        except json.JSONDecodeError:
            return None, n_in, n_out
        ok = isinstance(call, dict) and isinstance(call.get("arguments"), dict)
        return (call if ok else None), n_in, n_out

    def generate(self, body: dict[str, Any]) -> tuple[str, int, int]:
        """The embedded model's reply to a chat request: (content, prompt tokens, tokens out)."""
        fmt = body.get("format")
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        from neurosleuth.agents.llm.embedded import EmbeddedChatModel
        from neurosleuth.agents.llm.json_repair import bound_schema

        with self._lock:
            if self._chat_model is None:
                self._chat_model = EmbeddedChatModel(seed=0, num_threads=1)
            chat = self._chat_model
        kinds = {"system": SystemMessage, "assistant": AIMessage}
        messages = [
            kinds.get(m.get("role"), HumanMessage)(m.get("content") or "")
            for m in body.get("messages", [])
        ]
        opts = body.get("options") or {}
        kw: dict[str, Any] = {
            "max_new_tokens": min(int(opts.get("num_predict") or 1 << 30), self.max_new_tokens)
        }
        for ours, theirs in (("temperature", "temperature"), ("seed", "seed"), ("top_p", "top_p")):
            if opts.get(theirs) is not None:
                kw[ours] = opts[theirs]
        schema = fmt if isinstance(fmt, dict) else {"type": "object"} if fmt == "json" else None
        if schema is not None:
            kw["json_schema"] = bound_schema(schema, chat.max_string_chars)
            kw["constrained"] = True
        out = chat.invoke(messages, stop=opts.get("stop") or None, **kw)
        usage = out.usage_metadata or {}
        return str(out.content), usage.get("input_tokens", 0), usage.get("output_tokens", 0)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as Ollama does
    owner: FakeOllama

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._sockets.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._sockets.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    # routing ----------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self._gone():
            return
        self.owner.requests.append({"path": self.path, "body": None})
        if self.path == "/api/tags" and self.owner.dead.wait(self.owner.tags_delay_s):
            self.close_connection = True  # killed while wedged
        elif self.path == "/api/tags":
            models = [
                {
                    "name": m,
                    "model": m,
                    "modified_at": _now(),
                    "size": 4_920_753_328,
                    "digest": "0" * 64,
                    "details": {"format": "gguf", "family": "llama"},
                }
                for m in self.owner.models
            ]
            self._json(200, {"models": models})
        else:
            self._json(404, {"error": f"unknown endpoint {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        if self._gone():
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": "invalid JSON body"})
            return
        self.owner.requests.append({"path": self.path, "body": body})
        model = _full_name(str(body.get("model") or ""))
        if self.path != "/api/chat":
            self._json(404, {"error": f"unknown endpoint {self.path}"})
        elif model not in self.owner.models:
            self._json(
                404, {"error": f'model "{body.get("model")}" not found, try pulling it first'}
            )
        else:
            self._chat(body, model)

    def _gone(self) -> bool:
        """A dead server answers nothing: the connection is dropped."""
        if self.owner.dead.is_set():
            self.close_connection = True
            return True
        return False

    # /api/chat --------------------------------------------------------------------------------
    def _chat(self, body: dict[str, Any], model: str) -> None:
        reply = self.owner.next_reply()
        if reply.error is not None:
            self._json(400, {"error": reply.error})
            return
        start = time.perf_counter()
        if reply.delay_s and self.owner.dead.wait(reply.delay_s):
            self.close_connection = True  # stopped while waiting
            return
        calls = None
        if reply.text is not None:
            content, n_in, n_out = reply.text, 10, max(1, len(reply.text) // 4)
        elif reply.tool_call is not None:
            content, n_in, n_out, calls = "", 10, 10, [{"function": reply.tool_call}]
        elif body.get("tools"):
            call, n_in, n_out = self.owner.generate_tool_call(body)
            content, calls = ("", [{"function": call}]) if call else ("(no tool call)", None)
        else:
            content, n_in, n_out = self.owner.generate(body)
        final = {
            "model": model,
            "created_at": _now(),
            "done": True,
            "done_reason": "stop",
            "total_duration": int((time.perf_counter() - start) * 1e9),
            "load_duration": 0,
            "prompt_eval_count": n_in,
            "prompt_eval_duration": 1,
            "eval_count": n_out,
            "eval_duration": 1,
        }
        try:
            message = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = calls
            if body.get("stream", True):
                self._stream(model, message, final, reply.die)
            else:
                if reply.die:
                    self._die()
                    return
                self._json(200, {**final, "message": message})
        except OSError:  # the client gave up (timeout) or the server was killed
            self.close_connection = True

    def _stream(self, model: str, message: dict, final: dict, die: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        content = message["content"]
        pieces = [content[i : i + CHUNK_CHARS] for i in range(0, len(content), CHUNK_CHARS)]
        if die:
            pieces = pieces[: max(1, len(pieces) // 2)]
        for piece in pieces:
            line = {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": piece},
                "done": False,
            }
            self._chunk((json.dumps(line) + "\n").encode())
        if die:
            self._die()
            return
        if message.get("tool_calls"):  # Ollama sends the calls in one chunk of their own
            line = {"model": model, "created_at": _now(), "done": False,
                    "message": {"role": "assistant", "content": "",
                                "tool_calls": message["tool_calls"]}}
            self._chunk((json.dumps(line) + "\n").encode())
        self._chunk(
            (json.dumps({**final, "message": {"role": "assistant", "content": ""}}) + "\n").encode()
        )
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _die(self) -> None:
        self.close_connection = True
        threading.Thread(target=self.owner.kill, daemon=True).start()
        self.owner.dead.wait(5)

    # writing ----------------------------------------------------------------------------------
    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
