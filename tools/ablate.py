"""Ablation of neurons, neuron sets, MLP layers and attention heads, each reported next to the
same ablation of random components of the same layer.

Ablation modes (``ablate``):

- ``zero``: the component's activation is set to 0.
- ``scale``: multiplied by ``k`` (``k > 1`` amplifies; ``k = 0`` is zero ablation).
- ``mean``: replaced by its mean over a reference set of texts (every real text token), computed
  once per model and reference and cached on disk (``reference.mean_activations``). Default
  reference: the first 64 windows of 64 tokens of the default corpus (``tools.corpus``), else
  (no corpus installed) the prompts themselves.
- ``resample``: replaced, at each position, by the component's activation at a random text
  position of a random *other* input: a reference text when given, else another prompt of the
  batch (resampling ablation, Chan et al. 2022, "Causal scrubbing"). Seeded; the target and its
  baseline use the same draws, so they differ only in which component is edited.

Baseline: R random components drawn (seeded) from the same layer(s), excluding the target: random
neurons, count-matched per layer, for neurons; the layer's other heads for a head; none for a
whole MLP or the residual stream. The clean run is computed once and shared by the target and
every baseline variant. Results read ``KL 0.8 (random neurons: 0.05 +- 0.02, z=24.5)``: the mean
and sample standard deviation over the random components, and the target's z-score.

Caveat: zero and scale ablation move activations off their distribution; mean and resample
ablation are the safer evidence that a component is necessary (Heimersheim & Nanda 2024, "How to
use and interpret activation patching").
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch

from neurosleuth.tools.effects import LABELS, METRICS, Baseline, EffectResult, Targets
from neurosleuth.tools.interventions import (
    AttnHead,
    Component,
    NeuronSet,
    Op,
    Scale,
    SetConst,
    SetPerToken,
    Site,
    edits,
    run_variants,
    sites,
    validate,
)
from neurosleuth.tools.measure import encode_checked
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.reference import capture, draw_sources, ids_hash, mean_activations, resampled

Mode = Literal["zero", "mean", "resample", "scale"]
MODES: tuple[str, ...] = ("zero", "mean", "resample", "scale")


@dataclass(frozen=True)
class InterventionResult:
    """An intervention's effect on the prompts, with its random baseline (``None``: no baseline)."""

    model: str
    component: str
    kind: str  # "zero", "mean", "resample", "scale" or "steer"
    params: dict
    prompts: tuple[str, ...]
    effect: EffectResult
    baseline: Baseline | None
    target_label: str | None = None
    promoted: tuple[tuple[str, float], ...] = field(default=())  # (token, mean delta log-prob)
    suppressed: tuple[tuple[str, float], ...] = field(default=())

    def summary(self) -> dict[str, float]:
        return self.effect.summary()

    def zscore(self, metric: str = "kl") -> float:
        if self.baseline is None:
            return math.nan
        return self.baseline.zscore(metric, self.summary()[metric])

    def headline(self, metric: str = "kl") -> str:
        """E.g. ``KL 0.812 (random neurons: 0.0513 +- 0.0201, z=37.9)``."""
        text = f"{LABELS[metric]} {self.summary()[metric]:.4g}"
        if self.baseline is None:
            return text
        b = self.baseline
        return (
            f"{text} ({self.baseline_label}: {b.mean(metric):.4g} +- {b.std(metric):.4g}, "
            f"z={self.zscore(metric):.1f})"
        )

    @property
    def baseline_label(self) -> str:
        """What the baseline components are: random neurons, heads or directions."""
        if self.component.startswith("head"):
            return "random heads"
        return "random directions" if self.component.startswith("vector") else "random neurons"

    def to_frame(self) -> pd.DataFrame:
        """One row per prompt: the effect's per-prompt arrays (``EffectResult.to_frame``)."""
        return self.effect.to_frame(list(self.prompts))

    def summary_frame(self) -> pd.DataFrame:
        """One row per metric that applies: value, baseline mean and std, z-score."""
        s = self.summary()
        rows = [
            {
                "metric": m,
                "label": LABELS[m],
                "value": s[m],
                "baseline_mean": self.baseline.mean(m) if self.baseline else math.nan,
                "baseline_std": self.baseline.std(m) if self.baseline else math.nan,
                "z": self.zscore(m),
            }
            for m in METRICS
            if not math.isnan(s[m])
        ]
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "component": self.component,
            "kind": self.kind,
            "params": self.params,
            "prompts": list(self.prompts),
            "effect": self.effect.to_dict(),
            "summary": self.summary(),
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "target_label": self.target_label,
            "promoted": [list(p) for p in self.promoted],
            "suppressed": [list(p) for p in self.suppressed],
        }

    @classmethod
    def from_dict(cls, d: dict) -> InterventionResult:
        return cls(
            d["model"],
            d["component"],
            d["kind"],
            d["params"],
            tuple(d["prompts"]),
            EffectResult.from_dict(d["effect"]),
            Baseline.from_dict(d["baseline"]) if d["baseline"] else None,
            d["target_label"],
            tuple((t, float(x)) for t, x in d["promoted"]),
            tuple((t, float(x)) for t, x in d["suppressed"]),
        )


