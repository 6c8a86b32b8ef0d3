"""The evidence explainer: distil a neuron's top texts into a pattern that is both readable and a
simulator (Foote et al. 2023, "Neuron to Graph: Interpreting Language Model Neurons at Scale"),
and say in words what the pattern's tokens have in common (``tools/concepts.py``).

Method, on the top texts (prompts and dataset exemplars), each cut at its peak token:

1. **prune**: the shortest suffix ending at the peak that keeps >= ``keep`` (50%) of the
   activation. All suffix lengths of all texts go through one batched ``measure_ids`` call.
2. **importance**: each context token of a pruned text is deleted in turn (one batch); a token
   whose deletion costs >= ``important`` (50%) of the activation is required context.
3. **augment**: the peak token is replaced by the model's own top next-token predictions at its
   position and by its nearest neighbours in the embedding matrix (cosine); required context
   tokens by their neighbours. Substitutes that keep >= ``fire`` (50%) of the activation join the
   **trigger set**; those that kill it are counterexamples.
4. **pattern**: triggers (token -> relative activation), their concept name, required context
   and how much of the activation the peak token keeps alone (``context_free``). The pattern
   predicts a per-token activation for any text (``Pattern.simulate``), so it is scored like any
   hypothesis.
5. **context-level features**: when, in the top windows, a large share of tokens fire (>=
   ``context_frac`` at ``CONTEXT_FIRE`` of the window max) across many different tokens, and
   >= 75% of the windows are one kind of text (``tools/contexts.py``: a format or programming
   language, a language, a non-Latin script, quoted text), the
   neuron reads the kind of text, not a token: the pattern names that context and predicts
   from it. A token-level neuron on a code token ('def') has top windows of code too, but few
   of their tokens fire.

Caveats: deletion is one choice of occlusion (N2G masks with padding); a peak that needs more
than ``max_context`` tokens of context keeps its best suffix, flagged ``long_context``. The
pattern is fitted to the texts the agent found, so it is scored on held-out windows.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from neurosleuth.tools import concepts as C
from neurosleuth.tools.contexts import CONTEXT_FIRE, context_level, context_of
from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.patch import last_logits
from neurosleuth.tools.readout import embedding_weights, special_token_ids
from neurosleuth.tools.wordnet import wordnet_status


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


@dataclass(frozen=True)
class Pruned:
    text: str  # the original text, up to its peak
    tokens: list[str]  # the pruned suffix, ending at the peak
    act: float  # activation of the pruned suffix at its last token
    full_act: float  # activation at the peak in the original text
    importance: list[float]  # per context token: share of the activation its deletion costs
    long_context: bool = False


@dataclass(frozen=True)
class Substitution:
    context: str  # pruned text before the replaced position
    original: str
    token: str
    where: str  # "peak" or "context"
    source: str  # "prediction" or "neighbour"
    fraction: float  # activation kept, relative to the pruned text
    fires: bool


@dataclass(frozen=True)
class Pattern:
    kind: str  # "token", "context" or "none"
    triggers: dict[str, float]  # normalised token -> activation relative to the peak (0..1)
    concept: C.ConceptName | None
    required: dict[str, float]  # context token -> share of pruned texts that need it
    context_free: float  # median share of the activation the peak token keeps alone
    context: str | None = None  # context-level: the shared kind of text
    fire_share: float = 0.0  # share of tokens that fire in the top windows
    seen: dict[str, float] = field(default_factory=dict)  # tokens that fire in the top windows

    def simulate(self, tokens: Sequence[str]) -> np.ndarray:
        """Predicted activation of each token of a text, in [0, 1]: a trigger token 0.5-1.0 (by
        its measured strength), a member of the concept 0.6, a token seen firing in the top
        windows its mean share of the window max (< 0.5); times ``context_free`` when the
        required context is missing from the three tokens before. Context-level: 0.6 on every
        token of a text of the pattern's kind."""
        if self.kind == "context":
            on = float(context_of(tokens) == self.context)
            return np.full(len(tokens), on * 0.6)
        out = np.zeros(len(tokens))
        test = C.member(self.concept) if self.concept and self.concept.source != "none" else None
        need = {w for w, share in self.required.items() if share >= 0.3}
        top = max(self.triggers.values(), default=0.0) or 1.0
        for i, tok in enumerate(tokens):
            w = C.norm(tok)
            value = 0.5 + 0.5 * self.triggers[w] / top if w in self.triggers else 0.0
            if not value and test is not None and w and test(tok):
                value = 0.6
            if not value and w in self.seen:  # fired in a top window, not confirmed at a peak
                value = min(0.45, self.seen[w])
            if not value:
                continue
            if need and self.context_free < 0.5:
                before = {C.norm(t) for t in tokens[max(0, i - 3) : i]}
                if not before & need:
                    value *= max(self.context_free, 0.2)
            out[i] = value
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["concept"] = asdict(self.concept) if self.concept else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Pattern:
        concept = d.get("concept")
        if concept:
            concept = C.ConceptName(**{**concept, "examples": tuple(concept["examples"]),
                                       "also": tuple(concept.get("also", ()))})
        return cls(**{**d, "concept": concept})


