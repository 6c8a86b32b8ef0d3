"""Token-level sampling pieces of the embedded planner's decoding loop (pure torch functions).

- ``ban_repeated_ngrams``: the no-repeat-n-gram rule of ``transformers``' processor of that name
  (after Paulus et al. 2018, "A Deep Reinforced Model for Abstractive Summarization"), applied to
  the generated tokens only, and softened: skipped at a step where it would mask every token the
  grammar still allows, so it can never make constrained decoding fail.
- ``sample_token``: greedy at temperature 0, else temperature + nucleus (top-p) sampling
  (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration") with an explicit
  ``torch.Generator`` so a seeded run is reproducible.
"""

from __future__ import annotations

import torch


def ban_repeated_ngrams(logits: torch.Tensor, gen: list[int], n: int) -> int:
    """Mask (in place) in ``logits`` (V,) the tokens that would repeat an n-gram of ``gen``.

    Returns 1 if any token was masked, else 0 (also when the ban was skipped because it would
    have masked every token still allowed)."""
    if n <= 0 or len(gen) < n:
        return 0
    prefix = gen[len(gen) - n + 1:] if n > 1 else []
    banned = {gen[i + n - 1] for i in range(len(gen) - n + 1) if gen[i:i + n - 1] == prefix}
    if not banned:
        return 0
    idx = torch.tensor(sorted(banned))
    saved = logits[idx].clone()
    logits[idx] = float("-inf")
    if torch.isneginf(logits).all():
        logits[idx] = saved
        return 0
    return 1


def sample_token(
    logits: torch.Tensor, temperature: float, top_p: float, rng: torch.Generator
) -> int:
    """A token id drawn from ``logits`` (V,): the argmax at temperature 0, else top-p sampling."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)  # (V,)
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = (sorted_p.cumsum(0) - sorted_p) < top_p  # always keeps the most likely token
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=rng))
