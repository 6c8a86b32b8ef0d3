"""Concept or list? An experiment that tells a named concept from the list of its members seen so
far, where a score on held-out corpus windows cannot (those windows rarely hold a member the list
lacks).

Method: take the neuron's own contexts (the explainer's pruned texts, each cut at its peak token)
and put in the place of the peak token's whole word (``tools/words.py``: "fingertips", not its
last piece), in turn, (a) the trigger words seen firing, (b) members of the named concept the
neuron was never seen on, (c) control words outside the concept, each written as the peak word
was: with or without a leading space (a closing bracket or a tag after "f(" takes none),
capitalised where it was and that does not move the word into or out of the class, whitespace as
it is. A member may have as many tokens as the longest seen word, and at least
``MAX_MEMBER_TOKENS`` (a year is four digit tokens in SmolLM2). The activation is read as the max
over the inserted word's tokens, averaged over contexts, one batched pass for everything. With
medians s, u, c of the seen, unseen and control words:

- ``concept``: the unseen members fire, u - c >= ``CONCEPT_SHARE`` x (s - c);
- ``list``: they do not, u - c <= ``LIST_SHARE`` x (s - c);
- ``undecided`` in between, or when too few unseen members could be written (every member
  seen already, or longer than the seen words).

A kind of text the explainer names is tested in ``tools/text_kind.py``.

Members come from the concept's own definition, commonest first, each passing the concept's
membership test (``concepts.member``): a WordNet synset's hyponym closure or a supersense's
words (by SemCor counts), the closed word classes' lists (alphabetical, interleaved), a word
class's generated members (``tools/class_members.py``: word forms by lemminflect, parts of
speech by SemCor, Unicode characters, numbers, tags, entities, whitespace, capitalised words,
scripts' letters), and for a mixture both parts' members interleaved. A class of symbols
(brackets, quotes, dashes ...) first takes the model's own tokens in the class, in vocabulary
order (``vocab_sweep.vocabulary_members``). Controls are common
English nouns, verbs and adjectives that the concept's membership test rejects.
"""

from __future__ import annotations

import functools
import itertools
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

from neurosleuth.tools import concepts as C
from neurosleuth.tools import wordclasses as W
from neurosleuth.tools.class_members import class_members, interleave
from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.vocab_sweep import vocabulary_members
from neurosleuth.tools.wordnet import wordnet
from neurosleuth.tools.words import Words, words_of

CONCEPT_SHARE, LIST_SHARE = 0.5, 0.2
MIN_UNSEEN = 3
CONTROLS = """table idea river window letter stone music road paper garden chair doctor
money question system water problem story morning office price plan reason voice
run write bring open speak carry build watch think begin
quiet heavy simple bright early strange useful""".split()
MAX_MEMBER_TOKENS = 3  # tokens an unseen member may have (more where a seen word has more)


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
    """Members of ``concept`` from its definition (module docstring), commonest first, each
    passing ``concepts.member(concept)``; [] where none can be made."""
    return list(_members(concept.source, concept.kind, concept.synset))


@functools.lru_cache(maxsize=256)
def _members(source: str, kind: str, synset: str | None) -> tuple[str, ...]:
    test = C.member(C.ConceptName("", (), 0.0, source, kind, synset))
    return tuple(w for w in _candidates(source, kind, synset) if test(w))


def _candidates(source: str, kind: str, synset: str | None) -> Iterable[str]:
    if source == "wordnet" and synset:
        return _wordnet_members(synset, None)
    if source == "supersense":
        return _wordnet_members(None, kind)
    if source == "grammar":
        names = [n for n in W.FUNCTION_WORDS if n in kind] or list(W.FUNCTION_WORDS)
        return interleave(*(sorted(W.FUNCTION_WORDS[n]) for n in names))
    if source == "mixture":  # "source:kind|source:kind", or bare class names of old
        return interleave(*(members(_part(p)) for p in kind.split("|")))
    if source in ("surface", "inflection", "pos"):
        return class_members(kind)
    return ()


def _part(part: str) -> C.ConceptName:
    """A mixture's part as a concept (``concepts._part_test`` reads parts the same way)."""
    if ":" in part:
        source, kind = part.split(":", 1)
    else:
        source = "grammar" if part == "function words" else W.source_of(part)
        kind = part
    return C.ConceptName("", (), 0.0, source, kind, kind if source == "wordnet" else None)


