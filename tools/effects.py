"""Effect metrics of an intervention: the intervened run against the clean run of the same prompts.

Per prompt (arrays of shape (P,); ``nan`` where a metric does not apply):

- ``kl``: KL(clean || intervened) of the next-token distributions, averaged over the scored
  positions: ``at="all"`` every real text token (default), ``at="last"`` the last one. A BOS and
  right padding are never scored.
- ``top1_change``: the fraction of scored positions whose most likely next token changed.
- ``loss_clean``, ``loss_new``: mean next-token cross-entropy of the prompt's own text (every
  position that predicts a real token); ``d_loss = loss_new - loss_clean``.
- ``p_*``, ``logit_*``: probability and logit of the target token at the last position (the token
  that would follow the prompt); ``ld_*``: the logit difference ``logit(a) - logit(b)`` there.
- ``kl_anchor``: KL(anchor || intervened) at the last position, for a caller-given anchor
  distribution (activation patching: the clean run of the other input).

``promoted`` / ``suppressed``: the tokens whose log-probability at the last position rose / fell
most, averaged over prompts. ``Baseline`` holds the same summaries for random components (e.g.
random neurons of the same layer) and gives mean, sample standard deviation and the z-score
``(effect - mean) / std`` of the target's effect.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

METRICS = ("kl", "top1_change", "d_loss", "d_prob", "d_logit", "d_logit_diff", "kl_anchor")
LABELS = {
    "kl": "KL",
    "top1_change": "top-1 change",
    "d_loss": "loss change",
    "d_prob": "target prob change",
    "d_logit": "target logit change",
    "d_logit_diff": "logit diff change",
    "kl_anchor": "KL to anchor (last)",
}


@dataclass(frozen=True, eq=False)
class Targets:
    """What to score besides KL and loss: a target token, a token pair, where to score KL."""

    target: int | None = None
    pair: tuple[int, int] | None = None  # logit(pair[0]) - logit(pair[1])
    at: Literal["all", "last"] = "all"
    anchor: torch.Tensor | None = None  # (P, V) log-probs at each prompt's last position

    def __post_init__(self) -> None:
        if self.at not in ("all", "last"):
            raise ValueError(f"at must be 'all' or 'last', not {self.at!r}")


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


@dataclass(frozen=True)
class EffectResult:
    """Per-prompt effects of one intervention (see module docstring)."""

    kl: np.ndarray
    top1_change: np.ndarray
    loss_clean: np.ndarray
    loss_new: np.ndarray
    p_clean: np.ndarray
    p_new: np.ndarray
    logit_clean: np.ndarray
    logit_new: np.ndarray
    ld_clean: np.ndarray
    ld_new: np.ndarray
    kl_anchor: np.ndarray
    promoted: tuple[tuple[int, float], ...] = ()
    suppressed: tuple[tuple[int, float], ...] = ()
    at: str = "all"

    @property
    def d_loss(self) -> np.ndarray:
        return self.loss_new - self.loss_clean

    @property
    def d_prob(self) -> np.ndarray:
        return self.p_new - self.p_clean

    @property
    def d_logit(self) -> np.ndarray:
        return self.logit_new - self.logit_clean

    @property
    def d_logit_diff(self) -> np.ndarray:
        return self.ld_new - self.ld_clean

    def summary(self) -> dict[str, float]:
        """Means over prompts of every metric (``METRICS``) and of the clean/new raw values."""
        out = {m: _mean(getattr(self, m)) for m in METRICS}
        for f in (
            "loss_clean",
            "loss_new",
            "p_clean",
            "p_new",
            "logit_clean",
            "logit_new",
            "ld_clean",
            "ld_new",
        ):
            out[f] = _mean(getattr(self, f))
        return out

    def to_frame(self, prompts: list[str] | None = None) -> pd.DataFrame:
        """One row per prompt with every per-prompt array and the derived changes."""
        cols = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("promoted", "suppressed", "at")
        }
        cols.update({m: getattr(self, m) for m in METRICS if m not in cols})
        frame = pd.DataFrame(cols)
        if prompts is not None:
            frame.insert(0, "prompt", prompts)
        return frame

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                d[k] = [None if math.isnan(x) else float(x) for x in v.tolist()]
        d["promoted"] = [list(p) for p in self.promoted]
        d["suppressed"] = [list(p) for p in self.suppressed]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EffectResult:
        kw: dict[str, Any] = {}  # field name -> value, of each field's own type
        for f in fields(cls):
            v = d[f.name]
            if f.name in ("promoted", "suppressed"):
                kw[f.name] = tuple((int(t), float(x)) for t, x in v)
            elif f.name == "at":
                kw[f.name] = v
            else:
                kw[f.name] = np.array([math.nan if x is None else x for x in v], dtype=np.float64)
        return cls(**kw)


@dataclass(frozen=True)
class Baseline:
    """Summaries of the same intervention on random components (e.g. random neurons, same layer)."""

    components: tuple[str, ...]
    summaries: tuple[dict[str, float], ...]

    def values(self, metric: str) -> np.ndarray:
        return np.array([s[metric] for s in self.summaries], dtype=np.float64)

    def mean(self, metric: str) -> float:
        return _mean(self.values(metric))

    def std(self, metric: str) -> float:
        v = self.values(metric)
        v = v[~np.isnan(v)]
        return float(v.std(ddof=1)) if v.size > 1 else math.nan

    def zscore(self, metric: str, value: float) -> float:
        """(value - mean) / std; +-inf when the baseline has no spread and value differs."""
        m, s = self.mean(metric), self.std(metric)
        if math.isnan(value) or math.isnan(m) or math.isnan(s):
            return math.nan
        if s == 0:
            return 0.0 if value == m else math.copysign(math.inf, value - m)
        return (value - m) / s

    def to_dict(self) -> dict:
        return {"components": list(self.components), "summaries": [dict(s) for s in self.summaries]}

    @classmethod
    def from_dict(cls, d: dict) -> Baseline:
        return cls(
            tuple(d["components"]),
            tuple(
                {k: (math.nan if v is None else float(v)) for k, v in s.items()}
                for s in d["summaries"]
            ),
        )


PER_PROMPT = (
    "kl",
    "top1_change",
    "loss_clean",
    "loss_new",
    "p_clean",
    "p_new",
    "logit_clean",
    "logit_new",
    "ld_clean",
    "ld_new",
    "kl_anchor",
)


class EffectAccumulator:
    """Collects per-prompt stats of K variants over chunks of prompts, then builds the results."""

    def __init__(
        self, n_variants: int, n_prompts: int, vocab: int, targets: Targets, top_k: int = 10
    ) -> None:
        self.targets, self.top_k, self.n_prompts = targets, top_k, n_prompts
        self.stats = {k: np.full((n_variants, n_prompts), np.nan) for k in PER_PROMPT}
        self.delta = np.zeros((n_variants, vocab))  # sum over prompts of delta log-prob (last)
        self._clean_src: torch.Tensor | None = None
        self._clean_lp: torch.Tensor | None = None

    def add(
        self,
        k: int,
        rows: list[int],
        clean_logits: torch.Tensor,
        new_logits: torch.Tensor,
        tokens: torch.Tensor,
        lengths: list[int],
        n_prefix: int,
    ) -> None:
        """Score variant ``k`` on prompts ``rows``: logits (B, T, V), tokens (B, T)."""
        if clean_logits is not self._clean_src:  # the clean run is shared by every variant
            self._clean_src, self._clean_lp = clean_logits, clean_logits.float().log_softmax(-1)
        out, delta = _stats(
            self._clean_lp, clean_logits, new_logits, tokens, lengths, n_prefix, self.targets, rows
        )
        for name, v in out.items():
            self.stats[name][k, rows] = v
        self.delta[k] += delta

    def results(self) -> list[EffectResult]:
        out = []
        for k in range(self.delta.shape[0]):
            mean_delta = self.delta[k] / max(1, self.n_prompts)
            order = np.argsort(mean_delta)
            out.append(
                EffectResult(
                    **{name: self.stats[name][k].copy() for name in PER_PROMPT},
                    promoted=tuple(
                        (int(t), float(mean_delta[t])) for t in order[::-1][: self.top_k]
                    ),
                    suppressed=tuple((int(t), float(mean_delta[t])) for t in order[: self.top_k]),
                    at=self.targets.at,
                )
            )
        return out


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """(B, T) values, (B, T) bool -> (B,) mean over the mask (nan where empty)."""
    n = mask.sum(-1)
    s = (x * mask).sum(-1)
    return torch.where(n > 0, s / n.clamp_min(1), torch.nan).double().cpu().numpy()


def _stats(clean_lp, clean_logits, new_logits, tokens, lengths, n_prefix, t: Targets, rows):
    """Per-prompt metrics for one chunk; returns ({name: (B,)}, (V,) summed delta log-prob).
    The edited run's full log-probabilities (B, T, V) are only formed when every position is
    scored; otherwise its log-normaliser (B, T) and the last positions suffice."""
    new_logits = new_logits.float()
    lse = new_logits.logsumexp(-1)  # (B, T)
    dev = new_logits.device
    b_idx = torch.arange(tokens.shape[0], device=dev)
    ar = torch.arange(tokens.shape[1], device=dev)[None]  # (1, T)
    n = torch.tensor(lengths, device=dev)[:, None]  # (B, 1)
    last = n[:, 0] - 1
    c_lp, n_lp = clean_lp[b_idx, last], new_logits[b_idx, last] - lse[b_idx, last, None]  # (B, V)
    if t.at == "last":
        kl = (c_lp.exp() * (c_lp - n_lp)).sum(-1).clamp_min(0).double().cpu().numpy()
        flips = (c_lp.argmax(-1) != n_lp.argmax(-1)).double().cpu().numpy()
    else:
        scored = (ar >= n_prefix) & (ar < n)  # (B, T)
        new_lp = new_logits - lse[..., None]  # (B, T, V)
        kl = _masked_mean((clean_lp.exp() * (clean_lp - new_lp)).sum(-1).clamp_min(0), scored)
        flips = _masked_mean((clean_lp.argmax(-1) != new_logits.argmax(-1)).float(), scored)
    nxt = tokens[:, 1:, None]  # (B, T-1, 1)
    predicts = ar[:, :-1] < n - 1  # (B, T-1): positions whose next token is real
    new_nll = lse[:, :-1] - new_logits[:, :-1].gather(-1, nxt)[..., 0]  # (B, T-1)
    out = {
        "kl": kl,
        "top1_change": flips,
        "loss_clean": _masked_mean(-clean_lp[:, :-1].gather(-1, nxt)[..., 0], predicts),
        "loss_new": _masked_mean(new_nll, predicts),
    }
    c_lg, n_lg = clean_logits[b_idx, last].float(), new_logits[b_idx, last].float()
    if t.target is not None:
        out["p_clean"] = c_lp[:, t.target].exp().double().cpu().numpy()
        out["p_new"] = n_lp[:, t.target].exp().double().cpu().numpy()
        out["logit_clean"] = c_lg[:, t.target].double().cpu().numpy()
        out["logit_new"] = n_lg[:, t.target].double().cpu().numpy()
    if t.pair is not None:
        a, b = t.pair
        out["ld_clean"] = (c_lg[:, a] - c_lg[:, b]).double().cpu().numpy()
        out["ld_new"] = (n_lg[:, a] - n_lg[:, b]).double().cpu().numpy()
    if t.anchor is not None:
        anc = t.anchor[rows].to(dev).float()  # (B, V)
        out["kl_anchor"] = (anc.exp() * (anc - n_lp)).sum(-1).clamp_min(0).double().cpu().numpy()
    return out, (n_lp - c_lp).sum(0).double().cpu().numpy()
