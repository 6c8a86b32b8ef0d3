"""One neuron's dataset exemplars as JSON-ready data (what a run saves as ``exemplars.json`` and the
score reads), and cut into short snippets that end at the peak token (what the planner is shown,
and the score's top contexts). Here, below the agent and the score, because both read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurosleuth.tools.corpus import Corpus
from neurosleuth.tools.exemplars import Exemplar, ExemplarResult, exemplars
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId

CONTEXT_TOKENS = 16  # tokens of context kept before the peak
Snippet = tuple[float, str, str]  # (activation, peak token, text ending at the peak)


def _exemplar_dict(e: Exemplar) -> dict[str, Any]:
    acts = [float(a) for a in e.acts]
    return {
        "text": e.window.text,
        "tokens": list(e.window.tokens),
        "acts": acts,
        "max_act": float(max(acts)),
        "min_act": float(min(acts)),
        "argmax": int(e.pos),
        "value": float(e.value),
        "source": e.window.source,
        "doc": e.window.doc,
    }


def exemplar_data(
    lm: LoadedModel,
    neuron: NeuronId,
    *,
    corpus: Corpus | str | Path | None,
    k: int,
    window: int,
    max_tokens: int,
) -> tuple[dict[str, Any], ExemplarResult]:
    """The neuron's top and bottom ``k`` windows of the (cached) scan, its activation quantiles
    and moments, as JSON-ready data; and the scan result, for how deep it went."""
    result = exemplars(lm, [neuron], corpus=corpus, k=k, window=window, max_tokens=max_tokens)
    ex = result[neuron]
    stats = ex.stats
    data = {
        "corpus": result.corpus,
        "window": result.window,
        "tokens_scanned": int(stats.n_tokens),
        "top": [_exemplar_dict(e) for e in ex.top],
        "bottom": [_exemplar_dict(e) for e in ex.bottom],
        "quantiles": {
            f"q{q:g}": float(v) for q, v in zip(stats.levels, stats.token_quantiles, strict=True)
        },
        "mean": float(stats.mean),
        "std": float(stats.std),
        "frac_positive": float(stats.frac_positive),
    }
    return data, result


def snippets_from_json(data: dict[str, Any]) -> list[Snippet]:
    """(activation, peak token, text ending at the peak) per top exemplar, duplicates dropped."""
    out: list[Snippet] = []
    seen: set[str] = set()
    for e in data.get("top", []):
        pos = int(e["argmax"])
        text = "".join(e["tokens"][max(0, pos - CONTEXT_TOKENS) : pos + 1])
        if text.strip() and text not in seen:
            seen.add(text)
            out.append((float(e["max_act"]), e["tokens"][pos], text))
    return out
