"""Recover a JSON object from an LLM's free text (``repair_json``), and prepare a JSON schema for
a small model: ``schema_skeleton`` (a compact form for its prompt) and ``bound_schema`` (length
bounds for a decoding grammar).

Used for backends whose output is not grammar-constrained (Ollama free text, the embedded model
with constraints turned off) and as a last resort when constrained output was cut off by the token
budget. ``repair_json`` never raises: it returns a ``dict`` or ``None``.

Method: start at the first ``{`` (after stripping Markdown code fences), lex the text into strings
(double or single quoted, possibly unterminated), punctuation and bare words, then re-emit strict
JSON: bare keys are quoted, ``True/False/None`` become ``true/false/null``, other bare values that
are not JSON numbers become strings, missing commas and colons are inserted, trailing commas
dropped, mismatched closers skipped, and a truncated tail (open string, dangling key, ``:`` or
``,``) is cut back and every open container closed. Only the first top-level object is kept.

Caveats: a repair is a guess. ``{"a": "x" "b": 1}`` becomes ``{"a": "x", "b": 1}``, but a bare
value with a comma in it (``{a: x, y}``) splits. The caller validates the dict against its schema;
``RepairStats`` counts what happened so a run can report how often output needed repair.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\"}
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False,
             "None": None}
_BARE_STOP = set("{}[]:,\"'\n")


@dataclass
class RepairStats:
    """Counts over ``repair_json`` calls: parsed as is, parsed after repair, unrecoverable."""

    calls: int = 0
    clean: int = 0
    repaired: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"calls": self.calls, "clean": self.clean, "repaired": self.repaired,
                "failed": self.failed}


def repair_json(text: str, stats: RepairStats | None = None) -> dict[str, Any] | None:
    """The first JSON object in ``text``, repaired if needed; ``None`` if there is none."""
    stats = stats if stats is not None else RepairStats()
    stats.calls += 1
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            stats.clean += 1
            return value
    except (json.JSONDecodeError, TypeError):
        pass
    try:
        value = json.loads(_rebuild(_lex(_start(text))))
    except (json.JSONDecodeError, ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        stats.repaired += 1
        return value
    stats.failed += 1
    return None


def _start(text: str) -> str:
    """The text from the first ``{``, looking inside a code fence first if there is one."""
    for block in _FENCE.findall(text or ""):
        if "{" in block:
            text = block
            break
    i = (text or "").find("{")
    return "" if i < 0 else text[i:]


def _lex(text: str) -> list[tuple[str, Any]]:
    """Tokens ``("p", char)`` for ``{}[]:,``, ``("s", str)`` for strings, ``("b", word)``."""
    tokens: list[tuple[str, Any]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "{}[]:,":
            tokens.append(("p", c))
            i += 1
        elif c in "\"'":
            value, i = _read_string(text, i + 1, c)
            tokens.append(("s", value))
        else:
            j = i
            while j < n and text[j] not in _BARE_STOP:
                j += 1
            word = text[i:j].strip()
            if word:
                tokens.append(("b", word))
            i = max(j, i + 1)
    return tokens


def _read_string(text: str, i: int, quote: str) -> tuple[str, int]:
    """Decode a string body starting at ``i``; returns (value, index after the closing quote)."""
    out: list[str] = []
    n = len(text)
    while i < n:
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out), n  # unterminated: closed at the end of the text


def _bare_value(word: str) -> Any:
    if word in _LITERALS:
        return _LITERALS[word]
    try:
        value = json.loads(word)
        if isinstance(value, int | float):
            return value
    except json.JSONDecodeError:
        pass
    return word


class _Emitter:
    """Re-emits tokens as strict JSON, tracking open containers and the key/value position."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.kinds: list[str] = []  # per piece: open, close, comma, colon, key, value
        self.stack: list[str] = []  # "{" or "["

    def put(self, piece: str, kind: str) -> None:
        self.out.append(piece)
        self.kinds.append(kind)

    def pop(self) -> None:
        self.out.pop()
        self.kinds.pop()

    @property
    def last(self) -> str:
        return self.kinds[-1] if self.kinds else ""

    def expects_key(self) -> bool:
        return bool(self.stack) and self.stack[-1] == "{" and self.last in ("open", "comma")

    def value(self, piece: str) -> None:
        """Emit a scalar or an opener at a value position, adding a missing comma or colon."""
        if self.last in ("value", "close"):
            self.put(",", "comma")
        if self.expects_key():  # a value where a key belongs: no key to give it
            raise ValueError("value without a key")
        if self.last == "key":
            self.put(":", "colon")
        kind = "open" if piece in "{[" else "value"
        self.put(piece, kind)
        if kind == "open":
            self.stack.append(piece)

    def key(self, name: str) -> None:
        if self.last in ("value", "close"):
            self.put(",", "comma")
        self.put(json.dumps(name), "key")

    def close(self, closer: str) -> None:
        opener = "{" if closer == "}" else "["
        if opener not in self.stack:
            return  # a stray closer: skip it
        while self.stack:
            self.trim_tail()
            top = self.stack.pop()
            self.put("}" if top == "{" else "]", "close")
            if top == opener:
                return

    def trim_tail(self) -> None:
        """Drop what cannot end a container: a trailing comma, a dangling key or colon."""
        while self.last in ("comma", "colon", "key"):
            self.pop()

    def finish(self) -> str:
        while self.stack:
            self.close("}" if self.stack[-1] == "{" else "]")
        return "".join(self.out)


def _rebuild(tokens: list[tuple[str, Any]]) -> str:
    em = _Emitter()
    for i, (kind, tok) in enumerate(tokens):
        if em.out and not em.stack:
            break  # the first top-level object is complete
        followed_by_colon = i + 1 < len(tokens) and tokens[i + 1] == ("p", ":")
        if kind == "p" and tok in "{[":
            em.value(tok)
        elif kind == "p" and tok in "}]":
            em.close(tok)
        elif kind == "p" and tok == ",":
            if em.last not in ("open", "comma", "colon", "key"):
                em.put(",", "comma")
        elif kind == "p":  # ":"
            if em.last == "key":
                em.put(":", "colon")
        elif em.expects_key() or (followed_by_colon and em.stack and em.stack[-1] == "{"
                                  and em.last in ("value", "close")):
            em.key(str(tok))
        elif kind == "s":
            em.value(json.dumps(tok))
        else:
            em.value(json.dumps(_bare_value(tok)))
    return em.finish()


def schema_skeleton(schema: dict[str, Any]) -> str:
    """A compact example-shaped rendering of a flat JSON schema, for a small model's prompt:
    ``{"kind": "propose_prompts", "prompts": [string, ...], "rationale": string}``. Types are
    left unquoted: SmolLM2 copied a quoted placeholder (``"<string>"``) into its output verbatim."""
    props = schema.get("properties", {})
    parts = [f"{json.dumps(name)}: {_skeleton_value(spec, schema)}" for name, spec in props.items()]
    return "{" + ", ".join(parts) + "}"


def _skeleton_value(spec: dict[str, Any], root: dict[str, Any]) -> str:
    if "$ref" in spec:
        spec = root.get("$defs", {}).get(spec["$ref"].rsplit("/", 1)[-1], {})
    if "const" in spec:
        return json.dumps(spec["const"])
    if "enum" in spec:
        return " | ".join(json.dumps(v) for v in spec["enum"])
    kind = spec.get("type")
    if kind == "array":
        return f"[{_skeleton_value(spec.get('items', {}), root)}, ...]"
    if kind == "object":
        return schema_skeleton(spec)
    if "anyOf" in spec:
        return " | ".join(_skeleton_value(s, root) for s in spec["anyOf"])
    return str(kind or "value")


def bound_schema(schema: dict[str, Any], max_string_chars: int | None) -> dict[str, Any]:
    """A copy of a JSON schema for a grammar: strings get ``maxLength <= max_string_chars`` (not
    below their ``minLength``), so a drifting model ends its strings, and strings that are array
    items get ``minLength >= 1``: constrained SmolLM2 often opened a list with an empty item."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and max_string_chars and "const" not in node:
                cap = min(node.get("maxLength", max_string_chars), max_string_chars)
                node["maxLength"] = max(cap, node.get("minLength", 0))
            items = node.get("items") if node.get("type") == "array" else None
            if isinstance(items, dict) and items.get("type") == "string":
                items["minLength"] = max(items.get("minLength", 0), 1)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out
