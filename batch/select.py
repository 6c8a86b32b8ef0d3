"""Which neurons a batch investigates: a list (``12:345 12:0-9``), a range of one layer, a CSV,
the ranked CSV written by ``neurosleuth locate --out``, or ``--auto N`` picks from the corpus scan.

``--auto`` ranks every neuron of a layer by the corpus scan's statistics (``tools/scan.py``:
exact max, mean, std and fraction positive; other quantiles from a fixed token sample) and keeps
neurons that are

- **alive**: max > 0 and std > 0;
- **sparse**: the 0.99 token quantile is at most ``SPARSE_FRAC`` of the max (strong firing on
  fewer than ~1% of tokens);
- **consistent**: the ``CONSISTENT_RANK``-th best window still reaches ``CONSISTENT_FRAC`` of the
  max (the peak is not one outlier window);

then sorts them by peakiness ``(max - median) / std``: how many standard deviations the largest
activation sits above the typical one, a heavy-tail measure in the spirit of the max-to-median and
kurtosis criteria used to find monosemantic units. If fewer than N pass, the best of the rest
fill the list and their reason says which test they failed. Caveat: the quantiles come from a
16k-token sample, so "sparse" is approximate for very rare neurons.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurosleuth.tools.neurons import NeuronError, NeuronId, parse_neurons

SPARSE_FRAC = 0.5
CONSISTENT_RANK = 10
CONSISTENT_FRAC = 0.3


@dataclass(frozen=True)
class NeuronPick:
    neuron: NeuronId
    reason: str | None = None  # why it was chosen (``--auto``, ``--from-locate``)


def unique(picks: list[NeuronPick]) -> list[NeuronPick]:
    """Drop repeated neurons, keeping the first (and its reason)."""
    seen: set[NeuronId] = set()
    out = []
    for p in picks:
        if p.neuron not in seen:
            seen.add(p.neuron)
            out.append(p)
    return out


def parse_indices(text: str) -> list[int]:
    """``"0-99"``, ``"3,7,10-12"`` -> indices."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"bad neuron range {text!r}: use e.g. 0-99 or 3,7,10-12")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise ValueError(f"bad neuron range {part!r}: the end is below the start")
        out.extend(range(lo, hi + 1))
    return out


def from_specs(specs: list[str] | None, layer: int | None = None, neurons: str | None = None
               ) -> list[NeuronPick]:
    """Neurons named as ``LAYER:INDEX`` specs and/or ``--layer L --neurons RANGE``."""
    picks = [NeuronPick(n) for n in parse_neurons(list(specs or []))]
    if neurons is not None:
        if layer is None:
            raise ValueError("--neurons needs --layer")
        picks += [NeuronPick(NeuronId(layer, i)) for i in parse_indices(neurons)]
    return picks


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows")
    cols = set(rows[0])
    if not ({"layer", "index"} <= cols or "neuron" in cols):
        raise ValueError(f"{path}: needs columns layer,index or neuron (found {sorted(cols)})")
    return rows


def _neuron(row: dict[str, str], path: Path, line: int) -> NeuronId:
    try:
        if row.get("layer") not in (None, "") and row.get("index") not in (None, ""):
            return NeuronId(int(row["layer"]), int(row["index"]))
        return NeuronId.parse((row.get("neuron") or "").strip())
    except (TypeError, ValueError, NeuronError) as err:
        raise ValueError(f"{path} line {line}: {err}") from None


def from_csv(path: Path) -> list[NeuronPick]:
    """Rows with ``layer`` and ``index`` columns, or a ``neuron`` column (``12:345``); an
    optional ``reason`` column is kept."""
    return [NeuronPick(_neuron(row, path, i), row.get("reason") or None)
            for i, row in enumerate(_read_rows(path), start=2)]


def from_locate(path: Path) -> list[NeuronPick]:
    """The table written by ``neurosleuth locate --out``, in rank order; the reason quotes the
    rank, the attribution estimate and the verified ablation effect."""
    ranked = []
    for i, row in enumerate(_read_rows(path), start=2):
        bits = [f"locate rank {row['rank']}" if row.get("rank") else "from locate"]
        for col, label in (("attribution", "attribution"), ("verified_effect", "verified effect")):
            if row.get(col) not in (None, "", "nan"):
                bits.append(f"{label} {float(row[col]):+.4g}")
        rank = float(row["rank"]) if row.get("rank") else float(i)
        ranked.append((rank, NeuronPick(_neuron(row, path, i), ", ".join(bits))))
    return [p for _, p in sorted(ranked, key=lambda t: t[0])]


