"""Self-contained HTML rendering of the report: inline CSS, plots as base64 PNG data URIs, no
script, no external resource (a Content-Security-Policy meta tag forbids both as a second line of
defence). Every string from the run (prompts, tokens, hypotheses, steering messages, run id, model
name) passes through ``html.escape`` here and nowhere else.

Heatmaps are inline spans whose background follows the activation: green for positive, red for
negative, opacity |act| / scale where scale is the neuron's largest |activation| in the run; the
``title`` attribute gives the value. Newlines, tabs and all-space tokens are made visible.
"""

from __future__ import annotations

import base64
import html

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
    visible,
)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72rem;
       margin: 2rem auto; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem;
     margin-top: 2rem; } h3 { margin-top: 1.4rem; }
.subtitle { color: #57606a; margin-top: 0; }
.hypothesis { font-size: 1.2rem; font-weight: 600; border-left: 4px solid #2da44e;
              padding: .4rem .8rem; background: #f6f8fa; }
.missing { color: #8c959f; font-style: italic; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; vertical-align: top; text-align: left; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .85rem;
       white-space: pre-wrap; word-break: break-word; }
.heat { line-height: 1.7; }
.tok { white-space: pre; border-radius: 2px; margin-right: 1px; }
.max { outline: 1.5px solid #1f2328; }
mark { background: #fff3b0; }
img { max-width: 100%; border: 1px solid #d0d7de; }
nav > ul { columns: 2; font-size: .9rem; } nav li { break-inside: avoid; }
details { margin: .6rem 0; border: 1px solid #d0d7de; border-radius: 4px; padding: .3rem .6rem; }
summary { cursor: pointer; color: #57606a; }
"""


def esc(s: object) -> str:
    """Escape any value for HTML text or a double-quoted attribute."""
    return html.escape(str(s), quote=True)


def token_colour(act: float, scale: float) -> str:
    """CSS background for one activation: green positive, red negative, opacity |act|/scale."""
    x = max(-1.0, min(1.0, act / scale)) if scale > 0 else 0.0
    rgb = "22,163,74" if x >= 0 else "220,38,38"
    return f"rgba({rgb},{abs(x):.2f})"


def heatmap(h: Heatmap) -> str:
    spans = []
    for i, (tok, act) in enumerate(zip(h.tokens, h.acts, strict=True)):
        cls = "tok max" if i == h.mark else "tok"
        shown = esc(visible(tok))
        if "\n" in tok:
            shown += "<br>"
        spans.append(f'<span class="{cls}" style="background:{token_colour(act, h.scale)}" '
                     f'title="{act:+.4g} {esc(repr(tok))}">{shown}</span>')
    return f'<code class="heat">{"".join(spans)}</code>'


def prompt(p: Prompt) -> str:
    if p.mark is None:
        return f"<code>{esc(visible(p.text))}</code>"
    a, b = p.mark
    pre, mid, post = (p.text[:a], p.text[a:b], p.text[b:])
    return f"<code>{esc(visible(pre))}<mark>{esc(visible(mid))}</mark>{esc(visible(post))}</code>"


def cell(c: Cell, tag: str = "td") -> str:
    if isinstance(c, Heatmap):
        return f"<{tag}>{heatmap(c)}</{tag}>"
    if isinstance(c, Prompt):
        return f"<{tag}>{prompt(c)}</{tag}>"
    if isinstance(c, int | float) and not isinstance(c, bool):
        return f'<{tag} class="num">{esc(fmt(c))}</{tag}>'
    return f"<{tag}>{esc(fmt(c))}</{tag}>"


def table(t: Table) -> str:
    head = "".join(cell(h, "th") for h in t.header)
    body = "\n".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in t.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def image(img: Image) -> str:
    data = base64.b64encode(img.png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(img.alt)}">'


def block(b) -> str:
    if isinstance(b, Quote):
        return f'<p class="hypothesis">{esc(b.text)}</p>'
    if isinstance(b, Missing):
        return f'<p class="missing">{esc(b.text)}</p>'
    if isinstance(b, Link):
        return f'<p><a href="{esc(b.href)}">{esc(b.text)}</a></p>'
    if isinstance(b, Para):
        return "<p>" + esc(b.text).replace("\n", "<br>\n") + "</p>"
    if isinstance(b, Table):
        return table(b)
    if isinstance(b, Image):
        return image(b)
    if isinstance(b, Details):
        inner = "\n".join(block(x) for x in b.blocks)
        return f"<details>\n<summary>{esc(b.summary)}</summary>\n{inner}\n</details>"
    raise TypeError(f"unknown report block {type(b).__name__}")


def section(s: Section) -> str:
    level = max(2, min(6, s.level))
    head = f'<h{level} id="{esc(s.anchor)}">{esc(s.title)}</h{level}>'
    return "\n".join([head, *(block(b) for b in s.blocks)])


def contents(doc: Document) -> str:
    """Links to every section, subsections nested under their section."""
    items: list[str] = []
    subs: list[str] = []

    def close() -> None:
        if subs and items:
            items[-1] = items[-1][: -len("</li>")] + "<ul>" + "".join(subs) + "</ul></li>"
        else:
            items.extend(subs)
        subs.clear()

    for s in doc.sections:
        link = f'<li><a href="#{esc(s.anchor)}">{esc(s.title)}</a></li>'
        if s.level == 2:
            close()
            items.append(link)
        else:
            subs.append(link)
    close()
    return f"<nav><ul>{''.join(items)}</ul></nav>"


def render_html(doc: Document) -> str:
    """The report as one HTML page that needs nothing but itself."""
    body = "\n".join(section(s) for s in doc.sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{esc(doc.title)}</h1>\n<p class=\"subtitle\">{esc(doc.subtitle)}</p>\n"
        f"{contents(doc)}\n{body}\n</body>\n</html>\n"
    )
