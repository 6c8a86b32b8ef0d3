"""Robustness probe: the smallest token edits to a prompt that kill a neuron's activation.

Method: a search over edit sets by size. An edit deletes a token or substitutes it; substitutes for
each position are the ``substitutions`` tokens with the most negative gradient of the activation
w.r.t. the one-hot input at that position (first order, computed once on the original prompt, as
in GCG; Zou et al. 2023), special tokens excluded. Level k extends the edit sets kept at level
k-1 by one more edit at an untouched position; every edit set is scored by a real forward pass
(batched by length: deletions shorten the prompt). The first level at which some edit set drops
the activation below ``threshold`` x the original is the answer: all its killing edit sets, lowest
activation first. The search is exhaustive (every edit set of a level is kept) while a level has
at most ``exhaustive_limit`` edit sets, otherwise a beam of the ``beam`` lowest-activation sets is
kept (greedy); the result says which.

The activation is read at ``position`` (default ``"max"``: the max over the edited prompt's
positions, so deleting the token that fires counts as a kill; ``"last"``: the last token; an int:
that token of the original prompt, which then cannot be deleted). Caveat: "smallest" is within the
substitutes tried; another substitute might kill with fewer edits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from neurosleuth.tools.backoff import halving
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.readout import (
    Position,
    embedding_weights,
    frozen_weights,
    read_position,
    special_token_ids,
    trace,
)

EditSet = tuple[tuple[int, int | None], ...]  # sorted (position, new id or None for deletion)


@dataclass(frozen=True)
class TokenEdit:
    position: int  # text position in the original prompt
    old: str
    new: str | None  # None: the token is deleted
    new_id: int | None

    def __str__(self) -> str:
        if self.new is None:
            return f"delete {self.old!r} at {self.position}"
        return f"{self.old!r} -> {self.new!r} at {self.position}"


@dataclass(frozen=True)
class EditOutcome:
    edits: tuple[TokenEdit, ...]
    text: str
    token_ids: tuple[int, ...]  # text tokens after the edits (no BOS)
    activation: float
    fraction: float  # activation / original activation


@dataclass(frozen=True)
class EditSearch:
    neuron: NeuronId
    prompt: str
    token_ids: tuple[int, ...]
    activation: float  # of the unedited prompt
    threshold: float
    killers: tuple[EditOutcome, ...]  # smallest killing edit sets, lowest activation first
    closest: EditOutcome | None  # lowest activation reached by any edit set
    n_edits: int | None  # size of the smallest killing edit set (None: none within max_edits)
    n_forward: int
    exhaustive: bool  # every level was searched exhaustively

    @property
    def edits(self) -> list[EditOutcome]:
        return list(self.killers)


def minimal_edits(
    lm: LoadedModel,
    neuron: NeuronId,
    prompt: str | Sequence[int],
    *,
    threshold: float = 0.5,
    max_edits: int = 3,
    position: Position = "max",
    substitutions: int = 8,
    beam: int = 16,
    exhaustive_limit: int = 2000,
    keep: int = 10,
) -> EditSearch:
    """Smallest deletions/substitutions that bring ``neuron`` below ``threshold`` x its activation
    on ``prompt`` (text, or text token ids without BOS). See the module docstring."""
    neuron.validate(lm.n_layers, lm.d_mlp)
    if not 0 < threshold < 1:
        raise ValueError("threshold must be between 0 and 1 (a fraction of the activation)")
    text_ids = (list(lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
                if isinstance(prompt, str) else [int(i) for i in prompt])
    if len(text_ids) < 2:
        raise ValueError("the prompt needs at least 2 tokens to edit")
    probe = _Probe(lm, neuron, text_ids, position)
    with frozen_weights(lm):
        base = probe.score([()])[0]
        if base <= 0:
            raise ValueError(f"activation {base:.3g} <= 0 on this prompt: nothing to kill")
        subs = probe.substitutes(substitutions)
    size, found, closest, exhaustive = _search(probe, subs, threshold * base, max_edits, beam,
                                               exhaustive_limit)
    killers = tuple(probe.outcome(e, a, base) for e, a in found[:keep])
    near = probe.outcome(closest[0], closest[1], base) if closest else None
    return EditSearch(neuron, probe.text, tuple(text_ids), base, threshold, killers,
                      killers[0] if killers else near, size, probe.n_forward, exhaustive)


def _search(probe: _Probe, subs: list[list[int]], bar: float, max_edits: int, beam: int,
            exhaustive_limit: int):
    """Level by level: (size, killing sets with activations, closest set, exhaustive?)."""
    level: list[EditSet] = [()]
    exhaustive, closest = True, None
    for size in range(1, max_edits + 1):
        children = probe.children(level, subs)
        if not children:
            break
        acts = probe.score(children)
        order = sorted(range(len(children)), key=lambda i: acts[i])
        if closest is None or acts[order[0]] < closest[1]:
            closest = (children[order[0]], acts[order[0]])
        killed = [(children[i], acts[i]) for i in order if acts[i] < bar]
        if killed:
            return size, killed, closest, exhaustive
        if len(children) > exhaustive_limit:
            exhaustive = False
            order = order[:beam]
        level = [children[i] for i in order]
    return None, [], closest, exhaustive


class _Probe:
    """Applies and scores edit sets on one prompt."""

    def __init__(self, lm: LoadedModel, neuron: NeuronId, text_ids: list[int], position):
        self.lm, self.neuron, self.ids, self.position = lm, neuron, text_ids, position
        self.bos = [int(lm.tokenizer.bos_token_id)] if lm.n_prefix else []
        self.text = lm.decode(text_ids)
        self.fixed = None  # an int position is read at that original token, never deleted
        if isinstance(position, int) and not isinstance(position, bool):
            if not -len(text_ids) <= position < len(text_ids):
                raise ValueError(f"position {position} out of range for {len(text_ids)} tokens")
            self.fixed = position % len(text_ids)
        self.n_forward = 0

    def apply(self, edits: EditSet) -> tuple[list[int], int | None]:
        """Edited text ids, and where the fixed read position went (None when not fixed)."""
        change = dict(edits)
        out: list[int] = []
        where = None
        for i, t in enumerate(self.ids):
            if i == self.fixed:
                where = len(out)
            new = change[i] if i in change else t
            if new is not None:
                out.append(new)
        return out, where

    def score(self, sets: list[EditSet]) -> list[float]:
        """Activation of every edit set, batched by edited length."""
        by_len: dict[int, list[int]] = {}
        applied = [self.apply(s) for s in sets]
        for i, (ids, _) in enumerate(applied):
            by_len.setdefault(len(ids), []).append(i)
        out = [0.0] * len(sets)

        def run(size: int) -> list[float]:
            with torch.inference_mode():
                for rows in by_len.values():
                    for chunk in [rows[j : j + size] for j in range(0, len(rows), size)]:
                        self._score_chunk([applied[i] for i in chunk], chunk, out)
            return out

        return halving(run, 256, "edits")

    def _score_chunk(self, applied, rows, out) -> None:
        tokens = torch.tensor([self.bos + ids for ids, _ in applied], device=self.lm.device)
        acts, _ = trace(self.lm, tokens, self.neuron)  # (B, T)
        if self.fixed is None:
            vals, _ = read_position(acts, self.position, len(self.bos))
        else:
            where = torch.tensor([len(self.bos) + w for _, w in applied], device=acts.device)
            vals = acts.gather(1, where[:, None])[:, 0]
        self.n_forward += len(rows)
        for i, v in zip(rows, vals.tolist(), strict=True):
            out[i] = v

    def substitutes(self, k: int) -> list[list[int]]:
        """Per position, the k tokens whose one-hot gradient most lowers the activation."""
        weight, scale = embedding_weights(self.lm)
        ids = torch.tensor([self.bos + self.ids], device=self.lm.device)  # (1, T)
        onehot = torch.nn.functional.one_hot(ids, weight.shape[0]).to(weight.dtype)
        onehot.requires_grad_(True)  # (1, T, V)
        with torch.enable_grad():
            acts, _ = trace(self.lm, (onehot @ weight) * scale, self.neuron)
            if self.fixed is None:
                val, _ = read_position(acts, self.position, len(self.bos))
            else:
                val = acts[:, len(self.bos) + self.fixed]
            val.sum().backward()
        self.n_forward += 1
        if onehot.grad is None:  # backward() always fills a leaf that requires grad
            raise RuntimeError("no gradient reached the one-hot token input")
        grad = -onehot.grad[0, len(self.bos):]  # (T_text, V): larger = lowers the activation
        vocab = min(grad.shape[1], len(self.lm.tokenizer))
        grad[:, vocab:] = -float("inf")
        grad[:, sorted(i for i in special_token_ids(self.lm) if i < grad.shape[1])] = -float("inf")
        grad[torch.arange(len(self.ids)), torch.tensor(self.ids)] = -float("inf")
        if k < 1:
            return [[] for _ in self.ids]
        return grad.topk(min(k, vocab - 1), dim=-1).indices.tolist()

    def children(self, level: list[EditSet], subs: list[list[int]]) -> list[EditSet]:
        """Every edit set of ``level`` extended by one edit at an untouched position."""
        out: dict[EditSet, None] = {}
        for edits in level:
            used = {p for p, _ in edits}
            for p in range(len(self.ids)):
                if p in used:
                    continue
                options = subs[p] + ([] if p == self.fixed else [None])
                for new in options:
                    out.setdefault(tuple(sorted((*edits, (p, new)), key=_edit_key)), None)
        if self.fixed is None:  # never delete every token
            return [e for e in out if len(self.apply(e)[0]) > 0]
        return list(out)

    def outcome(self, edits: EditSet, act: float, base: float) -> EditOutcome:
        ids, _ = self.apply(edits)
        strs = self.lm.token_strs(self.ids)
        made = tuple(TokenEdit(p, strs[p], None if n is None else self.lm.token_strs([n])[0], n)
                     for p, n in edits)
        return EditOutcome(made, self.lm.decode(ids), tuple(ids), act, act / base)


def _edit_key(edit: tuple[int, int | None]) -> tuple[int, int]:
    return edit[0], -1 if edit[1] is None else edit[1]
