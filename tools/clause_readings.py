"""Clause tests of a reading as a whole (``tools/clauses.py``): the kind of text (the same content
in that kind and in another), a reading of token pieces (is it a class of them?), and facets (do
their words fire; is a facet the main class again; does one class name them all).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from neurosleuth.tools import concepts as C
from neurosleuth.tools.clause_bench import (
    FIRES,
    KIND_FIRE,
    KIND_WORDS,
    MAX_WORDS,
    MERGE,
    MIN_NAMED,
    QUIET,
    ClauseTest,
    WordBench,
    fmt,
    relative,
    unseen_members,
)
from neurosleuth.tools.compare import CONTROLS, _stem, _word
from neurosleuth.tools.contexts import CONTEXT_FIRE, KIND_SHARE, context_of
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.pattern import Pattern, examples_of, quote
from neurosleuth.tools.text_kind import compare_kind


def kind(lm: LoadedModel, neuron: NeuronId, p: Pattern) -> tuple[Pattern, list[ClauseTest], int]:
    if p.kind != "context" or not p.context:
        return p, [], 0
    result = compare_kind(lm, neuron, p.context)
    if result is None:
        return p, [], 0
    test = ClauseTest(f"kind {p.context!r}", f"the same content in {p.context} and as "
                      f"{result.other} ({result.pairs} pairs)", result.summary(),
                      {"kind": "holds", "not kind": "fails"}.get(result.verdict, "undecided"),
                      "keep")
    if result.verdict == "not kind" and p.triggers:
        return (replace(p, kind="token"),
                [replace(test, edit="read the trigger words, not the kind of text")],
                result.forward_passes)
    return p, [test], result.forward_passes


def covered_by_class(p: Pattern, words: Sequence[str]) -> list[str]:
    if p.concept is None or not p.has_concept:
        return []
    test = C.member(p.concept)
    return [w for w in words if _word(w) and test(_word(w))]


def one_class(bench: WordBench, p: Pattern, s: float, c: float
              ) -> tuple[Pattern, ClauseTest] | None:
    """One class for the main pattern and its facets together, when one covers ``MERGE`` of all
    their trigger weight and its unseen members fire."""
    words = [w for f in (p, *p.facets) if f.unit == "word" for w in f.ordered(8)]
    weights = [max(f.triggers.get(w, 0.0) for f in (p, *p.facets)) for w in words]
    if len(words) < 3:
        return None
    for name in C.candidate_names(words, weights, limit=3):
        test = C.member(name)
        inside = [w for w in words if test(_word(w))]
        covered = sum(x for w, x in zip(words, weights, strict=True) if w in inside)
        if p.concept is not None and name.label == p.concept.label or \
                covered < MERGE * sum(weights):
            continue
        known = {_stem(_word(w)) for w in [*words, *p.seen]}
        fresh = unseen_members(name, inside, known)
        if len(fresh) < 3:
            continue
        a = bench.acts(fresh, test)
        share = relative(statistics.median(a.values()), s, c)
        result = (f"{covered / sum(weights):.0%} of the trigger weight of every facet is "
                  f"{name.label}; its "
                  f"unseen members {fmt(dict(sorted(a.items(), key=lambda x: -x[1])))} reach "
                  f"{share:.0%} of the triggers")
        if share >= FIRES:
            triggers = {w: v for f in (p, *p.facets) if f.unit == "word"
                        for w, v in f.triggers.items()}
            merged = replace(p, triggers=triggers, facets=(),
                             concept=replace(name, examples=examples_of(inside)))
            return merged, ClauseTest(f"facets as one class {name.label!r}",
                                      f"{len(fresh)} unseen members of {name.label}", result,
                                      "fails", f"name every facet {name.label!r}")
    return None


def text_kind(lm: LoadedModel, neuron: NeuronId, p: Pattern,
               windows: Sequence[tuple[Sequence[str], np.ndarray]]
               ) -> tuple[Pattern, list[ClauseTest], int]:
    """A word reading without a class (a class of words explains its firing) of a neuron whose
    strongest windows (at least half the top max) are two thirds one kind of text (a language,
    a format) and fire on ``KIND_FIRE`` of their tokens, ``KIND_WORDS`` distinct ones at least:
    is it the kind? The same content in that kind and in
    another (``text_kind.compare_kind``); the kind replaces the words when it fires more."""
    if p.kind != "token" or p.has_concept or not windows:  # a class of words explains it
        return p, [], 0
    top = max(float(np.max(a)) for _, a in windows)
    strong = [(t, np.asarray(a, dtype=float)) for t, a in windows if float(np.max(a)) >= top / 2]
    kinds = Counter(context_of(list(t)) for t, _ in strong)
    kind, n = kinds.most_common(1)[0]
    share = float(np.mean([np.mean(a >= CONTEXT_FIRE * a.max()) for _, a in strong]))
    distinct = {C.norm(t) for toks, a in strong
                for t, on in zip(toks, a >= CONTEXT_FIRE * a.max(), strict=True) if on}
    if kind is None or n < KIND_SHARE * len(strong) or share < KIND_FIRE or \
            len(distinct) < KIND_WORDS:
        return p, [], 0
    result = compare_kind(lm, neuron, kind)
    if result is None:
        return p, [], 0
    clause = f"the words {quote(p.ordered(3), 3)}, not the kind {kind!r}"
    experiment = f"the same content in {kind} and as {result.other} ({result.pairs} pairs)"
    if result.verdict == "kind":
        return (replace(p, kind="context", context=kind),
                [ClauseTest(clause, experiment, result.summary(), "fails",
                            f"read the kind of text {kind!r}")], result.forward_passes)
    return p, [ClauseTest(clause, experiment, result.summary(), "holds", "keep")], \
        result.forward_passes


def pieces(bench: WordBench, p: Pattern) -> tuple[Pattern, list[ClauseTest]]:
    """A reading of tokens wherever they stand: is it a class of them (closing brackets,
    digits)? Its members never seen that are one token each, in the own contexts and new
    sentences, named (as words) when they reach ``FIRES`` of the seen ones; where fewer than three
    can be written, when ``MIN_NAMED`` distinct seen members fire each on its own."""
    seen = [w for w in dict.fromkeys(t.strip() for t in p.ordered(MAX_WORDS)) if w]
    if len(seen) < 2:
        return p, []
    values = {t.strip(): v for t, v in p.triggers.items()}
    lm = bench.lm
    tests: list[ClauseTest] = []
    for cl in C.candidate_names(seen, [values[w] for w in seen], limit=2):
        test = C.member(cl)
        inside = [w for w in seen if test(w)]
        fresh = [w for w in unseen_members(cl, inside, {_stem(w) for w in seen}, 4 * MAX_WORDS)
                 if len(lm.encode(w)) == 1][:MAX_WORDS]
        if len(inside) < 2:
            continue
        controls = [w for w in CONTROLS if not test(w)][:6]
        a = bench.acts([*inside, *fresh, *controls], test)
        s = statistics.median(a[w] for w in inside)
        c = statistics.median(a[w] for w in controls)
        if len(fresh) >= 3:
            share = relative(statistics.median(a[w] for w in fresh), s, c)
            experiment = f"{len(fresh)} members never seen"
            result = (f"unseen members {fmt({w: a[w] for w in fresh})} reach {share:.0%} of "
                      f"the tokens ({s:.2f}) above controls ({c:.2f})")
            named = share >= FIRES
        else:
            firing = [w for w in inside if relative(a[w], s, c) >= FIRES]
            experiment = "each seen member alone (no unseen member is one token)"
            result = (f"{fmt({w: a[w] for w in inside}, 6)}; controls {c:.2f}: "
                      f"{len(firing)} distinct members fire")
            named = len(firing) >= MIN_NAMED
        clause = f"tokens {quote(seen, 4)} as {cl.label!r}"
        if named:
            renamed = replace(p, unit="word", where="end", concept=replace(
                cl, examples=examples_of(inside)), triggers={w: values[w] for w in inside})
            return renamed, [ClauseTest(clause, experiment, result, "fails",
                                        f"name the class {cl.label!r}")]
        tests.append(ClauseTest(clause, experiment, result, "holds", "keep"))
    return p, tests


def facets(bench: WordBench, p: Pattern) -> tuple[Pattern, list[ClauseTest]]:
    """Each facet's words against the main triggers and controls: a facet of pieces that are
    members of the main class (or quiet alone), or of words that stay quiet, is dropped; facets
    that one class covers together with the main pattern become that class."""
    if not p.facets:
        return p, []
    same = [f for f in p.facets if p.has_concept and f.has_concept and f.concept is not None
            and p.concept is not None and f.concept.label == p.concept.label]
    if same:  # a facet of the main pattern's own class is the main pattern
        union = {w: v for f in (p, *same) for w, v in f.triggers.items()}
        p = replace(p, triggers=union, facets=tuple(f for f in p.facets if f not in same))
        label = p.concept.label if p.concept else ""
        test = ClauseTest(f"facet of {label!r}", "its class against the main pattern's",
                          f"the facet and the main pattern are both {label}", "fails",
                          f"merge the facet into {label!r}")
        p, tests = facets(bench, p)
        return p, [test, *tests]
    controls = CONTROLS[:6]
    words = [w for f in p.facets for w in f.ordered(4)]
    a = bench.acts([*p.ordered(4), *words, *controls])
    s = statistics.median(a[w] for w in p.ordered(4)) if p.triggers else 0.0
    c = statistics.median(a[w] for w in controls)
    kept, tests = [], []
    for f in p.facets:
        fw = f.ordered(4)
        covered = covered_by_class(p, fw) if f.unit == "piece" else []
        rest = [w for w in fw if w not in covered]
        level = statistics.median(a[w] for w in rest) if rest else c
        share = relative(level, s, c)
        clause = f"facet {quote([w.strip() for w in fw], 3)}"
        experiment = "its words in the own contexts and new sentences"
        result = (f"facet words {fmt({w: a[w] for w in fw})}: {share:.0%} of the main triggers "
                  f"({s:.2f}) above controls ({c:.2f})")
        if covered:
            result += f"; {quote([w.strip() for w in covered], 3)} are members of the class"
        if fw and share <= QUIET:
            tests.append(ClauseTest(clause, experiment, result, "fails", "drop the facet"))
        else:
            kept.append(f)
            tests.append(ClauseTest(clause, experiment, result,
                                    "holds" if share >= FIRES else "undecided", "keep"))
    p = replace(p, facets=tuple(kept))
    if p.facets and s > c:
        merged = one_class(bench, p, s, c)
        if merged is not None:
            p = merged[0]
            tests.append(merged[1])
    return p, tests
