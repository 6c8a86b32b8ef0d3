"""Planted neurons: set one MLP neuron's gate and up rows so that it fires on a known concept.

The direction is the one that separates the concept's tokens from all others in the normalised
MLP input at the neuron's layer (a ridge regression of +1 / -2 labels on ``n(x_t)``, the
post-attention RMSNorm output, measured on the given texts). With gate = up = ``scale`` x that
direction the neuron's activation silu(s p) * (s p) is large on the concept's tokens. Works on
any Llama-style model (the tiny test models and SmolLM2 alike); the model is edited in place and
can be saved as a local HF folder (``save_pretrained``).
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


def plant(lm, layer: int, neuron: int, texts: list[str], fires, scale: float = 4.0,
          ridge: float = 1e-2) -> None:
    """Make ``neuron`` fire where ``fires(i, ids)`` holds for token ``i`` of the concatenated
    token ids of ``texts``: w solves the ridge regression x . w = +1 on those tokens and -2 on
    all others (the classes balanced), and gate = up = ``scale`` * w, so the activation
    silu(s p) * (s p) is large where p = x . w is near 1 and ~0 where it is near -2."""
    x, ids = mlp_inputs(lm, layer, texts)
    on = torch.tensor([bool(fires(i, ids)) for i in range(len(ids))])
    y = torch.where(on, 1.0, -2.0)
    weight = torch.where(on, 0.5 / on.float().mean(), 0.5 / (1 - on.float().mean()))
    xw = x * weight[:, None].sqrt()
    gram = xw.T @ xw + ridge * len(x) * torch.eye(x.shape[1])
    w = torch.linalg.solve(gram, xw.T @ (y * weight.sqrt()))
    mlp = _parts(lm)[0].model.layers[layer].mlp
    with torch.no_grad():
        mlp.gate_proj.weight[neuron] = scale * w
        mlp.up_proj.weight[neuron] = scale * w
