"""The measurement the clause tests share (``tools/clauses.py``): words put in the place of a
neuron's peak word, in its own contexts and in new sentences, one batched pass; the levels they
are read against; members of a class never seen, like the seen ones.

A word's activation is the max over its tokens, averaged over the slots (own contexts, then
new sentences); texts are measured with ``LEAD`` before them, so that no word stands at position
0 (a model without a BOS token reads its first token as an attention sink).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from neurosleuth.tools import concepts as C
from neurosleuth.tools.compare import _spelled, _stem, _word, members, peak_contexts
from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId

FIRES = 0.5  # share of the seen triggers' level (above controls) a word must reach to fire
QUIET = 0.2  # under this share a word is quiet
LEAD = "\n"  # measured before every text: no word stands at position 0
FRAMES = ("She wrote {w} on the card.", "We talked about {w} for a while.",
          "Then {w} came up again.")  # new sentences: no context of the neuron's own; the word
# takes the place of {w} written as the peak word was (with its leading space or without)
MAX_CONTEXTS = 4
KIND_FIRE = 0.1  # share of a window's tokens firing above which a kind of text is worth testing
KIND_WORDS = 8  # ... on at least this many distinct tokens (not one word again and again)
MIN_NAMED = 3  # distinct seen members firing alone that name a class of tokens
MAX_WORDS = 8  # seen, unseen and control words each
STRONG = 3  # the reference when no trigger claims more than the rest: the three strongest
CLAIM = 0.25  # a trigger predicted at this share of the strongest makes a claim worth testing
SUFFIX_SHARE = 2 / 3  # seen words sharing an ending: unseen members are chosen with it
MERGE = 0.75  # share of all facets' trigger weight one class must cover to name them together


@dataclass(frozen=True)
class ClauseTest:
    """One clause put to one experiment: what was done, what it gave, and the edit it implies."""

    clause: str  # "class 'conjunctions'", "member 'but'", "context 'king'", ...
    experiment: str  # what was measured
    result: str  # what it gave, with numbers
    verdict: str  # "holds", "fails" or "undecided"
    edit: str  # "keep", or the edit: "drop ...", "add ...", "name ..."

    def to_dict(self) -> dict:
        return asdict(self)


# ---- measurement ---------------------------------------------------------------------------
class WordBench:
    """Words measured in place of the peak word of contexts (own contexts and new sentences)."""

    def __init__(self, lm: LoadedModel, neuron: NeuronId, contexts: Sequence[Sequence[str]],
                 frames: Sequence[str] = FRAMES):
        self.lm, self.neuron, self.frames = lm, neuron, tuple(frames)
        own = peak_contexts(contexts, MAX_CONTEXTS)
        like = own[0][1] if own else " word"
        space = " " if like[:1].isspace() else ""
        self.slots = own + [(f.split("{w}")[0].rstrip(" "), space + "x") for f in self.frames]
        self.tails = ["" for _ in own] + [f.split("{w}")[1] for f in self.frames]
        self.n_own = len(own)
        self.like = like
        self.passes = 0

    def acts(self, words: Sequence[str], test=None) -> dict[str, float]:
        """Each word's activation (max over its tokens), mean over the slots."""
        words = list(dict.fromkeys(w for w in words if w))
        if not words:
            return {}
        ids, spans = [], []
        for (prefix, peak), tail in zip(self.slots, self.tails, strict=True):
            for w in words:
                text = LEAD + prefix
                start = len(self.lm.encode(text))
                full = self.lm.encode(text + _spelled(w, peak, test))
                end = len(full)
                if tail:
                    full = self.lm.encode(text + _spelled(w, peak, test) + tail)
                ids.append(full)
                spans.append((min(start, end - 1), end))
        acts = measure_ids(self.lm, ids, [self.neuron])
        self.passes += len(ids)
        per: dict[str, list[float]] = {w: [] for w in words}
        for i, (a, (s, e)) in enumerate(zip(acts, spans, strict=True)):
            per[words[i % len(words)]].append(float(a[s:e, 0].max()))
        return {w: round(statistics.fmean(v), 4) for w, v in per.items()}


def relative(a: float, s: float, c: float) -> float:
    return (a - c) / (s - c) if s > c else 0.0


def fmt(d: dict[str, float], n: int = 4) -> str:
    return ", ".join(f"'{w}' {v:.2f}" for w, v in list(d.items())[:n])


def suffix(words: Sequence[str]) -> str:
    """The ending most of ``words`` share (two or three letters: '-ed', '-ing'), or ''."""
    words = [_word(w).lower() for w in words if len(_word(w)) > 4]
    for n in (3, 2):
        ends = Counter(w[-n:] for w in words if w[-n:].isalpha())
        if ends:
            end, k = ends.most_common(1)[0]
            if len(words) >= 3 and k >= SUFFIX_SHARE * len(words):
                return end
    return ""


def unseen_members(concept: C.ConceptName, seen: Sequence[str], known: set[str],
            n: int = MAX_WORDS) -> list[str]:
    """Members of ``concept`` never seen, commonest first; like the seen ones where those share
    an ending (regular past tenses are tested with regular ones: 'scrubbed', not 'made')."""
    fresh = [w for w in members(concept) if _stem(w) not in known]
    end = suffix([w for w in seen if C.member(concept)(_word(w))])
    alike = [w for w in fresh if w.lower().endswith(end)] if end else []
    return (alike if len(alike) >= 3 else fresh)[:n]