def token_id(lm: LoadedModel, token: str | int) -> int:
    """The id of a single token given as text (``" Paris"``) or id; ``ValueError`` otherwise."""
    if isinstance(token, int):
        if not 0 <= token < int(lm.model.cfg.d_vocab):
            raise ValueError(f"token id {token} out of range")
        return token
    ids = lm.tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = lm.token_strs(ids)
        raise ValueError(f"{token!r} is {len(ids)} tokens {pieces}; the target must be one token")
    return int(ids[0])


def make_targets(
    lm: LoadedModel,
    target: str | int | None = None,
    pair: tuple[str | int, str | int] | None = None,
    at: Literal["all", "last"] = "all",
    anchor: torch.Tensor | None = None,
) -> Targets:
    return Targets(
        None if target is None else token_id(lm, target),
        None if pair is None else (token_id(lm, pair[0]), token_id(lm, pair[1])),
        at,
        anchor,
    )


def encode_all(lm: LoadedModel, texts: Sequence[str]) -> list[list[int]]:
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("give at least one prompt")
    return [encode_checked(lm, t) for t in texts]


REFERENCE_WINDOWS = 64  # default mean reference: 64 corpus windows of 64 tokens (4,096 tokens)


_REFERENCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def default_reference(
    lm: LoadedModel, windows: int = REFERENCE_WINDOWS, width: int = 64
) -> list[list[int]] | None:
    """Token ids (BOS per model) of the first ``windows`` windows of the default corpus (its
    fixed, well-mixed order, each source in its share), or ``None`` when no corpus is installed.
    Memoised per model object."""
    import warnings

    from neurosleuth.tools.corpus import CorpusError, build_windows, default_corpus

    memo = _REFERENCES.setdefault(lm, {})
    if (windows, width) not in memo:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                win = build_windows(lm, default_corpus(), window=width, max_tokens=windows * width)
            prefix = lm.encode("")[: lm.n_prefix]
            memo[windows, width] = [prefix + [int(t) for t in row] for row in win.ids]
        except CorpusError:
            memo[windows, width] = None
    return memo[windows, width]


def reference_ids(
    lm: LoadedModel, reference: Sequence[str] | None, prompts: list[list[int]]
) -> tuple[list[list[int]], str]:
    """The reference set for mean ablation and its label: the given texts, else corpus windows,
    else (no corpus installed) the prompts themselves."""
    if reference:
        return encode_all(lm, reference), "given"
    windows = default_reference(lm)
    return (windows, "corpus") if windows else (prompts, "prompts")


def random_components(
    lm: LoadedModel, component: Component, count: int, seed: int = 0
) -> list[Component]:
    """``count`` random components like ``component`` in the same layer(s), never the target."""
    rng = np.random.default_rng(seed)
    if count <= 0:
        return []
    if isinstance(component, NeuronId):
        pool = np.array([i for i in range(lm.d_mlp) if i != component.index])
        pick = rng.choice(pool, size=min(count, len(pool)), replace=False)
        return [NeuronId(component.layer, int(i)) for i in pick]
    if isinstance(component, NeuronSet):
        by_layer: dict[int, set[int]] = {}
        for n in component.neurons:
            by_layer.setdefault(n.layer, set()).add(n.index)
        pools = {
            lay: np.array([i for i in range(lm.d_mlp) if i not in idx])
            for lay, idx in by_layer.items()
        }
        if any(len(pools[lay]) < len(idx) for lay, idx in by_layer.items()):
            return []
        return [
            NeuronSet(
                tuple(
                    NeuronId(lay, int(i))
                    for lay, idx in by_layer.items()
                    for i in rng.choice(pools[lay], size=len(idx), replace=False)
                )
            )
            for _ in range(count)
        ]
    if isinstance(component, AttnHead):
        others = [h for h in range(lm.n_heads) if h != component.head]
        if not others:
            return []
        pick = rng.choice(others, size=min(count, len(others)), replace=False)
        return [AttnHead(component.layer, int(h)) for h in pick]
    return []


