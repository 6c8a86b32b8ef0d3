"""Which input tokens drive a neuron (``attribute``), and which neurons drive a behaviour
(``locate``).

Token attribution, for the neuron's activation f read at one position of a prompt whose input
embeddings are e_1..e_T (as the model makes them, see ``readout.embed``):

- gradient x input (Simonyan et al. 2014; Shrikumar et al. 2016): score_t = <df/de_t, e_t>, a
  first-order term with an implicit zero baseline. Caveat: behind an RMSNorm/LayerNorm a token's
  own path is scale-invariant, so its gradient is nearly orthogonal to e_t (Euler's theorem) and
  gradient x input under-credits the token being read; prefer integrated gradients.
- integrated gradients (Sundararajan et al. 2017, "Axiomatic Attribution for Deep Networks"):
  score_t = <e_t - b_t, integral_0^1 df/de_t(b + a (e - b)) da>, the integral by the trapezoid
  rule over ``steps`` intervals (steps + 1 nodes, half evenly spaced, half log-spaced near a = 0
  where an RMSNorm makes the path from a zero baseline jump; one batched forward and backward
  pass). Baseline b: the pad token's embedding at every text position (default), or the zero
  embedding; a BOS keeps its own embedding (score 0). Completeness: sum_t score_t = f(e) - f(b)
  up to the quadrature error, which the result reports (``completeness_gap``).
  Why not zero by default: near-zero inputs are not neutral for real models. In SmolLM2 the
  early layers amplify a tiny residual to full size (embeddings x 1e-9: residual norm 3e-9 at the
  input, 53 after layer 2), so f(a e) swings wildly as a -> 0 (neuron 4:400: f(1e-12 e) = 0.27,
  f(1e-9 e) = -1.72, f(0) = 0) and the zero-baseline gap does not shrink with more steps
  (0.36, 0.54, 0.56 at 64, 256, 1024 steps on f(e) = 2.48), while the pad baseline's does
  (-0.018, 0.001, 0.000). The zero baseline is fine on models without that amplification.

``locate``: attribution patching (Nanda 2023, "Attribution Patching: Activation Patching At
Industrial Scale"; Syed et al. 2023, "Attribution Patching Outperforms Automated Circuit
Discovery"). One forward and ONE backward give, for every MLP neuron of the chosen layers, its
activation a and the gradient g of the metric (log probability of the target token at the last
position); the linear estimate of zero-ablating the neuron at every position is -sum_t a_t g_t.
The ``top`` neurons by |estimate| are then verified by real zero-ablation (a hook that zeroes that
neuron at every position; one batched forward, one row per neuron): ``verified_effect`` is the real
change of the metric. The estimate is first order: trust the verified column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch

from neurosleuth.tools.backoff import halving
from neurosleuth.tools.measure import auto_tokens_per_batch
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId, hook_name
from neurosleuth.tools.readout import (
    Position,
    embed,
    frozen_weights,
    read_position,
    trace,
)

Method = Literal["ig", "grad_x_input"]


@dataclass(frozen=True)
class Attribution:
    """Per-token attribution of ``neuron``'s activation at ``position`` (text tokens, no BOS)."""

    neuron: NeuronId
    method: str  # "ig" or "grad_x_input"
    text: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    scores: np.ndarray = field(repr=False)  # (T,)
    position: int  # text position whose activation is explained
    activation: float  # f(x)
    baseline: str | None  # "zero" / "pad" (IG); None for gradient x input
    baseline_activation: float | None  # f(baseline) (IG)
    steps: int | None  # trapezoid intervals (IG)

    @property
    def completeness_gap(self) -> float | None:
        """sum(scores) - (f(x) - f(baseline)) for IG; None for gradient x input."""
        if self.baseline_activation is None:
            return None
        return float(self.scores.sum() - (self.activation - self.baseline_activation))

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"pos": range(len(self.tokens)), "token": self.tokens,
                             "token_id": self.token_ids, "score": self.scores})


