"""The evidence explainer: distil a neuron's top texts into a pattern that is both readable and a
simulator (Foote et al. 2023, "Neuron to Graph: Interpreting Language Model Neurons at Scale"),
and say in words what the pattern's words have in common (``tools/concepts.py``).

Method, on the top texts (prompts and dataset exemplars), each cut at its peak token:

1. **prune**: the shortest suffix ending at the peak that keeps >= ``keep`` (50%) of the
   activation. All suffix lengths of all texts go through one batched ``measure_ids`` call.
2. **importance**: each context token of a pruned text is deleted in turn (one batch); a token
   whose deletion costs >= ``important`` (50%) of the activation is required context.
3. **augment**: the peak token is replaced by the model's own top next-token predictions at its
   position and by its nearest neighbours in the embedding matrix (cosine); required context
   tokens by their neighbours. Substitutes that keep >= ``fire`` (50%) of the activation join the
   **trigger set**; those that kill it are counterexamples. Then the **vocabulary sweep**
   (``tools/vocab_sweep.py``): every word of the vocabulary at the strongest peak on a word,
   after its context; the words that fire join the records, so a class is named from members
   no text held.
4. **pattern**, on words (``tools/words.py``), not token pieces: the dataset windows, every text
   measured in step 1 and every substitution of a whole peak word are records, read by the
   records explainer (``tools/records_explain.py``): trigger words and the piece of a word the
   neuron fires on, the classes they fall in (WordNet concepts, word forms, surface and Unicode
   classes), the kind of text, and facets of a polysemantic neuron, each reading chosen by how
   well it simulates held-apart records. The model then tests the records' required context
   (``confirm_context``): a context word whose deletion does not cost the activation is
   dropped, one whose deletion does (and that is not a piece of the peak word) is added.
   The pattern predicts a per-token activation for any text (``Pattern.simulate``), so it is
   scored like any hypothesis.

``DeepDive`` is this explainer as an ``Explainer`` (``tools/pattern.py``), the one interface it
shares with the records explainer; ``explanation`` there writes the sentence, the details and the
naming of both.

Caveats: deletion is one choice of occlusion (N2G masks with padding); a peak that needs more
than ``max_context`` tokens of context keeps its best suffix, flagged ``long_context``. The
pattern is fitted to the texts the agent found, so it is scored on held-out windows.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from neurosleuth.tools.contexts import CONTEXT_FIRE
from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.patch import last_logits
from neurosleuth.tools.pattern import (
    Explanation,
    Pattern,
    Pruned,
    Substitution,
    explanation,
    quote,
    seen_words,
    sentence_of,
)
from neurosleuth.tools.readout import embedding_weights, special_token_ids
from neurosleuth.tools.records import Record
from neurosleuth.tools.records_explain import RecordsConfig, records_pattern
from neurosleuth.tools.vocab_sweep import Sweep, peak_word, sweep
from neurosleuth.tools.words import WHOLE, words_of

__all__ = ["DeepDive", "Explanation", "Pattern", "Pruned", "Substitution", "explain", "variants"]


@dataclass(frozen=True)
class ExplainConfig:
    texts: int = 12  # top texts explained
    max_context: int = 12  # longest suffix tried when pruning
    keep: float = 0.5
    important: float = 0.5
    predictions: int = 6  # model predictions tried at the peak
    neighbours: int = 6  # embedding neighbours tried at the peak and at required context
    fire: float = 0.5
    context_frac: float = 0.2
    sweep: int | None = None  # vocabulary words swept at the peak (None: all, 0: no sweep)


# ---- the steps -----------------------------------------------------------------------------
def _last_acts(lm: LoadedModel, seqs: list[list[int]], neuron: NeuronId) -> np.ndarray:
    if not seqs:
        return np.zeros(0)
    prefix = list(lm.encode("")[: lm.n_prefix])
    acts = measure_ids(lm, [prefix + s for s in seqs], [neuron])
    return np.array([float(a[-1, 0]) for a in acts])


def _peaks(lm, neuron, texts: Sequence[str]
           ) -> tuple[list[tuple[str, list[int], float]], list[Record]]:
    """(text, ids up to the peak, peak activation) per text that fires, and every text that
    fires as a record (its tokens and activations: evidence as the dataset windows are)."""
    ids = [lm.encode(t)[lm.n_prefix :] for t in texts]
    ids = [x for x in ids if x]
    prefix = list(lm.encode("")[: lm.n_prefix])
    acts = measure_ids(lm, [prefix + x for x in ids], [neuron]) if ids else []
    out, records = [], []
    for x, a in zip(ids, acts, strict=True):
        a = np.asarray(a[lm.n_prefix :, 0], dtype=float)
        p = int(np.argmax(a))
        if a[p] > 0:
            out.append((lm.tokenizer.decode(x[: p + 1]), x[: p + 1], float(a[p])))
            records.append(Record(tuple(lm.token_strs(x)), a))
    return out, records


def prune(lm, neuron, peaks, cfg: ExplainConfig) -> list[tuple[list[int], float, bool]]:
    """Per peak: (shortest suffix keeping ``keep`` of the activation, its activation, long)."""
    seqs, owner = [], []
    for i, (_, ids, _) in enumerate(peaks):
        for n in range(1, min(len(ids), cfg.max_context) + 1):
            seqs.append(ids[-n:])
            owner.append(i)
    acts = _last_acts(lm, seqs, neuron)
    out = []
    for i, (_, _ids, full) in enumerate(peaks):
        rows = [(s, a) for s, a, o in zip(seqs, acts, owner, strict=True) if o == i]
        good = [(s, a) for s, a in rows if a >= cfg.keep * full]
        if good:
            out.append((good[0][0], float(good[0][1]), False))
        else:
            s, a = max(rows, key=lambda r: r[1])
            out.append((s, float(a), True))
    return out


def importance(lm, neuron, pruned: list[tuple[list[int], float, bool]]) -> list[list[float]]:
    """Per pruned text: the share of its activation lost when each context token is deleted."""
    seqs, owner = [], []
    for i, (ids, _, _) in enumerate(pruned):
        for j in range(len(ids) - 1):
            seqs.append(ids[:j] + ids[j + 1 :])
            owner.append(i)
    acts = _last_acts(lm, seqs, neuron)
    out: list[list[float]] = [[] for _ in pruned]
    for i, a in zip(owner, acts, strict=True):
        base = pruned[i][1]
        out[i].append(float(np.clip(1 - a / base, 0, 1)) if base > 0 else 0.0)
    return out


_NEAR: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # lm -> (unit W_E, {token: order})
_NEAR_KEEP = 64  # nearest tokens kept per token (enough for k <= 15)


def neighbours(lm, token_id: int, k: int, banned: set[int]) -> list[int]:
    """The ``k`` tokens nearest ``token_id`` in the input embedding matrix (cosine). The unit
    embeddings and each token's order are memoised per model (every neuron of a batch asks about
    the same common tokens)."""
    if lm not in _NEAR:
        weight, _ = embedding_weights(lm)
        _NEAR[lm] = (torch.nn.functional.normalize(weight.float(), dim=-1), {})  # (V, d_model)
    unit, orders = _NEAR[lm]
    want = k * 4 + 1
    order = orders.get(token_id)
    if order is None or len(order) < min(want, unit.shape[0]):
        top = torch.topk(unit @ unit[token_id], min(max(want, _NEAR_KEEP), unit.shape[0]))
        order = orders[token_id] = top.indices.tolist()
    return [t for t in order[:want] if t != token_id and t not in banned][:k]


def augment(lm, neuron, pruned, imp, cfg: ExplainConfig) -> list[Substitution]:
    """Substitutes at the peak (predictions, neighbours) and at required context (neighbours)."""
    banned = special_token_ids(lm)
    prefix = list(lm.encode("")[: lm.n_prefix])
    contexts = [prefix + ids[:-1] for ids, _, _ in pruned if len(ids) > 1 or prefix]
    preds = last_logits(lm, contexts) if contexts else None
    plans, seqs = [], []
    ci = 0
    for i, (ids, _act, _) in enumerate(pruned):
        cands = [(t, "neighbour") for t in neighbours(lm, ids[-1], cfg.neighbours, banned)]
        if len(ids) > 1 or prefix:
            assert preds is not None  # a context was measured for this text
            top = torch.topk(preds[ci], cfg.predictions * 2).indices.tolist()
            ci += 1
            cands = [(t, "prediction") for t in top if t not in banned and t != ids[-1]][
                : cfg.predictions] + cands
        for t, src in dict((t, s) for t, s in reversed(cands)).items():
            plans.append((i, len(ids) - 1, ids[-1], t, "peak", src))
            seqs.append(ids[:-1] + [t])
        for j in [j for j, v in enumerate(imp[i]) if v >= cfg.important][:2]:
            for t in neighbours(lm, ids[j], cfg.neighbours // 2 or 1, banned):
                plans.append((i, j, ids[j], t, "context", "neighbour"))
                seqs.append(ids[:j] + [t] + ids[j + 1 :])
    acts = _last_acts(lm, seqs, neuron)
    out = []
    for (i, j, orig, t, where, src), a in zip(plans, acts, strict=True):
        ids, base, _ = pruned[i]
        frac = float(a / base) if base > 0 else 0.0
        out.append(Substitution(lm.tokenizer.decode(ids[:j]), lm.tokenizer.decode([orig]),
                                lm.tokenizer.decode([t]), where, src, round(frac, 4),
                                frac >= cfg.fire))
    return out


# ---- the whole explainer ------------------------------------------------------------------
def explain(
    lm: LoadedModel,
    neuron: NeuronId,
    texts: Sequence[str],
    windows: Sequence[tuple[Sequence[str], np.ndarray]] = (),
    config: ExplainConfig | None = None,
    others: Sequence[tuple[Sequence[str], np.ndarray]] = (),
) -> Explanation:
    """Explain ``neuron`` from its top ``texts`` (strongest first); ``windows``: top dataset
    windows as (tokens, activations); ``others``: random windows (where words do not fire)."""
    cfg = config or ExplainConfig()
    start = time.perf_counter()
    neuron.validate(lm.n_layers, lm.d_mlp)
    peaks, measured = _peaks(lm, neuron, list(dict.fromkeys(texts))[: cfg.texts])
    passes = len(peaks)
    pruned = prune(lm, neuron, peaks, cfg) if peaks else []
    imp = importance(lm, neuron, pruned)
    subs = augment(lm, neuron, pruned, imp, cfg) if pruned else []
    passes += sum(min(len(p[1]), cfg.max_context) for p in peaks) + sum(map(len, imp))
    passes += len(subs) + len(pruned)
    at = peak_word(lm, peaks) if cfg.sweep != 0 else None
    top_act = max((a for _, _, a in peaks), default=0.0)
    swept = sweep(lm, neuron, at, cfg.fire, cfg.sweep, top_act) if at is not None else None
    passes += swept.forward_passes if swept else 0
    texts_pruned = [Pruned(t, lm.token_strs(ids), a, full, v, long)
                    for (t, _, full), (ids, a, long), v in zip(peaks, pruned, imp, strict=True)]
    top = [Record(tuple(t), np.asarray(a, dtype=float)) for t, a in windows]
    shown = ["".join(t) for t, _ in windows]  # a text cut from a window: the window has it whole
    top += [r for r in measured if not any("".join(r.tokens) in w for w in shown)]
    # substitutions count as evidence where words fire or not, not as top texts
    rand = [Record(tuple(t), np.asarray(a, dtype=float)) for t, a in others]
    rand += substituted(texts_pruned, subs) + (swept.records() if swept else [])
    rcfg = RecordsConfig(context_frac=cfg.context_frac)
    pattern = confirm_context(records_pattern(top, rand, rcfg), texts_pruned, cfg)
    pattern = replace(pattern, seen=seen_words(windows, CONTEXT_FIRE))  # the dataset's alone
    # the pruned texts end at the peak, often inside its word: the sentence takes the words from
    # the pattern, and the peak words only to illustrate a kind of text
    words = ([w for w in (words_of(p.tokens).word_of(len(p.tokens) - 1) for p in texts_pruned)
              if w] if pattern.kind == "context" else [])
    return explanation(str(neuron), pattern, words,
                       evidence(pattern, texts_pruned, subs) + swept_evidence(swept),
                       "top windows", pruned=texts_pruned, substitutions=subs,
                       forward_passes=passes, seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class DeepDive:
    """The deep dive as an ``Explainer`` (``tools/pattern.py``): ``explain`` of ``neuron`` on
    ``texts`` (say the agent's best prompts) and the top records' texts cut at their peak, with
    the top records as its dataset windows and ``others`` as its random windows."""

    lm: LoadedModel
    neuron: NeuronId
    texts: tuple[str, ...] = ()
    config: ExplainConfig | None = None

    def __call__(self, top: Sequence[Record], others: Sequence[Record] = ()) -> Explanation:
        cut = ["".join(r.tokens[: int(np.argmax(r.acts)) + 1]) for r in top]
        return explain(self.lm, self.neuron, [*self.texts, *cut], [r.pair() for r in top],
                       self.config, [r.pair() for r in others])


def substituted(pruned: Sequence[Pruned], subs: Sequence[Substitution]) -> list[Record]:
    """The substitution experiments as records: a pruned text whose peak word was replaced,
    with the activation measured at its end (the context is not measured there: 0). Only where
    the peak is a whole word, so that a substitute is a word too."""
    out = []
    for s in subs:
        p = next((p for p in pruned if "".join(p.tokens[:-1]) == s.context), None)
        if s.where != "peak" or p is None or words_of(p.tokens).position[-1] != WHOLE:
            continue
        tokens = (*p.tokens[:-1], s.token)
        if words_of(tokens).position[-1] != WHOLE:
            continue
        acts = np.zeros(len(tokens))
        acts[-1] = s.fraction * p.act
        out.append(Record(tokens, acts))
    return out


def word_importance(p: Pruned) -> dict[str, float]:
    """Per context word of a pruned text (pieces of the peak's own word excluded): the largest
    share of the activation that deleting one of its tokens costs."""
    ws = words_of(p.tokens)
    own = ws.index[-1]
    out: dict[str, float] = {}
    for i, v in enumerate(p.importance):
        j = ws.index[i]
        if j >= 0 and j != own:
            w = ws.words[j].text
            out[w] = max(out.get(w, 0.0), v)
    return out


def confirm_context(pattern: Pattern, pruned: Sequence[Pruned], cfg: ExplainConfig) -> Pattern:
    """Required context is a co-occurrence in the records; deletion on the model tests it. A
    context word present in pruned texts whose deletion costs < ``important`` of the activation
    in most of them is dropped; a word (not a piece of the peak word) whose deletion costs more
    in >= 30% of the pruned texts is added."""
    if pattern.kind != "token" or not pruned:
        return pattern
    per_text = [word_importance(p) for p in pruned]
    required = {}
    for w, share in pattern.required.items():
        tried = [d[w] for d in per_text if w in d]
        if not tried or np.mean([v >= cfg.important for v in tried]) >= 0.5:
            required[w] = share
    counts = Counter(w for d in per_text for w, v in d.items() if v >= cfg.important and w.strip())
    for w, n in counts.most_common(5):
        if n / len(pruned) >= 0.3 and w not in required:
            required[w] = round(n / len(pruned), 3)
    alone = [1.0 if len(p.tokens) == 1 else max(0.0, 1 - max(p.importance, default=0.0))
             for p in pruned]
    free = pattern.context_free if not required else min(pattern.context_free,
                                                         float(np.median(alone)))
    facets = tuple(confirm_context(f, pruned, cfg) for f in pattern.facets)
    return replace(pattern, required=required, context_free=round(free, 3), facets=facets)


def evidence(pattern: Pattern, pruned: Sequence[Pruned], subs: Sequence[Substitution]
             ) -> list[str]:
    """The deep dive's own sentences of evidence (``tools/pattern.explanation`` adds the rest): the
    pruned texts, the substitutes at the peak that fire and those that do not, the required
    context the model confirmed."""
    fire = [s.token.strip() for s in subs if s.where == "peak" and s.fires and s.token.strip()]
    kill = [s.token.strip() for s in subs if s.where == "peak" and not s.fires and s.token.strip()]
    said = []
    if pruned:
        said.append(f"{len(pruned)} top texts pruned to "
                    f"{np.median([len(p.tokens) for p in pruned]):.0f} tokens (median) ending at "
                    f"the peak; the peak word alone keeps {pattern.context_free:.0%} of the "
                    "activation.")
    if fire:
        said.append(f"Substitutes that still fire: {quote(fire, 6)}.")
    if kill:
        said.append(f"Substitutes that do not: {quote(kill, 6)}.")
    if pattern.needs():
        said.append(f"Required context: {quote(pattern.needs(), 3)}.")
    return said


def swept_evidence(swept: Sweep | None) -> list[str]:
    """What the vocabulary sweep found, in a sentence (none without a sweep)."""
    if swept is None or not swept.words:
        return []
    after = swept.text.strip()
    found = [w.strip() for w, _ in swept.fired]
    if not swept.word_level:
        return [f"Vocabulary sweep after '{after}': {swept.share:.0%} of {swept.words:,} words "
                "fire there (the context fires, not a word)." if found else
                f"Vocabulary sweep after '{after}': none of {swept.words:,} words fires there."]
    return [f"Vocabulary sweep after '{after}': {round(swept.share * swept.words):,} of "
            f"{swept.words:,} words fire there, {quote(found, 8)}."]


def variants(ex: Explanation) -> list[tuple[str, Pattern]]:
    """The explainer's candidate hypotheses, each with the pattern that simulates it: its
    sentence; the bare trigger list (no concept: the simulator predicts only the listed
    words); each facet of a polysemantic pattern alone; for a context-level pattern, also the
    word-level reading."""
    p = ex.pattern
    if p.kind == "none":
        return [(ex.sentence, p)]
    out = [(ex.sentence, p)]
    ordered = sorted(p.triggers, key=lambda w: -p.triggers[w])
    listed: list[str] = []
    for w in ordered:  # strongest first, each word once whatever its case
        if w and w.lower() not in {x.lower() for x in listed}:
            listed.append(w)
    listed = listed[:6]
    if listed:
        bare = replace(p, kind="token", concept=None, facets=(),
                       triggers={w: p.triggers[w] for w in listed})
        text = f"Fires on the words {quote(listed, 6)}"
        if p.needs():
            text += f", mostly after {quote(p.needs(), 2)}"
        out.append((text + ".", bare))
    for facet in (replace(p, facets=()), *p.facets) if p.facets else ():  # each facet alone
        out.append((sentence_of(facet), facet))
    if p.kind == "context" and p.triggers:
        token = replace(p, kind="token")
        out.append((sentence_of(token), token))
    return list({t: (t, q) for t, q in out}.values())
