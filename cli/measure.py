"""``neurosleuth measure``: per-token activations of neurons on your text, as a heatmap."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from neurosleuth.cli import (
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    console,
    friendly_errors,
    load,
    neuron_checked,
    precheck,
)
from neurosleuth.cli.terminal import token_heatmap


def register(app: typer.Typer) -> None:
    app.command()(measure)


@friendly_errors
def measure(
    texts: Annotated[list[str], typer.Argument(help="one or more texts to run")],
    neuron: Annotated[list[str], typer.Option("--neuron", "-n", help="LAYER:INDEX, repeatable")],
    model: ModelOpt = "smollm2-135m",
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Per-token activations of one or more neurons on TEXTS, printed as a token heatmap."""
    precheck(model, neuron)  # before the model loads: a bad neuron fails at once
    from neurosleuth.tools.measure import measure as run_measure

    lm = load(model, device, dtype, device_map)
    neurons = [neuron_checked(lm, s) for s in neuron]
    result = run_measure(lm, texts, neurons)
    for n in neurons:
        vmax = float(result.max_act[:, result.column(n)].max())
        console.rule(f"neuron {n}  ({lm.describe()})")
        table = Table(show_header=True, header_style="bold")
        table.add_column("max", justify="right")
        table.add_column("at")
        table.add_column("text (green: activation)")
        for i in range(len(texts)):
            col = result.column(n)
            table.add_row(
                f"{result.max_act[i, col]:.3f}",
                repr(result.max_token(i, n)),
                token_heatmap(
                    result.tokens[i],
                    result.per_token(i, n),
                    vmax,
                    mark=int(result.argmax_pos[i, col]),
                ),
            )
        console.print(table)
        for i in range(len(texts)):
            per_tok = "  ".join(
                f"{t!r}:{a:.3f}"
                for t, a in zip(result.tokens[i], result.per_token(i, n), strict=True)
            )
            console.print(per_tok, markup=False, highlight=False, soft_wrap=True)