@dataclass(frozen=True)
class Explanation:
    neuron: str
    sentence: str  # the hypothesis, one sentence
    details: str  # the evidence behind it, a few sentences
    pattern: Pattern
    pruned: list[Pruned] = field(default_factory=list)
    substitutions: list[Substitution] = field(default_factory=list)
    naming: str = ""  # which naming source was used, and WordNet's status
    forward_passes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "neuron": self.neuron, "sentence": self.sentence, "details": self.details,
            "pattern": self.pattern.to_dict(), "pruned": [asdict(p) for p in self.pruned],
            "substitutions": [asdict(s) for s in self.substitutions], "naming": self.naming,
            "forward_passes": self.forward_passes, "seconds": round(self.seconds, 3),
        }


# ---- the steps -----------------------------------------------------------------------------
def _last_acts(lm: LoadedModel, seqs: list[list[int]], neuron: NeuronId) -> np.ndarray:
    if not seqs:
        return np.zeros(0)
    prefix = list(lm.encode("")[: lm.n_prefix])
    acts = measure_ids(lm, [prefix + s for s in seqs], [neuron])
    return np.array([float(a[-1, 0]) for a in acts])


def _peaks(lm, neuron, texts: Sequence[str]) -> list[tuple[str, list[int], float]]:
    """(text, ids up to the peak, peak activation) per text that fires."""
    ids = [lm.encode(t)[lm.n_prefix :] for t in texts]
    ids = [x for x in ids if x]
    prefix = list(lm.encode("")[: lm.n_prefix])
    acts = measure_ids(lm, [prefix + x for x in ids], [neuron]) if ids else []
    out = []
    for x, a in zip(ids, acts, strict=True):
        a = a[lm.n_prefix :, 0]
        p = int(np.argmax(a))
        if a[p] > 0:
            out.append((lm.tokenizer.decode(x[: p + 1]), x[: p + 1], float(a[p])))
    return out


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
) -> Explanation:
    """Explain ``neuron`` from its top ``texts`` (strongest first); ``windows``: top dataset
    windows as (tokens, activations), for context-level detection."""
    cfg = config or ExplainConfig()
    start = time.perf_counter()
    neuron.validate(lm.n_layers, lm.d_mlp)
    peaks = _peaks(lm, neuron, list(dict.fromkeys(texts))[: cfg.texts])
    passes = len(peaks)
    share, context, distinct = context_level(windows)
    pruned = prune(lm, neuron, peaks, cfg) if peaks else []
    imp = importance(lm, neuron, pruned)
    subs = augment(lm, neuron, pruned, imp, cfg) if pruned else []
    passes += sum(min(len(p[1]), cfg.max_context) for p in peaks) + sum(map(len, imp))
    passes += len(subs) + len(pruned)
    records = [Pruned(t, lm.token_strs(ids), a, full, v, long)
               for (t, _, full), (ids, a, long), v in zip(peaks, pruned, imp, strict=True)]
    pattern = replace(build_pattern(records, subs, share, context, distinct, cfg),
                      seen=seen_tokens(windows))
    sentence, details = describe(pattern, records, subs)
    source = pattern.concept.source if pattern.concept else "none"
    return Explanation(str(neuron), sentence, details, pattern, records, subs,
                       f"{source}; {wordnet_status()}", passes, time.perf_counter() - start)


def seen_tokens(windows: Sequence[tuple[Sequence[str], np.ndarray]], limit: int = 200
                ) -> dict[str, float]:
    """Each token that fires (>= ``CONTEXT_FIRE`` of its window's max) in the top windows: its
    mean activation there as a share of the window max (the strongest ``limit``)."""
    seen: dict[str, list[float]] = {}
    for toks, acts in windows:
        acts = np.asarray(acts, dtype=float)
        top = float(acts.max()) if len(acts) else 0.0
        if top <= 0:
            continue
        for t, a in zip(toks, acts, strict=True):
            if a >= CONTEXT_FIRE * top and C.norm(t):
                seen.setdefault(C.norm(t), []).append(a / top)
    best = sorted(seen.items(), key=lambda kv: -np.mean(kv[1]))[:limit]
    return {w: round(float(np.mean(v)), 3) for w, v in best}