def ablation_ops(
    lm: LoadedModel,
    ids: list[list[int]],
    components: Sequence[Component],
    mode: str,
    *,
    scale: float = 0.0,
    reference: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[Callable[[Site], Op], dict]:
    """The op for each site under ``mode``, and the parameters that define it (for the record).

    Means and resample sources are computed once for every hook the components touch."""
    hooks = sorted({s.hook for c in components for s in sites(c)})
    if mode == "zero":
        return (lambda s: Scale(0.0)), {}
    if mode == "scale":
        return (lambda s: Scale(float(scale))), {"scale": float(scale)}
    if mode == "mean":
        ref_ids, label = reference_ids(lm, reference, ids)
        means = mean_activations(lm, ref_ids, hooks)
        return (lambda s: SetConst(means[s.hook])), {
            "reference": label,
            "ref_hash": ids_hash(ref_ids),
        }
    if mode == "resample":
        pool = encode_all(lm, reference) if reference else ids
        acts = capture(lm, pool, hooks)
        src = draw_sources(
            pool, [len(x) for x in ids], lm.n_prefix, seed, exclude_self=not reference
        )
        values = {h: resampled(acts[h], src) for h in hooks}
        return (lambda s: SetPerToken(values[s.hook])), {
            "reference": "given" if reference else "prompts",
            "ref_hash": ids_hash(pool),
            "seed": seed,
        }
    raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")


def ablate(
    lm: LoadedModel,
    prompts: Sequence[str],
    component: Component,
    mode: Mode = "zero",
    *,
    scale: float = 0.0,
    reference: Sequence[str] | None = None,
    seed: int = 0,
    target: str | int | None = None,
    pair: tuple[str | int, str | int] | None = None,
    at: Literal["all", "last"] = "all",
    positions: Sequence[int] | None = None,
    baseline: int = 20,
    tokens_per_batch: int | None = None,
) -> InterventionResult:
    """Ablate ``component`` on ``prompts`` (see module docstring); with ``baseline`` random
    components of the same layer ablated the same way. Returns an ``InterventionResult``."""
    validate(lm, component)
    ids = encode_all(lm, prompts)
    randoms = random_components(lm, component, baseline, seed)
    comps = [component, *randoms]
    op, params = ablation_ops(lm, ids, comps, mode, scale=scale, reference=reference, seed=seed)
    targets = make_targets(lm, target, pair, at)
    effects = run_variants(
        lm, ids, [edits(c, op) for c in comps], targets, positions, tokens_per_batch
    )
    params = {
        **params,
        "at": at,
        "positions": list(positions) if positions else None,
        "baseline": len(randoms),
        "seed": seed,
    }
    return build_result(lm, prompts, str(component), mode, params, effects, randoms, target)


def build_result(lm, prompts, name, kind, params, effects, randoms, target) -> InterventionResult:
    """The record of one intervention: ``effects[0]`` is the target, the rest its baseline."""
    eff = effects[0]
    base = (
        Baseline(tuple(map(str, randoms)), tuple(e.summary() for e in effects[1:]))
        if randoms
        else None
    )
    tok = lm.token_strs
    return InterventionResult(
        lm.name,
        name,
        kind,
        params,
        tuple([prompts] if isinstance(prompts, str) else prompts),
        eff,
        base,
        None if target is None else (target if isinstance(target, str) else tok([target])[0]),
        tuple((tok([t])[0], d) for t, d in eff.promoted),
        tuple((tok([t])[0], d) for t, d in eff.suppressed),
    )
