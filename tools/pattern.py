"""A neuron's explanation as a pattern that is both a sentence and a simulator.

A ``Pattern`` holds what fires the neuron, on words (``tools/words.py``), not token pieces:

- ``triggers``: words that fire, each with its expected activation (its mean over all its
  occurrences, as a share of the records' max, 0..1): what the simulation predicts for it;
- ``where``: the piece of a word the neuron fires on: its last piece (``end``, the usual case:
  the model knows the word once it has read it), its first piece (``first``) or every piece;
- ``concept``: a class the trigger words belong to (``tools/concepts.py``: a WordNet concept, a
  word form, a surface class ...); its members that were never seen fire too;
- ``required``: words seen (or, in the deep dive, shown by deletion) before most firing
  occurrences, and ``context_free``: the share of the activation a trigger keeps without them;
- ``kind == "context"``: the neuron reads a kind of text (a language, a format), not a word;
- ``unit == "piece"``: the triggers are tokens wherever they stand (a neuron that reads the
  letter starting a word, not the words): the reading chosen only when it simulates better;
- ``facets``: further patterns of a polysemantic neuron ("Fires on X; also on Y after Z"); the
  simulation is the maximum over the main pattern and its facets.

``simulate`` predicts a per-token activation in [0, 1] for any text, so every reading is scored
as any hypothesis is: by correlation with real activations on held-out text.

An ``Explainer`` turns a neuron's records into an ``Explanation``: the records explainer
(``tools/records_explain.py``) and the deep dive (``tools/explain.py``) are two, and both end in
``explanation``, which writes the sentence, the details and the naming of a pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from neurosleuth.tools import concepts as C
from neurosleuth.tools.contexts import context_of, same_kind
from neurosleuth.tools.records import Record
from neurosleuth.tools.wordnet import wordnet_status
from neurosleuth.tools.words import FIRST, LAST, MIDDLE, WHOLE, words_of

MEMBER_VALUE = 0.6  # predicted activation of a class member that was never seen firing
SEEN_CAP = 0.45  # a word seen firing in the top windows, not confirmed as a trigger ...
SEEN_SHARE = 0.25  # ... fires on at most this share of its occurrences (else it would be one)
CONTEXT_SHARE = 0.3  # a required context counts when it precedes this share of firings
POSITIONS = {"end": (WHOLE, LAST), "first": (WHOLE, FIRST), "all": (WHOLE, FIRST, MIDDLE, LAST)}


@dataclass(frozen=True)
class Pattern:
    kind: str  # "token", "context" or "none"
    triggers: dict[str, float]  # word -> expected activation, a share of the max (0..1)
    concept: C.ConceptName | None
    required: dict[str, float]  # context word -> share of firing occurrences it precedes
    context_free: float  # share of the activation a trigger keeps without its context
    context: str | None = None  # context-level: the shared kind of text
    fire_share: float = 0.0  # share of tokens that fire in the top windows
    seen: dict[str, float] = field(default_factory=dict)  # words that fire in the top windows
    where: str = "end"  # the piece of a word it fires on: "end", "first" or "all"
    facets: tuple[Pattern, ...] = ()  # further readings of a polysemantic neuron
    unit: str = "word"  # what the triggers are: "word", or "piece" (tokens, in any word)
    at: dict[str, str] = field(default_factory=dict)  # word -> the piece it fires on, where
    # that is not the piece ``where`` says (the 'all' inside 'PyMem_RawMalloc')

    # ---- simulation ---------------------------------------------------------------------
    def simulate(self, tokens: Sequence[str]) -> np.ndarray:
        """Predicted activation of each token of a text, in [0, 1]: a trigger word its expected
        activation on the piece the neuron fires on, a member of the concept the triggers' mean,
        a word seen firing in the top windows (not often enough to be a trigger) a quarter of
        its share of the window max there; times ``context_free`` when the required context is
        missing from the three words before. Pieces: each trigger token wherever it stands.
        Context-level: 0.6 on every token of a text of the pattern's kind. Facets: the max."""
        out = self._simulate_one(tokens)
        for facet in self.facets:
            out = np.maximum(out, facet._simulate_one(tokens))
        return out

    def _simulate_one(self, tokens: Sequence[str]) -> np.ndarray:
        if self.kind == "context":
            on = float(same_kind(context_of(tokens), self.context))
            return np.full(len(tokens), on * MEMBER_VALUE)
        out = np.zeros(len(tokens))
        if self.kind == "none":
            return out
        if self.unit == "piece":
            return np.array([self.triggers.get(t, 0.0) for t in tokens])
        ws = words_of(tokens)
        concept = self.concept if self.has_concept else None
        test = C.member(concept) if concept is not None else None
        member = float(np.mean(list(self.triggers.values()))) if self.triggers else MEMBER_VALUE
        need = set(self.needs())
        places = POSITIONS.get(self.where, POSITIONS["end"])
        for i in range(len(tokens)):
            w = ws.word_of(i)
            piece = self.at.get(w)
            if piece is not None and piece in tokens[ws.words[ws.index[i]].start:
                                                     ws.words[ws.index[i]].end]:
                if tokens[i] != piece:
                    continue
            elif ws.position[i] not in places:
                continue
            value = self.triggers.get(w, 0.0)
            if not value and test is not None and w and test(w):
                value = member
            if not value and w in self.seen:
                value = SEEN_SHARE * min(SEEN_CAP, self.seen[w])
            if not value:
                continue
            if need and not need & set(ws.previous(i)):
                value *= max(self.context_free, 0.2)
            out[i] = value
        return out

    # ---- reading ------------------------------------------------------------------------
    @property
    def has_concept(self) -> bool:
        return self.concept is not None and self.concept.source != "none"

    def needs(self) -> list[str]:
        """The required context the sentence states (and the simulation applies)."""
        if self.context_free >= 0.5:
            return []
        return [w for w, s in self.required.items() if s >= CONTEXT_SHARE]

    def ordered(self, n: int | None = None) -> list[str]:
        """Trigger words, strongest first, each once whatever its case."""
        out: list[str] = []
        for w in sorted(self.triggers, key=lambda w: -self.triggers[w]):
            if w.lower() not in {x.lower() for x in out}:
                out.append(w)
        return out[:n]

    def bare_list(self) -> bool:
        """Does every facet name only words: no class, no kind of text, no required context?"""
        return all(p.kind == "token" and not p.has_concept and not p.needs()
                   for p in (self, *self.facets))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["concept"] = asdict(self.concept) if self.concept else None
        d["facets"] = [f.to_dict() for f in self.facets]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Pattern:
        concept = d.get("concept")
        if concept:
            concept = C.ConceptName(**{**concept, "examples": tuple(concept["examples"]),
                                       "also": tuple(concept.get("also", ()))})
        facets = tuple(cls.from_dict(f) for f in d.get("facets", ()))
        return cls(**{**d, "concept": concept, "facets": facets})


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


