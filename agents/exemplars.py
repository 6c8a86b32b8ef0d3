"""Dataset exemplars for an investigation: the corpus scan's top and bottom windows of the
neuron (``tools/exemplars.py``, cached per layer), saved as ``exemplars.json``, and cut into
short snippets that end at the peak token (``tools/snippets.py``); these seed the search and are
shown to the planner.

Depth: the scan covers ``cfg.exemplar_tokens`` tokens (chosen from the time budget unless given:
``agents/config.py``). ``exemplars.json`` records how deep it went (``tokens_scanned``,
``windows_scanned``, ``whole_corpus``, the corpus size) and, for a scan of part of the corpus, the
expected dataset max at full depth (``max_full_depth``: an estimate, ``tools/exemplars.py``
``expected_max``: an exponential tail fitted to the top window maxima, extrapolated).

Two sets of top windows: ``top`` (the first ``max(k, 2 * prompts_per_step)``), which the planner,
the explainers and the atlas read-off read, and ``validation_top`` (the next ``VALIDATION_TOP``),
which none of them reads: the score judges and simulates every candidate on these
(``score/run.py``), so that a reading fitted to the windows it was written from does not win by
having seen them."""

from __future__ import annotations

from typing import Any

from neurosleuth.agents.config import RunConfig, scan_depth
from neurosleuth.tools.exemplars import ExemplarResult, expected_max
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.snippets import Snippet, exemplar_data, snippets_from_json

VALIDATION_TOP = 8  # top windows past those read, kept for the score alone


def exemplar_snippets(
    lm: LoadedModel, neuron: NeuronId, cfg: RunConfig
) -> tuple[dict[str, Any], list[Snippet]]:
    """``exemplars.json`` data (``tools/snippets.py``, with how deep the scan went) and its
    snippets, by the run's scan settings."""
    # RunConfig's validator sets the depth when none was given (from the time budget)
    assert cfg.exemplar_tokens is not None
    read = cfg.scan().k
    data, result = exemplar_data(
        lm,
        neuron,
        corpus=cfg.corpus,
        k=read + VALIDATION_TOP,
        window=cfg.window,
        max_tokens=cfg.exemplar_tokens,
    )
    data["validation_top"] = data["top"][read:]
    data["top"], data["bottom"] = data["top"][:read], data["bottom"][:read]
    data |= depth_fields(result, [e.value for e in result[neuron].top[:read]], cfg)
    return data, snippets_from_json(data)


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
