"""The report as data: sections of typed blocks, rendered by ``markdown.py`` and ``html.py``.

Block contents are raw text (never pre-escaped markup); each renderer escapes for its format, so
escaping happens in exactly one place per format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Para:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Quote:
    """Emphasised text (the hypothesis in one sentence)."""

    text: str


@dataclass(frozen=True)
class Link:
    """A link to another page of ours (``href`` a relative path we made, never user text)."""

    text: str
    href: str


@dataclass(frozen=True)
class Missing:
    """A part of the report that has no data; says why."""

    text: str


@dataclass(frozen=True)
class Prompt:
    """Text shown verbatim (a prompt or a token); ``mark`` is a char span to highlight."""

    text: str
    mark: tuple[int, int] | None = None


@dataclass(frozen=True)
class Heatmap:
    """Tokens with their activations; colour saturates at +-``scale``; ``mark`` is the max token."""

    tokens: list[str]
    acts: list[float]
    scale: float
    mark: int | None = None
    text: str | None = None  # the original text, when known (tokens may not join back to it)


Cell = str | int | float | None | Prompt | Heatmap


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: Sequence[Sequence[Cell]]


@dataclass(frozen=True)
class Image:
    """A PNG; ``name`` is its file name next to report.md, ``alt`` its description."""

    png: bytes
    name: str
    alt: str


@dataclass(frozen=True)
class Details:
    """A folded part (internals a reader opens on demand): ``summary`` is always shown."""

    summary: str
    blocks: list[Para | Missing | Table] = field(default_factory=list)


Block = Para | Quote | Missing | Table | Image | Details


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


@dataclass(frozen=True)
class Document:
    title: str
    subtitle: str
    sections: list[Section]


def fmt(x: Cell) -> str:
    """Numbers as a reader wants them; None as an en dash. Other cells are the renderer's job."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x != x:
            return "–"
        if abs(x) >= 10_000:
            return f"{x:,.0f}"
        return f"{x:.3f}" if abs(x) >= 0.001 or x == 0 else f"{x:.2e}"
    return str(x)


def fmt_interval(x: object) -> str | None:
    """``[lo, hi]`` as "0.520 – 0.710"; None when it is not a pair of finite numbers."""
    if not isinstance(x, list | tuple) or len(x) != 2:
        return None
    try:
        lo, hi = float(x[0]), float(x[1])
    except (TypeError, ValueError):
        return None
    if lo != lo or hi != hi or abs(lo) == float("inf") or abs(hi) == float("inf"):
        return None
    return f"{fmt(lo)} – {fmt(hi)}"


def visible(text: str) -> str:
    """Whitespace a reader could not see made visible: newline, tab, CR, and all-space tokens."""
    out = text.replace("\r", "␍").replace("\t", "⇥").replace("\n", "⏎")
    if text and not text.strip(" "):
        out = out.replace(" ", "·")
    return out if text else "∅"


def heatmap_text(h: Heatmap) -> tuple[str, tuple[int, int] | None]:
    """The text with the char span of the marked token: the original text when every token can be
    found in it in order (decoded tokens may drop spaces), else the tokens joined."""
    mark = h.mark if h.mark is not None and 0 <= h.mark < len(h.tokens) else None
    if h.text is not None:
        spans = align(h.text, h.tokens)
        if spans is not None:
            return h.text, spans[mark] if mark is not None else None
        span = None
        if mark is not None:  # e.g. unknown tokens elsewhere: find the same occurrence of the max
            core = h.tokens[mark].strip()
            nth = sum(t.strip() == core for t in h.tokens[:mark])
            span = find_mark(h.text, h.tokens[mark], nth)
        if span is not None:
            return h.text, span
    parts, span, pos = [], None, 0
    for i, tok in enumerate(h.tokens):
        if i == h.mark:
            span = (pos, pos + len(tok))
        parts.append(tok)
        pos += len(tok)
    return "".join(parts), span


def align(text: str, tokens: list[str]) -> list[tuple[int, int]] | None:
    """Char span of each token in ``text``, skipping only whitespace between them; None if a token
    is not found where expected (unknown-token markers, split multi-byte characters)."""
    spans, pos = [], 0
    for tok in tokens:
        core = tok.strip() or tok
        at = text.find(core, pos)
        if at < 0 or text[pos:at].strip():
            return None
        spans.append((at, at + len(core)))
        pos = at + len(core)
    return spans


def find_mark(text: str, token: object, nth: int = 0) -> tuple[int, int] | None:
    """Char span of the ``nth`` occurrence of ``token`` (stripped) in ``text``, else of the first;
    a best guess when per-token data is missing."""
    if not isinstance(token, str) or not token.strip():
        return None
    core, at = token.strip(), text.find(token.strip())
    starts: list[int] = []
    while at >= 0 and len(starts) <= nth:
        starts.append(at)
        at = text.find(core, at + len(core))
    if not starts:
        return None
    start = starts[nth] if nth < len(starts) else starts[0]
    return start, start + len(core)
