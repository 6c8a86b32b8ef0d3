"""Gradient-guided discrete prompt search that drives one neuron's activation up (or down).

Method: GCG (Zou et al. 2023, "Universal and Transferable Adversarial Attacks on Aligned Language
Models") with the population and fluency objective of EPO (Thompson et al. 2024, "Fluent dreaming
for language models"). A population of P prompts of fixed length n, member i with its own fluency
weight lambda_i, maximises

    objective_i(x) = s * activation(x) - lambda_i * CE(x)

where s = +1 (up) or -1 (down), activation is read at the last token (or the max over positions)
and CE is the prompt's mean next-token cross-entropy (nats per token) under the model. Each step:

1. one forward+backward of the population with one-hot inputs (one-hot @ W_E as embeddings) gives
   the gradient of each member's objective w.r.t. every token at every free position;
2. each member proposes ``candidates`` single-token substitutions: a random position, a random
   token among the ``top_k`` of that position's gradient (forbidden tokens excluded; prompts
   already evaluated are skipped, and after s steps in which no member changed the top-k is
   widened to top_k * 2**s, so a stuck search does not repeat itself);
3. all candidates (same length, so no padding) are evaluated in batches: forward stopped after
   the neuron's layer when every lambda is 0, else a full forward for the cross-entropy;
4. every member takes the best of the pool (population + all candidates) under its own lambda:
   the members trace the Pareto frontier of activation vs fluency (EPO's key idea).

Restarts re-initialise the population (from the next given prompts, else random tokens) and split
the budget. Every evaluated prompt goes into an archive; the result is its Pareto frontier.

Budget: ``budget`` counts forward passes, one per sequence run through the model, whether for a
gradient (the backward is not counted separately), a candidate, or the final cross-entropy of the
returned prompts when no fluency weight needed it during the search.

Caveats: a prompt is a token sequence; with ``roundtrip`` (default) candidates whose decoded text
does not re-encode to the same tokens are dropped, so the text reproduces the activation, but a
merge across the boundary with a prefix/suffix is not checked. Fluency weights are in units of
activation per nat; their useful range depends on the neuron's scale. The gradient is a
first-order guide only; candidates are always scored by a real forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import torch

from neurosleuth.tools.backoff import halving
from neurosleuth.tools.edits import EditSearch, minimal_edits  # noqa: F401  (re-exported)
from neurosleuth.tools.measure import auto_tokens_per_batch, available_memory
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.readout import (
    Position,
    cross_entropy,
    embed,
    embedding_weights,
    frozen_weights,
    read_position,
    special_token_ids,
    trace,
)

TokensIn = str | Sequence[int]


@dataclass(frozen=True)
class AttackConfig:
    """Search parameters; saved with every result."""

    length: int | None = None  # free tokens; default: the first init prompt's length, else 8
    steps: int = 40  # steps per restart
    population: int | None = None  # default: one member per fluency weight
    fluency_weights: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0)  # lambda per member (cycled)
    candidates: int = 32  # substitutions proposed per member per step
    top_k: int = 64  # tokens considered per position from the gradient
    restarts: int = 1
    direction: Literal["up", "down"] = "up"
    position: Position = "last"
    budget: int | None = None  # forward passes in all (None: bounded by steps)
    seed: int = 0
    forbid_special: bool = True
    roundtrip: bool = True
    keep: int = 8  # prompts returned (spread along the Pareto frontier)


@dataclass(frozen=True)
class AttackPrompt:
    text: str  # prefix + prompt + suffix, decoded (no BOS)
    token_ids: tuple[int, ...]  # the same tokens (no BOS)
    prompt_ids: tuple[int, ...]  # the optimised tokens only
    activation: float
    cross_entropy: float  # nats per predicted token of the whole sequence
    position: int  # text position where the activation was read


@dataclass(frozen=True)
class AttackResult:
    neuron: NeuronId
    direction: str
    prompts: tuple[AttackPrompt, ...]  # Pareto frontier, best activation first
    initial: AttackPrompt  # the best initial prompt
    curve: tuple[tuple[int, float], ...] = field(repr=False)  # (forward passes, best activation)
    n_forward: int = 0
    config: dict = field(default_factory=dict, repr=False)

    @property
    def best(self) -> AttackPrompt:
        return self.prompts[0]

    def best_within(self, max_cross_entropy: float) -> AttackPrompt | None:
        """The best prompt whose cross-entropy is at most ``max_cross_entropy`` (None if none)."""
        ok = [p for p in self.prompts if p.cross_entropy <= max_cross_entropy]
        return ok[0] if ok else None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"text": p.text, "activation": p.activation, "cross_entropy": p.cross_entropy,
              "position": p.position, "token_ids": list(p.token_ids)} for p in self.prompts]
        )


def attack(
    lm: LoadedModel,
    neuron: NeuronId,
    *,
    init: Sequence[TokensIn] | None = None,
    prefix: TokensIn | None = None,
    suffix: TokensIn | None = None,
    forbid: Sequence[int | str] | None = None,
    config: AttackConfig | None = None,
    **options,
) -> AttackResult:
    """Search prompts that drive ``neuron`` up or down (see module docstring).

    ``init``: starting prompts (text or token ids; e.g. top dataset exemplars), cut to their last
    ``length`` tokens or left-filled with random tokens. ``prefix``/``suffix``: fixed text or ids
    around the free tokens. ``forbid``: token ids or strings never substituted in. ``options``
    override fields of ``AttackConfig`` (length, steps, population, fluency_weights, candidates,
    top_k, restarts, direction, position, budget, seed, forbid_special, roundtrip, keep).
    """
    try:
        cfg = replace(config or AttackConfig(), **options)
    except TypeError as err:
        raise ValueError(f"unknown attack option: {err}") from None
    neuron.validate(lm.n_layers, lm.d_mlp)
    init_ids = [_as_ids(lm, x, "init prompt") for x in (init or [])]
    cfg = _checked(cfg, init_ids)
    search = _Search(lm, neuron, cfg, _as_ids(lm, prefix or [], None),
                     _as_ids(lm, suffix or [], None), _allowed(lm, cfg, forbid))
    with frozen_weights(lm):
        left = cfg.budget
        for r in range(cfg.restarts):
            share = None if left is None else (left - search.reserve) // (cfg.restarts - r)
            start = search.n_forward
            search.run(init_ids, r, share)
            left = None if left is None else left - (search.n_forward - start)
        prompts = search.frontier()
    return AttackResult(neuron, cfg.direction, tuple(prompts), search.initial_best(),
                        tuple(search.curve), search.n_forward, asdict(cfg))


def _as_ids(lm: LoadedModel, x: TokensIn, what: str | None) -> list[int]:
    ids = (list(lm.tokenizer(x, add_special_tokens=False)["input_ids"]) if isinstance(x, str)
           else [int(i) for i in x])
    if what and not ids:
        raise ValueError(f"empty {what}")
    return ids


def _checked(cfg: AttackConfig, init_ids: list[list[int]]) -> AttackConfig:
    length = cfg.length or (len(init_ids[0]) if init_ids else 8)
    population = cfg.population or len(cfg.fluency_weights)
    if length < 1 or cfg.steps < 0 or population < 1 or cfg.candidates < 1 or cfg.top_k < 1:
        raise ValueError("length, population, candidates and top_k must be >= 1, steps >= 0")
    if not cfg.fluency_weights or min(cfg.fluency_weights) < 0:
        raise ValueError("fluency weights must be a non-empty list of numbers >= 0")
    if cfg.direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', not {cfg.direction!r}")
    if cfg.restarts < 1:
        raise ValueError("restarts must be >= 1")
    cfg = replace(cfg, length=length, population=population,
                  fluency_weights=tuple(float(w) for w in cfg.fluency_weights))
    if cfg.budget is not None and cfg.budget < 2 * population * cfg.restarts + cfg.keep:
        raise ValueError(f"budget {cfg.budget} too small: needs at least "
                         f"{2 * population * cfg.restarts + cfg.keep} forward passes")
    return cfg


def _allowed(
    lm: LoadedModel, cfg: AttackConfig, forbid: Sequence[int | str] | None
) -> torch.Tensor:
    """(V,) bool: tokens the search may substitute in."""
    vocab = int(embedding_weights(lm)[0].shape[0])
    allowed = torch.zeros(vocab, dtype=torch.bool)
    allowed[: min(vocab, len(lm.tokenizer))] = True
    banned = set(special_token_ids(lm)) if cfg.forbid_special else set()
    for f in forbid or []:
        banned.update(_as_ids(lm, f, None) if isinstance(f, str) else [int(f)])
    allowed[[b for b in banned if 0 <= b < vocab]] = False
    if not allowed.any():
        raise ValueError("every token is forbidden")
    return allowed.to(lm.device)


class _Search:
    """State of one attack: population search steps, the archive and the forward-pass count."""

    def __init__(self, lm: LoadedModel, neuron: NeuronId, cfg: AttackConfig, prefix: list[int],
                 suffix: list[int], allowed: torch.Tensor) -> None:
        self.lm, self.neuron, self.cfg = lm, neuron, cfg
        if cfg.length is None or cfg.population is None:
            raise ValueError("the attack config's length and population are unresolved (_checked)")
        self.length, self.population = cfg.length, cfg.population
        self.sign = 1.0 if cfg.direction == "up" else -1.0
        bos = [int(lm.tokenizer.bos_token_id)] if lm.n_prefix else []
        self.head = torch.tensor(bos + prefix, dtype=torch.long, device=lm.device)  # (Th,)
        self.tail = torch.tensor(suffix, dtype=torch.long, device=lm.device)  # (Ts,)
        n_ctx = int(lm.model.cfg.n_ctx)
        if len(self.head) + self.length + len(self.tail) > n_ctx:
            raise ValueError(f"prefix + {self.length} tokens + suffix exceed the context ({n_ctx})")
        self.allowed = allowed
        self.weights = torch.tensor([cfg.fluency_weights[i % len(cfg.fluency_weights)]
                                     for i in range(self.population)], device=lm.device)  # (P,)
        self.need_ce = bool(self.weights.max() > 0)
        self.reserve = 0 if self.need_ce else cfg.keep + 1  # the final cross-entropies
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.n_forward = 0
        self.archive: dict[tuple[int, ...], tuple[float, float, int]] = {}  # ids: act, ce, pos
        self.initial: list[tuple[int, ...]] = []
        self.curve: list[tuple[int, float]] = []
        self.best_score = -float("inf")
        self.stale = 0  # steps since any member improved: widens the top-k (x2 per step)
        self.rows = self._rows_per_batch()

    def _rows_per_batch(self) -> int:
        width = len(self.head) + self.length + len(self.tail)
        tokens = auto_tokens_per_batch(self.lm, self.neuron.layer, width)
        if self.need_ce:  # float32 logits and their softmax terms (tokens, V) dominate memory
            vocab = embedding_weights(self.lm)[0].shape[0]
            tokens = min(tokens, max(width, available_memory(self.lm.device) // 8 // (12 * vocab)))
        return max(1, tokens // width)

    def _batched(self, run, spans: torch.Tensor) -> list:
        """``run(first_row, chunk)`` over ``spans`` in chunks of ``self.rows`` rows; on
        out-of-memory the rows are halved (and stay halved) and the step is redone."""

        def at(rows: int) -> list:
            self.rows = rows
            return [run(i, spans[i : i + rows]) for i in range(0, spans.shape[0], rows)]

        return halving(at, self.rows, "attack")

    def full(self, spans: torch.Tensor) -> torch.Tensor:
        """(B, T) sequences from free spans (B, n)."""
        b = spans.shape[0]
        return torch.cat([self.head.expand(b, -1), spans, self.tail.expand(b, -1)], dim=1)

    def evaluate(self, spans: torch.Tensor, with_ce: bool | None = None):
        """Activation (B,), cross-entropy (B,) (0 when not needed) and read position (B,) of each
        span; every result enters the archive."""
        with_ce = self.need_ce if with_ce is None else with_ce

        def run(_: int, chunk: torch.Tensor):
            ids = self.full(chunk)  # (b, T)
            with torch.inference_mode():
                a, logits = trace(self.lm, ids, self.neuron, logits=with_ce)
                act, pos = read_position(a, self.cfg.position, self.lm.n_prefix, self.sign,
                                         max_from=len(self.head))
                # trace returns logits exactly when with_ce asks for them
                ce = cross_entropy(logits, ids) if logits is not None else torch.zeros_like(act)
            return act, ce, pos

        parts = self._batched(run, spans)
        self.n_forward += spans.shape[0]
        act, ce, pos = (torch.cat(x) for x in zip(*parts, strict=True))
        for key, a, c, p in zip(spans.tolist(), act.tolist(), ce.tolist(), pos.tolist(),
                                strict=True):
            self.archive[tuple(key)] = (a, c if with_ce else float("nan"), p)
            self.best_score = max(self.best_score, self.sign * a)
        return act, ce, pos

    def gradient(self, spans: torch.Tensor) -> torch.Tensor:
        """Gradient (P, n, V) of each member's objective w.r.t. its one-hot tokens (float32)."""
        weight, scale = embedding_weights(self.lm)

        def run(first: int, chunk: torch.Tensor) -> torch.Tensor:
            b = chunk.shape[0]
            w = self.weights[first : first + b]  # (b,) fluency weights
            onehot = torch.nn.functional.one_hot(chunk, weight.shape[0]).to(weight.dtype)
            onehot.requires_grad_(True)  # (b, n, V)
            x = torch.cat([embed(self.lm, self.head.expand(b, -1)), (onehot @ weight) * scale,
                           embed(self.lm, self.tail.expand(b, -1))], dim=1)  # (b, T, d_model)
            with torch.enable_grad():
                acts, logits = trace(self.lm, x, self.neuron, logits=self.need_ce)
                act, _ = read_position(acts, self.cfg.position, self.lm.n_prefix, self.sign,
                                       max_from=len(self.head))
                objective = self.sign * act  # (b,)
                if logits is not None:  # asked for exactly when need_ce
                    objective = objective - w * cross_entropy(logits, self.full(chunk))
                objective.sum().backward()
            if onehot.grad is None:  # backward() always fills a leaf that requires grad
                raise RuntimeError("no gradient reached the one-hot token input")
            return onehot.grad.float()

        parts = self._batched(run, spans)
        self.n_forward += spans.shape[0]
        return torch.cat(parts)

    def propose(self, spans: torch.Tensor, grad: torch.Tensor, n_each: int) -> torch.Tensor:
        """Up to P * n_each new spans, each one token substituted from the gradient's top-k."""
        p, n, _ = grad.shape
        k = min(self.cfg.top_k << min(self.stale, 20), int(self.allowed.sum()))
        top = grad.masked_fill(~self.allowed, -float("inf")).topk(k, dim=-1).indices.cpu()
        pos = torch.randint(n, (p, n_each), generator=self.gen)
        pick = torch.randint(k, (p, n_each), generator=self.gen)
        toks = top[torch.arange(p)[:, None], pos, pick]  # (P, n_each)
        cands = spans.cpu()[:, None, :].repeat(1, n_each, 1)  # (P, n_each, n)
        cands.scatter_(2, pos[..., None], toks[..., None])
        keep, seen = [], set(self.archive)
        for row in cands.reshape(-1, n).tolist():
            key = tuple(row)
            if key not in seen and (not self.cfg.roundtrip or self._roundtrips(row)):
                seen.add(key)
                keep.append(row)
        return torch.tensor(keep, dtype=torch.long, device=self.lm.device).reshape(-1, n)

    def _roundtrips(self, ids: list[int]) -> bool:
        tok = self.lm.tokenizer
        return list(tok(tok.decode(ids), add_special_tokens=False)["input_ids"]) == ids

    def init_spans(self, init_ids: list[list[int]], restart: int) -> torch.Tensor:
        """(P, n) starting spans: given prompts (cycled) cut/filled to n, else random tokens."""
        n, p = self.length, self.population
        choices = self.allowed.nonzero()[:, 0].cpu()
        rows = []
        for i in range(p):
            given = init_ids[(restart * p + i) % len(init_ids)][-n:] if init_ids else []
            fill = choices[torch.randint(len(choices), (n - len(given),), generator=self.gen)]
            rows.append(fill.tolist() + list(given))
        return torch.tensor(rows, dtype=torch.long, device=self.lm.device)

    def run(self, init_ids: list[list[int]], restart: int, budget: int | None) -> None:
        """One restart: initial population, then up to ``steps`` steps within ``budget``."""
        end = None if budget is None else self.n_forward + budget
        pop = self.init_spans(init_ids, restart)
        self.stale = 0
        act, ce, _ = self.evaluate(pop)
        self.initial.extend(tuple(r) for r in pop.tolist())
        self._record()
        p = pop.shape[0]
        for _ in range(self.cfg.steps):
            room = None if end is None else end - self.n_forward - p
            if room is not None and room < 1:
                break
            n_each = self.cfg.candidates if room is None else min(self.cfg.candidates, room // p)
            if n_each < 1:
                break
            cands = self.propose(pop, self.gradient(pop), n_each)
            before = pop
            if len(cands):
                c_act, c_ce, _ = self.evaluate(cands)
                pop, act, ce = self._select(pop, act, ce, cands, c_act, c_ce)
            self.stale = 0 if not torch.equal(pop, before) else self.stale + 1
            self._record()

    def _select(self, pop, act, ce, cands, c_act, c_ce):
        """Each member takes the best of population + candidates under its own fluency weight."""
        pool, p_act, p_ce = torch.cat([pop, cands]), torch.cat([act, c_act]), torch.cat([ce, c_ce])
        score = self.sign * p_act[None, :] - self.weights[:, None] * p_ce[None, :]  # (P, N)
        best = score.argmax(dim=1)
        return pool[best], p_act[best], p_ce[best]

    def _record(self) -> None:
        self.curve.append((self.n_forward, self.sign * self.best_score))

    def frontier(self) -> list[AttackPrompt]:
        """The archive's Pareto frontier (activation vs cross-entropy), ``keep`` points spread
        along it, best activation first. Cross-entropies not yet known are computed here."""
        ranked = sorted(self.archive.items(), key=lambda kv: -self.sign * kv[1][0])
        if not self.need_ce:
            top = ranked[: self.cfg.keep]
            spans = torch.tensor([k for k, _ in top], dtype=torch.long, device=self.lm.device)
            self.evaluate(spans, with_ce=True)
            return [self._prompt(k) for k, _ in top]
        front, lowest = [], float("inf")
        for key, (_, ce, _) in ranked:
            if ce < lowest:
                front.append(key)
                lowest = ce
        idx = np.unique(np.linspace(0, len(front) - 1, min(self.cfg.keep, len(front))).round())
        return [self._prompt(front[int(i)]) for i in idx]

    def _prompt(self, key: tuple[int, ...]) -> AttackPrompt:
        act, ce, pos = self.archive[key]
        ids = self.full(torch.tensor([key], device=self.lm.device))[0, self.lm.n_prefix:].tolist()
        return AttackPrompt(self.lm.decode(ids), tuple(ids), key, act, ce,
                            pos - self.lm.n_prefix)

    def initial_best(self) -> AttackPrompt:
        key = max(self.initial, key=lambda k: self.sign * self.archive[k][0])
        if np.isnan(self.archive[key][1]):
            self.evaluate(torch.tensor([key], device=self.lm.device), with_ce=True)
        return self._prompt(key)