def attribute(
    lm: LoadedModel,
    neuron: NeuronId,
    prompt: str | Sequence[int],
    *,
    method: Method = "ig",
    position: Position = "max",
    steps: int = 64,
    baseline: Literal["zero", "pad"] = "pad",
) -> Attribution:
    """Attribute ``neuron``'s activation at ``position`` of ``prompt`` (text, or text token ids
    without BOS) to its input tokens. See the module docstring for the methods."""
    neuron.validate(lm.n_layers, lm.d_mlp)
    ids = _prompt_ids(lm, prompt)  # (1, T), BOS included when the model uses one
    k = lm.n_prefix
    with frozen_weights(lm), torch.inference_mode():
        acts, _ = trace(lm, ids, neuron)  # (1, T)
        value, where = read_position(acts, position, k)
    pos = int(where[0])
    x = embed(lm, ids)[0]  # (T, d_model)
    if method == "grad_x_input":
        grad = _path_gradients(lm, neuron, x[None], pos, torch.ones(1))  # (T, d)
        scores, base, f_base, n = (grad * x.float()).sum(-1), None, None, None
    elif method == "ig":
        if steps < 1:
            raise ValueError("integrated gradients needs steps >= 1")
        b = _baseline(lm, ids, x, baseline)  # (T, d)
        alphas, w = _ig_nodes(steps, x.device)  # (S+1,) each
        diff = (x - b).float()  # (T, d): the path is built in float32, run in the model's dtype
        path = b.float()[None] + alphas[:, None, None] * diff[None]  # (S+1, T, d)
        grad = _path_gradients(lm, neuron, path, pos, w)
        scores, base, n = (grad * diff).sum(-1), baseline, steps
        with frozen_weights(lm), torch.inference_mode():
            f_base = float(trace(lm, b[None], neuron)[0][0, pos])
    else:
        raise ValueError(f"unknown attribution method {method!r}: use 'ig' or 'grad_x_input'")
    text_ids = ids[0, k:].tolist()
    return Attribution(neuron, method, lm.decode(text_ids),
                       tuple(lm.token_strs(text_ids)), tuple(text_ids),
                       scores[k:].detach().cpu().numpy().astype(np.float64), pos - k,
                       float(value[0]), base, f_base, n)


def _prompt_ids(lm: LoadedModel, prompt: str | Sequence[int]) -> torch.Tensor:
    if isinstance(prompt, str):
        ids = lm.encode(prompt)
    else:
        ids = ([int(lm.tokenizer.bos_token_id)] if lm.n_prefix else []) + [int(i) for i in prompt]
    if len(ids) <= lm.n_prefix:
        raise ValueError(f"prompt {prompt!r} has no tokens")
    return torch.tensor([ids[: int(lm.model.cfg.n_ctx)]], device=lm.device)


