"""Clean activations that interventions need: per-prompt captures (activation patching, resample
sources), means over a reference set cached on disk (mean ablation), and seeded resample draws.

Every pass is a clean, hooked forward over right-padded chunks (``measure.pad_right``) that stops
after the deepest hook read (``tools/forward.py``). Means are over real text tokens only (no BOS,
no padding) and are cached under ``cache_dir()/"means"`` keyed by a fingerprint of the model's
weights, the hook and a hash of the reference token ids, so a reference set is run once per model
and layer. The fingerprint hashes parameter names, shapes and a strided sample of every weight:
cheap (no full pass over the weights) and, in practice, different for any two trained models.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections.abc import Callable, Sequence

import numpy as np
import torch

from neurosleuth.tools.backoff import halving
from neurosleuth.tools.forward import run_to_hooks
from neurosleuth.tools.interventions import chunks
from neurosleuth.tools.measure import auto_tokens_per_batch, pad_right
from neurosleuth.tools.model import LoadedModel, cache_dir


def _scan(
    lm: LoadedModel,
    ids: Sequence[Sequence[int]],
    hooks: Sequence[str],
    on_act: Callable[[str, torch.Tensor, list[int], list[int]], None],
    tokens_per_batch: int | None = None,
) -> None:
    """Clean forward passes (stopping after the deepest hooked layer) feeding each hook's
    activation (B, T, *rest) with the chunk's prompt indices and lengths to ``on_act``."""
    layers = [int(h.split(".")[1]) for h in hooks]
    budget = tokens_per_batch or auto_tokens_per_batch(lm, max(layers))
    halving(lambda size: _scan_at(lm, ids, hooks, on_act, layers, size), budget, "capture")


def _scan_at(lm, ids, hooks, on_act, layers: list[int], budget: int) -> None:
    for rows in chunks(ids, budget):
        seqs = [ids[r] for r in rows]
        lengths = [len(s) for s in seqs]
        tokens, mask = pad_right(seqs, lm.tokenizer.pad_token_id, lm.device)

        def grab(name: str, rows=rows, lengths=lengths):
            return lambda act, hook: on_act(name, act, rows, lengths)  # hook.name may be an alias

        fwd = [(h, grab(h)) for h in hooks]
        with torch.inference_mode():
            run_to_hooks(lm, tokens, fwd, stop_at_layer=max(layers) + 1, attention_mask=mask)


def capture(
    lm: LoadedModel,
    ids: Sequence[Sequence[int]],
    hooks: Sequence[str],
    tokens_per_batch: int | None = None,
) -> dict[str, tuple[torch.Tensor, ...]]:
    """Clean activations per hook and prompt: (T_i, *rest), all positions (BOS included)."""
    out: dict[str, list] = {h: [None] * len(ids) for h in hooks}

    def keep(name, act, rows, lengths):
        for b, (r, n) in enumerate(zip(rows, lengths, strict=True)):
            out[name][r] = act[b, :n].detach().clone()

    _scan(lm, ids, list(hooks), keep, tokens_per_batch)
    return {h: tuple(v) for h, v in out.items()}


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CHUNK = 1 << 22  # elements per checksum step (a 32 MB int64 temporary)
_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def model_fingerprint(lm: LoadedModel) -> str:
    """A short hash of the dtype, the vocabulary size, and every parameter's name, shape and
    weights; memoised per model object.

    The weights enter as a position-weighted checksum of their bits, computed where they live
    (GPU or CPU, no copy to the host): sum_i bits_i * m_i (mod 2^64) per 4M-element chunk, with
    odd multipliers m_i, so that any change to any one weight changes the hash (a planted or
    edited copy gets its own caches). One pass over the weights' memory: ~0.2 s for SmolLM2 on
    2 CPU cores, milliseconds for an 8B model on a GPU."""
    if lm not in _FINGERPRINTS:
        h = hashlib.blake2b(f"{lm.dtype}:{len(lm.tokenizer)}".encode(), digest_size=16)
        mults: dict[torch.device, torch.Tensor] = {}
        with torch.no_grad():
            for name, p in sorted(lm.model.named_parameters(), key=lambda x: x[0]):
                h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
                if p.device.type != "meta" and p.numel():
                    h.update(_checksum(p.detach(), mults).cpu().numpy().tobytes())
        _FINGERPRINTS[lm] = h.hexdigest()[:16]
    return _FINGERPRINTS[lm]


