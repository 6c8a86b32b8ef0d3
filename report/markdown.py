"""Markdown rendering of the report (GitHub-flavoured: pipe tables, code spans).

Escaping: free text gets ``& < >`` as entities and Markdown's active punctuation backslash-escaped,
so a planner's text can neither inject HTML nor create links or headings. Verbatim text (prompts,
tokens) goes into code spans whose backtick fence is longer than any backtick run inside. In table
cells, pipes are escaped (GFM honours ``\\|`` even inside code spans) and newlines are shown as ⏎.
The max token of a prompt is marked «like this». A folded block (``Details``) becomes GitHub's
``<details>`` with an escaped ``<summary>``: the only HTML tags this renderer writes.
"""

from __future__ import annotations

import html
import re

from neurosleuth.report.blocks import (
    Cell,
    Details,
    Document,
    Heatmap,
    Image,
    Link,
    Missing,
    Para,
    Prompt,
    Quote,
    Section,
    Table,
    fmt,
    heatmap_text,
    visible,
)

_ACTIVE = re.compile(r"([\\`*_\[\]|~])")
_LINE_START = re.compile(r"^(\s*)([#>+=-])", re.MULTILINE)
_LIST_NUMBER = re.compile(r"^(\s*\d+)([.)])", re.MULTILINE)
_PIPE = re.compile(r"(\\*)\|")


def text(s: str, block: bool = False) -> str:
    """Free text made inert: HTML entities for ``& < >``, backslashes before active punctuation
    and, in a block (``block=True``), before what would start a heading, quote or list."""
    s = html.escape(s, quote=False)
    s = _ACTIVE.sub(r"\\\1", s)
    if not block:
        return s
    s = _LINE_START.sub(r"\1\\\2", s)
    return _LIST_NUMBER.sub(r"\1\\\2", s)


def pipes(s: str) -> str:
    """Escape every pipe for a GFM table cell: an odd run of backslashes before it, which the
    table parser reads as an escaped pipe and then shows with one backslash less."""
    def odd(m: re.Match) -> str:
        n = len(m.group(1))
        return "\\" * (n + 1 if n % 2 == 0 else n + 2) + "|"
    return _PIPE.sub(odd, s)


def code(s: str) -> str:
    """``s`` as a code span, whatever backticks it holds."""
    runs = [len(r) for r in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    edge = s.startswith("`") or s.endswith("`") or (s.startswith(" ") and s.endswith(" "))
    pad = " " if edge else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def marked(s: str, span: tuple[int, int] | None) -> str:
    """``s`` with the char span marked «like this», whitespace made visible."""
    if span is None:
        return visible_inline(s)
    a, b = span
    return visible_inline(s[:a]) + "«" + visible(s[a:b]) + "»" + visible_inline(s[b:])


def visible_inline(s: str) -> str:
    return s.replace("\r", "␍").replace("\t", "⇥").replace("\n", "⏎")


def cell(c: Cell) -> str:
    """One table cell: never a raw newline, every pipe escaped."""
    if isinstance(c, Prompt):
        return pipes(code(marked(c.text, c.mark) if c.mark else visible(c.text)))
    if isinstance(c, Heatmap):
        return pipes(code(marked(*heatmap_text(c))))
    if isinstance(c, str):
        return text(visible_inline(c))  # escapes pipes itself
    return fmt(c)


def table(t: Table) -> str:
    lines = ["| " + " | ".join(cell(h) for h in t.header) + " |",
             "|" + "|".join("---" for _ in t.header) + "|"]
    for row in t.rows:
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(lines)


def block(b, assets: str) -> str:
    if isinstance(b, Quote):
        return "> **" + text(" ".join(b.text.split())) + "**"
    if isinstance(b, Missing):
        return "*" + text(b.text, block=True) + "*"
    if isinstance(b, Link):
        return f"[{text(b.text)}](<{b.href}>)"
    if isinstance(b, Para):
        return text(b.text, block=True)
    if isinstance(b, Table):
        return table(b)
    if isinstance(b, Image):
        return f"![{text(b.alt)}]({assets}/{b.name})"
    if isinstance(b, Details):  # GitHub folds it; the tags are ours, the summary is escaped
        inner = "\n\n".join(block(x, assets) for x in b.blocks)
        return f"<details>\n<summary>{html.escape(b.summary)}</summary>\n\n{inner}\n\n</details>"
    raise TypeError(f"unknown report block {type(b).__name__}")


def section(s: Section, assets: str) -> str:
    head = "#" * s.level + " " + text(s.title)
    return "\n\n".join([head, *(block(b, assets) for b in s.blocks)])


def render_markdown(doc: Document, assets: str = "report_assets") -> str:
    """The report as Markdown; images are referenced as ``assets/<name>``."""
    parts = ["# " + text(doc.title), "*" + text(doc.subtitle) + "*"]
    parts += [section(s, assets) for s in doc.sections]
    return "\n\n".join(parts) + "\n"
