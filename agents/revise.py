"""Test, revise, rescore: the leading hypothesis of a round is put to experiments, clause by
clause, edited where they refute it, and kept only if the edit holds up on held-out text.

One revision round (``revise``):

1. **test**: every clause of the leader's pattern goes to its experiment on the model
   (``tools/clauses.py``): each member, seen and unseen, one by one; each required context with
   and without it, in the neuron's own contexts and in new sentences; the kind of text against
   the same content in another kind; each facet;
2. **revise**: drop members that stay quiet, add words that fire, name a list whose class fires,
   drop a class whose unseen members do not, drop a context that does not matter, replace a kind
   of text that does not fire more by the words, drop a facet whose words do not fire;
3. **rescore**: the revised hypothesis (its sentence, simulated by its pattern) is scored as every
   candidate is (``scoring.score``: the same held-out windows, the same controls). It replaces
   the leader when its margin over the floor rises by ``RISE``, or when the held-out score
   cannot tell the two apart (the leader's margin inside the revision's 95% interval): then the
   experiments decide, as the concept-or-list experiment decides between close candidates
   (``candidates.decide``). Held-out corpus windows rarely hold the sentences that refuted a
   clause; a revision the held-out score puts clearly lower is not kept.

A revision refused as a whole is rescored with each of its context and facet edits put back in
turn (``_variants``): the first that holds is kept. Rounds repeat while a revision is accepted
(at most ``MAX_ROUNDS``) and the deadline allows; a revision refused when it added words (a
common word that fires in the neuron's own contexts predicts too much elsewhere) is tried again
without them.
Every round is logged: clause, experiment, result, edit, the margin before and after, and
whether it was kept (the report's revision table).

The own contexts are the deep-dive explainer's pruned texts when it ran (``explanation.json``),
else the top dataset windows cut at their peak; extra words to try are the explainer's
substitutes that fired at the peak. The new sentences are templates (``clauses.FRAMES``); with
an LLM planner, the LLM writes them (``frames_for``: kept when each holds one ``{w}`` slot), and
the revision history says who wrote them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from neurosleuth.agents.actions import TestSentences
from neurosleuth.agents.context import RunContext
from neurosleuth.agents.prompts import render_sentences
from neurosleuth.tools.clauses import FRAMES, test_clauses
from neurosleuth.tools.pattern import Pattern, sentence_of

MAX_ROUNDS = 3
RISE = 0.002  # margin rise that makes a revision the leader
CONTEXT_TOKENS = 16  # tokens of a dataset window kept before its peak, as an own context


def own_contexts(ctx: RunContext) -> list[list[str]]:
    """The neuron's own contexts, token lists ending at a peak (module docstring)."""
    ex = ctx.files.read_json("explanation.json", {}) or {}
    out = [list(p["tokens"]) for p in ex.get("pruned", []) if len(p["tokens"]) >= 2]
    for e in ctx.exemplars.top:
        peak = int(e["argmax"])
        toks = list(e["tokens"][max(0, peak + 1 - CONTEXT_TOKENS): peak + 1])
        if len(toks) >= 2:
            out.append(toks)
    return out


def extra_words(ctx: RunContext, state: Mapping[str, Any] | None = None) -> list[str]:
    """Words the deep dive found firing that the records may lack: the substitutes that fired at
    the peak (``explanation.json``), and the words the search's and the attack's best prompts
    peak on."""
    ex = ctx.files.read_json("explanation.json", {}) or {}
    words = [s["token"].strip() for s in ex.get("substitutions", [])
             if s["where"] == "peak" and s["fires"] and s["token"].strip()]
    if state is not None and state.get("heaps"):
        from neurosleuth.agents.state import heaps_of
        from neurosleuth.tools.words import words_of

        for r in heaps_of(state).top(8):
            toks = ctx.lm.token_strs(ctx.lm.encode(r.prompt)[ctx.lm.n_prefix:])
            if r.max_token in toks:
                word = words_of(toks).word_of(len(toks) - 1 - toks[::-1].index(r.max_token))
                if word:
                    words.append(word)
    return list(dict.fromkeys(words))


def frames_for(ctx: RunContext, pattern: Pattern) -> tuple[tuple[str, ...], str]:
    """The new sentences of the clause tests and who wrote them: an LLM planner's (each with one
    ``{w}`` slot, no other braces, under 200 characters; at least two such), else the
    templates."""
    from neurosleuth.agents.planner import LLMPlanner

    if not isinstance(ctx.planner, LLMPlanner) or not pattern.triggers:
        return FRAMES, "templates"
    reply, _ = ctx.planner.ask(TestSentences, render_sentences(pattern.ordered(5), 3),
                               ctx.cfg.temperature)
    good = tuple(s for s in (reply.sentences if reply else [])
                 if s.count("{w}") == 1 and s.count("{") == 1 and s.count("}") == 1
                 and len(s) < 200)
    if len(good) < 2:
        return FRAMES, "templates (the planner's sentences were unusable)"
    return good[:4], f"the planner ({ctx.planner.name})"


