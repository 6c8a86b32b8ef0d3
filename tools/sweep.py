"""Layer sweeps: the same intervention at every MLP layer and every attention head, as a table and
a heatmap.

``sweep`` ablates (zero, mean, resample or scale; see ``ablate``) each whole MLP layer
(``blocks.L.hook_mlp_out``) and each attention head (``blocks.L.attn.hook_z``) in turn; all
components share one clean run and are batched together (``interventions.run_variants``).
``patch_sweep`` patches each MLP layer, head and residual stream from a clean into a corrupted
run (``patch.patch_components``) and reports how much of the clean behaviour each restores.

The heatmap has one row per layer and one column per component kind (``mlp``, ``resid`` and
``h0 .. h{H-1}``); it is written with matplotlib's Agg backend (no display needed).
Caveat: ablating one component at a time misses components that back each other up (redundancy,
"self-repair": McGrath et al. 2023, "The Hydra effect"), so a small effect is not proof that a
component does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from neurosleuth.tools.ablate import ablation_ops, encode_all, make_targets
from neurosleuth.tools.effects import LABELS, METRICS
from neurosleuth.tools.interventions import (
    AttnHead,
    MLPLayer,
    Resid,
    edits,
    run_variants,
)
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.patch import patch_components


@dataclass(frozen=True, eq=False)
class SweepResult:
    """One row per component: kind (mlp/head/resid), layer, head (-1 if none), metrics."""

    frame: pd.DataFrame
    kind: str  # the ablation mode, or "patch"
    params: dict

    def pivot(self, metric: str) -> pd.DataFrame:
        """Layers x columns (``mlp``, ``resid``, ``h0``..) of one metric."""
        f = self.frame.assign(
            column=[
                k if h < 0 else f"h{h}"
                for k, h in zip(self.frame["kind"], self.frame["head"], strict=True)
            ]
        )
        table = f.pivot(index="layer", columns="column", values=metric)
        heads = sorted((c for c in table.columns if c.startswith("h")), key=lambda c: int(c[1:]))
        return table[[c for c in ("mlp", "resid") if c in table.columns] + heads]

    def top(self, metric: str, n: int = 10) -> pd.DataFrame:
        """The ``n`` components with the largest absolute ``metric``."""
        return self.frame.reindex(self.frame[metric].abs().sort_values(ascending=False).index)[:n]

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "params": self.params,
            "rows": self.frame.astype(object).where(self.frame.notna(), None).to_dict("records"),
        }

    @classmethod
    def from_dict(cls, d: dict) -> SweepResult:
        return cls(
            pd.DataFrame(d["rows"]).astype({m: float for m in _columns(d["rows"])}),
            d["kind"],
            d["params"],
        )


def _columns(rows: list[dict]) -> list[str]:
    keys = rows[0].keys() if rows else []
    return [k for k in keys if k not in ("component", "kind", "layer", "head")]


# The components a sweep runs over: whole layers and heads, each in one layer.
_Swept = MLPLayer | AttnHead | Resid


def _components(lm: LoadedModel, mlp: bool, heads: bool, resid: bool = False) -> list[_Swept]:
    out: list[_Swept] = []
    for layer in range(lm.n_layers):
        out += [MLPLayer(layer)] if mlp else []
        out += [Resid(layer)] if resid else []
        out += [AttnHead(layer, h) for h in range(lm.n_heads)] if heads else []
    if not out:
        raise ValueError("nothing to sweep: enable MLP layers, heads or the residual stream")
    return out


def _row(c: _Swept, summary: dict[str, float]) -> dict:
    kind = {MLPLayer: "mlp", AttnHead: "head", Resid: "resid"}[type(c)]
    return {
        "component": str(c),
        "kind": kind,
        "layer": c.layer,
        "head": c.head if isinstance(c, AttnHead) else -1,
        **summary,
    }


def sweep(
    lm: LoadedModel,
    prompts: Sequence[str],
    mode: str = "zero",
    *,
    scale: float = 0.0,
    reference: Sequence[str] | None = None,
    seed: int = 0,
    target: str | int | None = None,
    pair: tuple[str | int, str | int] | None = None,
    at: Literal["all", "last"] = "all",
    positions: Sequence[int] | None = None,
    mlp: bool = True,
    heads: bool = True,
    tokens_per_batch: int | None = None,
) -> SweepResult:
    """Ablate every MLP layer and every head in turn; one row of effect means per component."""
    comps = _components(lm, mlp, heads)
    ids = encode_all(lm, prompts)
    op, params = ablation_ops(lm, ids, comps, mode, scale=scale, reference=reference, seed=seed)
    effects = run_variants(
        lm,
        ids,
        [edits(c, op) for c in comps],
        make_targets(lm, target, pair, at),
        positions,
        tokens_per_batch,
    )
    rows = [
        _row(c, {m: e.summary()[m] for m in METRICS}) for c, e in zip(comps, effects, strict=True)
    ]
    return SweepResult(
        pd.DataFrame(rows),
        mode,
        {**params, "at": at, "target": target, "positions": list(positions) if positions else None},
    )


def patch_sweep(
    lm: LoadedModel,
    clean: Sequence[str],
    corrupt: Sequence[str],
    *,
    target: str | int | None = None,
    pair: tuple[str | int, str | int] | None = None,
    positions: Sequence[int] | None = None,
    mlp: bool = True,
    heads: bool = True,
    resid: bool = True,
    tokens_per_batch: int | None = None,
) -> SweepResult:
    """Patch every MLP layer, head and residual stream from clean into corrupted in turn."""
    comps = _components(lm, mlp, heads, resid)
    results = patch_components(
        lm,
        clean,
        corrupt,
        comps,
        positions=positions,
        target=target,
        pair=pair,
        tokens_per_batch=tokens_per_batch,
    )
    rows = [_row(c, r.summary()) for c, r in zip(comps, results, strict=True)]
    return SweepResult(
        pd.DataFrame(rows),
        "patch",
        {"target": target, "pair": pair, "positions": list(positions) if positions else None},
    )


def default_metric(result: SweepResult) -> str:
    """The metric a heatmap shows by default: recovery for patching, else the target's
    probability change when a target was given, else KL."""
    f = result.frame
    if result.kind == "patch":
        for m in ("recovered_logit_diff", "recovered_prob", "recovered_kl"):
            if m in f and f[m].notna().any():
                return m
    for m in ("d_logit_diff", "d_prob"):
        if m in f and f[m].notna().any():
            return m
    return "kl"


def plot_heatmap(
    result: SweepResult, path: str | Path, metric: str | None = None, title: str | None = None
) -> Path:
    """Write the layers x components heatmap of ``metric`` to ``path`` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = metric or default_metric(result)
    table = result.pivot(metric)
    values = table.to_numpy(dtype=float)
    signed = (values[~pd.isna(values)] < 0).any()
    vmax = float(abs(pd.DataFrame(values).abs().max().max())) or 1.0
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.45 * table.shape[1] + 2), max(3.0, 0.3 * len(table) + 1.5))
    )
    image = ax.imshow(
        values,
        aspect="auto",
        cmap="RdBu_r" if signed else "viridis",
        vmin=-vmax if signed else 0.0,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.set_xticks(
        range(table.shape[1]), list(table.columns), rotation=90 if table.shape[1] > 12 else 0
    )
    ax.set_yticks(range(len(table)), [str(i) for i in table.index])
    ax.set_xlabel("component")
    ax.set_ylabel("layer")
    ax.set_title(title or f"{result.kind}: {LABELS.get(metric, metric)}")
    fig.colorbar(image, ax=ax, label=LABELS.get(metric, metric))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