def rank_interesting(levels: np.ndarray, token_q: np.ndarray, std: np.ndarray,
                     top_val: np.ndarray, n: int) -> list[tuple[int, str]]:
    """(neuron index, reason) of the ``n`` most interesting neurons of one layer's scan
    (arrays as in ``LayerScan``: ``token_q`` (Q, d_mlp), ``std`` (d_mlp,), ``top_val``
    (keep, d_mlp) descending window maxima)."""
    levels = np.asarray(levels, float)
    q = lambda level: token_q[int(np.argmin(np.abs(levels - level)))]  # noqa: E731
    mx, med, q99 = q(1.0), q(0.5), q(0.99)  # (d_mlp,)
    kth = top_val[min(CONSISTENT_RANK, top_val.shape[0]) - 1]  # (d_mlp,)
    alive = (mx > 0) & (std > 1e-8)
    safe_std = np.where(std > 1e-8, std, 1.0)
    peak = np.where(alive, (mx - med) / safe_std, -np.inf)  # (d_mlp,)
    sparse = q99 <= SPARSE_FRAC * mx
    consistent = kth >= CONSISTENT_FRAC * mx
    good = alive & sparse & consistent
    order = sorted(range(len(mx)), key=lambda j: (not good[j], -peak[j]))
    out = []
    for j in order[:n]:
        if not alive[j]:
            break  # never pick a dead neuron
        why = (f"max {mx[j]:.3g} is {peak[j]:.1f} sd above the median {med[j]:.3g}; "
               f"q0.99 = {q99[j] / mx[j]:.0%} of max; window #{CONSISTENT_RANK} at "
               f"{kth[j] / mx[j]:.0%} of max")
        if not good[j]:
            failed = [name for name, ok in (("sparse", sparse[j]), ("consistent", consistent[j]))
                      if not ok]
            why += f" (filler: not {' or '.join(failed)})"
        out.append((int(j), why))
    return out


def auto_pick(lm, layer: int, n: int, corpus: str | None = None, window: int = 64,
              max_tokens: int | None = None) -> list[NeuronPick]:
    """The ``n`` most interesting neurons of ``layer`` from the (cached) corpus scan."""
    from neurosleuth.tools.exemplars import layer_scans

    if n < 1:
        raise ValueError(f"--auto needs a positive count, got {n}")
    _, scans, _, _ = layer_scans(lm, [layer], corpus, window, max_tokens)
    s = scans[layer]
    ranked = rank_interesting(s.levels, s.token_q, s.std, s.top_val, n)
    if not ranked:
        raise ValueError(f"every neuron of layer {layer} is dead on this corpus")
    return [NeuronPick(NeuronId(layer, j), f"auto: {why}") for j, why in ranked]


ATLAS_SPARSE = 0.05  # density at or below which a neuron counts as sparse
ATLAS_CONSISTENT = 0.3  # its 5th top window reaches this share of its max
ATLAS_STRONG_SD = 4.0  # its max is this many sd above its mean


def from_atlas(folder: Path, n: int) -> list[NeuronPick]:
    """The ``n`` neurons of an atlas (``neurosleuth atlas``) where a deep dive helps most:
    strong (max >= 4 sd above the mean), sparse (density <= 5%) and consistent (the 5th top
    window reaches 30% of the max) but poorly explained (low simulation r of the atlas's
    records-based explanation); ranked by 1 - r among those that pass all three, then the rest.
    Dead neurons are never picked. Each pick's reason quotes the numbers."""
    import json

    import pandas as pd

    path = Path(folder) / "atlas.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no atlas.parquet: build it with `neurosleuth atlas`")
    if n < 1:
        raise ValueError(f"--pick needs a positive count, got {n}")
    frame = pd.read_parquet(path)
    picks = []
    for _, row in frame.iterrows():
        if row["kind"] == "none" or not row["max_act"] > 0:
            continue
        tops = [max(w["acts"]) for w in json.loads(row["top_windows"])]
        fifth = tops[min(4, len(tops) - 1)] / row["max_act"] if tops else 0.0
        sd = (row["max_act"] - row["mean"]) / row["std"] if row["std"] > 0 else 0.0
        r = float(row["r"]) if row["r"] is not None and not pd.isna(row["r"]) else 0.0
        good = (sd >= ATLAS_STRONG_SD and row["density"] <= ATLAS_SPARSE
                and fifth >= ATLAS_CONSISTENT)
        why = (f"atlas: explained with r {r:+.2f} ({row['explanation'][:60]!r}); max "
               f"{row['max_act']:.3g} = {sd:.1f} sd above the mean; density {row['density']:.1%};"
               f" window #5 at {fifth:.0%} of max")
        if not good:
            why += " (filler: not strong, sparse and consistent)"
        picks.append((not good, r, NeuronPick(NeuronId(int(row["layer"]), int(row["index"])),
                                              why)))
    picks.sort(key=lambda t: (t[0], t[1]))
    if not picks:
        raise ValueError(f"every neuron of the atlas in {folder} is dead")
    return [p for _, _, p in picks[:n]]
