"""Dataset exemplars for an investigation: the corpus scan's top and bottom windows of the
neuron (``tools/exemplars.py``, cached per layer), saved as ``exemplars.json``, and cut into
short snippets that end at the peak token; these seed the search and are shown to the planner.

Depth: the scan covers ``cfg.exemplar_tokens`` tokens (chosen from the time budget unless given:
``agents/config.py``). ``exemplars.json`` records how deep it went (``tokens_scanned``,
``windows_scanned``, ``whole_corpus``, the corpus size) and, for a scan of part of the corpus, the
expected dataset max at full depth (``max_full_depth``: an estimate, ``tools/exemplars.py``
``expected_max``: an exponential tail fitted to the top window maxima, extrapolated)."""

from __future__ import annotations

from typing import Any

from neurosleuth.agents.config import RunConfig, scan_depth
from neurosleuth.tools.exemplars import Exemplar, ExemplarResult, exemplars, expected_max
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId

CONTEXT_TOKENS = 16  # tokens of context kept before the peak


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


def exemplar_snippets(
    lm: LoadedModel, neuron: NeuronId, cfg: RunConfig
) -> tuple[dict[str, Any], list[tuple[float, str, str]]]:
    result = exemplars(
        lm,
        [neuron],
        corpus=cfg.corpus,
        k=max(cfg.k, 2 * cfg.prompts_per_step),
        window=cfg.window,
        max_tokens=cfg.exemplar_tokens,
    )
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
        **depth_fields(result, [e.value for e in ex.top], cfg),
    }
    return data, snippets_from_json(data, lm)


def depth_fields(result: ExemplarResult, top: list[float], cfg: RunConfig) -> dict[str, Any]:
    """How deep the scan went, why, and the expected dataset max at full depth (a sample)."""
    auto, why = scan_depth(cfg.time_budget_s, cfg.device, cfg.model)
    policy = (f"chosen from the time budget ({why})" if cfg.exemplar_tokens == auto
              else "exemplar_tokens of the run config (given, or set by its batch)")
    est = None if result.whole_corpus else expected_max(top, result.n_windows,
                                                         result.corpus_windows)
    return {
        "scan_tokens": result.max_tokens,
        "scan_policy": policy,
        "windows_scanned": result.n_windows,
        "whole_corpus": result.whole_corpus,
        "corpus_tokens": result.corpus_windows * result.window,
        "corpus_tokens_estimated": not result.whole_corpus,
        "max_full_depth": None if est is None else {
            "value": est.value, "lo": est.lo, "hi": est.hi, "k": est.k, "scale": est.scale,
            "windows_scanned": est.n_scanned, "windows_full": est.n_full,
            "method": "exponential tail fitted to the top window maxima, extrapolated to the "
                      "corpus's window count (Gumbel mean; 80% range)"},
    }


def snippets_from_json(
    data: dict[str, Any], lm: LoadedModel | None = None
) -> list[tuple[float, str, str]]:
    """(activation, peak token, text ending at the peak) per top exemplar, duplicates dropped."""
    out: list[tuple[float, str, str]] = []
    seen: set[str] = set()
    for e in data.get("top", []):
        pos = int(e["argmax"])
        text = "".join(e["tokens"][max(0, pos - CONTEXT_TOKENS) : pos + 1])
        if text.strip() and text not in seen:
            seen.add(text)
            out.append((float(e["max_act"]), e["tokens"][pos], text))
    return out


def seed_prompts(data: dict[str, Any], n: int) -> list[str]:
    """The first prompts of a search: half are top windows up to their peak token (the model is
    causal and scanned windows start without context, so such a prefix, kept unstripped so it
    tokenises back to the same tokens, reproduces the window's peak activation: the search
    starts at the dataset maximum), half short snippets ending at the
    peak (shorter context sometimes fires the neuron harder). Duplicates dropped, order kept."""
    prefixes = []
    for e in data.get("top", []):
        text = "".join(e["tokens"][: int(e["argmax"]) + 1])  # not stripped: same tokens
        if text.strip():
            prefixes.append(text)
    snippets = [s for _, _, s in snippets_from_json(data)]
    half = (n + 1) // 2
    mixed = prefixes[:half] + snippets[: n - half] + prefixes[half:] + snippets[n - half:]
    return list(dict.fromkeys(mixed))[:n]
