"""Differentiable reads of one MLP neuron: the pieces shared by attribution, the attack and the
edit probe.

- ``trace`` runs token ids (B, T) or input embeddings (B, T, d_model) through the bridge with a hook
  that keeps one neuron's column of ``blocks.L.mlp.hook_post`` *inside the autograd graph*, and
  stops after layer L unless the logits are asked for (the prompt's cross-entropy needs them).
- ``embed`` / ``embedding_weights`` give the input embeddings exactly as the model makes them: a
  float tensor handed to the bridge is taken as ``inputs_embeds`` and skips the embedding module,
  so any scale the module applies (Gemma multiplies by sqrt(d_model)) is measured once and applied
  here. A one-hot (B, T, V) @ ``W * scale`` is then the differentiable input GCG/EPO need.
- ``frozen_weights`` sets ``requires_grad_(False)`` on every parameter for the duration (restored
  afterwards): gradients to the input then skip the weight gradients, which halves the cost.
- ``cross_entropy`` is the mean next-token cross-entropy (nats per predicted token) of a sequence
  under the model: the fluency measure of EPO (Thompson et al. 2024). The first token of a sequence
  without BOS has no prediction and is not scored.

Positions: ``"last"`` (the last token), ``"max"`` (max over all text positions, i.e. excluding a
prepended BOS), or an int index into the text positions (negative counts from the end).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch

from neurosleuth.tools.forward import run_to_hooks
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.placement import check_finite

Position = int | Literal["last", "max"]


@contextmanager
def frozen_weights(lm: LoadedModel) -> Iterator[None]:
    """Every model parameter with ``requires_grad=False`` inside the block; flags restored after."""
    params = list(lm.model.parameters())
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


_SCALES: weakref.WeakKeyDictionary[LoadedModel, float] = weakref.WeakKeyDictionary()


def embedding_weights(lm: LoadedModel) -> tuple[torch.Tensor, float]:
    """(W_E (V, d_model), scale): the model's input embedding of token t is ``W_E[t] * scale``."""
    weight = lm.model.W_E.detach()
    if lm not in _SCALES:
        probe = torch.arange(min(8, weight.shape[0]), device=weight.device)[None]  # (1, 8)
        with torch.inference_mode():
            made = lm.model.embed(probe).float()  # (1, 8, d_model)
        raw = weight[probe].float()
        scale = float((made * raw).sum() / (raw * raw).sum().clamp_min(1e-30))
        # a scale applied in a half dtype rounds each product: allow that rounding
        rtol = max(1e-3, 2 * torch.finfo(weight.dtype).eps)
        if not torch.allclose(made, raw * scale, rtol=rtol, atol=1e-5):
            raise ValueError(f"{lm.name}: the input embedding is not a scaled lookup of W_E")
        _SCALES[lm] = scale
    return weight, _SCALES[lm]


