"""Concept or list? An experiment that tells a named concept from the list of its members seen so
far, where a score on held-out corpus windows cannot (those windows rarely hold a member the list
lacks).

Method: take the neuron's own contexts (the explainer's pruned texts, each cut at its peak token)
and put in the peak token's place, in turn, (a) the trigger words seen firing, (b) members of the
named concept the neuron was never seen on, (c) control words outside the concept, each written
as the peak token was (with or without a leading space). The activation is read as the max over
the inserted word's tokens, averaged over contexts, one batched pass for everything. With medians
s, u, c of the seen, unseen and control words:

- ``concept``: the unseen members fire, u - c >= ``CONCEPT_SHARE`` x (s - c);
- ``list``: they do not, u - c <= ``LIST_SHARE`` x (s - c);
- ``undecided`` in between, or when too few unseen members could be written (a concept with no
  member generator: a mixture of classes, a script, capitalised words).

Members come from the concept's own definition: a WordNet synset's hyponym closure or a
supersense's words (most frequent first, by SemCor counts), the closed word classes' lists, or
numbers and punctuation for the surface classes. Controls are common English nouns, verbs and
adjectives that the concept's membership test rejects.
"""

from __future__ import annotations

import functools
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from neurosleuth.tools import concepts as C
from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.wordnet import wordnet

CONCEPT_SHARE, LIST_SHARE = 0.5, 0.2
MIN_UNSEEN = 3
CONTROLS = """table idea river window letter stone music road paper garden chair doctor
money question system water problem story morning office price plan reason voice
run write bring open speak carry build watch think begin
quiet heavy simple bright early strange useful""".split()
NUMBERS = "7 42 365 1999 12 5 80 2024 3 64".split()
PUNCTUATION = list(";!?:-()\",.")


@dataclass(frozen=True)
class Comparison:
    """The concept-or-list experiment and its result (``verdict``: concept / list / undecided)."""

    concept: str
    seen: dict[str, float]  # word -> mean activation over the contexts
    unseen: dict[str, float]
    controls: dict[str, float]
    contexts: tuple[str, ...]
    verdict: str
    why: str
    forward_passes: int

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        def top(d: dict[str, float]) -> str:
            return ", ".join(f"'{w}' {v:.2f}" for w, v in list(d.items())[:4])

        return (f"unseen members of {self.concept}: {top(self.unseen)} (median "
                f"{_median(self.unseen):.2f}); seen triggers {_median(self.seen):.2f}; controls "
                f"{_median(self.controls):.2f}: {self.verdict} ({self.why})")


def _median(d: dict[str, float]) -> float:
    return statistics.median(d.values()) if d else 0.0


@functools.lru_cache(maxsize=64)
def _wordnet_members(synset: str | None, lexname: str | None, limit: int = 200
                     ) -> tuple[str, ...]:
    """Single-word lemmas under a synset (hyponym closure) or in a supersense, most frequent
    first (SemCor counts)."""
    wn = wordnet()
    if wn is None:
        return ()
    if synset:
        root = wn.synset(synset)
        syns = list(root.closure(lambda s: s.hyponyms() + s.instance_hyponyms()))
    elif lexname:
        syns = [s for s in wn.all_synsets(lexname.split(".")[0][0]) if s.lexname() == lexname]
    else:
        return ()
    counts: dict[str, int] = {}
    for s in syns:
        for lemma in s.lemmas():
            w = lemma.name()
            if re.fullmatch(r"[A-Za-z]{3,}", w):
                counts[w] = counts.get(w, 0) + lemma.count()
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return tuple(ranked[:limit])


def members(concept: C.ConceptName) -> list[str]:
    """Words of ``concept`` from its definition (module docstring); [] where none can be made."""
    if concept.source == "wordnet" and concept.synset:
        return list(_wordnet_members(concept.synset, None))
    if concept.source == "supersense":
        return list(_wordnet_members(None, concept.kind))
    if concept.source == "grammar":
        return sorted(w for cls in concept.kind.split(" and ")
                      for w in C.FUNCTION_WORDS.get(cls, ()))
    if concept.source == "surface" and concept.kind == "digits and numbers":
        return list(NUMBERS)
    if concept.source == "surface" and concept.kind == "punctuation marks":
        return list(PUNCTUATION)
    return []


