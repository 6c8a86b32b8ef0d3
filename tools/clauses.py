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
  class whose unseen members stay quiet is dropped (the list stays), or gives way to a narrower
  class of the same words whose unseen members fire ("objects" to "musical instruments"); a
  class of a bare list whose unseen members fire names the list. Words to try beside the
  triggers: the caller's (the deep dive's substitutes and best prompts' peak words) and the
  words the top windows fire on that the pattern does not list.
- **context**: each required context word, deleted from the own contexts that hold it (the
  trigger's activation with and without it, median ratio), and the same new sentences with the
  word written before the trigger and without it (median ratio, where the trigger fires with it).
  Where the trigger keeps ``FIRES`` of its activation without the word in either, the clause is
  dropped (a word the trigger only co-occurs with in the corpus: deleting it from a fragment of
  the neuron's own text can move the trigger near the start, the new sentences keep the rest the
  same); else ``context_free`` is set to what it keeps in the own contexts.
- **kind of text**: the same content in this kind and in another (``text_kind.compare_kind``); a
  kind that does not fire more is replaced by the word reading; a word reading of a neuron that
  fires on much of windows of one kind (a language, a format) is replaced by the kind when the
  kind fires more.
- **pieces**: a reading of tokens wherever they stand is named by a class of them (closing
  brackets, digits) when the class's unseen members fire. Else each trigger token, the tokens
  the top windows fire on that it does not list (not those they hold often and seldom fire on:
  put at a peak, '.' fires for a neuron that reads the context before it), the deep dive's
  words (as one token each) and control tokens are put in the place of the peak token of the
  own contexts (the token itself: a piece is read inside its word, so no new sentence holds
  it), one at a time; quiet triggers are dropped and firing tokens added, as for words.
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
from dataclasses import dataclass, replace

import numpy as np

from neurosleuth.tools import clause_readings as readings
from neurosleuth.tools import concepts as C
from neurosleuth.tools.clause_bench import (
    CLAIM,
    FIRES,
    FRAMES,
    LEAD,
    MAX_CONTEXTS,
    MAX_WORDS,
    QUIET,
    STRONG,
    ClauseTest,
    WordBench,
    fmt,
    relative,
    unseen_members,
)
from neurosleuth.tools.compare import CONTROLS, _spelled, _stem, _word
from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.pattern import SEEN_SHARE, Pattern, examples_of, quote
from neurosleuth.tools.words import words_of

__all__ = ["FRAMES", "ClauseTest", "Tested", "test_clauses"]


@dataclass(frozen=True)
class Tested:
    """A pattern after its clauses were tested: the edited pattern (``changed`` when any edit was
    made), the tests, and the forward passes they cost."""

    pattern: Pattern
    tests: tuple[ClauseTest, ...]
    changed: bool
    forward_passes: int


def _members(bench: WordBench, p: Pattern, extra: Sequence[str], add_words: bool = True
             ) -> tuple[Pattern, list[ClauseTest]]:
    """The member clause (module docstring): triggers, unseen members, extra words, controls."""
    named = p.concept if p.has_concept else None
    test = C.member(named) if named is not None else None
    seen = [w for w in p.ordered(MAX_WORDS) if _word(w)]
    known = {_stem(_word(w)) for w in [*p.triggers, *p.seen]}
    # the named class, and the classes the words fall in: a named class refuted by its unseen
    # members may give way to a narrower one they support ("objects" to "musical instruments")
    found = C.candidate_names(seen, [p.triggers[w] for w in seen], limit=3) \
        if len(seen) >= 2 else []
    classes = [named, *(c for c in found if c.label != named.label)] if named is not None \
        else found[:2]
    def n_tokens(w: str) -> int:
        return len(bench.lm.encode(_spelled(_word(w), bench.like)))

    unseen: dict[str, list[str]] = {}
    for cl in classes:  # members no longer than the class's seen members (a bracket: 1 token)
        inside = [w for w in seen if C.member(cl)(_word(w))] or seen
        longest = max(n_tokens(w) for w in inside)
        fresh = unseen_members(cl, seen, known, 4 * MAX_WORDS)
        unseen[cl.label] = [w for w in fresh if n_tokens(w) <= longest][:MAX_WORDS]
    # words to try as triggers: the caller's (found by the deep dive), then the words the top
    # windows fire on that the pattern does not list (the records saw them fire too rarely)
    listed = {_stem(_word(w)) for w in p.triggers}
    seen_firing = sorted(p.seen, key=lambda w: -p.seen[w])
    extra = [w for w in dict.fromkeys(_word(x) for x in [*extra, *seen_firing])
             if w and not any(ch.isspace() for ch in w) and _stem(w) not in listed
             ][:2 * MAX_WORDS] if add_words else []
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
    quiet = {w: a[w] for w in seen if relative(a[w], s, c) < QUIET
             and p.triggers[w] >= CLAIM * top}
    if quiet and len(quiet) < len(seen):
        for w in quiet:
            triggers.pop(w, None)
        tests.append(ClauseTest(
            f"members {quote(list(quiet), 4)}", f"each trigger in {where}",
            f"{fmt(quiet)} against the strongest triggers {s:.2f}, controls {c:.2f}", "fails",
            f"drop {quote(list(quiet), 6)}"))
    else:
        tests.append(ClauseTest(
            f"triggers {quote(seen, 4)}", f"each trigger and {len(controls)} control words in "
            f"{where}", f"{fmt({w: a[w] for w in seen})}; controls {c:.2f}", "holds", "keep"))
    mean = float(np.mean(list(p.triggers.values()))) if p.triggers else 0.5
    added = {w: round(min(top, mean * a[w] / s), 3) for w in extra
             if relative(a[w], s, c) >= FIRES and not (test and test(w))}
    if added:
        triggers.update(added)
        tests.append(ClauseTest(
            f"words {quote(list(added), 4)} (not in the hypothesis)",
            f"each in {where}", f"{fmt({w: a[w] for w in added})} against triggers {s:.2f}",
            "fails", f"add {quote(list(added), 6)}"))
    concept = p.concept
    for cl in classes:
        got = {w: a[w] for w in unseen[cl.label]}
        if len(got) < 3:
            continue
        share = relative(statistics.median(got.values()), s, c)
        firing = {w: v for w, v in got.items() if relative(v, s, c) >= FIRES}
        result = (f"unseen members {fmt(dict(sorted(got.items(), key=lambda x: -x[1])))} "
                  f"reach {share:.0%} of the triggers ({s:.2f}) above controls ({c:.2f})")
        experiment = f"{len(got)} members never seen, in {where}"
        if named is not None and cl.label == named.label:  # the hypothesis names this class
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
        elif share >= FIRES and concept is None:  # a bare list, or a refuted class: it fires
            inside = [w for w in seen if C.member(cl)(w)]
            if len(inside) >= 2:
                concept = replace(cl, examples=examples_of(inside))
                tests.append(ClauseTest(f"list {quote(seen, 4)} as {cl.label!r}", experiment,
                                        result, "fails", f"name the class {cl.label!r}"))
    return replace(p, triggers=triggers, concept=concept), tests


def _piece_members(lm: LoadedModel, neuron: NeuronId, p: Pattern,
                   contexts: Sequence[Sequence[str]], extra: Sequence[str],
                   windows: Sequence[tuple[Sequence[str], np.ndarray]], add_words: bool = True
                   ) -> tuple[Pattern, list[ClauseTest], int]:
    """The member clause of a reading of tokens (module docstring): each token in the place of
    the peak token of the own contexts, the rest of each context as it was."""
    own = [list(t) for t in contexts if len(t) >= 2][: 2 * MAX_CONTEXTS]
    seen = p.ordered(MAX_WORDS)
    if not own or len(seen) < 2:
        return p, [], 0
    lead = lm.n_prefix

    def token_id(tok: str) -> int | None:
        ids = lm.encode(tok)[lead:]
        return ids[0] if len(ids) == 1 and lm.decode(ids) == tok else None

    space = sum(t[:1].isspace() for t in p.triggers) * 2 >= len(p.triggers)
    listed = {t.strip().lower() for t in p.triggers}

    def as_token(word: str) -> str | None:  # a word as one token, spaced as most triggers are
        for tok in ((" " + word, word) if space else (word, " " + word)):
            if token_id(tok) is not None:
                return tok
        return None

    # tokens the read windows fire on that the reading does not list (beyond its cap), then the
    # deep dive's words; a token the read windows hold often but seldom fire on ('.', ' to': a
    # neuron that fires at the end of some context fires on most tokens put there) is not tried
    seen_n: Counter[str] = Counter()
    fired_n: Counter[str] = Counter()
    fired: dict[str, float] = {}
    for window, window_acts in windows:
        w = np.asarray(window_acts, dtype=float)
        for t, v in zip(window, w / w.max() if w.max() > 0 else w, strict=True):
            seen_n[t] += 1
            if v >= FIRES and t.strip() and t.strip().lower() not in listed:
                fired_n[t] += 1
                fired[t] = max(fired.get(t, 0.0), float(v))
    found = sorted(fired, key=lambda t: -fired[t])
    found += [t for t in map(as_token, extra) if t and t.strip().lower() not in listed]
    extra_toks = [t for t in dict.fromkeys(found) if token_id(t) is not None
                  and fired_n[t] >= SEEN_SHARE * seen_n[t]][: 2 * MAX_WORDS]
    if not add_words:
        extra_toks = []
    controls = [t for t in map(as_token, CONTROLS) if t and t.strip().lower() not in listed][:6]
    tids = {t: i for t in [*seen, *extra_toks, *controls] if (i := token_id(t)) is not None}
    toks = list(tids)
    if len([t for t in toks if t in seen]) < 2 or len(controls) < 3:
        return p, [], 0
    heads = [lm.encode(LEAD + "".join(c[:-1])) for c in own]
    ids = [[*h, tids[t]] for t in toks for h in heads]
    measured = measure_ids(lm, ids, [neuron])
    per = np.array([float(m[-1, 0]) for m in measured]).reshape(len(toks), len(heads)).mean(1)
    a: dict[str, float] = dict(zip(toks, per.round(4).tolist(), strict=True))
    top = max(p.triggers.values())
    tried = [t for t in seen if t in a]  # at least two (above)
    strong = [t for t in tried if p.triggers[t] >= CLAIM * top] or tried[:STRONG]
    s = statistics.median(a[t] for t in strong)
    c = statistics.median(a[t] for t in controls)
    where = f"the peak token of {len(heads)} own contexts"
    if s <= c:
        return p, [ClauseTest(f"tokens {quote(tried, 4)}", f"each token and {len(controls)} "
                              f"control tokens in place of {where}",
                              f"tokens median {s:.2f}, controls {c:.2f}", "undecided", "keep")
                   ], len(ids)
    triggers = dict(p.triggers)
    tests: list[ClauseTest] = []
    quiet = {t: a[t] for t in tried
             if relative(a[t], s, c) < QUIET and p.triggers[t] >= CLAIM * top}
    if quiet and len(quiet) < len(tried):
        for t in quiet:
            triggers.pop(t, None)
        tests.append(ClauseTest(f"tokens {quote(list(quiet), 4)}", f"each in place of {where}",
                                f"{fmt(quiet)} against the strongest tokens {s:.2f}, controls "
                                f"{c:.2f}", "fails", f"drop {quote(list(quiet), 6)}"))
    else:
        tests.append(ClauseTest(f"tokens {quote(tried, 4)}", f"each token and {len(controls)} "
                                f"control tokens in place of {where}",
                                f"{fmt({t: a[t] for t in tried})}; controls {c:.2f}", "holds",
                                "keep"))
    mean = float(np.mean(list(p.triggers.values())))
    added = {t: round(min(top, mean * a[t] / s), 3) for t in extra_toks
             if relative(a[t], s, c) >= FIRES}
    if added:
        triggers.update(added)
        tests.append(ClauseTest(f"tokens {quote(list(added), 4)} (not in the hypothesis)",
                                f"each in place of {where}",
                                f"{fmt({t: a[t] for t in added})} against tokens {s:.2f}",
                                "fails", f"add {quote(list(added), 6)}"))
    return replace(p, triggers=triggers), tests, len(ids)


def _contexts(bench: WordBench, p: Pattern, contexts: Sequence[Sequence[str]]
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
        frames = [(f.split("{w}")[0].rstrip(" "), _spelled(_word(t), bench.like),
                   f.split("{w}")[1]) for f in bench.frames for t in p.ordered(2)]
        ids += [lm.encode(LEAD + head + " " + word + " " + trig.lstrip(" ") + tail)
                for head, trig, tail in frames]  # new sentences with the word before it
        ids += [lm.encode(LEAD + head + trig + tail) for head, trig, tail in frames]  # without
        if not ids:
            continue
        n_own = 2 * len(pairs)
        lead = len(lm.encode(LEAD))
        acts = [float(a[-1 if i < n_own else lead:, 0].max())
                for i, a in enumerate(measure_ids(lm, ids, [bench.neuron]))]
        bench.passes += len(ids)
        with_, without = acts[0:n_own:2], acts[1:n_own:2]
        new_with, new = acts[n_own:n_own + len(frames)], acts[n_own + len(frames):]
        base = statistics.median(with_) if with_ else 0.0
        ratios = [b / x for x, b in zip(with_, without, strict=True) if x > 0]
        if not ratios:  # no own context holds it: nothing to delete it from
            continue
        ratio = kept[word] = float(np.clip(statistics.median(ratios), 0.0, 1.0))
        # the same new sentences with and without the word: where the trigger fires with it,
        # the share it keeps without it (None: quiet either way, the sentences tell nothing)
        fired = [(x, b) for x, b in zip(new_with, new, strict=True) if x > QUIET * base > 0]
        new_ratio = (float(np.clip(statistics.median(b / x for x, b in fired), 0.0, 1.0))
                     if fired else None)
        result = (f"with it {base:.2f}; deleted from {len(pairs)} own contexts "
                  f"{statistics.median(without) if without else float('nan'):.2f}: the trigger "
                  f"keeps {ratio:.0%}; {len(frames)} new sentences with it "
                  f"{statistics.median(new_with) if new_with else float('nan'):.2f}, without it "
                  f"{statistics.median(new) if new else float('nan'):.2f}"
                  + (f": it keeps {new_ratio:.0%}" if new_ratio is not None else ""))
        experiment = ("deleted from the own contexts, and the same new sentences with and "
                      "without it")
        if ratio >= FIRES or (new_ratio is not None and new_ratio >= FIRES):
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


def test_clauses(lm: LoadedModel, neuron: NeuronId, pattern: Pattern,
                 contexts: Sequence[Sequence[str]], extra: Sequence[str] = (),
                 windows: Sequence[tuple[Sequence[str], np.ndarray]] = (),
                 frames: Sequence[str] = FRAMES, add_words: bool = True) -> Tested:
    """Put each clause of ``pattern`` to its experiment (module docstring) in the neuron's own
    ``contexts`` (token lists ending at a peak) and in new sentences; ``extra``: further words
    to try as triggers (substitutes that fired, words seen firing); ``windows``: the tokens of
    its top windows with their activations (their kind of text); ``frames``: the new sentences,
    each with one ``{w}`` slot (``FRAMES``, or an LLM's); ``add_words``: try words beside the
    triggers (else only the triggers and the class's members). Returns the edited pattern."""
    if pattern.kind == "none":
        return Tested(pattern, (), False, 0)
    p, tests, passes = readings.kind(lm, neuron, pattern)
    p, more, n = readings.text_kind(lm, neuron, p, windows)
    tests, passes = tests + more, passes + n
    bench = WordBench(lm, neuron, contexts, frames)
    if p.kind == "token" and p.unit == "piece":
        p, more = readings.pieces(bench, p)
        tests += more
    if p.kind == "token" and p.unit == "piece":  # not a class of tokens: each token
        p, more, n = _piece_members(lm, neuron, p, contexts, extra, windows, add_words)
        tests, passes = tests + more, passes + n
    if p.kind == "token" and p.unit == "word":
        p, t = _members(bench, p, extra, add_words)
        tests += t
        p, t = _contexts(bench, p, contexts)
        tests += t
        p, t = readings.facets(bench, p)
        tests += t
    changed = any(t.edit != "keep" for t in tests)
    return Tested(p if changed else pattern, tuple(tests), changed, passes + bench.passes)