def build_pattern(pruned: list[Pruned], subs: list[Substitution], share: float,
                  context: str | None, distinct: int, cfg: ExplainConfig) -> Pattern:
    if not pruned:
        return Pattern("none", {}, None, {}, 0.0)
    top = max(p.full_act for p in pruned)
    triggers: dict[str, list[float]] = {}
    for p in pruned:
        triggers.setdefault(C.norm(p.tokens[-1]), []).append(p.full_act / top)
    for s in subs:
        if s.where == "peak" and s.fires:
            base = next((p.act for p in pruned if "".join(p.tokens[:-1]) == s.context), top)
            triggers.setdefault(C.norm(s.token), []).append(s.fraction * base / top)
    trig = {w: round(float(np.mean(v)), 4) for w, v in triggers.items() if w or v}
    required: Counter = Counter()
    for p in pruned:
        for tok, v in zip(p.tokens[:-1], p.importance, strict=True):
            if v >= cfg.important and C.norm(tok):
                required[C.norm(tok)] += 1
    req = {w: round(n / len(pruned), 3) for w, n in required.most_common(5)}
    alone = [1.0 if len(p.tokens) == 1 else max(0.0, 1 - max(p.importance, default=0.0))
             for p in pruned]
    peaks = {C.norm(p.tokens[-1]) for p in pruned}
    ordered = [w for w in sorted(trig, key=lambda w: -trig[w]) if trig[w] > 0][:16]
    # the strongest count most; a substitute that fires counts half a peak the texts reached
    concept = C.name_tokens(ordered, [trig[w] * (1.0 if w in peaks else 0.5) for w in ordered])
    kind = "token"
    if share >= cfg.context_frac and distinct >= 8 and context is not None:
        kind = "context"  # many different tokens fire, in windows of one kind of text
    return Pattern(kind, trig, concept, req, round(float(np.median(alone)), 3), context,
                   round(share, 3))


def _quote(words: Sequence[str], n: int = 3) -> str:
    return ", ".join(f"'{w}'" for w in list(dict.fromkeys(words))[:n])


def sentence_of(pattern: Pattern, peaks: Sequence[str]) -> str:
    """The hypothesis sentence of a pattern whose top texts peaked on ``peaks`` (normalised)."""
    if pattern.kind == "none":
        return "No text found that makes this neuron fire."
    if pattern.kind == "context":
        return (f"Fires on most tokens inside {pattern.context} (e.g. {_quote(peaks)}), "
                "not on one particular word.")
    if pattern.concept and pattern.concept.source != "none":
        sentence = f"Fires on {pattern.concept.phrase()}"
    else:
        sentence = f"Fires on the tokens {_quote(peaks)}"
    need = [w for w, s in pattern.required.items() if s >= 0.3]
    if need and pattern.context_free < 0.5:
        sentence += f", mostly after {_quote(need, 2)}"
    return sentence + "."


def describe(pattern: Pattern, pruned: list[Pruned], subs: list[Substitution]
             ) -> tuple[str, str]:
    """The hypothesis sentence and a few sentences of evidence."""
    if pattern.kind == "none":
        return "No text found that makes this neuron fire.", ""
    peaks = [C.norm(p.tokens[-1]) for p in pruned if C.norm(p.tokens[-1])]
    sentence = sentence_of(pattern, peaks)
    need = [w for w, s in pattern.required.items() if s >= 0.3]
    fire = [s.token.strip() for s in subs if s.where == "peak" and s.fires and s.token.strip()]
    kill = [s.token.strip() for s in subs if s.where == "peak" and not s.fires and s.token.strip()]
    details = (f"{len(pruned)} top texts pruned to {np.median([len(p.tokens) for p in pruned]):.0f}"
               f" tokens (median) ending at the peak; the peak token alone keeps "
               f"{pattern.context_free:.0%} of the activation.")
    if fire:
        details += f" Substitutes that still fire: {_quote(fire, 6)}."
    if kill:
        details += f" Substitutes that do not: {_quote(kill, 6)}."
    if need:
        details += f" Required context: {_quote(need, 3)}."
    if pattern.fire_share:
        details += f" {pattern.fire_share:.0%} of tokens fire in the top windows."
    return sentence, details


def variants(ex: Explanation) -> list[tuple[str, Pattern]]:
    """The explainer's candidate hypotheses, each with the pattern that simulates it: its
    sentence; the bare trigger list (no concept: the simulator predicts only the listed
    tokens); for a context-level pattern, also the token-level reading."""
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
        bare = replace(p, kind="token", concept=None, triggers={w: p.triggers[w] for w in listed})
        text = f"Fires on the tokens {_quote(listed, 6)}"
        need = [w for w, s in p.required.items() if s >= 0.3]
        if need and p.context_free < 0.5:
            text += f", mostly after {_quote(need, 2)}"
        out.append((text + ".", bare))
    if p.kind == "context" and p.concept and p.concept.source != "none":
        out.append((f"Fires on {p.concept.phrase()}.", replace(p, kind="token")))
    return list({t: (t, q) for t, q in out}.values())