def _spelled(word: str, like: str) -> str:
    """``word`` written as the peak token ``like`` was: leading space and capitalisation."""
    space = " " if like[:1].isspace() else ""
    core = C.norm(like)
    if core[:1].isupper() and word[:1].islower():
        word = word[:1].upper() + word[1:]
    return space + word


def _stem(word: str) -> str:
    """A word's form for telling seen from unseen: lower case, a plural 's'/'es' dropped."""
    w = word.lower()
    return w[:-2] if w.endswith("es") and len(w) > 4 else w[:-1] if w.endswith("s") else w


def compare_concept(lm: LoadedModel, neuron: NeuronId, concept: C.ConceptName,
                    seen: Sequence[str], pruned: Sequence, known: Sequence[str] = (),
                    k: int = 8, max_contexts: int = 4) -> Comparison | None:
    """Run the experiment on up to ``max_contexts`` of the explainer's ``pruned`` records with the
    ``seen`` trigger words (strongest first); members in ``seen`` or ``known`` (every token the
    neuron was seen firing on) are not unseen. None when there are no contexts or seen words."""
    contexts = [p for p in pruned if len(p.tokens) >= 2][:max_contexts]
    is_member = C.member(concept)
    seen_words = [w for w in dict.fromkeys(C.norm(s) for s in seen) if w and is_member(w)][:6]
    if not contexts or not seen_words:
        return None
    known_stems = {_stem(C.norm(w)) for w in [*seen, *known]}
    unseen = [w for w in members(concept) if _stem(w) not in known_stems][: 4 * k]
    unseen = [w for w in unseen if len(lm.tokenizer(" " + w, add_special_tokens=False)
                                     ["input_ids"]) <= 2][:k]
    controls = [w for w in CONTROLS if _stem(w) not in known_stems and not is_member(w)][:k]
    words = seen_words + unseen + controls
    texts, spans = [], []
    for ctx in contexts:
        prefix = "".join(ctx.tokens[:-1])
        n_prefix = len(lm.encode(prefix)) if prefix else lm.n_prefix
        for w in words:
            ids = lm.encode(prefix + _spelled(w, ctx.tokens[-1]))
            texts.append(ids)
            spans.append(min(n_prefix, len(ids) - 1))
    acts = measure_ids(lm, texts, [neuron])
    per_word: dict[str, list[float]] = {w: [] for w in words}
    for i, (a, start) in enumerate(zip(acts, spans, strict=True)):
        per_word[words[i % len(words)]].append(float(a[start:, 0].max()))
    mean = {w: round(statistics.fmean(v), 4) for w, v in per_word.items()}
    s_d = {w: mean[w] for w in seen_words}
    u_d = dict(sorted(((w, mean[w]) for w in unseen), key=lambda x: -x[1]))
    c_d = {w: mean[w] for w in controls}
    verdict, why = _verdict(s_d, u_d, c_d)
    return Comparison(concept.label, s_d, u_d, c_d, tuple("".join(c.tokens) for c in contexts),
                      verdict, why, len(texts))


def _verdict(seen: dict, unseen: dict, controls: dict) -> tuple[str, str]:
    if len(unseen) < MIN_UNSEEN:
        return "undecided", f"only {len(unseen)} unseen members could be written"
    s, u, c = _median(seen), _median(unseen), _median(controls)
    if s <= c:
        return "undecided", "the seen triggers do not fire above the controls in these contexts"
    share = (u - c) / (s - c)
    if share >= CONCEPT_SHARE:
        return "concept", f"unseen members reach {share:.0%} of the seen triggers' activation"
    if share <= LIST_SHARE:
        return "list", f"unseen members reach only {share:.0%} of the seen triggers' activation"
    return "undecided", f"unseen members reach {share:.0%} of the seen triggers' activation"
