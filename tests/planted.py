"""Planted neurons: set one MLP neuron's gate and up rows so that it fires on a known concept.

The direction is the one that best separates the concept's tokens from all others in the normalised
MLP input at the neuron's layer (Fisher's linear discriminant of ``n(x_t)``, the post-attention
RMSNorm output, measured on the given texts). With gate = up = ``scale`` x that unit direction
the neuron's activation silu(s p) * (s p) is large where the projection p is large: on the
concept's tokens. Works on any Llama-style model (the tiny test models and SmolLM2 alike); the
model is edited in place and can be saved as a local HF folder (``save_pretrained``).
"""

from __future__ import annotations

import torch

from neurosleuth.tools.model import LoadedModel


def mlp_inputs(lm, layer: int, texts: list[str]) -> tuple[torch.Tensor, list[int]]:
    """(N, d_model) normalised MLP inputs at ``layer`` of every token of ``texts``, and ids.
    ``lm``: a ``LoadedModel`` or a pair (Hugging Face model, tokenizer)."""
    hf, encode = _parts(lm)
    norm = hf.model.layers[layer].post_attention_layernorm
    rows, ids = [], []

    class Enough(Exception):  # stop the forward pass at the layer read
        pass

    def grab(_module, _inp, out):
        rows.append(out[0].detach())
        raise Enough

    handle = norm.register_forward_hook(grab)
    try:
        for t in texts:
            x = encode(t)
            try:
                with torch.no_grad():
                    hf(torch.tensor([x]))
            except Enough:
                pass
            ids += x
    finally:
        handle.remove()
    return torch.cat(rows), ids


def _parts(lm):
    if isinstance(lm, LoadedModel):
        return lm.model.original_model, lm.encode
    hf, tok = lm
    return hf, lambda t: tok(t, add_special_tokens=False)["input_ids"]


def plant(lm, layer: int, neuron: int, texts: list[str], fires, scale: float = 8.0
          ) -> None:
    """Make ``neuron`` fire where ``fires(i, ids)`` holds for token ``i`` of the concatenated
    token ids of ``texts``. The direction d is the classes' linear discriminant; the
    midpoint c between them is subtracted through the mean input m (m . x is nearly constant
    across tokens): w = d - c m / |m|^2, and gate = up = scale * w."""
    x, ids = mlp_inputs(lm, layer, texts)
    on = torch.tensor([bool(fires(i, ids)) for i in range(len(ids))])
    cov = torch.cov(x[~on].T) + 1e-2 * torch.eye(x.shape[1])  # Fisher's discriminant
    d = torch.linalg.solve(cov, x[on].mean(0) - x[~on].mean(0))
    d = d / d.norm()
    centre = float((x[on] @ d).mean() + (x[~on] @ d).mean()) / 2
    m = x.mean(0)
    w = d - centre * m / (m @ m)
    mlp = _parts(lm)[0].model.layers[layer].mlp
    with torch.no_grad():
        mlp.gate_proj.weight[neuron] = scale * w
        mlp.up_proj.weight[neuron] = scale * w
