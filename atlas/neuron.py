"""One neuron's row of the atlas, from its records alone (``atlas/build.py`` describes the row).

The work is split so that it can run anywhere: ``neuron_inputs`` (in the process that holds the
scan and the model's tokenizer) cuts a layer's scan into one ``NeuronInput`` per neuron (its top,
bottom and random windows as token strings and activations, its statistics, the names of the
tokens it promotes and suppresses), and ``neuron_row`` (in that process or a worker,
``atlas/workers.py``) explains and scores it. ``neuron_row`` reads nothing else, so a row depends
on its input alone: the same table whichever process made each row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from neurosleuth.score.records import HeldOut, explain_held_out
from neurosleuth.tools.explain import variants
from neurosleuth.tools.pattern import Pattern, phrase
from neurosleuth.tools.records import Record
from neurosleuth.tools.records_explain import RecordsExplainer
from neurosleuth.tools.scan import LayerScan

DENSITY_AT = 0.25  # share of the neuron's top activation that counts as firing, for density
SHOWN = 5  # top and bottom windows kept in the table (the site's heatmaps)
RANDOM_SHOWN = 4  # windows of the random sample kept in the table (a random draw of it)

WindowTokens = Callable[[int], tuple[str, ...]]  # window index -> its token strings


@dataclass(frozen=True)
class NeuronInput:
    """Everything ``neuron_row`` reads about one neuron (records strongest first)."""

    layer: int
    index: int
    top: list[Record]
    rand: list[Record]
    bot: list[Record]
    top_max: float
    min_act: float
    mean: float
    std: float
    frac_pos: float
    promotes: list[str]
    suppresses: list[str]

    def __reduce__(self) -> tuple[Any, tuple]:
        """Sent to a worker compactly: each group's activations as one array, in float16 where
        that is exact (the scan keeps float16), not one float64 array a window (3.5 MB a chunk
        of 64 neurons -> 1.3 MB; the worker gets the same values back)."""
        return (_unpacked, (self.layer, self.index, _pack(self.top), _pack(self.rand),
                            _pack(self.bot), self.top_max, self.min_act, self.mean, self.std,
                            self.frac_pos, self.promotes, self.suppresses))


Packed = tuple[tuple[tuple[str, ...], ...], "np.ndarray | list[np.ndarray]", str]


def _pack(records: Sequence[Record]) -> Packed:
    acts = [r.acts for r in records]
    dtype = acts[0].dtype.str if acts else "<f8"
    if not acts or len({(a.shape, a.dtype) for a in acts}) > 1:
        return tuple(r.tokens for r in records), acts, dtype
    stacked = np.stack(acts)
    small = stacked.astype(np.float16)
    exact = np.array_equal(small.astype(stacked.dtype), stacked)
    return tuple(r.tokens for r in records), small if exact else stacked, dtype


def _unpack(packed: Packed) -> list[Record]:
    tokens, acts, dtype = packed
    return [Record(t, np.asarray(a, dtype=dtype)) for t, a in zip(tokens, acts, strict=True)]


def _unpacked(layer: int, index: int, top: Packed, rand: Packed, bot: Packed,
              *rest: Any) -> NeuronInput:
    return NeuronInput(layer, index, _unpack(top), _unpack(rand), _unpack(bot), *rest)


def _records(scan: LayerScan, n: int, tokens: WindowTokens, which: str) -> list[Record]:
    win, acts = getattr(scan, f"{which}_win"), getattr(scan, f"{which}_acts")
    return [Record(tokens(int(win[j, n]) if which != "rand" else int(win[j])),
                   acts[j, n].astype(float)) for j in range(acts.shape[0])]


def neuron_inputs(scan: LayerScan, tokens: WindowTokens, promotes: Sequence[list[str]],
                  suppresses: Sequence[list[str]], lo: int = 0, hi: int | None = None
                  ) -> list[NeuronInput]:
    """The inputs of neurons ``lo..hi`` (default: all) of ``scan``'s layer; ``promotes[n]`` and
    ``suppresses[n]``: neuron n's output tokens as strings."""
    hi = scan.top_val.shape[1] if hi is None else hi
    return [NeuronInput(
        scan.layer, n, _records(scan, n, tokens, "top"), _records(scan, n, tokens, "rand"),
        _records(scan, n, tokens, "bot"), float(scan.top_val[0, n]), float(scan.bot_val[0, n]),
        float(scan.mean[n]), float(scan.std[n]), float(scan.frac_pos[n]), promotes[n],
        suppresses[n]) for n in range(lo, hi)]


