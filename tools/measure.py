"""Batched measurement of MLP neuron activations: many prompts x many neurons in one pass.

Method: prompts are tokenised once (BOS per ``LoadedModel``), sorted by length so that a batch
holds prompts of similar length, right-padded, and run with an attention mask. The model is
causal, so a right-pad token can never change the activation at a real token before it; the mask
makes the same true for any model that is not. The forward pass stops after the deepest layer
asked for (``tools/forward.py``), and a hook keeps only the requested neuron columns, so memory is
O(tokens x neurons asked), never a full activation cache.

Batch size is set from the memory at hand (free CUDA memory, or available RAM on CPU) and the
shape of the model; on CUDA an out-of-memory error halves the batch and retries.

Batches are cut to waste little on padding (``plan_batches``): the length-sorted prompts are split
into contiguous runs that minimise padded tokens + a fixed cost per forward pass
(``BATCH_OVERHEAD_TOKENS``, in token-equivalents), by dynamic programming over the distinct
lengths. On CPU, where compute scales with padded tokens, 64 prompts of 12-20 tokens go in 3
passes of 1109 padded tokens instead of 1 of 1280; on CUDA, where a pass costs far more than its
tokens, everything that fits the memory budget stays in one pass.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from neurosleuth.tools.backoff import shrink
from neurosleuth.tools.forward import run_to_hooks
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.placement import available_ram, check_finite


@dataclass(frozen=True)
class ActivationResult:
    """Activations of ``neurons`` on ``prompts``. Positions exclude any prepended BOS."""

    prompts: list[str]
    neurons: list[NeuronId]
    token_ids: list[list[int]]
    tokens: list[list[str]]
    acts: list[np.ndarray]  # per prompt: (T_i, N) float32
    max_act: np.ndarray = field(repr=False)  # (P, N)
    argmax_pos: np.ndarray = field(repr=False)  # (P, N) position of the max within the prompt

    def column(self, neuron: NeuronId) -> int:
        return self.neurons.index(neuron)

    def per_token(self, prompt: int, neuron: NeuronId | None = None) -> np.ndarray:
        """Activations of one prompt, (T,) for one neuron (default: the first)."""
        return self.acts[prompt][:, self.column(neuron or self.neurons[0])]

    def max_token(self, prompt: int, neuron: NeuronId | None = None) -> str:
        return self.tokens[prompt][self.argmax_pos[prompt, self.column(neuron or self.neurons[0])]]

    def to_frame(self) -> pd.DataFrame:
        """One row per (prompt, neuron): prompt, neuron, max_act, argmax_pos, argmax_token,
        n_tokens."""
        rows = [
            {
                "prompt": p,
                "neuron": str(n),
                "layer": n.layer,
                "index": n.index,
                "max_act": float(self.max_act[i, j]),
                "argmax_pos": int(self.argmax_pos[i, j]),
                "argmax_token": self.tokens[i][self.argmax_pos[i, j]],
                "n_tokens": len(self.tokens[i]),
            }
            for i, p in enumerate(self.prompts)
            for j, n in enumerate(self.neurons)
        ]
        return pd.DataFrame(rows)

    def token_frame(self) -> pd.DataFrame:
        """One row per (prompt, position, neuron), the long format for pandas analysis."""
        rows = [
            {"prompt_idx": i, "pos": t, "token": tok, "neuron": str(n), "act": float(a[t, j])}
            for i, (toks, a) in enumerate(zip(self.tokens, self.acts, strict=True))
            for t, tok in enumerate(toks)
            for j, n in enumerate(self.neurons)
        ]
        return pd.DataFrame(rows)


def measure(
    lm: LoadedModel,
    prompts: Sequence[str],
    neurons: Sequence[NeuronId] | NeuronId,
    tokens_per_batch: int | None = None,
) -> ActivationResult:
    """Per-token activations of every neuron on every prompt (see module docstring)."""
    neurons = [neurons] if isinstance(neurons, NeuronId) else list(neurons)
    if not neurons:
        raise ValueError("measure needs at least one neuron")
    for n in neurons:
        n.validate(lm.n_layers, lm.d_mlp)
    prompts = list(prompts)
    ids = [encode_checked(lm, p) for p in prompts]
    acts = measure_ids(lm, ids, neurons, tokens_per_batch)
    k = lm.n_prefix
    text_ids = [x[k:] for x in ids]
    text_acts = [a[k:] for a in acts]
    max_act = (
        np.stack([a.max(axis=0) for a in text_acts]) if prompts else np.zeros((0, len(neurons)))
    )
    argmax = (
        np.stack([a.argmax(axis=0) for a in text_acts])
        if prompts
        else np.zeros((0, len(neurons)), int)
    )
    return ActivationResult(
        prompts=prompts,
        neurons=neurons,
        token_ids=text_ids,
        tokens=[lm.token_strs(x) for x in text_ids],
        acts=text_acts,
        max_act=max_act.astype(np.float32),
        argmax_pos=argmax.astype(np.int64),
    )


def encode_checked(lm: LoadedModel, prompt: str) -> list[int]:
    ids = lm.encode(prompt)
    if len(ids) <= lm.n_prefix:
        raise ValueError(f"prompt {prompt!r} has no tokens")
    return ids[: int(lm.model.cfg.n_ctx)]


def measure_ids(
    lm: LoadedModel,
    ids: Sequence[Sequence[int]],
    neurons: Sequence[NeuronId],
    tokens_per_batch: int | None = None,
) -> list[np.ndarray]:
    """Activations (T_i, N) for pre-tokenised sequences, in input order, BOS included; through
    the model's measurement source when one is set (``use_source``), else directly."""
    source = _SOURCES.get(lm)
    if source is not None and ids:
        return source.measure_ids(lm, ids, neurons, tokens_per_batch)
    return direct_measure_ids(lm, ids, neurons, tokens_per_batch)


