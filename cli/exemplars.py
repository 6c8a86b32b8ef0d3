"""``neurosleuth exemplars``: the corpus windows that activate a neuron most (and least)."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from neurosleuth.cli import (
    CORPUS_HELP,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    console,
    err_console,
    friendly_errors,
    load,
    neuron_checked,
    precheck,
)
from neurosleuth.cli.terminal import token_heatmap


def register(app: typer.Typer) -> None:
    app.command()(exemplars)


@friendly_errors
def exemplars(
    neuron: Annotated[list[str], typer.Option("--neuron", "-n", help="LAYER:INDEX, repeatable")],
    model: ModelOpt = "smollm2-135m",
    k: Annotated[int, typer.Option("-k", "--top", help="windows to show per neuron")] = 20,
    max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", help="corpus token budget (default: 65536 on CPU, 1048576 on CUDA)"
    )] = None,
    window: Annotated[int, typer.Option(help="tokens per corpus window")] = 64,
    bottom: Annotated[bool, typer.Option(
        "--bottom", help="also show the windows with the lowest (most negative) activation"
    )] = False,
    corpus: Annotated[str, typer.Option(help=CORPUS_HELP)] = "default",
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Top-K corpus windows of a neuron, max token underlined, with its activation quantiles.

    The first run for a layer scans the corpus for every neuron of that layer (progress bar) and
    caches the result; later runs for any neuron of that layer are instant.

    Example: neurosleuth exemplars --neuron 12:345 -k 5 --max-tokens 20000 --bottom
    """
    precheck(model, neuron)  # before loading the model: a bad neuron or corpus fails fast
    from neurosleuth.tools.corpus import CorpusWarning, resolve_corpus

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorpusWarning)
        chosen = resolve_corpus(corpus)
    for w in caught:
        err_console.print(f"warning: {w.message}", markup=False, highlight=False)
    from neurosleuth.tools.exemplars import exemplars as run_exemplars

    lm = load(model, device, dtype, device_map)
    neurons = [neuron_checked(lm, s) for s in neuron]
    with Progress(TextColumn("scanning {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("tokens"), TimeRemainingColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task(f"layer(s) {', '.join(sorted({str(n.layer) for n in neurons}))}",
                            total=None)
        result = run_exemplars(lm, neurons, chosen, k=k, window=window, max_tokens=max_tokens,
                               progress=lambda done, total: bar.update(task, completed=done,
                                                                       total=total))
    _print_result(lm, result, k, bottom)


def _print_result(lm, result, k: int, bottom: bool) -> None:
    how = (f"scanned layer(s) {', '.join(map(str, result.scanned_layers))} in "
           f"{result.seconds:.1f} s" if result.scanned_layers else "from cache")
    per_source = ", ".join(f"{s} {t}" for s, t in result.source_tokens.items())
    console.print(f"{lm.describe()} | corpus {result.corpus}: {result.n_windows} windows of "
                  f"{result.window} tokens ({per_source}) | {how}", markup=False, highlight=False)
    for n in result.neurons:
        ex = result[n]
        st = ex.stats
        qs = "  ".join(f"q{lv:g}={v:.3f}" for lv, v in
                       zip(st.levels, st.token_quantiles, strict=True))
        console.rule(f"neuron {n}")
        console.print(f"per-token: mean {st.mean:.3f}  std {st.std:.3f}  >0 {st.frac_positive:.1%}"
                      f"  {qs}", markup=False, highlight=False)
        _table(f"top {min(k, len(ex.top))} windows (by max activation)", ex.top, ex.stats.max)
        if bottom:
            _table(f"bottom {min(k, len(ex.bottom))} windows (by min activation)", ex.bottom,
                   abs(ex.stats.min))


def _table(title: str, exemplars, vmax: float) -> None:
    """Each window as a header line (rank, value, token, where) and its token heatmap."""
    console.print(title, style="bold", highlight=False)
    for r, e in enumerate(exemplars, 1):
        console.print(f"#{r:<3} {e.value:8.3f}  at {e.token!r}  {_where(e.window)}",
                      style="dim", markup=False, highlight=False)
        console.print(token_heatmap(e.window.tokens, e.acts, vmax, mark=e.pos))


def _where(window) -> str:
    doc = window.doc if len(window.doc) <= 24 else window.doc[:21] + "..."
    return f"{window.source}:{doc}"