def embed(lm: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    """Input embeddings (B, T, d_model) of token ids (B, T), as the model makes them."""
    weight, scale = embedding_weights(lm)
    return weight[ids.to(weight.device)] * scale


def special_token_ids(lm: LoadedModel) -> set[int]:
    """Ids of the tokenizer's special tokens (BOS, EOS, pad, chat markers, other added specials)."""
    tok = lm.tokenizer
    ids = {int(i) for i in tok.all_special_ids}
    for i, added in getattr(tok, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            ids.add(int(i))
    return ids


def trace(
    lm: LoadedModel,
    inputs: torch.Tensor,
    neuron: NeuronId,
    logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The neuron's activation (B, T) on ids (B, T) or embeddings (B, T, d), and the logits
    (B, T, V) when ``logits`` (full forward), else None (forward stopped after the neuron's layer).
    Gradients flow when the inputs require them and no inference mode is active."""
    kept: list[torch.Tensor] = []

    def keep(act: torch.Tensor, hook) -> None:  # act: (B, T, d_mlp)
        kept.append(act[:, :, neuron.index])

    hooks = [(neuron.hook_name, keep)]
    if not logits:
        run_to_hooks(lm, inputs.to(lm.device), hooks, stop_at_layer=neuron.layer + 1)
        return check_finite(kept[0].float(), lm.dtype, "activations"), None
    with lm.model.hooks(fwd_hooks=hooks):
        out = lm.model(inputs.to(lm.device))
    return check_finite(kept[0].float(), lm.dtype, "activations"), out.float()


def resolve_position(position: Position, n_tokens: int, n_prefix: int) -> int | None:
    """Index into the full sequence (BOS included) of a text position; None for ``"max"``."""
    n_text = n_tokens - n_prefix
    if position == "max":
        return None
    if position == "last":
        return n_tokens - 1
    if not isinstance(position, int) or not -n_text <= position < n_text:
        raise ValueError(f"position {position!r} out of range for {n_text} text tokens")
    return n_prefix + (position % n_text)


def read_position(
    acts: torch.Tensor,
    position: Position,
    n_prefix: int,
    sign: float = 1.0,
    max_from: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """From activations (B, T): the value (B,) read at ``position`` and where (B,) it was read
    (index into the full sequence). For ``"max"``, the extreme in the direction ``sign`` (max for
    +1, min for -1) over positions ``max_from`` (default: the first text position) to the end."""
    where = resolve_position(position, acts.shape[1], n_prefix)
    if where is not None:
        idx = torch.full((acts.shape[0],), where, dtype=torch.long, device=acts.device)
        return acts[:, where], idx
    start = n_prefix if max_from is None else max_from
    best, idx = (acts[:, start:] * sign).max(dim=1)  # over (B, T - start)
    return best * sign, idx + start


def cross_entropy(logits: torch.Tensor, ids: torch.Tensor, start: int = 1) -> torch.Tensor:
    """Mean next-token cross-entropy (B,) in nats of ids (B, T) under logits (B, T, V), over the
    predicted tokens ``start..T-1``."""
    ids = ids.to(logits.device)
    if ids.shape[1] <= start:
        return torch.zeros(ids.shape[0], device=logits.device)
    x = logits[:, start - 1 : -1]  # (B, T - start, V)
    picked = x.gather(-1, ids[:, start:, None])[..., 0]  # (B, T - start)
    return (torch.logsumexp(x, dim=-1) - picked).mean(dim=1)  # no (B, T, V) log-probs kept


def sequence_cross_entropy(lm: LoadedModel, ids: Sequence[Sequence[int]]) -> list[float]:
    """Cross-entropy per token (nats) of each pre-tokenised sequence (BOS included when the model
    uses one), one sequence at a time (lengths may differ)."""
    out = []
    with torch.inference_mode():
        for seq in ids:
            tokens = torch.as_tensor([list(seq)], dtype=torch.long, device=lm.device)
            logits = lm.model(tokens).float()  # (1, T, V)
            out.append(float(cross_entropy(logits, tokens)[0]))
    return out


def output_tokens(lm: LoadedModel, layer: int, k: int = 8, chunk: int = 256
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The vocabulary each neuron of ``layer`` writes toward, from the weights alone (the logit
    lens of its down-projection row): ``ln_final(W_out[layer, n]) @ W_U``, the direction an
    activation of +1 adds to the logits (the final norm applied to the row alone: its direction,
    with the norm's weights and centring). Returns (promoted, suppressed) token ids, each
    (d_mlp, k), strongest first. With a SwiGLU MLP a negative activation reverses both lists."""
    W_out = lm.model.W_out[layer].detach()  # (d_mlp, d_model)
    W_U = lm.model.W_U.detach()
    up, down = [], []
    with torch.inference_mode():
        for lo in range(0, W_out.shape[0], chunk):
            rows = lm.model.ln_final(W_out[lo: lo + chunk][None])[0]  # (c, d_model)
            logits = (rows.to(W_U.dtype) @ W_U).float()  # (c, vocab)
            up.append(logits.topk(k, dim=1).indices.cpu())
            down.append(logits.topk(k, dim=1, largest=False).indices.cpu())
    return torch.cat(up), torch.cat(down)
