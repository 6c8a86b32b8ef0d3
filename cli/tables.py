"""Terminal tables for the causal tools (ablate, steer, patch, sweep, experiments), with rich.

Every function prints to the console it is given; numbers are signed with 3 significant digits,
``-`` where a metric does not apply. Token text is always printed as text (``markup=False``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # numpy and pandas load when a table is printed, not with the command line
    import pandas as pd


def fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.3g}" if abs(x) < 1e4 else f"{x:+.3e}"


def _table(*columns: str) -> Table:
    table = Table(show_header=True, header_style="bold")
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right")
    return table


def print_intervention(console: Console, r, title: str) -> None:
    """An ``InterventionResult``: each metric next to its random baseline and z-score, then the
    target's probability and the tokens most promoted and suppressed at the last position."""
    console.rule(title, characters="-")
    base = r.baseline
    extra = [f"{r.baseline_label} ({len(base.components)}): mean +- std", "z"] if base else []
    table = _table("metric", "effect", *extra)
    for row in r.summary_frame().itertuples():
        cells = [row.label, fmt(row.value)]
        if base is not None:
            spread = "" if math.isnan(row.baseline_std) else f" +- {abs(row.baseline_std):.3g}"
            cells += [fmt(row.baseline_mean) + spread, "-" if math.isnan(row.z) else f"{row.z:.1f}"]
        table.add_row(*cells)
    console.print(table)
    s = r.summary()
    if r.target_label is not None:
        console.print(
            f"p({r.target_label!r}) {s['p_clean']:.4f} -> {s['p_new']:.4f}   "
            f"loss {s['loss_clean']:.4f} -> {s['loss_new']:.4f}",
            markup=False,
        )
    up = "  ".join(f"{t!r} {d:+.3f}" for t, d in r.promoted[:8])
    down = "  ".join(f"{t!r} {d:+.3f}" for t, d in r.suppressed[:8])
    console.print(f"promoted (last token, mean delta log-prob): {up}", markup=False)
    console.print(f"suppressed: {down}", markup=False)


def print_patch(console: Console, r, title: str) -> None:
    """A ``PatchResult``: effect against the corrupted run, distance to the clean run, recovery."""
    from neurosleuth.tools.patch import RECOVERY

    console.rule(title, characters="-")
    s = r.summary()
    rows = [
        ("KL(corrupt || patched)", s["kl"]),
        ("KL(clean || patched), last", s["kl_anchor"]),
        ("KL(clean || corrupt), last", float(r.kl_clean_corrupt.mean())),
        ("top-1 change vs corrupt", s["top1_change"]),
        ("logit diff change", s["d_logit_diff"]),
        ("target prob change", s["d_prob"]),
        *[(f"recovered ({m})", s[f"recovered_{m}"]) for m in RECOVERY],
    ]
    table = _table("metric", "value")
    for name, v in rows:
        if not math.isnan(v):
            table.add_row(name, fmt(v))
    console.print(table)
    if r.target_label is not None:
        console.print(
            f"p({r.target_label!r}): corrupted {s['p_clean']:.4f} -> patched {s['p_new']:.4f}"
            f" (clean run {float(r.clean_p.mean()):.4f})",
            markup=False,
        )


def print_sweep(console: Console, table: pd.DataFrame, title: str) -> None:
    """A layers x components grid (``SweepResult.pivot``), in integer units of a common power of
    ten (said in the title) so that 30 layers x 10 columns fit an 80-column terminal."""
    import numpy as np

    values = table.to_numpy(dtype=float)
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 0.0
    exp = math.floor(math.log10(top)) - 2 if top > 0 else 0
    console.rule(f"{title}  (units of 1e{exp})", characters="-")
    grid = _table("layer", *map(str, table.columns))
    for layer, row in table.iterrows():
        grid.add_row(str(layer), *["-" if math.isnan(v) else f"{v / 10**exp:.0f}" for v in row])
    console.print(grid)


def print_experiments(console: Console, frame: pd.DataFrame, title: str, limit: int) -> None:
    """The newest ``limit`` rows of ``ExperimentStore.list()`` (all columns: ``--export``)."""
    metrics = [m for m in ("kl", "d_prob", "recovered_kl") if f"result.{m}" in frame]
    table = Table(show_header=True, header_style="bold", title=title)
    for col in ("key", "tool", "model", "component"):
        table.add_column(col, no_wrap=True)
    for m in metrics:
        table.add_column(m, justify="right", no_wrap=True, min_width=7)
    table.add_column("created", no_wrap=True)
    for _, row in frame.head(limit).iterrows():
        comp = row["component"]
        values = [row[f"result.{m}"] for m in metrics]
        table.add_row(
            row["key"][:8],
            str(row["tool"]).rsplit(".", 1)[-1],
            str(row["model"]),
            "-" if comp is None or comp != comp else str(comp),
            *["-" if v is None or v != v else f"{v:.2g}" for v in values],
            row["created"].strftime("%m-%d %H:%M"),
        )
    console.print(table)
