"""Best-of-candidates hypotheses (as Transluce's neuron descriptions, Choi et al. 2024: write many
explanations, keep the one whose simulation scores best).

At each hypothesis step the agent gathers candidates from every source it has: the evidence
explainer's sentences (``tools/explain.py``), the planner's hypothesis (any backend), the previous
best, and the researcher's own (``--hypothesis``, ``neurosleuth steer --hypothesis``). A candidate
that is not a hypothesis (copied from a prompt or exemplar, over ``MAX_WORDS`` words, or making no
claim about when the neuron fires) is rejected before scoring. The rest are scored on the same
held-out windows against the same controls (``score/run.py``, the neuron-level evidence computed
once); the best margin over the floor wins, ties going to the earlier source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neurosleuth.agents.context import RunContext

MAX_WORDS = 40
COPY_WORDS = 6  # this many consecutive words found in a prompt or exemplar: copied text
CLAIM = re.compile(
    r"\b(fires?|firing|activat\w*|respond\w*|detect\w*|tracks?|encod\w*|tokens?|words?|names?"
    r"|mentions?|when|inside|within|after|before)\b", re.IGNORECASE)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def copied(text: str, sources: Sequence[str], n: int = COPY_WORDS) -> bool:
    """Does ``text`` repeat ``n`` consecutive words of one of ``sources`` (or all of one)?"""
    words = _words(text)
    grams = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
    for s in sources:
        sw = _words(s)
        if grams and any(tuple(sw[i : i + n]) in grams for i in range(len(sw) - n + 1)):
            return True
        if len(words) >= 3 and " ".join(words) in " ".join(sw):
            return True
    return False


def rejection(text: str, sources: Sequence[str]) -> str | None:
    """Why ``text`` is not a hypothesis, or None when it is one."""
    t = (text or "").strip()
    if not t:
        return "empty"
    if len(t.split()) > MAX_WORDS:
        return f"over {MAX_WORDS} words"
    if copied(t, sources):
        return "copied from a prompt or exemplar"
    if not CLAIM.search(t):
        return "makes no claim about when the neuron fires"
    return None


def gather(*groups: Sequence[dict]) -> list[dict]:
    """Candidates in order of preference, each text once (the first source kept)."""
    out, seen = [], set()
    for group in groups:
        for c in group:
            key = c["text"].strip()
            if key and key not in seen:
                seen.add(key)
                out.append(c)
    return out


def best(scored: Sequence[dict]) -> dict | None:
    """The candidate with the highest margin over the floor (then aggregate); earlier wins ties."""
    ok = [c for c in scored if c.get("score")]
    if not ok:
        return None
    return max(ok, key=lambda c: (round(c["score"]["margin"], 4), round(c["score"]["aggregate"], 4),
                                  -scored.index(c)))


def from_explainer(explanation) -> list[dict]:
    """The explainer's sentence and its variants, each with the pattern that simulates it."""
    from neurosleuth.tools.explain import variants

    return [{"text": text, "source": "explainer", "explanation": explanation.details,
             "pattern": pattern.to_dict()} for text, pattern in variants(explanation)]


def from_read_off(entry: dict | None) -> list[dict]:
    """The records explanation the deep dive starts from (``scoring.read_off``), as a candidate
    with its pattern (source ``atlas``: the atlas's entry or the same read-off of the run's
    own scan)."""
    if not entry:
        return []
    return [{"text": entry["text"], "source": "atlas", "pattern": entry["pattern"],
             "explanation": f"the records explanation ({entry['source']}), before any "
                            "experiment"}]


def concept_experiment(lm, neuron, explanation) -> dict | None:
    """The concept-or-list experiment (``tools/compare.py``) when the explainer named a concept
    for token-level triggers: its result as a dict, or None when there is nothing to compare."""
    from neurosleuth.tools.compare import compare_concept

    p = explanation.pattern
    if p.kind != "token" or p.concept is None or p.concept.source in ("none", "mixture"):
        return None
    seen = sorted(p.triggers, key=lambda w: -p.triggers[w])
    result = compare_concept(lm, neuron, p.concept, seen, explanation.pruned, list(p.seen))
    return None if result is None else {"experiment": "unseen members", **result.to_dict(),
                                        "summary": result.summary()}


def kind_experiment(lm, neuron, explanation) -> dict | None:
    """The kind-of-text experiment (``tools/text_kind.py``) when the explainer read the neuron as
    context-level (a kind of text): the same content as that kind and otherwise."""
    from neurosleuth.tools.text_kind import compare_kind

    p = explanation.pattern
    if p.kind != "context" or not p.context:
        return None
    result = compare_kind(lm, neuron, p.context)
    return None if result is None else {"experiment": "same content, other kind",
                                        **result.to_dict(), "summary": result.summary()}


def _has_concept(c: dict) -> bool:
    """Does the candidate's pattern name a class, whoever wrote it: a revision that broadened the
    explainer's 'birds' to 'animals' agrees with unseen birds that fire."""
    concept = (c.get("pattern") or {}).get("concept") or {}
    return concept.get("source") not in (None, "none")


