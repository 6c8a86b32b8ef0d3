"""Hand-set one-layer Llamas for the attack, edit-probe and attribution tests.

Attention writes nothing (``o_proj = 0``), so the MLP at position t sees only
``n(e_t) = w * e_t / sqrt(mean(e_t**2) + eps)`` (w: the post-attention RMSNorm weight) and
neuron j's activation is ``silu(g_j . n(e_t)) * (u_j . n(e_t))``: a function of the token at t
alone.

``trigger_lm``: neuron ``NEURON``'s gate and up rows both point along n(e_TRIGGER), so over the
vocabulary its activation peaks at the token ``TRIGGER`` (checked in the tests by brute force).
``locate_lm``: additionally neuron ``NEURON`` writes a large vector along the unembedding of
``TARGET``, so it is the neuron that matters most for log p(TARGET).
"""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM

from neurosleuth.tools.model import LoadedModel, from_hf_model
from tests.fixtures import tiny_config, tiny_tokenizer, token_id

NEURON = 5
TRIGGER = token_id("paris")
TARGET = token_id("france")


def _base(seed: int, eps: float) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = tiny_config(n_layers=1)
    cfg.rms_norm_eps = eps
    hf = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        hf.model.embed_tokens.weight.normal_(0.0, 1.0)
        hf.model.layers[0].self_attn.o_proj.weight.zero_()
        hf.model.layers[0].post_attention_layernorm.weight.uniform_(0.5, 1.5)
    return hf


def _point_neuron(hf: LlamaForCausalLM, scale: float) -> None:
    layer = hf.model.layers[0]
    e = hf.model.embed_tokens.weight[TRIGGER]
    v = e * layer.post_attention_layernorm.weight
    v = v / v.norm()
    with torch.no_grad():
        layer.mlp.gate_proj.weight[NEURON] = scale * v
        layer.mlp.up_proj.weight[NEURON] = scale * v


def trigger_lm(seed: int = 0, eps: float = 1e-6, prepend_bos: bool = False) -> LoadedModel:
    hf = _base(seed, eps)
    _point_neuron(hf, 1.0)
    return from_hf_model(hf, tiny_tokenizer(), name=f"trigger-{seed}", prepend_bos=prepend_bos)


def locate_lm(seed: int = 0) -> LoadedModel:
    hf = _base(seed, 1e-6)
    _point_neuron(hf, 1.0)
    with torch.no_grad():
        down = hf.model.layers[0].mlp.down_proj.weight  # (d_model, d_mlp)
        u = hf.lm_head.weight[TARGET]
        down[:, NEURON] = 0.3 * u / u.norm()
    return from_hf_model(hf, tiny_tokenizer(), name=f"locate-{seed}")


def hand_activation(lm: LoadedModel, ids: list[int]) -> torch.Tensor:
    """(T, d_mlp) MLP activations of ``ids`` computed from the weights (float64)."""
    hf = lm.model.original_model
    layer = hf.model.layers[0]
    norm = layer.post_attention_layernorm
    with torch.no_grad():
        e = hf.model.embed_tokens.weight[ids].double()  # (T, d_model)
        x = e / torch.sqrt(e.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
        x = x * norm.weight.double()
        gate = x @ layer.mlp.gate_proj.weight.double().T
        return torch.nn.functional.silu(gate) * (x @ layer.mlp.up_proj.weight.double().T)
