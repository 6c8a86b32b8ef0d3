"""Explain a neuron from its activation records alone: no model, no forward pass.

The same ``Pattern`` as the evidence explainer (``tools/explain.py``), learned from what the
records show instead of from interventions:

1. **triggers**: every token (normalised, ``concepts.norm``) that reaches ``fire`` (50%) of the
   neuron's record max somewhere, kept when it fires on at least ``precision`` (25%) of its
   occurrences in all records (top and random: a word that fires once in forty is context, not a
   trigger); its strength is its mean activation where it fires, relative to the max.
2. **required context**: for the triggers' occurrences, a token among the three before that is
   present at >= 30% of the firing occurrences and lifts the mean activation of the occurrences
   it precedes >= 2x over those it does not (so it needs occurrences without it: a context
   never seen missing is not called required); ``context_free`` is the mean activation of
   trigger occurrences without any required context over that of those with one.
3. **concept**: WordNet's name for the triggers (``concepts.name_tokens``), as the explainer,
   tested as the unseen-members experiment tests it (``tools/compare.py``), on records instead
   of interventions (``concept_holds``): learned from half the records, does the concept or the
   list of the triggers seen there simulate the other half better? The concept's members the
   first half never saw decide it; when the list wins, the explanation is the list.
4. **context-level**: many different tokens firing across windows of one kind of text
   (``contexts.context_level``: a format, a programming or natural language, a script).
5. ``seen``: tokens that fire in the top records, for the simulator (``explain.seen_tokens``).

What it cannot know without the model: whether a required context is causal (it is a
co-occurrence), and members of the concept no record contains (the concept name covers them, as
the explainer's does). The result is an ``Explanation`` with no pruned texts, so its sentence
and ``explain.variants`` (the token-list reading) work as for the explainer's.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from neurosleuth.tools import concepts as C
from neurosleuth.tools.contexts import context_level
from neurosleuth.tools.explain import Explanation, Pattern, _quote, seen_tokens, sentence_of
from neurosleuth.tools.records import Record
from neurosleuth.tools.wordnet import wordnet_status

CONCEPT_MARGIN = 0.01  # the list must simulate held-apart records this much better


@dataclass(frozen=True)
class RecordsConfig:
    fire: float = 0.5  # share of the record max at which a token fires
    precision: float = 0.25  # share of a trigger's occurrences that must fire
    lift: float = 2.0  # required context: activation with it / without it
    context_share: float = 0.3  # required context: share of firing occurrences it precedes
    context_frac: float = 0.2  # context-level: share of tokens that fire in the top windows
    max_triggers: int = 24


def _occurrences(records: Sequence[Record]) -> dict[str, list[tuple[float, frozenset[str]]]]:
    """token -> [(activation, the normalised tokens of the three before it)] over all records."""
    occ: dict[str, list[tuple[float, frozenset[str]]]] = defaultdict(list)
    for r in records:
        words = [C.norm(t) for t in r.tokens]
        for i, (w, a) in enumerate(zip(words, r.acts, strict=True)):
            if w:
                occ[w].append((float(a), frozenset(x for x in words[max(0, i - 3): i] if x)))
    return occ


def _r(pattern: Pattern, records: Sequence[Record]) -> float:
    pred = np.concatenate([pattern.simulate(list(r.tokens)) for r in records])
    real = np.concatenate([r.acts for r in records])
    if pred.std() == 0 or real.std() == 0:
        return -1.0
    return float(np.corrcoef(pred, real)[0, 1])


def concept_holds(top: Sequence[Record], others: Sequence[Record], cfg: RecordsConfig) -> bool:
    """The records' analogue of the unseen-members experiment (``tools/compare.py``): learn the
    pattern from half the records (1st, 3rd, ... of each kind) and simulate the other half with
    the concept and with the bare trigger list. The concept stays unless the list simulates the
    other half better (by ``CONCEPT_MARGIN``): members the first half never saw either fire in
    the second half, or do not."""
    first = records_pattern(top[0::2], others[0::2], cfg, decide=False)
    rest = [*top[1::2], *others[1::2]]
    if first.concept is None or first.concept.source == "none" or not rest:
        return True  # nothing to test it on: the name stands, as the explainer's does
    listed = replace(first, concept=None)
    return _r(first, rest) >= _r(listed, rest) - CONCEPT_MARGIN


def records_pattern(top: Sequence[Record], others: Sequence[Record] = (),
                    cfg: RecordsConfig = RecordsConfig(), decide: bool = True) -> Pattern:
    """The pattern the records show (module docstring); ``decide``: test the concept on half
    the records (``concept_holds``)."""
    top_max = max((r.max for r in top), default=0.0)
    if top_max <= 0:
        return Pattern("none", {}, None, {}, 0.0)
    occ = _occurrences([*top, *others])
    on = cfg.fire * top_max
    trig: dict[str, float] = {}
    for w, rows in occ.items():
        fired = [a for a, _ in rows if a >= on]
        if fired and len(fired) >= cfg.precision * len(rows):
            trig[w] = round(float(np.mean(fired)) / top_max, 4)
    trig = dict(sorted(trig.items(), key=lambda kv: -kv[1])[: cfg.max_triggers])
    # required context, from the trigger occurrences
    rows = [row for w in trig for row in occ[w]]
    firing = [ctx for a, ctx in rows if a >= on]
    before: Counter = Counter(c for ctx in firing for c in ctx)
    required: dict[str, float] = {}
    for c, n in before.most_common(20):
        if n < cfg.context_share * len(firing):
            break
        with_c = [a for a, ctx in rows if c in ctx]
        without = [a for a, ctx in rows if c not in ctx]
        if without and np.mean(with_c) >= cfg.lift * max(np.mean(without), 1e-9):
            required[c] = round(n / len(firing), 3)
        if len(required) == 5:
            break
    context_free = 1.0
    if required:
        need = set(required)
        with_ctx = [a for a, ctx in rows if ctx & need]
        without = [a for a, ctx in rows if not ctx & need]
        if not without:  # every occurrence has one of them: the best single one's ratio
            without = max(([a for a, ctx in rows if c not in ctx] for c in need), key=np.mean)
            with_ctx = [a for a, _ in rows]
        context_free = float(np.clip(np.mean(without) / max(np.mean(with_ctx), 1e-9), 0.0, 1.0))
    peaks = {C.norm(r.tokens[int(np.argmax(r.acts))]) for r in top}
    ordered = [w for w in trig if trig[w] > 0][:16]
    concept = C.name_tokens(ordered, [trig[w] * (1.0 if w in peaks else 0.5) for w in ordered])
    if decide and concept.source != "none" and not concept_holds(top, others, cfg):
        concept = None  # the records show the list of its seen members, not the concept
    pairs = [r.pair() for r in top]
    share, context, distinct = context_level(pairs)
    kind = "context" if share >= cfg.context_frac and distinct >= 8 and context else "token"
    return Pattern(kind, trig, concept, required, round(context_free, 3), context,
                   round(share, 3), seen_tokens(pairs))


def explain_records(top: Sequence[Record], others: Sequence[Record] = (), neuron: str = "",
                    cfg: RecordsConfig = RecordsConfig()) -> Explanation:
    """An ``Explanation`` of a neuron from its top records (and others: random windows, which
    show where the triggers do not fire)."""
    start = time.perf_counter()
    pattern = records_pattern(top, others, cfg)
    peaks = [w for w in (C.norm(r.tokens[int(np.argmax(r.acts))]) for r in top) if w]
    sentence = sentence_of(pattern, peaks)
    details = ""
    if pattern.kind != "none":
        details = (f"From {len(top)} top records and {len(others)} others, without the model: "
                   f"the records peak on {_quote(peaks, 6)}; "
                   f"{len(pattern.triggers)} tokens fire on >= {cfg.precision:.0%} of their "
                   f"occurrences.")
        need = [w for w, s in pattern.required.items() if s >= 0.3]
        if need:
            details += (f" Seen before most firing occurrences: {_quote(need, 3)} (the token "
                        f"keeps {pattern.context_free:.0%} of its activation without them).")
        if pattern.fire_share:
            details += f" {pattern.fire_share:.0%} of tokens fire in the top records."
    naming = f"{pattern.concept.source if pattern.concept else 'none'}; {wordnet_status()}"
    return Explanation(neuron, sentence, details, pattern, naming=naming,
                       seconds=time.perf_counter() - start)