def _reads_kind(c: dict) -> bool:
    return c.get("source") == "explainer" and (c.get("pattern") or {}).get("kind") == "context"


# verdict -> (what a candidate must have to agree with it, whether it must have it)
VERDICTS = {"concept": (_has_concept, True), "list": (_has_concept, False),
            "kind": (_reads_kind, True), "not kind": (_reads_kind, False)}


def decide(scored: Sequence[dict], winner: dict, experiment: dict | None
           ) -> tuple[dict, dict | None]:
    """The winner after the round's experiment: a concept whose unseen members fire beats a
    candidate without the concept, and a list beats a concept whose unseen members stay quiet; a
    kind of text that fires more than the same content otherwise beats a token reading, and loses
    to one when it does not. Only when the held-out score cannot tell them apart (the other's
    margin interval reaches the winner's margin). Returns the winner and what the experiment
    decided (None: no experiment)."""
    if not experiment or experiment.get("verdict") not in VERDICTS:
        return winner, None if not experiment else {**_decision(experiment), "changed": False}
    has, wanted = VERDICTS[experiment["verdict"]]
    if has(winner) == wanted:
        return winner, {**_decision(experiment), "changed": False}
    rivals = [c for c in scored if c.get("score") and c.get("source") == "explainer"
              and has(c) == wanted]
    margin = winner["score"]["margin"]
    close = [c for c in rivals if (c["score"].get("margin_ci") or [None, None])[1] is not None
             and c["score"]["margin_ci"][1] >= margin]
    if not close:
        why_not = ("the held-out score puts the other reading clearly lower" if rivals
                   else "no candidate with the other reading was scored")
        return winner, {**_decision(experiment), "changed": False, "why_not": why_not}
    chosen = max(close, key=lambda c: c["score"]["margin"])
    return chosen, {**_decision(experiment), "changed": True, "instead_of": winner["text"]}


def _decision(experiment: dict) -> dict:
    return {k: experiment[k] for k in ("experiment", "verdict", "why", "summary")}


def writer_for(ctx, cands: Sequence[dict]):
    """The no-LLM writer every candidate is scored by; it knows the explainer's patterns."""
    from neurosleuth.score.writer import HeuristicWriter
    from neurosleuth.tools.explain import Pattern

    patterns = {c["text"]: Pattern.from_dict(c["pattern"]) for c in cands if c.get("pattern")}
    return HeuristicWriter(str(ctx.neuron), ctx.lm.name, patterns)


def score_all(ctx: RunContext, cands: Sequence[dict], state: Mapping[str, Any],
              deadline: float | None = None) -> tuple[list[dict], int]:
    """Each candidate rejected or scored (``scoring.score``), all by one ``writer_for`` writer,
    in order, until ``deadline`` (a ``time.monotonic()``; at least one is scored); returns them
    and the prompts measured."""
    import time

    from neurosleuth.agents import scoring
    from neurosleuth.agents.state import heaps_of

    writer = writer_for(ctx, cands)
    heaps = heaps_of(state)
    sources = [r.prompt for r in heaps.top()] + [
        e.get("text", "") for e in ctx.exemplars.top]
    out: list[dict] = []
    written = 0
    for c in cands:
        reason = None if c["source"] == "researcher" else rejection(c["text"], sources)
        if not reason and deadline is not None and time.monotonic() >= deadline and any(
                x.get("score") for x in out):
            reason = "not scored: the time budget ran out"
        if reason:
            out.append({**c, "rejected": reason})
            continue
        try:
            result = scoring.score(ctx, c["text"], writer)
        except Exception as err:  # noqa: BLE001 - one bad candidate never stops the run
            out.append({**c, "score_error": f"{type(err).__name__}: {err}"})
            continue
        record = result.to_record()
        record["threshold"] = result.counterexamples.get("threshold", 0.0)
        written += len(result.evidence.get("positive", [])) + len(
            result.evidence.get("negative", []))
        out.append({**c, "score": record})
    return out, written


def findings(ex) -> list[str]:
    """What the planner is told of the explainer's evidence before it writes a hypothesis."""
    p = ex.pattern
    lines = [f"pattern: {ex.sentence}"]
    if p.concept and p.concept.source != "none":
        lines.append(f"concept of the trigger tokens: {p.concept.label} ({p.concept.source})")
    if ex.pruned:
        shown = ", ".join(repr("".join(r.tokens)) for r in ex.pruned[:4])
        lines.append(f"shortest contexts that keep the activation: {shown}")
    fire = [s.token for s in ex.substitutions if s.where == "peak" and s.fires][:6]
    kill = [s.token for s in ex.substitutions if s.where == "peak" and not s.fires][:6]
    if fire:
        lines.append(f"substitutes for the peak token that still fire: {fire}")
    if kill:
        lines.append(f"substitutes that do not fire: {kill}")
    return lines
