"""Activation patching: copy a component's activation from one run into another.

Method: run the clean prompts once and record the component's activation at every hook it touches;
run the corrupted prompts with those activations written in at the chosen positions (default: every
text position); compare with the unpatched corrupted run (``effect``) and with the clean run
(``recovered``). Prompts are paired (clean[i] with corrupt[i]) and each pair must have the same
number of tokens: positions are matched one to one. Layout after TransformerLens' ``patching.py``
(Nanda): one generic function, ``patch``, and named variants for the usual components;
``patch_components`` patches many components with one clean capture and a shared corrupted run.

Recovery of a last-position metric m: ``(m_patched - m_corrupt) / (m_clean - m_corrupt)``; 1 means
the patch restores the clean behaviour, 0 that it changes nothing. For KL it is
``1 - KL(clean || patched) / KL(clean || corrupt)``. Patching clean into corrupted (denoising) tests
whether a component suffices to restore a behaviour; swap the two lists (noising) to test whether it
is necessary; the two can disagree (Heimersheim & Nanda 2024, "How to use and interpret activation
patching").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from neurosleuth.tools.ablate import encode_all, make_targets
from neurosleuth.tools.backoff import halving
from neurosleuth.tools.effects import EffectResult
from neurosleuth.tools.interventions import (
    AttnHead,
    Component,
    MLPLayer,
    NeuronSet,
    Resid,
    SetPerToken,
    edits,
    run_variants,
    sites,
    token_budget,
    validate,
)
from neurosleuth.tools.measure import pad_right
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.reference import capture

RECOVERY = ("logit_diff", "prob", "logit", "kl")


def _nan(x: np.ndarray) -> list:
    return [None if math.isnan(v) else float(v) for v in np.asarray(x, dtype=float).tolist()]


@dataclass(frozen=True)
class PatchResult:
    """Effect of patching ``component`` from the clean into the corrupted run.

    ``effect`` compares patched with corrupted (its ``*_clean`` fields are the *corrupted* run,
    its ``kl_anchor`` is KL(clean run || patched) at the last position); ``clean_*`` are the clean
    run's target probability, logit and logit difference at the last position, and
    ``kl_clean_corrupt`` the KL(clean || corrupted) there. All arrays are per prompt pair."""

    model: str
    component: str
    params: dict
    clean: tuple[str, ...]
    corrupt: tuple[str, ...]
    effect: EffectResult
    clean_p: np.ndarray
    clean_logit: np.ndarray
    clean_ld: np.ndarray
    kl_clean_corrupt: np.ndarray
    target_label: str | None = None

    def recovered(self, metric: str = "logit_diff") -> np.ndarray:
        """Per pair fraction of the clean-vs-corrupted gap the patch closes (see docstring)."""
        e = self.effect
        with np.errstate(divide="ignore", invalid="ignore"):
            if metric == "kl":
                return 1.0 - e.kl_anchor / self.kl_clean_corrupt
            new, old, clean = {
                "logit_diff": (e.ld_new, e.ld_clean, self.clean_ld),
                "prob": (e.p_new, e.p_clean, self.clean_p),
                "logit": (e.logit_new, e.logit_clean, self.clean_logit),
            }[metric]
            return (new - old) / (clean - old)

    def summary(self) -> dict[str, float]:
        out = self.effect.summary()
        for m in RECOVERY:
            r = self.recovered(m)
            r = r[np.isfinite(r)]
            out[f"recovered_{m}"] = float(r.mean()) if r.size else math.nan
        return out

    def to_frame(self) -> pd.DataFrame:
        frame = self.effect.to_frame()
        frame.insert(0, "corrupt", list(self.corrupt))
        frame.insert(0, "clean", list(self.clean))
        frame["clean_p"], frame["clean_logit"], frame["clean_ld"] = (
            self.clean_p,
            self.clean_logit,
            self.clean_ld,
        )
        for m in RECOVERY:
            frame[f"recovered_{m}"] = self.recovered(m)
        return frame

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "component": self.component,
            "params": self.params,
            "clean": list(self.clean),
            "corrupt": list(self.corrupt),
            "effect": self.effect.to_dict(),
            "summary": self.summary(),
            "clean_p": _nan(self.clean_p),
            "clean_logit": _nan(self.clean_logit),
            "clean_ld": _nan(self.clean_ld),
            "kl_clean_corrupt": _nan(self.kl_clean_corrupt),
            "target_label": self.target_label,
        }

    @classmethod
    def from_dict(cls, d: dict) -> PatchResult:
        arr = {
            k: np.array([math.nan if x is None else x for x in d[k]], dtype=float)
            for k in ("clean_p", "clean_logit", "clean_ld", "kl_clean_corrupt")
        }
        return cls(
            d["model"],
            d["component"],
            d["params"],
            tuple(d["clean"]),
            tuple(d["corrupt"]),
            EffectResult.from_dict(d["effect"]),
            **arr,
            target_label=d["target_label"],
        )


def last_logits(
    lm: LoadedModel, ids: Sequence[Sequence[int]], tokens_per_batch: int | None = None
) -> torch.Tensor:
    """(P, V) logits at each prompt's last token, from the unedited model."""
    return halving(lambda size: _last_logits(lm, ids, size), token_budget(lm, tokens_per_batch),
                   "patch")