def _word(token: str) -> str:
    """A trigger word or token as text: stripped, or its whitespace where it is only that."""
    t = W.unshow(token)
    return C.norm(t) or W.raw(t)


def _spelled(word: str, like: str, test: Callable[[str], bool] | None = None) -> str:
    """``word`` written as the peak word ``like`` was: with its leading space, and capitalised
    where ``like`` is and that leaves the word in or out of the class (``test``) as it was: a
    control stays out of "capitalised words". Whitespace is written as it is."""
    if not word.strip():
        return word
    space = " " if like[:1].isspace() else ""
    core = C.norm(like)
    if core[:1].isupper() and word[:1].islower():
        cap = word[:1].upper() + word[1:]
        if test is None or test(cap) == test(word):
            word = cap
    return space + word


def _name_start(ws: Words, j: int) -> int:
    """The first word of the name that word ``j`` ends: the two or three words before it when
    WordNet knows them together as one lemma ('New Zealand', 'Papua New Guinea'), else ``j``."""
    wn = wordnet()
    if wn is None:
        return j
    for n in (2, 1):
        part = ws.words[j - n: j + 1] if j >= n else ()
        if (part and all(w.text.isalpha() for w in part)
                and all(a.end == b.start for a, b in itertools.pairwise(part))
                and wn.synsets("_".join(w.text for w in part))):
            return j - n
    return j


def _peak_word(tokens: Sequence[str]) -> tuple[str, str]:
    """A pruned text (tokens ending at the peak) cut before the peak token's word, or the name it
    ends (``_name_start``): the text before it, and the word as written up to the peak (its
    leading space included). A member put in its place replaces all of 'New Zealand'."""
    ws = words_of(tokens)
    j = ws.index[-1]
    start = ws.words[_name_start(ws, j)].start if j >= 0 else len(tokens) - 1
    return "".join(tokens[:start]), "".join(tokens[start:])


def peak_contexts(texts: Iterable[Sequence[str]], n: int) -> list[tuple[str, str]]:
    """Up to ``n`` distinct ``_peak_word`` cuts of pruned texts (a repeated context counts once)."""
    return list(dict.fromkeys(_peak_word(list(t)) for t in texts if len(t) >= 2))[:n]


def _stem(word: str) -> str:
    """A word's form for telling seen from unseen: lower case, a plural 's'/'es' dropped."""
    w = word.lower()
    return w[:-2] if w.endswith("es") and len(w) > 4 else w[:-1] if w.endswith("s") else w


def compare_concept(lm: LoadedModel, neuron: NeuronId, concept: C.ConceptName,
                    seen: Sequence[str], pruned: Sequence, known: Sequence[str] = (),
                    k: int = 8, max_contexts: int = 4) -> Comparison | None:
    """Run the experiment on up to ``max_contexts`` of the explainer's ``pruned`` records with the
    ``seen`` trigger words (strongest first); members in ``seen`` or ``known`` (every word the
    neuron was seen firing on) are not unseen. Each word takes the place of the peak token's
    whole word; a member may have as many tokens as the longest seen word, at least
    ``MAX_MEMBER_TOKENS``. None when there are no contexts or seen words."""
    contexts = peak_contexts((p.tokens for p in pruned), max_contexts)
    is_member = C.member(concept)
    seen_words = [w for w in dict.fromkeys(_word(s) for s in seen) if w and is_member(w)][:6]
    if not contexts or not seen_words:
        return None
    like = contexts[0][1]

    def n_tokens(w: str) -> int:
        return len(lm.tokenizer(_spelled(w, like, is_member), add_special_tokens=False)
                   ["input_ids"])

    longest = max(MAX_MEMBER_TOKENS, *(n_tokens(w) for w in seen_words))
    known_stems = {_stem(_word(w)) for w in [*seen, *known]}
    fresh = (w for w in [*vocabulary_members(lm, concept), *members(concept)]
             if _stem(w) not in known_stems)
    unseen = list(itertools.islice((w for w in fresh if n_tokens(w) <= longest), k))
    controls = [w for w in CONTROLS if _stem(w) not in known_stems and not is_member(w)][:k]
    words = seen_words + unseen + controls
    texts, spans = [], []
    for prefix, peak in contexts:
        n_prefix = len(lm.encode(prefix)) if prefix else lm.n_prefix
        for w in words:
            ids = lm.encode(prefix + _spelled(w, peak, is_member))
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
    return Comparison(concept.label, s_d, u_d, c_d, tuple(a + b for a, b in contexts),
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