def _checksum(p: torch.Tensor, mults: dict[torch.device, torch.Tensor]) -> torch.Tensor:
    """(chunks,) int64: per chunk of ``p``'s elements, sum(bits * odd multiplier) mod 2^64."""
    if p.device not in mults:
        i = torch.arange(_CHUNK, dtype=torch.int64, device=p.device)
        mults[p.device] = (i * 2654435761 + 40503) % (1 << 31) | 1  # odd, below 2^31
    m = mults[p.device]
    bits = p.contiguous().reshape(-1).view(_INT_VIEW[p.element_size()])
    return torch.stack([(bits[i : i + _CHUNK].to(torch.int64) * m[: min(_CHUNK, bits.numel() - i)])
                        .sum() for i in range(0, bits.numel(), _CHUNK)])


def ids_hash(ids: Sequence[Sequence[int]]) -> str:
    return hashlib.sha256(json.dumps([list(map(int, s)) for s in ids]).encode()).hexdigest()[:16]


def mean_activations(
    lm: LoadedModel,
    ids: Sequence[Sequence[int]],
    hooks: Sequence[str],
    tokens_per_batch: int | None = None,
) -> dict[str, torch.Tensor]:
    """Mean activation (*rest) of each hook over the real text tokens of ``ids``.

    Cached on disk under ``cache_dir()/"means"``, keyed by model fingerprint, hook and a hash of
    the reference token ids, so a reference set is run once per model."""
    folder = cache_dir() / "means"
    key = f"{model_fingerprint(lm)}-{ids_hash(ids)}"
    paths = {h: folder / f"{key}-{h}.pt" for h in hooks}
    out = {h: torch.load(p, map_location=lm.device) for h, p in paths.items() if p.is_file()}
    todo = [h for h in hooks if h not in out]
    if not todo:
        return out
    sums: dict[str, torch.Tensor] = {}
    count = [0]
    k = lm.n_prefix

    def add(name, act, rows, lengths):
        m = torch.zeros(act.shape[:2], dtype=torch.bool, device=act.device)
        for b, n in enumerate(lengths):
            m[b, k:n] = True
        total = act[m].double().sum(dim=0)  # (*rest)
        sums[name] = sums[name] + total if name in sums else total
        if name == todo[0]:
            count[0] += int(m.sum())

    _scan(lm, ids, todo, add, tokens_per_batch)
    if count[0] == 0:
        raise ValueError("the reference set has no text tokens")
    for h in todo:
        out[h] = (sums[h] / count[0]).to(lm.dtype)
        try:  # the cache is an optimisation; a read-only home must not stop the run
            folder.mkdir(parents=True, exist_ok=True)
            tmp = paths[h].with_name(f"{paths[h].name}.tmp{os.getpid()}")
            torch.save(out[h].cpu(), tmp)
            tmp.replace(paths[h])  # atomic: a process reading it never sees half a file
        except OSError:
            pass
    return out


def draw_sources(
    pool: Sequence[Sequence[int]],
    lengths: Sequence[int],
    n_prefix: int,
    seed: int,
    exclude_self: bool,
) -> list[np.ndarray]:
    """For resample ablation: for each target prompt (``lengths``: token counts) and position, a
    random source (pool prompt, pos) among the pool's text positions, never the prompt itself
    when ``exclude_self`` (the pool is the batch). Returns (T_i, 2) int arrays, seeded."""
    owners = np.concatenate([np.full(max(0, len(s) - n_prefix), j) for j, s in enumerate(pool)])
    spots = np.concatenate([np.arange(n_prefix, len(s)) for s in pool])
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        allowed = np.flatnonzero(owners != i) if exclude_self else np.arange(len(owners))
        if len(allowed) == 0:
            raise ValueError("resample needs a second prompt or reference texts to draw from")
        pick = allowed[rng.integers(0, len(allowed), size=n)]
        out.append(np.stack([owners[pick], spots[pick]], axis=1))
    return out


def resampled(
    acts: Sequence[torch.Tensor], sources: Sequence[np.ndarray]
) -> tuple[torch.Tensor, ...]:
    """Per target prompt (T_i, *rest): the pool activation at each drawn (prompt, pos)."""
    return tuple(torch.stack([acts[int(j)][int(t)] for j, t in src]) for src in sources)