def _baseline(lm: LoadedModel, ids: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """(T, d_model) baseline embeddings; a BOS keeps its own embedding."""
    if kind == "zero":
        b = torch.zeros_like(x)
    elif kind == "pad":
        pad = lm.tokenizer.pad_token_id
        if pad is None:
            raise ValueError("this tokenizer has no pad token: use the zero baseline")
        b = embed(lm, torch.full_like(ids, int(pad)))[0]
    else:
        raise ValueError(f"unknown baseline {kind!r}: use 'zero' or 'pad'")
    b[: lm.n_prefix] = x[: lm.n_prefix]
    return b


def _ig_nodes(steps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Integration nodes on [0, 1] and their trapezoid weights, steps + 1 nodes: half evenly
    spaced, half log-spaced from 1e-6. Behind an RMSNorm the zero baseline makes f(a x) jump
    near a ~ sqrt(eps) / rms(x), which evenly spaced nodes miss (the sum then falls far short of
    f(x) - f(0)); the log-spaced half resolves it."""
    n_geo = steps // 2
    even = torch.linspace(0, 1, steps - n_geo + 1, dtype=torch.float64)
    geo = torch.logspace(-6, 0, n_geo + 1, dtype=torch.float64)[:-1] if n_geo else even[:0]
    alphas = torch.unique(torch.cat([even, geo]))  # sorted
    gaps = alphas.diff()
    weights = torch.zeros_like(alphas)
    weights[:-1] += gaps / 2
    weights[1:] += gaps / 2
    return alphas.float().to(device), weights.float().to(device)


def _path_gradients(lm: LoadedModel, neuron: NeuronId, path: torch.Tensor, pos: int,
                    weights: torch.Tensor) -> torch.Tensor:
    """sum_s weights[s] * d f(path[s]) / d path[s]: (T, d_model) float32, batched in chunks.
    Each point is run in the model's dtype; the weighted sum is taken in float32."""
    rows = max(1, auto_tokens_per_batch(lm, neuron.layer, path.shape[1]) // path.shape[1])

    def run(rows: int) -> torch.Tensor:
        total = torch.zeros(path.shape[1:], dtype=torch.float32, device=path.device)
        with frozen_weights(lm), torch.enable_grad():
            for chunk, w in zip(path.split(rows), weights.split(rows), strict=True):
                x = chunk.detach().to(lm.dtype).requires_grad_(True)  # (b, T, d)
                acts, _ = trace(lm, x, neuron)  # (b, T) float32
                (acts[:, pos] * w.to(acts.device)).sum().backward()
                total += x.grad.float().sum(0)
        return total

    return halving(run, rows, "attribute")


@dataclass(frozen=True)
class LocateResult:
    """Neurons ranked by attribution-patching estimate, the top ones verified by ablation."""

    prompt: str
    target: str  # the target token used (the first token of the target text)
    target_id: int
    metric: str  # "logprob": log p(target | prompt) at the last position
    clean_metric: float
    # rank (by |attribution|), neuron, layer, index, attribution (estimated change of the metric
    # when zero-ablated), verified_effect (real change), act_last, verified_rank (by |real|)
    table: pd.DataFrame = field(repr=False)

    @property
    def neurons(self) -> list[NeuronId]:
        return [NeuronId(int(la), int(i))
                for la, i in zip(self.table["layer"], self.table["index"], strict=True)]


def locate(
    lm: LoadedModel,
    prompt: str,
    target_token: str | int,
    layers: Sequence[int] | None = None,
    top: int = 20,
    verify: bool = True,
) -> LocateResult:
    """Rank every MLP neuron of ``layers`` (default: all) by its attribution-patching estimate of
    the zero-ablation effect on log p(target) at the last position; verify the ``top`` ones by
    real zero-ablation. Returns a ranked table (see ``LocateResult``)."""
    layers = list(range(lm.n_layers)) if layers is None else sorted(set(int(x) for x in layers))
    for layer in layers:
        NeuronId(layer, 0).validate(lm.n_layers, lm.d_mlp)
    if top < 1:
        raise ValueError("top must be >= 1")
    ids = _prompt_ids(lm, prompt)  # (1, T)
    target_id = _target_id(lm, target_token)
    clean, acts, attr = _attribution_patching(lm, ids, target_id, layers)  # attr: (L, d_mlp)
    flat = attr.flatten()
    order = flat.abs().argsort(descending=True)[: min(top, flat.numel())]
    picked = [NeuronId(layers[int(i) // lm.d_mlp], int(i) % lm.d_mlp) for i in order]
    effects = _ablate_each(lm, ids, target_id, picked) if verify else np.full(len(picked), np.nan)
    table = pd.DataFrame({
        "rank": range(1, len(picked) + 1),
        "neuron": [str(n) for n in picked],
        "layer": [n.layer for n in picked],
        "index": [n.index for n in picked],
        "attribution": [float(flat[i]) for i in order],
        "verified_effect": effects,
        "act_last": [float(acts[layers.index(n.layer), n.index]) for n in picked],
    })
    table["verified_rank"] = (table.verified_effect.abs().rank(ascending=False, method="first")
                              .astype("Int64"))
    return LocateResult(prompt, lm.token_strs([target_id])[0], target_id, "logprob",
                        clean, table)


def _target_id(lm: LoadedModel, target: str | int) -> int:
    if isinstance(target, int):
        if not 0 <= target < len(lm.tokenizer):
            raise ValueError(f"target token id {target} out of range")
        return target
    ids = lm.tokenizer(target, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"target {target!r} has no tokens")
    return int(ids[0])


def _grad(t: torch.Tensor) -> torch.Tensor:
    """The gradient ``backward()`` left on ``t`` (a leaf, or a tensor that retains its grad)."""
    if t.grad is None:
        raise RuntimeError("no gradient reached a tensor that keeps one")
    return t.grad


def _attribution_patching(lm: LoadedModel, ids: torch.Tensor, target: int, layers: list[int]):
    """Clean metric, activations at the last position (L, d_mlp), and the estimates
    -sum_t a_t g_t (L, d_mlp), from one forward and one backward pass."""
    kept: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        def hook(act: torch.Tensor, hook) -> None:  # (1, T, d_mlp)
            act.retain_grad()
            kept[layer] = act

        return hook

    x = embed(lm, ids).detach().requires_grad_(True)  # the leaf that makes activations need grad
    with frozen_weights(lm), torch.enable_grad():
        with lm.model.hooks(fwd_hooks=[(hook_name(layer), keep(layer)) for layer in layers]):
            logits = lm.model(x)  # (1, T, V)
        metric = torch.log_softmax(logits[0, -1].float(), dim=-1)[target]
        metric.backward()
    attr = torch.stack([-(kept[la][0].float() * _grad(kept[la])[0].float()).sum(0)
                        for la in layers])  # (L, d), summed in float32
    last = torch.stack([kept[la][0, -1] for la in layers])  # (L, d_mlp)
    return float(metric.detach()), last.detach().float().cpu(), attr.detach().float().cpu()


def _ablate_each(lm: LoadedModel, ids: torch.Tensor, target: int,
                 neurons: list[NeuronId]) -> np.ndarray:
    """Change of log p(target) when each neuron is zero-ablated at every position: batched
    forwards of K rows, row 0 of each unedited (the reference, in the same batch shape as the
    edited rows: in bfloat16 the shape alone moves the logits), row r ablating one neuron."""

    def run(k: int) -> np.ndarray:
        out = []
        for i in range(0, len(neurons), k - 1):
            logp = _ablate_rows(lm, ids, target, neurons[i : i + k - 1], k)
            out.append(logp[1 : 1 + len(neurons[i : i + k - 1])] - logp[0])
        return np.concatenate(out)

    return halving(run, len(neurons) + 1, "locate", floor=2)


def _ablate_rows(lm: LoadedModel, ids: torch.Tensor, target: int, neurons: list[NeuronId],
                 k: int) -> np.ndarray:
    """log p(target) (k,): row 0 unedited, row 1 + r ablating ``neurons[r]``, the rest unedited."""
    rows_by_layer: dict[int, list[int]] = {}
    for r, n in enumerate(neurons):
        rows_by_layer.setdefault(n.layer, []).append(1 + r)

    def zero(layer: int):
        rows = torch.tensor(rows_by_layer[layer], device=lm.device)
        cols = torch.tensor([neurons[r - 1].index for r in rows_by_layer[layer]], device=lm.device)

        def hook(act: torch.Tensor, hook) -> torch.Tensor:  # (k, T, d_mlp)
            act = act.clone()
            act[rows, :, cols] = 0.0
            return act

        return hook

    hooks = [(hook_name(layer), zero(layer)) for layer in rows_by_layer]
    with torch.inference_mode(), lm.model.hooks(fwd_hooks=hooks):
        logits = lm.model(ids.expand(k, -1))  # (k, T, V)
    logp = torch.log_softmax(logits[:, -1].float(), dim=-1)[:, target]
    return logp.cpu().numpy().astype(np.float64)

