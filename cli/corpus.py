"""``neurosleuth corpus``: what a corpus is made of (``tools/corpus.composition``): per source its
kind of text, language, package, licence, documents and share of the tokens, measured on a
model's tokenizer at a token budget, or (``--nominal``) the nominal shares without a model."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.table import Table

from neurosleuth.cli import (
    CORPUS_HELP,
    DeviceOpt,
    ModelOpt,
    console,
    err_console,
    friendly_errors,
    load,
)


def register(app: typer.Typer) -> None:
    app.command()(corpus)


@friendly_errors
def corpus(
    corpus: Annotated[str, typer.Option(help=CORPUS_HELP)] = "default",
    model: ModelOpt = "smollm2-135m",
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="token budget measured")
                          ] = 1 << 17,
    window: Annotated[int, typer.Option(help="tokens per corpus window")] = 64,
    text_column: Annotated[str | None, typer.Option(
        "--text-column", help="text column of a table or data set (default: text)")] = None,
    nominal: Annotated[bool, typer.Option(
        "--nominal", help="no model: the nominal shares and every source's document count")
    ] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print a Markdown table")] = False,
    device: DeviceOpt = None,
) -> None:
    """The composition of a corpus: one row per source, with its share of the tokens.

    Example: neurosleuth corpus --max-tokens 131072 --markdown
    """
    from neurosleuth.tools.corpus import CorpusWarning, composition, resolve_corpus

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorpusWarning)
        chosen = resolve_corpus(corpus, text_column)
    for w in caught:
        err_console.print(f"warning: {w.message}", markup=False, highlight=False)
    lm = None if nominal else load(model, device)
    with err_console.status("reading the corpus ..."):
        rows = composition(chosen, lm, window=window, max_tokens=max_tokens)
    how = ("nominal shares" if lm is None else  # None: --nominal
           f"{sum(r['tokens'] for r in rows):,} tokens of {lm.name} in {window}-token windows")
    console.print(f"corpus {chosen.describe()}: {how}", markup=False, highlight=False)
    print_composition(rows, markdown)


COLUMNS = ("source", "kind", "language", "package", "licence", "documents", "share")


def print_composition(rows: list[dict], markdown: bool = False) -> None:
    cells = [[str(r[c]) if c not in ("documents", "share") else
              f"{r['documents']:,}" if c == "documents" else f"{r['share']:.1%}"
              for c in COLUMNS] for r in rows]
    if markdown:
        console.print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS),
                      markup=False, highlight=False, soft_wrap=True)
        for row in cells:
            console.print("| " + " | ".join(row) + " |", markup=False, highlight=False,
                          soft_wrap=True)
        return
    table = Table(show_header=True, header_style="bold")
    for c in COLUMNS:
        table.add_column(c, justify="right" if c in ("documents", "share") else "left")
    for row in cells:
        table.add_row(*row)
    console.print(table)
