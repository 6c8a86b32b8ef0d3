"""The deterministic no-LLM planner: mutate and recombine the best prompts, mine dataset
exemplars, restart at random. Same seed and same evidence give the same prompts, so a run with
``--planner heuristic`` is reproducible (and a baseline for the LLM planners).

Mutations work on words: truncate after the peak token (the model is causal, so the text up to
the peak carries the activation), drop a word, swap in a word from the pool of high-activation
texts, repeat the peak word, cross two parents, prefix a parent with an exemplar snippet.
Hypotheses are read off the evidence: the tokens where the neuron peaks most often.
"""

from __future__ import annotations

import hashlib

import numpy as np

from neurosleuth.agents.actions import ProposePrompts, StateHypothesis, TestPrompts
from neurosleuth.agents.prompts import PlannerView
from neurosleuth.memory.seeds import random_prompts
from neurosleuth.score.writer import peak_token_hypothesis


class HeuristicPlanner:
    name = "heuristic"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _rng(self, view: PlannerView, salt: str) -> np.random.Generator:
        digest = hashlib.sha256(f"{self.seed}:{view.iteration}:{salt}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def propose(self, view: PlannerView, n: int, temperature: float = 0.7) -> ProposePrompts:
        rng = self._rng(view, "propose")
        parents = [t for _, _, t in view.top[:8]] + [t for _, _, t in view.exemplars[:8]]
        peaks = {t: tok for _, tok, t in view.top + view.exemplars}
        if not parents:
            return ProposePrompts(prompts=random_prompts(n, rng), rationale="random start")
        pool = sorted({w for p in parents for w in p.split()})
        out: list[str] = []
        n_random = int(rng.random() < min(0.9, 0.15 * temperature / 0.7)) if n > 1 else 0
        for _ in range(n - n_random):
            a = parents[int(rng.integers(len(parents)))]
            b = parents[int(rng.integers(len(parents)))]
            out.append(_mutate(a, b, peaks.get(a, ""), pool, rng) or a)
        out += random_prompts(n_random, rng)
        return ProposePrompts(prompts=out, rationale="mutations of the best prompts and exemplars")

    def hypothesize(self, view: PlannerView) -> StateHypothesis:
        text, explanation = peak_token_hypothesis(view.top, view.exemplars)
        return StateHypothesis(text=text, explanation=explanation)

    def test_prompts(self, view: PlannerView, claim: str, n: int = 6) -> TestPrompts:
        """Minimal pairs: top texts (positive) and the same texts with their peak word removed."""
        sources = [(t, tok) for _, tok, t in view.exemplars[:n] + view.top[:n]][:n]
        positive = [t for t, _ in sources] or ["the"]
        negative = [_without(t, tok) for t, tok in sources]
        negative = [t for t in negative if t] + [t for _, _, t in view.bottom[:2]]
        return TestPrompts(positive=positive, negative=negative or ["."])


def _without(text: str, token: str) -> str:
    tok = token.strip()
    if not tok:
        return ""
    i = text.rfind(tok)
    return (text[:i] + text[i + len(tok) :]).strip() if i >= 0 else ""


def _mutate(a: str, b: str, peak: str, pool: list[str], rng: np.random.Generator) -> str:
    words = a.split()
    op = int(rng.integers(6))
    if op == 0 and peak.strip() and peak.strip() in a:  # truncate after the peak, keep context
        return a[: a.rfind(peak.strip()) + len(peak.strip())]
    if op == 1 and len(words) > 2:  # drop a word (not the last: often the peak)
        del words[int(rng.integers(len(words) - 1))]
    elif op == 2 and pool:  # swap in a word from the pool of good texts
        words[int(rng.integers(len(words)))] = pool[int(rng.integers(len(pool)))]
    elif op == 3 and peak.strip():  # repeat the peak in a new clause
        words += [",", *words[-3:]]
    elif op == 4:  # cross two parents
        bw = b.split()
        words = words[: max(1, len(words) // 2)] + bw[len(bw) // 2 :]
    else:  # prefix with the other parent
        words = b.split()[-6:] + words
    return " ".join(words).replace(" ,", ",")[:300]
