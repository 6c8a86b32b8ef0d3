"""A one-layer Llama with hand-set weights where one neuron is the only path to one token's logit.

- attention is off (``o_proj = 0``), so the residual after attention is the token embedding ``e``;
- dimension ``D`` of the residual is private: embeddings and every other neuron write 0 there,
  neuron ``N`` writes only there (``down[:, N] = W * e_D``);
- the unembedding row of ``TOK`` reads only dimension ``D`` (``U * e_D``).

So at every position ``logit[TOK] = U * W * a_N / rms(r)`` with ``r = e + down @ act`` and the
final RMSNorm's ``rms(r) = sqrt(mean(r**2) + eps)`` (norm weights are 1): zero-ablating ``N`` sets
that logit to exactly 0, and any other value ``a'`` of ``a_N`` gives a logit computable by hand.
"""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM

from neurosleuth.tools.model import LoadedModel, from_hf_model
from tests.fixtures import tiny_config, tiny_tokenizer, token_id

D, N, W, U = 15, 7, 3.0, 4.0
TOK = token_id("paris")


def path_lm(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    hf = LlamaForCausalLM(tiny_config(n_layers=1)).eval()
    layer = hf.model.layers[0]
    with torch.no_grad():
        hf.model.embed_tokens.weight.normal_(0.0, 1.0)
        hf.model.embed_tokens.weight[:, D] = 0.0
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.gate_proj.weight.normal_(0.0, 0.5)
        layer.mlp.up_proj.weight.normal_(0.0, 0.5)
        down = layer.mlp.down_proj.weight  # (d_model, d_mlp)
        down.normal_(0.0, 0.05)
        down[D, :] = 0.0
        down[:, N] = 0.0
        down[D, N] = W
        hf.lm_head.weight.normal_(0.0, 0.5)
        hf.lm_head.weight[:, D] = 0.0
        hf.lm_head.weight[TOK, :] = 0.0
        hf.lm_head.weight[TOK, D] = U
    return from_hf_model(hf, tiny_tokenizer(), name=f"path-lm-{seed}")


def by_hand(lm: LoadedModel, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, d_mlp) MLP activations and (T, d_model) final residual, computed from the weights."""
    hf = lm.model.original_model
    layer, eps = hf.model.layers[0], hf.config.rms_norm_eps
    with torch.no_grad():
        e = hf.model.embed_tokens.weight[ids]  # (T, d_model)
        x = e / torch.sqrt(e.pow(2).mean(-1, keepdim=True) + eps)
        act = torch.nn.functional.silu(x @ layer.mlp.gate_proj.weight.T) * (
            x @ layer.mlp.up_proj.weight.T
        )
        return act, e + act @ layer.mlp.down_proj.weight.T


def target_logit(lm: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
    """logit[TOK] for final residuals (..., d_model): U * r_D / rms(r)."""
    eps = lm.model.original_model.config.rms_norm_eps
    return U * resid[..., D] / torch.sqrt(resid.pow(2).mean(-1) + eps)


def with_act(lm: LoadedModel, ids: list[int], pos: int, value: float) -> torch.Tensor:
    """Hand-computed logit[TOK] at ``pos`` when neuron N's activation there is set to ``value``."""
    act, resid = by_hand(lm, ids)
    down_n = lm.model.original_model.model.layers[0].mlp.down_proj.weight[:, N]
    r = resid[pos] + (value - act[pos, N]) * down_n
    return target_logit(lm, r)