# Where ``measure_ids`` goes for a model: an object with the same ``measure_ids(lm, ids, neurons,
# tokens_per_batch)`` (the batch's activation cache, ``tools/actcache.py``, or the layer-parallel
# gatherer in front of it, ``batch/interleave.py``).
_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextmanager
def use_source(lm: LoadedModel, source) -> Iterator[None]:
    """Route every ``measure_ids`` on ``lm`` through ``source`` inside the block."""
    previous = _SOURCES.get(lm)
    _SOURCES[lm] = source
    try:
        yield
    finally:
        if previous is None:
            _SOURCES.pop(lm, None)
        else:
            _SOURCES[lm] = previous


def active_hooks(lm: LoadedModel) -> int:
    """How many forward hooks are attached to the model's hook points (0 outside a hooks block):
    permanent hooks, which leave activations as the model computes them, are not counted."""
    points = {id(p): p for p in lm.model.hook_dict.values()}.values()
    count = 0
    for p in points:
        permanent = {h.hook.id for h in p.fwd_hooks if h.is_permanent}
        count += sum(1 for key in p._forward_hooks if key not in permanent)
    return count


def direct_measure_ids(
    lm: LoadedModel,
    ids: Sequence[Sequence[int]],
    neurons: Sequence[NeuronId],
    tokens_per_batch: int | None = None,
) -> list[np.ndarray]:
    """``measure_ids`` by running the model (see module docstring)."""
    out: list[np.ndarray | None] = [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    budget = tokens_per_batch or auto_tokens_per_batch(lm, max(n.layer for n in neurons))
    overhead = BATCH_OVERHEAD_TOKENS.get(lm.device.type, 0)
    done = 0
    while done < len(order):
        rest = order[done:]
        for lo, hi in plan_batches([len(ids[i]) for i in rest], budget, overhead):
            chunk = rest[lo:hi]
            try:
                acts = _forward_chunk(lm, [ids[i] for i in chunk], neurons)
            except torch.OutOfMemoryError:
                if len(chunk) == 1:
                    raise
                budget = shrink(budget, "measure", floor=len(ids[chunk[0]]))
                break  # plan the rest again with the smaller budget
            for i, a in zip(chunk, acts, strict=True):
                out[i] = a
            done += len(chunk)
    return out  # type: ignore[return-value]


# Fixed cost of one forward pass (Python, hooks, masks, kernel launches) in token-equivalents of
# compute. CPU: ~10-20 ms a pass against ~0.3-0.6 ms a token for SmolLM2 up to a middle layer on
# 1-2 cores. CUDA: a pass of a few thousand tokens costs little more than an empty one.
BATCH_OVERHEAD_TOKENS = {"cpu": 32, "cuda": 16384}


def plan_batches(lengths: Sequence[int], budget: int, overhead: int) -> list[tuple[int, int]]:
    """Cut ``lengths`` (sorted longest first) into batches ``[(lo, hi), ...]`` covering all rows.

    A batch is right-padded to its first (longest) row and holds at most ``budget // width`` rows
    (at least 1). The split minimises sum(padded tokens) + ``overhead`` x (number of passes),
    exactly, by dynamic programming over runs of equal length (O(D^2), D distinct lengths).
    """
    n = len(lengths)
    if any(lengths[i] < lengths[i + 1] for i in range(n - 1)):
        raise ValueError("plan_batches needs lengths sorted longest first")
    starts = [i for i in range(n) if i == 0 or lengths[i] != lengths[i - 1]]
    bounds = np.array([*starts, n], dtype=np.int64)  # (D + 1,) group boundaries
    width = np.array([lengths[i] for i in starts], dtype=np.int64)  # (D,) width of each group
    rows = np.maximum(1, budget // width)  # (D,) rows per pass for a segment starting there
    cost = np.zeros(len(starts) + 1)  # cost[b]: best cost of groups [0, b)
    back = np.zeros(len(starts) + 1, dtype=np.int64)
    for b in range(1, len(starts) + 1):
        count = bounds[b] - bounds[:b]  # (b,) rows in groups [a, b) for each start a
        total = cost[:b] + np.ceil(count / rows[:b]) * overhead + count * width[:b]
        back[b] = int(np.argmin(total))
        cost[b] = total[back[b]]
    segments, b = [], len(starts)
    while b > 0:
        segments.append((int(bounds[back[b]]), int(bounds[b])))
        b = int(back[b])
    batches = []
    for lo, hi in reversed(segments):
        step = max(1, budget // lengths[lo])
        batches += [(i, min(hi, i + step)) for i in range(lo, hi, step)]
    return batches


def _forward_chunk(
    lm: LoadedModel, seqs: list[Sequence[int]], neurons: Sequence[NeuronId]
) -> list[np.ndarray]:
    tokens, mask = pad_right(seqs, lm.tokenizer.pad_token_id, lm.device)
    by_layer: dict[int, list[int]] = {}
    for col, n in enumerate(neurons):
        by_layer.setdefault(n.layer, []).append(col)
    picked = torch.empty(tokens.shape[0], tokens.shape[1], len(neurons))  # (B, T, N) on CPU

    def keep(layer: int):
        cols = by_layer[layer]
        idx = torch.tensor([neurons[c].index for c in cols], device=lm.device)

        def hook(act, hook):  # act: (B, T, d_mlp)
            picked[:, :, cols] = act.index_select(-1, idx).float().cpu()

        return hook

    hooks = [(neurons[cols[0]].hook_name, keep(layer)) for layer, cols in by_layer.items()]
    with torch.inference_mode():
        run_to_hooks(lm, tokens, hooks, stop_at_layer=max(by_layer) + 1, attention_mask=mask)
    lengths = mask.sum(dim=1).tolist()
    check_finite(picked, lm.dtype, "activations")
    return [picked[b, :n].numpy() for b, n in enumerate(lengths)]


def pad_right(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) token ids right-padded with ``pad_id`` and the (B, T) attention mask."""
    width = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        tokens[b, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[b, : len(s)] = 1
    return tokens.to(device), mask.to(device)


def available_memory(device: torch.device) -> int:
    """Bytes free for activations: free CUDA memory, or the OS's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_ram()


def auto_tokens_per_batch(lm: LoadedModel, layer: int, seq_len: int = 128) -> int:
    """Tokens per forward pass that fit a quarter of the free memory.

    Per token a layer holds a few residual-width tensors, the MLP's hidden activations
    (gate, up, product) and a row of attention scores per head. On CPU, past a few thousand
    tokens a batch gets no faster, so the budget is capped there.
    """
    elem = torch.finfo(lm.dtype).bits // 8
    per_token = elem * (8 * lm.d_model + 4 * lm.d_mlp + 2 * lm.n_heads * seq_len)
    budget = available_memory(lm.device) // 4 // per_token
    cap = 1 << 17 if lm.device.type == "cuda" else 4096
    return int(max(256, min(budget, cap)))
