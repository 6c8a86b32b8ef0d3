"""The report as data: sections of typed blocks, rendered by ``report_md`` and ``report_html``.

Block contents are raw text (never pre-escaped markup); each renderer escapes for its format, so
escaping happens in exactly one place per format.
"""

from __future__ import annotations

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


Cell = str | int | float | None | Prompt | Heatmap


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class Image:
    """A PNG; ``name`` is its file name next to report.md, ``alt`` its description."""

    png: bytes
    name: str
    alt: str


Block = Para | Quote | Missing | Table | Image


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


def visible(text: str) -> str:
    """Whitespace a reader could not see made visible: newline, tab, CR, and all-space tokens."""
    out = text.replace("\r", "␍").replace("\t", "⇥").replace("\n", "⏎")
    if text and not text.strip(" "):
        out = out.replace(" ", "·")
    return out if text else "∅"


def heatmap_text(h: Heatmap) -> tuple[str, tuple[int, int] | None]:
    """The tokens joined into one string, with the char span of the marked token."""
    parts, span, pos = [], None, 0
    for i, tok in enumerate(h.tokens):
        if i == h.mark:
            span = (pos, pos + len(tok))
        parts.append(tok)
        pos += len(tok)
    return "".join(parts), span


def find_mark(text: str, token: object) -> tuple[int, int] | None:
    """Char span of the first occurrence of ``token`` in ``text`` (a guess: no per-token data)."""
    if not isinstance(token, str) or not token.strip():
        return None
    at = text.find(token)
    if at < 0:
        at = text.find(token.strip())
        token = token.strip()
    return (at, at + len(token)) if at >= 0 else None
