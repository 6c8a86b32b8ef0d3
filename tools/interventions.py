"""The intervention core: what can be intervened on (``Component``), what is done to it (``Op``),
and one hooked, batched forward pass that applies many variants of an edit to the same prompts
while the clean run is computed once and reused.

Components, each a frozen dataclass (``Component`` is their union):

- ``NeuronId``: one MLP neuron, one column of ``blocks.L.mlp.hook_post`` (B, T, d_mlp).
- ``NeuronSet``: several neurons (any layers), edited together.
- ``MLPLayer``: a whole MLP's output, ``blocks.L.hook_mlp_out`` (B, T, d_model). For the bias-free
  MLPs of Llama and Gemma, editing it equals editing every neuron of the layer the same way.
- ``AttnHead``: one head's output before the output projection, ``blocks.L.attn.hook_z``
  (B, T, n_heads, d_head), the usual site for head ablation (Wang et al. 2022, "Interpretability in
  the wild"). With grouped-query attention the heads are query heads.
- ``Resid``: the residual stream after block L, ``blocks.L.hook_resid_post`` (patching, steering).

Edits (``Op``): ``Scale(k)`` (zero ablation is ``k = 0``), ``SetConst`` (mean ablation),
``SetPerToken`` (resample ablation and activation patching: one value per prompt and position),
``Add`` (steering). Every op holds values in the full trailing shape of its hook; the ``Site``
picks the component's part, so one mean or one patch source serves every neuron of a layer.

Positions count text tokens only: a prepended BOS is never edited and never scored, as in
``measure``. ``positions=None`` means every real text token; negative positions count from each
prompt's end (-1 = its last token).

Batching: prompts are right-padded with an attention mask (``measure.pad_right``), sorted by length
into chunks; for each chunk the clean run is computed once, then the variants run stacked along the
batch dimension (K variants x B prompts per forward), as many as the token budget allows.

Hooks exist only inside ``hooked``, TransformerLens' ``hooks`` context, which removes them in a
``finally`` block, so a hook that raises leaves the model clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformer_lens.utilities import get_act_name

from neurosleuth.tools.backoff import halving
from neurosleuth.tools.effects import EffectAccumulator, EffectResult, Targets
from neurosleuth.tools.measure import (  # noqa: F401  (active_hooks re-exported)
    active_hooks,
    auto_tokens_per_batch,
    available_memory,
    pad_right,
)
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronError, NeuronId, hook_name
from neurosleuth.tools.placement import check_finite


@dataclass(frozen=True)
class NeuronSet:
    """Several MLP neurons (possibly of different layers), edited together."""

    neurons: tuple[NeuronId, ...]

    def __post_init__(self) -> None:
        if not self.neurons:
            raise NeuronError("a neuron set needs at least one neuron")
        object.__setattr__(self, "neurons", tuple(sorted(set(self.neurons))))

    def __str__(self) -> str:
        return ",".join(map(str, self.neurons))


@dataclass(frozen=True)
class MLPLayer:
    layer: int

    def __str__(self) -> str:
        return f"mlp{self.layer}"


@dataclass(frozen=True)
class AttnHead:
    layer: int
    head: int

    def __str__(self) -> str:
        return f"head{self.layer}.{self.head}"


@dataclass(frozen=True)
class Resid:
    layer: int

    def __str__(self) -> str:
        return f"resid{self.layer}"


Component = NeuronId | NeuronSet | MLPLayer | AttnHead | Resid


@dataclass(frozen=True)
class Site:
    """A part of one hook's activation: ``index`` along ``dim`` (2: neurons, heads), or all."""

    hook: str
    layer: int
    dim: int | None = None
    index: tuple[int, ...] = ()

    def select(self, act: torch.Tensor) -> torch.Tensor:
        """(B, T, *rest) -> the component's part, e.g. (B, T, k) for k neurons."""
        if self.dim is None:
            return act
        return act.index_select(self.dim, torch.tensor(self.index, device=act.device))

    def write(self, act: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        if self.dim is None:
            return part
        return act.index_copy(self.dim, torch.tensor(self.index, device=act.device), part)


def sites(component: Component) -> list[Site]:
    """Where a component lives: one site per hook it touches."""
    match component:
        case NeuronId(layer, index):
            return [Site(hook_name(layer), layer, 2, (index,))]
        case NeuronSet(neurons):
            layers = sorted({n.layer for n in neurons})
            return [
                Site(hook_name(lay), lay, 2, tuple(n.index for n in neurons if n.layer == lay))
                for lay in layers
            ]
        case MLPLayer(layer):
            return [Site(get_act_name("mlp_out", layer), layer)]
        case AttnHead(layer, head):
            return [Site(get_act_name("z", layer), layer, 2, (head,))]
        case Resid(layer):
            return [Site(get_act_name("resid_post", layer), layer)]
    raise TypeError(f"not a component: {component!r}")


def validate(lm: LoadedModel, component: Component) -> Component:
    """Return ``component``, or raise ``NeuronError``/``ValueError`` saying what is out of range."""
    members = component.neurons if isinstance(component, NeuronSet) else (component,)
    for c in members:
        if isinstance(c, NeuronId):
            c.validate(lm.n_layers, lm.d_mlp)
            continue
        if not 0 <= c.layer < lm.n_layers:
            raise ValueError(
                f"layer {c.layer} out of range: the model has layers 0..{lm.n_layers - 1}"
            )
        if isinstance(c, AttnHead) and not 0 <= c.head < lm.n_heads:
            raise ValueError(
                f"head {c.head} out of range: layer {c.layer} has heads 0..{lm.n_heads - 1}"
            )
    return component


@dataclass(frozen=True)
class Scale:
    k: float


@dataclass(frozen=True, eq=False)
class SetConst:
    value: torch.Tensor  # (*trailing) of the hook, e.g. (d_mlp,) or (n_heads, d_head)


@dataclass(frozen=True, eq=False)
class SetPerToken:
    values: tuple[torch.Tensor, ...]  # per prompt (T_i, *trailing), T_i = its full token count


@dataclass(frozen=True, eq=False)
class Add:
    vector: torch.Tensor  # (*trailing)


Op = Scale | SetConst | SetPerToken | Add


@dataclass(frozen=True, eq=False)
class Edit:
    site: Site
    op: Op


Variant = tuple[Edit, ...]


def edits(component: Component, op: Op | Callable[[Site], Op]) -> Variant:
    """One edit per site of ``component``; ``op`` may be a function of the site (e.g. means)."""
    return tuple(Edit(s, op(s) if callable(op) else op) for s in sites(component))


def _apply(act: torch.Tensor, edit: Edit, rows: Sequence[int], pos: torch.Tensor) -> torch.Tensor:
    """Apply one edit to ``act`` (B, T, *rest) of the prompts ``rows`` at ``pos`` (B, T) bool."""
    site, op = edit.site, edit.op
    old = site.select(act)
    match op:
        case Scale(k):
            new = old * k
        case SetConst(value):
            new = site.select(value.to(act)[None, None]).expand_as(old)
        case SetPerToken(values):
            full = torch.zeros_like(act)  # (B, T, *rest)
            for b, r in enumerate(rows):
                n = min(act.shape[1], values[r].shape[0])
                full[b, :n] = values[r][:n].to(act)
            new = site.select(full)
        case Add(vector):
            new = old + site.select(vector.to(act)[None, None])
    mask = pos.view(*pos.shape, *([1] * (old.ndim - 2)))
    return site.write(act, torch.where(mask, new, old))


@contextmanager
def hooked(lm: LoadedModel, fwd_hooks: Sequence[tuple[str, Callable]]) -> Iterator[object]:
    """Attach ``fwd_hooks`` for the block; they are removed on exit, exceptions included."""
    with lm.model.hooks(fwd_hooks=list(fwd_hooks)) as model:
        yield model


def position_mask(
    lengths: Sequence[int],
    width: int,
    n_prefix: int,
    positions: Sequence[int] | None,
    device: torch.device,
) -> torch.Tensor:
    """(B, T) bool: the text positions to edit (``None``: all real text tokens)."""
    mask = torch.zeros(len(lengths), width, dtype=torch.bool)
    for b, n in enumerate(lengths):
        if positions is None:
            mask[b, n_prefix:n] = True
            continue
        for p in positions:
            t = n_prefix + p if p >= 0 else n + p
            if not n_prefix <= t < n:
                raise ValueError(f"position {p} is outside a prompt of {n - n_prefix} tokens")
            mask[b, t] = True
    return mask.to(device)


def token_budget(lm: LoadedModel, tokens_per_batch: int | None = None) -> int:
    """Tokens per forward: the measure budget, capped so the (tokens, vocab) logits stay small."""
    if tokens_per_batch:
        return tokens_per_batch
    vocab = int(lm.model.cfg.d_vocab)
    logit_bytes = min(
        available_memory(lm.device) // 8, 1 << 30 if lm.device.type == "cpu" else 1 << 34
    )
    return max(16, min(auto_tokens_per_batch(lm, lm.n_layers - 1), logit_bytes // (16 * vocab)))


def chunks(ids: Sequence[Sequence[int]], budget: int) -> Iterator[list[int]]:
    """Prompt indices, longest first, in chunks of at most ``budget`` padded tokens."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    start = 0
    while start < len(order):
        rows = max(1, budget // len(ids[order[start]]))
        yield order[start : start + rows]
        start += rows


def _variant_hooks(group: Sequence[Variant], rows: list[int], pos: torch.Tensor) -> list:
    """One hook per hook name; variant j edits rows j*B..(j+1)*B of the stacked batch."""
    b = len(rows)
    by_hook: dict[str, list[tuple[int, Edit]]] = {}
    for j, variant in enumerate(group):
        for e in variant:
            by_hook.setdefault(e.site.hook, []).append((j, e))

    def make(todo: list[tuple[int, Edit]]):
        def hook(act, hook):  # act: (K*B, T, *rest)
            out = act.clone()
            for j, e in todo:
                out[j * b : (j + 1) * b] = _apply(out[j * b : (j + 1) * b], e, rows, pos)
            return out

        return hook

    return [(name, make(todo)) for name, todo in by_hook.items()]


def run_variants(
    lm: LoadedModel,
    ids: Sequence[Sequence[int]],
    variants: Sequence[Variant],
    targets: Targets | None = None,
    positions: Sequence[int] | None = None,
    tokens_per_batch: int | None = None,
) -> list[EffectResult]:
    """Effects (``effects.EffectResult``) of each variant on the prompts ``ids`` (BOS included),
    each compared with the unedited run of the same prompts, which is computed once per chunk."""
    if not ids:
        raise ValueError("no prompts to run")
    targets = targets or Targets()
    return halving(lambda size: _run_variants(lm, ids, variants, targets, positions, size),
                   token_budget(lm, tokens_per_batch), "interventions")


def _run_variants(lm, ids, variants, targets: Targets, positions, budget: int):
    acc = EffectAccumulator(len(variants), len(ids), int(lm.model.cfg.d_vocab), targets)
    for rows in chunks(ids, budget):
        seqs = [ids[r] for r in rows]
        tokens, mask = pad_right(seqs, lm.tokenizer.pad_token_id, lm.device)  # (B, T)
        lengths = [len(s) for s in seqs]
        pos = position_mask(lengths, tokens.shape[1], lm.n_prefix, positions, lm.device)
        # Every pass has the same shape, K stacked copies of the chunk: the first holds the
        # unedited run, and the last is filled up with unedited copies, so that no kernel chosen
        # for another batch shape (GPU libraries choose per shape) moves the reference.
        k = min(len(variants) + 1, max(1, budget // tokens.numel()))
        slots: list[Variant] = [(), *variants]  # slot 0: the unedited run
        slots += [()] * (-len(slots) % k)
        clean: torch.Tensor | None = None
        for g in range(0, len(slots), k):
            with torch.inference_mode(), hooked(lm, _variant_hooks(slots[g : g + k], rows, pos)):
                new = lm.model(tokens.repeat(k, 1), attention_mask=mask.repeat(k, 1))  # (K*B, T, V)
            b = len(rows)
            for j in range(k):
                v = g + j - 1  # index into variants
                if v == -1:
                    clean = check_finite(new[:b].clone(), lm.dtype, "logits")  # frees `new`
                elif v < len(variants):
                    assert clean is not None  # slot 0, the unedited run, comes first
                    acc.add(v, rows, clean, new[j * b : (j + 1) * b], tokens, lengths, lm.n_prefix)
    return acc.results()