def _last_logits(lm: LoadedModel, ids: Sequence[Sequence[int]], budget: int) -> torch.Tensor:
    out = torch.empty(len(ids), int(lm.model.cfg.d_vocab), device=lm.device)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    start = 0
    while start < len(order):
        rows = order[start : start + max(1, budget // len(ids[order[start]]))]
        tokens, mask = pad_right([ids[r] for r in rows], lm.tokenizer.pad_token_id, lm.device)
        with torch.inference_mode():
            logits = lm.model(tokens, attention_mask=mask)  # (B, T, V)
        last = mask.sum(-1) - 1
        out[rows] = logits[torch.arange(len(rows), device=lm.device), last].float()
        start += len(rows)
    return out


def _paired_ids(lm: LoadedModel, clean: Sequence[str], corrupt: Sequence[str]):
    c, k = encode_all(lm, clean), encode_all(lm, corrupt)
    if len(c) != len(k):
        raise ValueError(f"{len(c)} clean and {len(k)} corrupted prompts: give them in pairs")
    for i, (a, b) in enumerate(zip(c, k, strict=True)):
        if len(a) != len(b):
            raise ValueError(
                f"pair {i}: the clean prompt has {len(a) - lm.n_prefix} tokens, the "
                f"corrupted {len(b) - lm.n_prefix}; patching needs equal lengths"
            )
    return c, k


def patch_components(
    lm: LoadedModel,
    clean: Sequence[str],
    corrupt: Sequence[str],
    components: Sequence[Component],
    *,
    positions: Sequence[int] | None = None,
    target: str | int | None = None,
    pair: tuple[str | int, str | int] | None = None,
    at: Literal["all", "last"] = "all",
    tokens_per_batch: int | None = None,
) -> list[PatchResult]:
    """Patch each component (separately) from the clean into the corrupted prompts."""
    clean, corrupt = (
        [clean] if isinstance(clean, str) else list(clean),
        ([corrupt] if isinstance(corrupt, str) else list(corrupt)),
    )
    for c in components:
        validate(lm, c)
    c_ids, k_ids = _paired_ids(lm, clean, corrupt)
    hooks = sorted({s.hook for c in components for s in sites(c)})
    source = capture(lm, c_ids, hooks, tokens_per_batch)  # per hook, per prompt (T_i, *rest)
    clean_logits = last_logits(lm, c_ids, tokens_per_batch)  # (P, V)
    targets = make_targets(lm, target, pair, at, anchor=clean_logits.log_softmax(-1))
    variants = [(), *[edits(c, lambda s: SetPerToken(source[s.hook])) for c in components]]
    effects = run_variants(lm, k_ids, variants, targets, positions, tokens_per_batch)
    t = targets
    lp = clean_logits.log_softmax(-1)
    clean_p = lp[:, t.target].exp() if t.target is not None else None
    clean_logit = clean_logits[:, t.target] if t.target is not None else None
    clean_ld = clean_logits[:, t.pair[0]] - clean_logits[:, t.pair[1]] if t.pair else None
    nan = np.full(len(c_ids), np.nan)

    def arr(x):
        return nan.copy() if x is None else x.double().cpu().numpy()

    params = {
        "positions": list(positions) if positions else None,
        "at": at,
        "target": target,
        "pair": list(pair) if pair else None,
    }
    label = target if isinstance(target, str) or target is None else lm.token_strs([target])[0]
    return [
        PatchResult(
            lm.name,
            str(c),
            params,
            tuple(clean),
            tuple(corrupt),
            e,
            arr(clean_p),
            arr(clean_logit),
            arr(clean_ld),
            effects[0].kl_anchor.copy(),
            label,
        )
        for c, e in zip(components, effects[1:], strict=True)
    ]


def patch(
    lm: LoadedModel, clean: Sequence[str], corrupt: Sequence[str], component: Component, **kw
) -> PatchResult:
    """Patch one component from the clean into the corrupted prompts (see module docstring)."""
    return patch_components(lm, clean, corrupt, [component], **kw)[0]


def patch_neurons(lm, clean, corrupt, neurons: NeuronId | Sequence[NeuronId], **kw) -> PatchResult:
    comp = neurons if isinstance(neurons, NeuronId) else NeuronSet(tuple(neurons))
    return patch(lm, clean, corrupt, comp, **kw)


def patch_mlp(lm, clean, corrupt, layer: int, **kw) -> PatchResult:
    """Patch a whole MLP's output (``blocks.L.hook_mlp_out``)."""
    return patch(lm, clean, corrupt, MLPLayer(layer), **kw)


def patch_head(lm, clean, corrupt, layer: int, head: int, **kw) -> PatchResult:
    """Patch one attention head's output before the output projection (``hook_z``)."""
    return patch(lm, clean, corrupt, AttnHead(layer, head), **kw)


def patch_resid(lm, clean, corrupt, layer: int, **kw) -> PatchResult:
    """Patch the residual stream after block ``layer`` (at ``positions``, default all)."""
    return patch(lm, clean, corrupt, Resid(layer), **kw)
