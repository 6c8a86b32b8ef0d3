"""Test each clause of a hypothesis on the model, and edit the clauses the tests refute (as MAIA's
agent does: Shaham et al. 2024, "A Multimodal Automated Interpretability Agent").

A hypothesis here is a ``Pattern`` (``tools/pattern.py``): trigger words, the class they belong
to, required context, a kind of text, facets. Each clause is an experiment:

- **members**: every trigger word, unseen members of its class (or, for a bare list, of the
  classes its words fall in: ``concepts.candidate_names``), words that substitution found firing,
  and control words outside the class, each put in the place of the peak word in the neuron's own
  contexts and in new sentences (``FRAMES``), one word at a time. With medians s (the seen
  triggers that claim something: predicted at ``CLAIM`` of the strongest) and c (controls), a
  word *fires* when it reaches ``FIRES`` of s - c above c, and is *quiet* under ``QUIET``.
  Edits: a quiet trigger that claims something is dropped; a firing word outside the class joins
  the triggers (predicted no higher than the strongest); a
  class whose unseen members stay quiet is dropped (the list stays); a class of a bare list whose
  unseen members fire names the list. Words to try beside the triggers: the caller's (the deep
  dive's substitutes and best prompts' peak words) and the words the top windows fire on that
  the pattern does not list.
- **context**: each required context word, deleted from the own contexts that hold it (the
  trigger's activation with and without it, median ratio); the triggers in the new sentences
  (which never hold it) are measured and reported beside it. Where the trigger keeps ``FIRES`` of
  its activation without the word, the clause is dropped; else ``context_free`` is set to what it
  keeps.
- **kind of text**: the same content in this kind and in another (``compare.compare_kind``); a
  kind that does not fire more is replaced by the word reading; a word reading of a neuron that
  fires on much of windows of one kind (a language, a format) is replaced by the kind when the
  kind fires more.
- **pieces**: a reading of tokens wherever they stand is named by a class of them (closing
  brackets, digits) when the class's unseen members fire.
- **facets**: each facet's words, as the members are; a facet whose words stay at the controls'
  level is dropped.

Texts are measured with ``LEAD`` before them, so that no word is measured at position 0 (a model
without a BOS token reads its first token as an attention sink, and deleting context would move
the trigger there). Every experiment is one batched pass.

Caveat: the new sentences are few and generic (an LLM planner can write better ones: the agent
logs who wrote them); the own contexts are the explainer's pruned texts, so a trigger that needs a
context they lack is quiet there too (the context test is what catches that).
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from neurosleuth.tools import concepts as C
from neurosleuth.tools.compare import (
    CONTROLS,
    _peak_word,
    _spelled,
    _stem,
    _word,
    compare_kind,
    members,
)
from neurosleuth.tools.contexts import CONTEXT_FIRE, KIND_SHARE, context_of
from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.pattern import Pattern, examples_of, quote
from neurosleuth.tools.words import words_of

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


@dataclass(frozen=True)
class Tested:
    """A pattern after its clauses were tested: the edited pattern (``changed`` when any edit was
    made), the tests, and the forward passes they cost."""

    pattern: Pattern
    tests: tuple[ClauseTest, ...]
    changed: bool
    forward_passes: int


# ---- measurement ---------------------------------------------------------------------------
class _Bench:
    """Words measured in place of the peak word of contexts (own contexts and new sentences)."""

    def __init__(self, lm: LoadedModel, neuron: NeuronId, contexts: Sequence[Sequence[str]],
                 frames: Sequence[str] = FRAMES):
        self.lm, self.neuron, self.frames = lm, neuron, tuple(frames)
        own = [_peak_word(list(t)) for t in contexts if len(t) >= 2][:MAX_CONTEXTS]
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


def _share(a: float, s: float, c: float) -> float:
    return (a - c) / (s - c) if s > c else 0.0


def _fmt(d: dict[str, float], n: int = 4) -> str:
    return ", ".join(f"'{w}' {v:.2f}" for w, v in list(d.items())[:n])


# ---- clauses -------------------------------------------------------------------------------
def _suffix(words: Sequence[str]) -> str:
    """The ending most of ``words`` share (two or three letters: '-ed', '-ing'), or ''."""
    words = [_word(w).lower() for w in words if len(_word(w)) > 4]
    for n in (3, 2):
        ends = Counter(w[-n:] for w in words if w[-n:].isalpha())
        if ends:
            end, k = ends.most_common(1)[0]
            if len(words) >= 3 and k >= SUFFIX_SHARE * len(words):
                return end
    return ""


def _unseen(concept: C.ConceptName, seen: Sequence[str], known: set[str],
            n: int = MAX_WORDS) -> list[str]:
    """Members of ``concept`` never seen, commonest first; like the seen ones where those share
    an ending (regular past tenses are tested with regular ones: 'scrubbed', not 'made')."""
    fresh = [w for w in members(concept) if _stem(w) not in known]
    end = _suffix([w for w in seen if C.member(concept)(_word(w))])
    alike = [w for w in fresh if w.lower().endswith(end)] if end else []
    return (alike if len(alike) >= 3 else fresh)[:n]


def _members(bench: _Bench, p: Pattern, extra: Sequence[str]
             ) -> tuple[Pattern, list[ClauseTest]]:
    """The member clause (module docstring): triggers, unseen members, extra words, controls."""
    named = p.concept if p.has_concept else None
    test = C.member(named) if named is not None else None
    seen = [w for w in p.ordered(MAX_WORDS) if _word(w)]
    known = {_stem(_word(w)) for w in [*p.triggers, *p.seen]}
    classes: list[C.ConceptName] = [named] if named is not None else C.candidate_names(
        seen, [p.triggers[w] for w in seen], limit=2) if len(seen) >= 2 else []
    longest = max((len(bench.lm.encode(_spelled(_word(w), bench.like))) for w in seen),
                  default=1)
    unseen: dict[str, list[str]] = {}
    for cl in classes:  # members no longer than the seen words (a bracket is one token)
        fresh = _unseen(cl, seen, known, 4 * MAX_WORDS)
        unseen[cl.label] = [w for w in fresh if len(bench.lm.encode(
            _spelled(w, bench.like))) <= longest][:MAX_WORDS]
    # words to try as triggers: the caller's (found by the deep dive), then the words the top
    # windows fire on that the pattern does not list (the records saw them fire too rarely)
    listed = {_stem(_word(w)) for w in p.triggers}
    seen_firing = sorted(p.seen, key=lambda w: -p.seen[w])
    extra = [w for w in dict.fromkeys(_word(x) for x in [*extra, *seen_firing])
             if w and not any(ch.isspace() for ch in w) and _stem(w) not in listed
             ][:2 * MAX_WORDS]
    controls = [w for w in CONTROLS if _stem(w) not in known and not (test and test(w))][:6]
    words = [*seen, *itertools.chain(*unseen.values()), *extra, *controls]
    a = bench.acts(words, test)
    # the reference: the triggers that claim something (rare ones, predicted low, claim little)
    top = max(p.triggers.values()) if p.triggers else 0.0
    strong = [w for w in seen if p.triggers[w] >= CLAIM * top] or seen[:STRONG]
    s = statistics.median(a[w] for w in strong) if strong else 0.0
    c = statistics.median(a[w] for w in controls) if controls else 0.0
    tests: list[ClauseTest] = []
    where = f"{bench.n_own} own contexts and {len(bench.frames)} new sentences"
    if s <= c:
        tests.append(ClauseTest(
            f"triggers {quote(seen, 4)}", f"each trigger and {len(controls)} control words in "
            f"{where}", f"triggers median {s:.2f}, controls {c:.2f}", "undecided", "keep"))
        return p, tests
    triggers = dict(p.triggers)
    quiet = {w: a[w] for w in seen if _share(a[w], s, c) < QUIET
             and p.triggers[w] >= CLAIM * top}
    if quiet and len(quiet) < len(seen):
        for w in quiet:
            triggers.pop(w, None)
        tests.append(ClauseTest(
            f"members {quote(list(quiet), 4)}", f"each trigger in {where}",
            f"{_fmt(quiet)} against the strongest triggers {s:.2f}, controls {c:.2f}", "fails",
            f"drop {quote(list(quiet), 6)}"))
    else:
        tests.append(ClauseTest(
            f"triggers {quote(seen, 4)}", f"each trigger and {len(controls)} control words in "
            f"{where}", f"{_fmt({w: a[w] for w in seen})}; controls {c:.2f}", "holds", "keep"))
    mean = float(np.mean(list(p.triggers.values()))) if p.triggers else 0.5
    added = {w: round(min(top, mean * a[w] / s), 3) for w in extra
             if _share(a[w], s, c) >= FIRES and not (test and test(w))}
    if added:
        triggers.update(added)
        tests.append(ClauseTest(
            f"words {quote(list(added), 4)} (not in the hypothesis)",
            f"each in {where}", f"{_fmt({w: a[w] for w in added})} against triggers {s:.2f}",
            "fails", f"add {quote(list(added), 6)}"))
    concept = p.concept
    for cl in classes:
        got = {w: a[w] for w in unseen[cl.label]}
        if len(got) < 3:
            continue
        share = _share(statistics.median(got.values()), s, c)
        firing = {w: v for w, v in got.items() if _share(v, s, c) >= FIRES}
        result = (f"unseen members {_fmt(dict(sorted(got.items(), key=lambda x: -x[1])))} "
                  f"reach {share:.0%} of the triggers ({s:.2f}) above controls ({c:.2f})")
        experiment = f"{len(got)} members never seen, in {where}"
        if test is not None:  # the hypothesis names this class
            if share >= FIRES:
                tests.append(ClauseTest(f"class {cl.label!r}", experiment, result, "holds",
                                        "keep"))
            elif share <= QUIET:
                concept = None
                triggers.update({w: round(min(top, mean * v / s), 3) for w, v in firing.items()})
                tests.append(ClauseTest(
                    f"class {cl.label!r}", experiment, result, "fails",
                    "drop the class, keep the list"
                    + (f" and add {quote(list(firing), 4)}" if firing else "")))
            else:
                tests.append(ClauseTest(f"class {cl.label!r}", experiment, result,
                                        "undecided", "keep"))
        elif share >= FIRES and concept is None:  # a bare list: its class fires
            inside = [w for w in seen if C.member(cl)(w)]
            if len(inside) >= 2:
                concept = replace(cl, examples=examples_of(inside))
                tests.append(ClauseTest(f"list {quote(seen, 4)} as {cl.label!r}", experiment,
                                        result, "fails", f"name the class {cl.label!r}"))
    return replace(p, triggers=triggers, concept=concept), tests


def _contexts(bench: _Bench, p: Pattern, contexts: Sequence[Sequence[str]]
              ) -> tuple[Pattern, list[ClauseTest]]:
    """The context clause: each required word deleted from the own contexts that hold it, and
    the triggers in new sentences without it."""
    need = p.needs()
    if not need:
        return p, []
    lm = bench.lm
    tests, required, kept = [], dict(p.required), {}
    for word in need:
        pairs = []
        for toks in contexts[: 2 * MAX_CONTEXTS]:
            ws = words_of(list(toks))
            spans = [w for w in ws.words[: max(0, ws.index[-1])][-3:] if w.text == word]
            if spans:
                cut = spans[-1]
                pairs.append(("".join(toks), "".join([*toks[: cut.start], *toks[cut.end:]])))
        ids = [lm.encode(LEAD + t) for pair in pairs for t in pair]
        frames = [f.split("{w}")[0].rstrip(" ") + _spelled(_word(t), bench.like)
                  + f.split("{w}")[1] for f in bench.frames for t in p.ordered(2)]
        ids += [lm.encode(LEAD + f) for f in frames]
        if not ids:
            continue
        acts = [float(a[-1 if i < 2 * len(pairs) else len(lm.encode(LEAD)):, 0].max())
                for i, a in enumerate(measure_ids(lm, ids, [bench.neuron]))]
        bench.passes += len(ids)
        with_ = acts[0: 2 * len(pairs): 2]
        without = acts[1: 2 * len(pairs): 2]
        new = acts[2 * len(pairs):]
        base = statistics.median(with_) if with_ else 0.0
        ratios = [b / x for x, b in zip(with_, without, strict=True) if x > 0]
        if not ratios:  # no own context holds it: nothing to delete it from
            continue
        ratio = kept[word] = float(np.clip(statistics.median(ratios), 0.0, 1.0))
        result = (f"with it {base:.2f}; deleted from {len(pairs)} own contexts "
                  f"{statistics.median(without) if without else float('nan'):.2f}; "
                  f"{len(frames)} new sentences without it "
                  f"{statistics.median(new) if new else float('nan'):.2f}: the trigger keeps "
                  f"{ratio:.0%}")
        experiment = "deleted from the own contexts, and new sentences without it"
        if ratio >= FIRES:
            required.pop(word, None)
            tests.append(ClauseTest(f"context {word!r}", experiment, result, "fails",
                                    f"drop the context {word!r}"))
        else:
            tests.append(ClauseTest(f"context {word!r}", experiment, result, "holds", "keep"))
    if not kept:
        return p, tests
    still = [kept[w] for w in p.needs() if w in required and w in kept]
    if not [w for w in p.needs() if w in required]:  # every stated context dropped
        return replace(p, required={}, context_free=1.0), tests
    return replace(p, required=required, context_free=round(min(still, default=p.context_free),
                                                             3)), tests


def _kind(lm: LoadedModel, neuron: NeuronId, p: Pattern) -> tuple[Pattern, list[ClauseTest], int]:
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


def _covered(p: Pattern, words: Sequence[str]) -> list[str]:
    if p.concept is None or not p.has_concept:
        return []
    test = C.member(p.concept)
    return [w for w in words if _word(w) and test(_word(w))]


def _merged(bench: _Bench, p: Pattern, s: float, c: float) -> tuple[Pattern, ClauseTest] | None:
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
        fresh = _unseen(name, inside, known)
        if len(fresh) < 3:
            continue
        a = bench.acts(fresh, test)
        share = _share(statistics.median(a.values()), s, c)
        result = (f"{covered / sum(weights):.0%} of the trigger weight of every facet is "
                  f"{name.label}; its "
                  f"unseen members {_fmt(dict(sorted(a.items(), key=lambda x: -x[1])))} reach "
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


def _text_kind(lm: LoadedModel, neuron: NeuronId, p: Pattern,
               windows: Sequence[tuple[Sequence[str], np.ndarray]]
               ) -> tuple[Pattern, list[ClauseTest], int]:
    """A word reading without a class (a class of words explains its firing) of a neuron whose
    strongest windows (at least half the top max) are two thirds one kind of text (a language,
    a format) and fire on ``KIND_FIRE`` of their tokens, ``KIND_WORDS`` distinct ones at least:
    is it the kind? The same content in that kind and in
    another (``compare.compare_kind``); the kind replaces the words when it fires more."""
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


def _pieces(bench: _Bench, p: Pattern) -> tuple[Pattern, list[ClauseTest]]:
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
        fresh = [w for w in _unseen(cl, inside, {_stem(w) for w in seen}, 4 * MAX_WORDS)
                 if len(lm.encode(w)) == 1][:MAX_WORDS]
        if len(inside) < 2:
            continue
        controls = [w for w in CONTROLS if not test(w)][:6]
        a = bench.acts([*inside, *fresh, *controls], test)
        s = statistics.median(a[w] for w in inside)
        c = statistics.median(a[w] for w in controls)
        if len(fresh) >= 3:
            share = _share(statistics.median(a[w] for w in fresh), s, c)
            experiment = f"{len(fresh)} members never seen"
            result = (f"unseen members {_fmt({w: a[w] for w in fresh})} reach {share:.0%} of "
                      f"the tokens ({s:.2f}) above controls ({c:.2f})")
            named = share >= FIRES
        else:
            firing = [w for w in inside if _share(a[w], s, c) >= FIRES]
            experiment = "each seen member alone (no unseen member is one token)"
            result = (f"{_fmt({w: a[w] for w in inside}, 6)}; controls {c:.2f}: "
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


def _facets(bench: _Bench, p: Pattern) -> tuple[Pattern, list[ClauseTest]]:
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
        p, tests = _facets(bench, p)
        return p, [test, *tests]
    controls = CONTROLS[:6]
    words = [w for f in p.facets for w in f.ordered(4)]
    a = bench.acts([*p.ordered(4), *words, *controls])
    s = statistics.median(a[w] for w in p.ordered(4)) if p.triggers else 0.0
    c = statistics.median(a[w] for w in controls)
    kept, tests = [], []
    for f in p.facets:
        fw = f.ordered(4)
        covered = _covered(p, fw) if f.unit == "piece" else []
        rest = [w for w in fw if w not in covered]
        level = statistics.median(a[w] for w in rest) if rest else c
        share = _share(level, s, c)
        clause = f"facet {quote([w.strip() for w in fw], 3)}"
        experiment = "its words in the own contexts and new sentences"
        result = (f"facet words {_fmt({w: a[w] for w in fw})}: {share:.0%} of the main triggers "
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
        merged = _merged(bench, p, s, c)
        if merged is not None:
            p = merged[0]
            tests.append(merged[1])
    return p, tests


def test_clauses(lm: LoadedModel, neuron: NeuronId, pattern: Pattern,
                 contexts: Sequence[Sequence[str]], extra: Sequence[str] = (),
                 windows: Sequence[tuple[Sequence[str], np.ndarray]] = (),
                 frames: Sequence[str] = FRAMES) -> Tested:
    """Put each clause of ``pattern`` to its experiment (module docstring) in the neuron's own
    ``contexts`` (token lists ending at a peak) and in new sentences; ``extra``: further words
    to try as triggers (substitutes that fired, words seen firing); ``windows``: the tokens of
    its top windows with their activations (their kind of text); ``frames``: the new sentences,
    each with one ``{w}`` slot (``FRAMES``, or an LLM's). Returns the edited pattern."""
    if pattern.kind == "none":
        return Tested(pattern, (), False, 0)
    p, tests, passes = _kind(lm, neuron, pattern)
    p, more, n = _text_kind(lm, neuron, p, windows)
    tests, passes = tests + more, passes + n
    bench = _Bench(lm, neuron, contexts, frames)
    if p.kind == "token" and p.unit == "piece":
        p, more = _pieces(bench, p)
        tests += more
    if p.kind == "token" and p.unit == "word":
        p, t = _members(bench, p, extra)
        tests += t
        p, t = _contexts(bench, p, contexts)
        tests += t
        p, t = _facets(bench, p)
        tests += t
    changed = any(t.edit != "keep" for t in tests)
    return Tested(p if changed else pattern, tuple(tests), changed, passes + bench.passes)