def _outcome(kept: bool, before: float, after: float) -> str:
    moved = f"margin {before:+.3f} -> {after:+.3f}"
    if not kept:
        return f"not kept: {moved} (the held-out score puts the revision lower)"
    if after >= before + RISE:
        return f"kept: {moved}"
    return f"kept: {moved} (the held-out score cannot tell them apart: the experiments decide)"


def _variants(before: Pattern, after: Pattern) -> list[Pattern]:
    """The revision, then (for a revision the held-out score refuses) the revision with one of
    its clause edits put back: the leader's required context, or its facets. Several edits
    together can lose on held-out text where each alone would hold."""
    out = [after]
    if (before.required, before.context_free) != (after.required, after.context_free):
        out.append(replace(after, required=before.required, context_free=before.context_free))
    if before.facets != after.facets:
        out.append(replace(after, facets=before.facets))
    return [v for i, v in enumerate(out) if sentence_of(v) not in
            {sentence_of(before), *(sentence_of(u) for u in out[:i])}]


def _rescore(ctx: RunContext, text: str, pattern: Pattern) -> tuple[dict, int]:
    """A revision scored as every candidate is: its record and the forward passes spent."""
    from neurosleuth.agents.candidates import writer_for
    from neurosleuth.agents.scoring import score

    result = score(ctx, text, writer_for(ctx, [{"text": text, "pattern": pattern.to_dict()}]))
    record = result.to_record()
    record["threshold"] = result.counterexamples.get("threshold", 0.0)
    return record, len(result.evidence.get("positive", [])) + len(
        result.evidence.get("negative", []))


def revise(ctx: RunContext, hyp: Mapping[str, Any], pattern: Pattern,
           deadline: float | None = None, state: Mapping[str, Any] | None = None
           ) -> tuple[Mapping[str, Any], list[dict], int]:
    """Revise ``hyp`` (a scored hypothesis simulated by ``pattern``): returns the hypothesis to
    lead (``hyp`` itself when no revision held), the revision history and the forward passes
    spent. ``deadline``: a ``time.monotonic()`` after which no new round starts; ``state``: the
    graph state (its best prompts give words to try)."""
    contexts, extra = own_contexts(ctx), extra_words(ctx, state)
    windows = [(e["tokens"], np.asarray(e["acts"], dtype=float)) for e in ctx.exemplars.top]
    frames, wrote = frames_for(ctx, pattern)
    history: list[dict] = []
    passes = 0
    adding = True  # words beside the triggers are tried until the held-out score refuses them
    for n in range(1, MAX_ROUNDS + 1):
        if deadline is not None and time.monotonic() >= deadline:
            break
        tested = test_clauses(ctx.lm, ctx.neuron, pattern, contexts, extra, windows, frames,
                              add_words=adding)
        passes += tested.forward_passes
        tests = [t.to_dict() for t in tested.tests]
        margin = hyp["score"]["margin"]
        entry: dict[str, Any] = {"round": n, "before": hyp["text"], "margin_before": margin,
                                 "tests": tests, "sentences_by": wrote}
        if not tested.changed:
            history.append({**entry, "kept": False,
                            "outcome": "every clause held (or was undecided): no edit"})
            break
        variants = _variants(pattern, tested.pattern)
        if not variants:  # edits that leave the sentence as it was (a piece, a value)
            history.append({**entry, "kept": False,
                            "outcome": "the edits leave the sentence as it was: no edit"})
        kept_as = None
        for k, variant in enumerate(variants):
            if k and deadline is not None and time.monotonic() >= deadline:
                break  # an edit put back is a further score: only within the time budget
            text = sentence_of(variant)
            try:
                record, spent = _rescore(ctx, text, variant)
            except Exception as err:  # noqa: BLE001 - a failed rescore keeps the leader
                history.append({**entry, "after": text, "kept": False,
                                "outcome": f"rescore failed: {type(err).__name__}: {err}"})
                break
            passes += spent
            after = record["margin"]
            hi = (record.get("margin_ci") or [None, None])[1]
            kept = after >= margin + RISE or (hi is not None and hi >= margin)
            history.append({**entry, "after": text, "margin_after": after, "kept": kept,
                            "outcome": _outcome(kept, margin, after) + (
                                "" if k == 0 else " (one edit put back)")})
            if kept:
                kept_as = (variant, text, record)
                break
        if kept_as is None:
            if adding and any(t["edit"].startswith("add ") for t in tests):
                adding = False  # the other edits alone next round, without the added words
                continue
            break
        pattern, text, record = kept_as
        hyp = {**hyp, "text": text, "source": "revised", "score": record,
               "pattern": pattern.to_dict(),
               "explanation": "revised by experiment: " + "; ".join(
                   f"{t['clause']}: {t['edit']}" for t in tests if t["edit"] != "keep")}
    return hyp, history, passes
