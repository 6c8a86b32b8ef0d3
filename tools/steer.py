"""Steering: add a direction to the residual stream and measure how the next-token distribution
moves, next to the same steering along random neuron directions.

``steer`` adds ``alpha * direction`` to the residual stream after block L (``hook_resid_post``) at
the chosen text positions (default all). For a neuron the direction is its output weights
``W_out[L, i]`` at its own layer, so ``alpha`` is exactly what is added to the neuron's
activation as every later layer sees it (the down-projection has no bias). Any other vector
(d_model,) can be given with its layer. The result's ``promoted`` / ``suppressed`` lists are the
tokens whose log-probability at the last position rose / fell most (activation steering: Turner
et al. 2023, "Activation addition").

Baseline: R random neurons of the same layer steered by the same ``alpha`` (for a vector: R
random directions of the same norm, seeded). Caveat: neuron output directions differ in norm,
so the baseline mixes directions of different lengths; the z-score says how unusual the target
neuron's effect is among its layer's neurons at this ``alpha``, not per unit of norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from transformer_lens.utilities import get_act_name

from neurosleuth.tools.ablate import (
    InterventionResult,
    build_result,
    encode_all,
    make_targets,
    random_components,
)
from neurosleuth.tools.interventions import Add, Edit, Site, run_variants
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId


def neuron_direction(lm: LoadedModel, n: NeuronId) -> torch.Tensor:
    """The neuron's output weights ``W_out[layer, index]``, (d_model,)."""
    return lm.model.blocks[n.layer].mlp.W_out[n.index].detach()


def steer(
    lm: LoadedModel,
    prompts: Sequence[str],
    direction: NeuronId | torch.Tensor,
    alpha: float,
    *,
    layer: int | None = None,
    positions: Sequence[int] | None = None,
    target: str | int | None = None,
    pair: tuple[str | int, str | int] | None = None,
    at: Literal["all", "last"] = "all",
    baseline: int = 20,
    seed: int = 0,
    tokens_per_batch: int | None = None,
) -> InterventionResult:
    """Add ``alpha * direction`` to the residual stream after block ``layer`` (a neuron: its
    output weights, at its own layer). Baseline: random neurons of the layer (or random
    directions of equal norm) steered by the same ``alpha``."""
    if isinstance(direction, NeuronId):
        direction.validate(lm.n_layers, lm.d_mlp)
        layer = direction.layer
        randoms: list = random_components(lm, direction, baseline, seed)
        vecs = [neuron_direction(lm, n) for n in [direction, *randoms]]
        name = str(direction)
    else:
        if layer is None or not 0 <= layer < lm.n_layers:
            raise ValueError(f"steering a vector needs a layer in 0..{lm.n_layers - 1}")
        vec = torch.as_tensor(direction, dtype=lm.dtype, device=lm.device).flatten()
        if vec.shape[0] != lm.d_model:
            raise ValueError(
                f"direction has {vec.shape[0]} values; the model's d_model is {lm.d_model}"
            )
        gen = torch.Generator().manual_seed(seed)
        rand = torch.randn(baseline, lm.d_model, generator=gen).to(vec)
        rand = rand / rand.norm(dim=-1, keepdim=True) * vec.norm()
        vecs, randoms, name = (
            [vec, *rand],
            [f"random{i}" for i in range(baseline)],
            f"vector@{layer}",
        )
    site = Site(get_act_name("resid_post", layer), layer)
    variants = [(Edit(site, Add(alpha * v)),) for v in vecs]
    ids = encode_all(lm, prompts)
    effects = run_variants(
        lm, ids, variants, make_targets(lm, target, pair, at), positions, tokens_per_batch
    )
    params = {
        "alpha": float(alpha),
        "layer": layer,
        "at": at,
        "positions": list(positions) if positions else None,
        "baseline": len(randoms),
        "seed": seed,
    }
    return build_result(lm, prompts, name, "steer", params, effects, randoms, target)