def _json(records: Sequence[Record]) -> str:
    return json.dumps([{"tokens": list(r.tokens), "acts": [round(float(a), 3) for a in r.acts]}
                       for r in records])


def _num(x: float | None) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), 4)


def neuron_row(inp: NeuronInput, seed: int, n_boot: int) -> dict:
    """One neuron's row of the atlas: explained on half its records, scored on the other half
    (``explain_held_out``), its token-list reading and facets scored beside it."""
    top, rand, bot, top_max = inp.top, inp.rand, inp.bot, inp.top_max
    row: dict[str, Any] = {
        "layer": inp.layer, "index": inp.index, "neuron": f"{inp.layer}:{inp.index}",
        "max_act": top_max, "min_act": inp.min_act, "mean": inp.mean, "std": inp.std,
        "frac_pos": inp.frac_pos, "promotes": json.dumps(inp.promotes),
        "suppresses": json.dumps(inp.suppresses)}
    rand_acts = np.concatenate([r.acts for r in rand]) if rand else np.zeros(1)
    row["density"] = (float((rand_acts >= DENSITY_AT * top_max).mean()) if top_max > 0
                      else 0.0)
    h = explain_held_out(RecordsExplainer(row["neuron"]), top, rand)
    ex = h.explanation
    row |= {"explanation": ex.sentence, "details": ex.details, "kind": ex.pattern.kind,
            "concept": ex.pattern.concept.label if ex.pattern.concept and
            ex.pattern.concept.source != "none" else None,
            "context": ex.pattern.context,
            "triggers": json.dumps(sorted(ex.pattern.triggers,
                                          key=lambda w: -ex.pattern.triggers[w])[:12]),
            "pattern": json.dumps(ex.pattern.to_dict())}
    scores: dict[str, float | str | None] = {
        "r": None, "r_lo": None, "r_hi": None, "r_top": None, "r_random": None, "list_r": None,
        "list_explanation": None}
    if h.top and ex.pattern.kind != "none":
        s = h.score(seed=seed, n_boot=n_boot)
        scores |= {"r": _num(s.r), "r_lo": _num(s.lo), "r_hi": _num(s.hi),
                   "r_top": _num(s.top_r), "r_random": _num(s.random_r)}
        row["facets"] = json.dumps(facet_scores(ex.pattern, h, seed))
        others = variants(ex)[1:2]
        if others:
            text, pattern = others[0]
            s = h.score(pattern.simulate, seed=seed, n_boot=0)
            scores |= {"list_r": _num(s.r), "list_explanation": text}
    row |= scores
    row["bare_list"] = ex.pattern.kind != "none" and ex.pattern.bare_list()
    row.setdefault("facets", "[]")
    row |= {"top_windows": _json(top[:SHOWN]), "bottom_windows": _json(bot[:SHOWN]),
            "random_windows": _json(rand[:RANDOM_SHOWN]), "held_windows": len(h.top)}
    return row


def facet_scores(pattern: Pattern, held: HeldOut, seed: int) -> list[dict]:
    """Each facet of a polysemantic neuron's pattern, scored alone on the held-out records
    ([] for a pattern of one facet)."""
    if not pattern.facets:
        return []
    parts = [replace(pattern, facets=()), *pattern.facets]
    return [{"facet": phrase(p), "r": _num(held.score(p.simulate, seed=seed, n_boot=0).r)}
            for p in parts]
