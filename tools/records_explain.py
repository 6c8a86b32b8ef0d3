"""Explain a neuron from its activation records alone: no model, no forward pass.

The records are read as words (``tools/words.py``): "fingertips" is one word whatever pieces the
tokenizer cut it into, and the neuron fires on one of its pieces (``Pattern.where``: the last
piece of most words, or the first, or all; a word that fires on another piece, such as the 'all'
inside 'PyMem_RawMalloc', keeps its own in ``Pattern.at``, so that it is simulated there).

1. **triggers**: every word that reaches ``fire`` (40%) of the top records' median max (not one
   outlier's) on one of its pieces somewhere, kept when it fires on at least ``precision``
   (25%) of its occurrences in all records (top and random: a word that fires once in forty
   is context, not a trigger); its value is its expected activation: the mean over all its
   occurrences, as a share of the max (a word that fires on half of them predicts half as
   much).
2. **required context**: a word among the three words before a trigger (never a piece of the
   trigger itself) that is present at >= 30% of the firing occurrences and lifts the mean
   activation of the occurrences it precedes >= 2x over those it does not; ``context_free``
   is the ratio of the two.
3. **readings**, each a ``Pattern`` (``tools/pattern.py``): the trigger list; each class the
   trigger words fall in (``concepts.candidate_names``: WordNet concepts, word forms, surface and
   Unicode classes, word classes), with the triggers outside it as a second facet (named, listed
   or dropped, or the tokens that fire wherever they stand); with and without the required
   context; the kind of text when the top records share one; and the tokens themselves, pieces
   whatever word they are in (a neuron can read the letter that starts a word rather than any
   word). **Readings are chosen by experiment**: each is learned from three quarters of the
   records and simulates the fourth, four times, the simulations pooled; the best
   held-apart r wins (Pearson, ``tools/correlation.py``; an undefined one, from a constant
   simulation, counts as -1), a class counting ``CLASS_BONUS``
   more than the list, and more the more of the triggers it names (it names the members the
   learning folds never saw: the records' analogue of the unseen-members experiment,
   ``tools/compare.py``), every facet or context clause costing half of ``MARGIN`` and a reading
   of pieces ``CLASS_BONUS``; a class of meaning or form (not of shape) that simulates better
   than the word list is never replaced by the pieces (they may join it as a facet); of readings
   within ``TIE`` of the best, the first in the order tried wins (classes, most specific first;
   the kind of text; the list; the pieces), and of classes within ``MARGIN`` of a class that
   wins, the first (a broader class must clearly simulate better than a more specific one).
   The winner is then learned again from all records.
4. ``seen``: words that fire in the top records, for the simulator.

``RecordsExplainer`` is this explainer as an ``Explainer`` (``tools/pattern.py``), the one
interface it shares with the deep dive (``tools/explain.py``).

What it cannot know without the model: whether a required context is causal (it is a
co-occurrence), and members of a class that no record contains (the class name covers them).
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from neurosleuth.tools import concepts as C
from neurosleuth.tools.contexts import CONTEXT_FIRE, context_level
from neurosleuth.tools.correlation import pearson
from neurosleuth.tools.pattern import (
    POSITIONS,
    Explanation,
    Pattern,
    examples_of,
    explanation,
    quote,
    seen_words,
)
from neurosleuth.tools.records import Record
from neurosleuth.tools.words import FIRST, LAST, MIDDLE, words_of

MIN_WINDOW = 16  # tokens of a record that counts as a window of text for its kind
CLASS_BONUS = 0.05  # held-apart r a named class earns: the members no record showed
MEANING = ("wordnet", "supersense", "inflection", "grammar")  # classes of meaning or form, not
# of shape (capitalisation, digits): these stand against a reading of pieces
TIE = 0.0025  # readings this close in held-apart r: the first tried wins
MARGIN = 0.01  # held-apart r a class earns over the list, and a facet or a clause must pay
FOLDS = 4  # readings are learned on three quarters of the records, judged on the fourth


@dataclass(frozen=True)
class RecordsConfig:
    fire: float = 0.4  # share of the top records' median max at which a word fires (measured)
    precision: float = 0.25  # share of a trigger's occurrences that must fire
    lift: float = 2.0  # required context: activation with it / without it
    context_share: float = 0.3  # required context: share of firing occurrences it precedes
    context_frac: float = 0.2  # context-level: share of tokens that fire in the top windows
    max_triggers: int = 24
    classes: int = 3  # class readings tried


class Occurrence(NamedTuple):
    """One occurrence of a word in a record (a tuple: hundreds of thousands are made a layer)."""

    act: float  # the word's strongest piece
    piece: str  # where that piece is: "whole", "first", "middle" or "last"
    both: bool  # its first and last pieces both reach half of the strongest
    context: frozenset[str]  # the three words before
    token: str = ""  # the strongest piece of a word of several pieces


@functools.lru_cache(maxsize=65536)
def _layout(tokens: tuple[str, ...]) -> tuple[tuple[tuple[int, frozenset[str]], ...],
                                              tuple[tuple[str, int, int, frozenset[str]], ...]]:
    """What ``occurrences`` needs of a window's tokens, whatever its activations: (token, context)
    of each token of spaces only, and (text, start, end, context) of each word (the same window
    comes back for every neuron of a layer that it is a record of)."""
    ws = words_of(tokens)
    spaces = tuple((i, frozenset(ws.previous(i))) for i, j in enumerate(ws.index) if j < 0)
    words = tuple((w.text, w.start, w.end, frozenset(ws.previous(w.start))) for w in ws.words)
    return spaces, words


def occurrences(records: Sequence[Record]) -> dict[str, list[Occurrence]]:
    """word -> its occurrences over all records (a token of spaces only is the word '')."""
    occ: dict[str, list[Occurrence]] = defaultdict(list)
    for r in records:
        spaces, words = _layout(tuple(r.tokens))
        acts = np.asarray(r.acts, dtype=float).tolist()  # floats: cheap slices of a few tokens
        for i, ctx in spaces:  # spaces: one occurrence a token
            occ[""].append(Occurrence(acts[i], "whole", False, ctx))
        for text, start, end, ctx in words:
            if end - start == 1:
                occ[text].append(Occurrence(acts[start], "whole", False, ctx))
                continue
            seg = acts[start:end]
            k = seg.index(max(seg))  # the first strongest piece, as np.argmax
            piece = FIRST if k == 0 else LAST if k == len(seg) - 1 else MIDDLE
            both = min(seg[0], seg[-1]) >= 0.5 * seg[k] > 0
            occ[text].append(Occurrence(seg[k], piece, both, ctx, r.tokens[start + k]))
    return occ


@dataclass(frozen=True)
class Learned:
    """What the records show, before a reading is chosen."""

    triggers: dict[str, float]
    occ: dict[str, list[Occurrence]]
    on: float  # activation at which a word fires
    where: str
    peaks: list[str]  # the word each top record peaks on
    context: str | None
    share: float
    seen: dict[str, float]
    pieces: dict[str, float] = field(default_factory=dict)  # token -> expected activation
    at: dict[str, str] = field(default_factory=dict)  # word -> the piece it fires on, off where


def piece_triggers(records: Sequence[Record], on: float, top_max: float, cfg: RecordsConfig
                   ) -> dict[str, float]:
    """Tokens (pieces, whatever word they are in) that fire on >= ``precision`` of their
    occurrences, each with its expected activation: the reading of a neuron that reads a piece
    (the single letter that starts a word) rather than the words it is part of."""
    occ: dict[str, list[float]] = defaultdict(list)
    for r in records:  # floats, not numpy scalars: a few hundred thousand a layer
        for t, a in zip(r.tokens, np.asarray(r.acts, dtype=float).tolist(), strict=True):
            occ[t].append(a)
    out = {}
    for t, acts in occ.items():
        fired = sum(a >= on for a in acts)
        if t.strip() and fired and fired >= cfg.precision * len(acts):
            out[t] = round(math.fsum(max(a, 0.0) for a in acts) / len(acts) / top_max, 4)
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[: cfg.max_triggers])


def learn(top: Sequence[Record], others: Sequence[Record], cfg: RecordsConfig) -> Learned | None:
    top_max = max((r.max for r in top), default=0.0)
    if top_max <= 0:
        return None
    occ = occurrences([*top, *others])
    on = cfg.fire * float(np.median([r.max for r in top]))  # not one outlier's max
    trig: dict[str, float] = {}
    for w, rows in occ.items():
        fired = sum(o.act >= on for o in rows)
        if fired and fired >= cfg.precision * len(rows):
            trig[w] = round(math.fsum(max(o.act, 0.0) for o in rows) / len(rows) / top_max, 4)
    trig = dict(sorted(trig.items(), key=lambda kv: -kv[1])[: cfg.max_triggers])
    pieces: Counter = Counter()
    for w in trig:
        for o in occ[w]:
            if o.act >= on:
                pieces["all" if o.both else o.piece] += 1
    n = sum(pieces.values()) - pieces["whole"]  # firings on words of several pieces
    where = "end"
    if n >= 0.3 * sum(pieces.values()) and pieces["first"] > 0.5 * n:
        where = "first"
    elif n >= 0.3 * sum(pieces.values()) and pieces["all"] > 0.5 * n:
        where = "all"
    at = pieces_at(trig, occ, on, where)
    peaks = []
    for r in top:
        ws = words_of(r.tokens)
        peaks.append(ws.word_of(int(np.argmax(r.acts))))
    pairs = [r.pair() for r in top]
    windows = [p for p in pairs if len(p[0]) >= MIN_WINDOW] or pairs  # not short probes
    share, context, distinct = context_level(windows)
    if not (share >= cfg.context_frac and distinct >= 8):
        context = None
    return Learned(trig, occ, on, where, peaks, context, share, seen_words(pairs, CONTEXT_FIRE),
                   piece_triggers([*top, *others], on, top_max, cfg), at)


def pieces_at(triggers: dict[str, float], occ: dict[str, list[Occurrence]], on: float,
              where: str) -> dict[str, str]:
    """Per trigger word of several pieces that fires on a piece other than ``where`` says (the
    'all' in the middle of 'PyMem_RawMalloc' where words fire on their last piece): that piece,
    the one it fires on most often. None where the neuron fires on every piece."""
    if where == "all":
        return {}
    places = POSITIONS[where]
    out = {}
    for w in triggers:
        fired = Counter((o.token, o.piece) for o in occ[w] if o.act >= on and o.token)
        if fired:
            (token, piece), _ = fired.most_common(1)[0]
            if piece not in places:
                out[w] = token
    return out


def required_context(learned: Learned, words: Sequence[str], cfg: RecordsConfig
                     ) -> tuple[dict[str, float], float]:
    """Required context of the trigger ``words`` (module docstring) and ``context_free``."""
    rows = [o for w in words for o in learned.occ.get(w, ())]
    firing = [o.context for o in rows if o.act >= learned.on]
    # each context's words in sorted order: ties in most_common keep one order in every process
    # (a frozenset's order follows the per-process string hash)
    before: Counter = Counter(c for ctx in firing for c in sorted(ctx) if c.strip())
    required: dict[str, float] = {}
    for c, n in before.most_common(20):
        if n < cfg.context_share * len(firing):
            break
        with_c = [o.act for o in rows if c in o.context]
        without = [o.act for o in rows if c not in o.context]
        if without and np.mean(with_c) >= cfg.lift * max(float(np.mean(without)), 1e-9):
            required[c] = round(n / len(firing), 3)
        if len(required) == 5:
            break
    if not required:
        return {}, 1.0
    need = set(required)
    with_ctx = [o.act for o in rows if o.context & need]
    without = [o.act for o in rows if not o.context & need]
    if not without:  # every occurrence has one of them: the best single one's ratio
        without = max(([o.act for o in rows if c not in o.context] for c in required),
                      key=lambda acts: float(np.mean(acts)))
        with_ctx = [o.act for o in rows]
    free = float(np.clip(np.mean(without) / max(float(np.mean(with_ctx)), 1e-9), 0.0, 1.0))
    return required, round(free, 3)


# ---- readings ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """How a reading is built from what the records show, so that a reading chosen on folds of the
    records can be learned again from all of them."""

    concept: C.ConceptName | None = None  # the main facet's class (None: the list)
    rest: str = "list"  # the triggers outside the class: "list", "drop" or "name"
    context: bool = True  # keep the required context clauses
    kind: str = "token"  # or "context": the kind of text; "piece": tokens, not words
    pieces: bool = False  # the tokens that fire outside the class's words as a further facet



def _facet(learned: Learned, words: Sequence[str], concept, cfg: RecordsConfig,
           context: bool) -> Pattern:
    trig = {w: learned.triggers[w] for w in words}
    req, free = required_context(learned, list(trig), cfg) if context else ({}, 1.0)
    if concept is not None:
        test = C.member(concept)
        shown = examples_of([w for w in sorted(trig, key=lambda w: -trig[w]) if test(w)])
        concept = replace(concept, examples=shown or concept.examples)
    at = {w: learned.at[w] for w in trig if w in learned.at}
    return Pattern("token", trig, concept, req, free, where=learned.where, at=at)


def build(learned: Learned, recipe: Recipe, cfg: RecordsConfig) -> Pattern:
    """The pattern of ``recipe`` over what ``learned`` holds."""
    def seen_in(p: Pattern) -> Pattern:  # the main facet carries what the top records show
        return replace(p, fire_share=round(learned.share, 3), seen=learned.seen)

    if recipe.kind == "context":
        return seen_in(Pattern("context", dict(learned.triggers), None, {}, 1.0, learned.context))
    if recipe.kind == "piece":
        return seen_in(piece_pattern(learned.pieces))
    if recipe.concept is None:
        return seen_in(_facet(learned, list(learned.triggers), None, cfg, recipe.context))
    test = C.member(recipe.concept)
    inside = [w for w in learned.triggers if test(w)]
    rest = [w for w in learned.triggers if not test(w)]
    main = seen_in(_facet(learned, inside, recipe.concept, cfg, recipe.context))
    if recipe.pieces:  # the tokens that fire, wherever they stand, as a facet
        return replace(main, facets=(piece_pattern(learned.pieces),))
    if not rest or recipe.rest == "drop":
        return main
    named = None
    if recipe.rest == "name":
        names = C.candidate_names(rest, [learned.triggers[w] for w in rest], limit=1)
        named = names[0] if names else None
    return replace(main, facets=(_facet(learned, rest, named, cfg, recipe.context),))


def piece_pattern(pieces: dict[str, float]) -> Pattern:
    """A reading of tokens wherever they stand."""
    return Pattern("token", dict(pieces), None, {}, 1.0, unit="piece")


def recipes(learned: Learned, cfg: RecordsConfig) -> list[Recipe]:
    """The readings worth trying on what ``learned`` shows (module docstring)."""
    words = list(learned.triggers)
    ordered = [w for w in words if learned.triggers[w] > 0][:16]
    peaks = set(learned.peaks)
    weights = [learned.triggers[w] * (1.0 if w in peaks else 0.5) for w in ordered]
    names = C.candidate_names(ordered, weights, limit=cfg.classes) if ordered else []
    out = []  # the most specific class first: a near-tie goes to the earlier reading
    for c in names:
        for rest in ("drop", "list", "name"):
            out.append(Recipe(c, rest, True))
        out.append(Recipe(c, "drop", False))
        if learned.pieces:
            out.append(Recipe(c, "drop", True, pieces=True))
    if learned.context:
        out.append(Recipe(kind="context"))
    out += [Recipe(None, "list", True), Recipe(None, "list", False)]
    if learned.pieces:  # pieces are read only where words clearly fail: no class of them
        out.append(Recipe(kind="piece"))
    return out


def held_apart_r(readings: Sequence[tuple[Pattern, Sequence[Record]]]) -> float:
    """Pearson r of the simulations and the real activations over all tokens of the records,
    each (pattern, records) pair's simulation by its pattern, pooled (``nan`` when either is
    constant: ``tools/correlation.py``)."""
    pred = [p.simulate(list(r.tokens)) for p, records in readings for r in records]
    real = [r.acts for _, records in readings for r in records]
    return pearson(np.concatenate(pred), np.concatenate(real))


def _rank(r: float) -> float:
    """What a held-apart r counts as when readings are ranked: an undefined one (a constant
    simulation) the worst correlation, -1."""
    return -1.0 if math.isnan(r) else r


def _complexity(pattern: Pattern) -> float:
    """What a reading earns or pays in held-apart r: each class earns ``CLASS_BONUS`` (it covers
    the members the learning folds never showed) and up to ``2 MARGIN`` more by the share of the
    trigger weight it names; each facet and a context clause pay half of ``MARGIN``; a reading
    of pieces pays ``CLASS_BONUS`` (words are what a reader reads: pieces must clearly win)."""
    parts = (pattern, *pattern.facets)
    total = sum(sum(p.triggers.values()) for p in parts) or 1.0
    named = sum(sum(p.triggers.values()) for p in parts if p.has_concept) / total
    return (CLASS_BONUS * sum(p.has_concept for p in parts) + 2 * MARGIN * named
            - MARGIN * 0.5 * (len(pattern.facets) + any(p.needs() for p in parts))
            - CLASS_BONUS * (pattern.unit == "piece"))


def folds(top: Sequence[Record], others: Sequence[Record], k: int = FOLDS
          ) -> list[tuple[list[Record], list[Record], list[Record]]]:
    """``k`` folds of the records by rank (every k-th top record and other record): per fold, the
    records a reading learns from (top, others) and those it is judged on (the rest)."""
    out = []
    for i in range(k):
        held = [r for j, r in enumerate(top) if j % k == i]
        held += [r for j, r in enumerate(others) if j % k == i]
        if held:
            out.append(([r for j, r in enumerate(top) if j % k != i],
                        [r for j, r in enumerate(others) if j % k != i], held))
    return out


def choose(top: Sequence[Record], others: Sequence[Record], cfg: RecordsConfig,
           full: Learned | None = None) -> tuple[Recipe, list[tuple[Recipe, float]]]:
    """The reading that simulates held-apart records best (module docstring, step 3), and each
    reading's held-apart r: each reading is learned on three quarters of the records and
    simulates the windows of the fourth, the four folds' simulations pooled into one r.
    ``full``: what all the records show, when the caller has learned it already."""
    full = full or learn(top, others, cfg)
    split = [(learned, held) for t, o, held in folds(top, others)
             if (learned := learn(t, o, cfg)) is not None]
    if full is None or not split:
        return Recipe(None, "list", True), []
    tried = []
    for recipe in recipes(full, cfg):
        pattern = build(full, recipe, cfg)
        if recipe.concept is not None and recipe.rest == "drop" and not pattern.triggers:
            continue
        r = held_apart_r([(build(learned, recipe, cfg), held) for learned, held in split])
        tried.append((recipe, r, _rank(r) + _complexity(pattern)))
    # a class of meaning that simulates better than the word list stands: pieces may add a
    # facet to it, not replace it
    listed = max((_rank(r) for rc, r, _ in tried if rc.concept is None and rc.kind == "token"),
                 default=-1.0)
    if any(rc.concept is not None and rc.concept.source in MEANING and not rc.pieces
           and _rank(r) > listed + MARGIN for rc, r, _ in tried):
        tried = [t for t in tried if t[0].kind != "piece"]
    most = max(t[2] for t in tried)
    best = next(t for t in tried if t[2] >= most - TIE)  # the first of the near-best
    if best[0].concept is not None:  # a broader class must beat a more specific one by MARGIN,
        # as a class must beat the list ('calendar days' by 0.003 over 'weekdays' is noise)
        best = next(t for t in tried if t[0].concept is not None and t[2] >= most - MARGIN)
    return best[0], [(rc, r) for rc, r, _ in tried]


def records_pattern(top: Sequence[Record], others: Sequence[Record] = (),
                    cfg: RecordsConfig = RecordsConfig(), decide: bool = True) -> Pattern:
    """The pattern the records show (module docstring); ``decide``: choose the reading on folds of
    the records, else take the first class (or the list)."""
    learned = learn(top, others, cfg)
    if learned is None:
        return Pattern("none", {}, None, {}, 0.0)
    if decide and len(top) >= 2:
        recipe, _ = choose(top, others, cfg, learned)
    else:
        words = list(learned.triggers)[:16]
        names = C.candidate_names(words, [learned.triggers[w] for w in words], limit=1)
        recipe = Recipe(names[0] if names else None, "list", True)
    return build(learned, recipe, cfg)


def explain_records(top: Sequence[Record], others: Sequence[Record] = (), neuron: str = "",
                    cfg: RecordsConfig = RecordsConfig()) -> Explanation:
    """An ``Explanation`` of a neuron from its top records (and others: random windows, which
    show where the triggers do not fire)."""
    start = time.perf_counter()
    pattern = records_pattern(top, others, cfg)
    peaks = [w for w in (words_of(r.tokens).word_of(int(np.argmax(r.acts))) for r in top) if w]
    evidence = [f"From {len(top)} top records and {len(others)} others, without the model: "
                f"the records peak on the words {quote(peaks, 6)}; {len(pattern.triggers)} words "
                f"fire on >= {cfg.precision:.0%} of their occurrences."]
    need = pattern.needs()
    if need:
        evidence.append(f"Seen before most firing occurrences: {quote(need, 3)} (the word keeps "
                        f"{pattern.context_free:.0%} of its activation without them).")
    return explanation(neuron, pattern, peaks, evidence, "top records",
                       seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class RecordsExplainer:
    """The records explainer as an ``Explainer`` (``tools/pattern.py``): ``explain_records``
    for ``neuron``, with no model and no forward pass."""

    neuron: str = ""
    config: RecordsConfig = RecordsConfig()

    def __call__(self, top: Sequence[Record], others: Sequence[Record] = ()) -> Explanation:
        return explain_records(top, others, self.neuron, self.config)