class Explainer(Protocol):
    """Explains one neuron from its records: ``top``, strongest first, and ``others`` (random
    windows: where its words do not fire). Implemented by the records explainer
    (``records_explain.RecordsExplainer``: the records alone) and the deep dive
    (``explain.DeepDive``: the model tests the top texts, then reads everything as records);
    ``score/records.explain_held_out`` gives one half of a neuron's records to any of them and
    scores the explanation on the other half."""

    def __call__(self, top: Sequence[Record], others: Sequence[Record]) -> Explanation: ...


def explanation(neuron: str, pattern: Pattern, peaks: Sequence[str], evidence: Sequence[str],
                top: str, **found: Any) -> Explanation:
    """The ``Explanation`` of ``pattern``, the tail every explainer shares: its sentence
    (``sentence_of``, with ``peaks``: the words the top texts peak on), its details (the
    explainer's own ``evidence`` sentences, then the share of tokens that fire in its ``top``
    texts; none for a pattern of nothing) and its naming source with WordNet's status.
    ``found``: the explainer's own fields (pruned texts, substitutions, forward passes, seconds)."""
    details = ""
    if pattern.kind != "none":
        said = [*evidence]
        if pattern.fire_share:
            said.append(f"{pattern.fire_share:.0%} of tokens fire in the {top}.")
        details = " ".join(t for t in said if t)
    naming = f"{pattern.concept.source if pattern.concept else 'none'}; {wordnet_status()}"
    return Explanation(neuron, sentence_of(pattern, peaks), details, pattern, naming=naming,
                       **found)


def examples_of(words: Sequence[str], n: int = 3) -> tuple[str, ...]:
    """``n`` examples to show of a class, in the order given, short ones first (a markup tag with
    its attributes, or a phrase, reads as a quotation, not an example)."""
    short = [w for w in words if len(w) <= 16 and not any(ch.isspace() for ch in w)]
    return tuple(dict.fromkeys([*short, *words]))[:n]


def quote(words: Sequence[str], n: int = 3) -> str:
    return ", ".join(f"'{w}'" for w in list(dict.fromkeys(words))[:n])


def _piece(where: str) -> str:
    return {"first": "the first piece of ", "all": "every piece of "}.get(where, "")


def phrase(pattern: Pattern, peaks: Sequence[str] = ()) -> str:
    """What one facet fires on, as a noun phrase: its class, or its words."""
    if pattern.kind == "context":
        return f"most tokens inside {pattern.context}"
    if pattern.concept is not None and pattern.has_concept:
        text = _piece(pattern.where) + pattern.concept.phrase()
    elif pattern.unit == "piece":
        text = (f"the tokens {quote([t.strip() for t in pattern.ordered()], 3)}, whatever word "
                "they are part of")
    else:
        listed = list(dict.fromkeys([*peaks, *pattern.ordered()]))[:3]
        text = f"{_piece(pattern.where)}the words " + ", ".join(
            f"'{w}'" + (f" (at '{pattern.at[w].strip()}')" if w in pattern.at else "")
            for w in listed)
    need = pattern.needs()
    if need:
        text += f", mostly after {quote(need, 2)}"
    return text


def sentence_of(pattern: Pattern, peaks: Sequence[str] = ()) -> str:
    """The hypothesis sentence of a pattern whose top texts peaked on the words ``peaks``."""
    if pattern.kind == "none":
        return "No text found that makes this neuron fire."
    if pattern.kind == "context":
        tail = f" (e.g. {quote(peaks)})" if peaks else ""
        main = f"Fires on most tokens inside {pattern.context}{tail}, not on one particular word"
    else:
        main = "Fires on " + phrase(pattern, [] if pattern.has_concept else peaks)
    also = [phrase(f) for f in pattern.facets]
    return main + "".join(f"; also on {a}" for a in also) + "."


def seen_words(windows: Sequence[tuple[Sequence[str], np.ndarray]], fire: float,
               limit: int = 200) -> dict[str, float]:
    """Each word that fires (>= ``fire`` of its window's max, on any of its pieces) in the top
    windows: its mean activation there as a share of the window max (the strongest ``limit``)."""
    seen: dict[str, list[float]] = {}
    for toks, acts in windows:
        acts = np.asarray(acts, dtype=float)
        top = float(acts.max()) if len(acts) else 0.0
        if top <= 0:
            continue
        ws = words_of(toks)
        for j, w in enumerate(ws.words):
            a = float(acts[w.start:w.end].max())
            if a >= fire * top:
                seen.setdefault(ws.words[j].text, []).append(a / top)
    best = sorted(seen.items(), key=lambda kv: -np.mean(kv[1]))[:limit]
    return {w: round(float(np.mean(v)), 3) for w, v in best}
