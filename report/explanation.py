"""The report's sections on how the hypothesis was chosen: every candidate with its source and
score (or why it was rejected), and the explainer's pattern (``explanation.json``: pruned
contexts, trigger set, substitutions that fire and that do not, the concept name and where the
name came from)."""

from __future__ import annotations

from typing import Any

from neurosleuth.report.blocks import Missing, Para, Section, Table
from neurosleuth.report.data import RunData


def candidates_section(data: RunData) -> Section:
    title = "Candidates"
    if not data.hypotheses or not data.hypotheses[-1].get("candidates"):
        return Section(title, [Missing("not available (no hypothesis step with candidates)")],
                       )
    h = data.hypotheses[-1]
    rows = []
    for c in h["candidates"]:
        won = c.get("text") == h.get("text")
        verdict = (f"rejected: {c['rejected']}" if c.get("rejected")
                   else f"not scored: {c['score_error']}" if c.get("score_error")
                   else c.get("summary") or "")
        rows.append(["yes" if won else "", str(c.get("source", "?")), str(c.get("text", "")),
                     verdict])
    rejected = sum(bool(c.get("rejected")) for c in h["candidates"])
    intro = (f"{len(rows)} candidates at step {h.get('step', '?')}, scored on the same held-out "
             f"windows against the same controls; the best margin over the floor won. "
             f"{rejected} rejected before scoring (copied text, over 40 words, or no claim).")
    blocks: list = [Para(intro), Table(["won", "source", "candidate", "score"], rows)]
    blocks += experiment_blocks(h)
    return Section(title, blocks)


def experiment_blocks(h: dict[str, Any]) -> list:
    """The experiment of this hypothesis step (concept or list; kind of text) and what it
    decided."""
    ex = h.get("experiment")
    if not isinstance(ex, dict) or not ex:
        return []
    decided = h.get("decided_by")
    if not isinstance(decided, dict):
        decided = {}
    if decided.get("changed"):
        outcome = (f"It decided the hypothesis: the {ex.get('verdict')} reading won instead of "
                   f"\"{decided.get('instead_of', '')}\", which the held-out score could not "
                   "tell apart from it.")
    elif decided.get("why_not"):
        outcome = f"It did not change the winner: {decided['why_not']}."
    else:
        outcome = "The score's winner already agreed with it."
    if "kind" in ex and "concept" not in ex:  # the kind-of-text experiment
        intro = (f"Experiment ({ex.get('experiment')}): the same content as {ex.get('kind')} and "
                 f"as {ex.get('other')}, {ex.get('pairs')} pairs; mean activation "
                 f"{ex.get('kind_mean')} vs {ex.get('other_mean')}. Verdict: {ex.get('verdict')} "
                 f"({ex.get('why', '')}). {outcome}")
        rows = [[str(a), x, str(b), y] for a, x, b, y in ex.get("examples") or []]
        return [Para(intro), Table([str(ex.get("kind")), "activation", str(ex.get("other")),
                                    "activation"], rows)]
    intro = (f"Experiment ({ex.get('experiment', 'unseen members')}): members of "
             f"\"{ex.get('concept', '?')}\" the neuron was never seen on, put in place of the "
             f"peak token of its own contexts, against the seen triggers and control words. "
             f"Verdict: {ex.get('verdict')} ({ex.get('why', '')}). {outcome}")
    rows = [[group, f"'{w}'", round(float(v), 3)]
            for group, key in (("seen trigger", "seen"), ("unseen member", "unseen"),
                               ("control", "controls"))
            for w, v in (ex.get(key) or {}).items()]
    return [Para(intro), Table(["group", "word", "mean activation in the contexts"], rows)]


def facet_row(i: int, f: dict[str, Any]) -> list:
    concept = f.get("concept") or {}
    words = sorted((f.get("triggers") or {}).items(), key=lambda t: -t[1])[:6]
    return [str(i + 1), str(concept.get("label") or "-"),
            ", ".join(f"'{w}'" for w, _ in words) or "-",
            ", ".join(f"'{w}'" for w in (f.get("required") or {})) or "-"]


def pattern_section(data: RunData) -> Section:
    title = "Explanation pattern"
    ex = data.explanation
    if not ex:
        return Section(title, [Missing(data.why_missing("explanation.json"))])
    p: dict[str, Any] = ex.get("pattern") or {}
    concept = p.get("concept") or {}
    blocks: list = [Para(str(ex.get("details", "")))]
    kv = [["kind", {"token": "token-level (a set of trigger tokens)",
                    "context": "context-level (a kind of text)"}.get(p.get("kind", ""), "none")],
          ["concept", f"{concept.get('label') or '-'} (named by {concept.get('source', 'none')}"
                      + (f": {concept['synset']}" if concept.get("synset") else "") + ")"],
          ["naming sources", str(ex.get("naming", ""))],
          ["required context", ", ".join(f"'{w}' ({s:.0%})" for w, s in
                                         (p.get("required") or {}).items()) or "-"],
          ["fires on", {"first": "the first piece of a word", "all": "every piece of a word"}
           .get(p.get("where", "end"), "the last piece of a word (or the whole word)")],
          ["peak word alone keeps", f"{p.get('context_free', 0):.0%} of the activation"],
          ["tokens firing in top windows", f"{p.get('fire_share', 0):.0%}"],
          ["cost", f"{ex.get('forward_passes', 0)} sequences, {ex.get('seconds', 0):.1f} s"]]
    if p.get("context"):
        kv.insert(1, ["context", str(p["context"])])
    blocks.append(Table(["property", "value"], kv))
    trig = sorted((p.get("triggers") or {}).items(), key=lambda t: -t[1])[:15]
    if trig:
        blocks.append(Table(["trigger word", "activation (share of the peak)"],
                            [[f"'{w}'", round(v, 3)] for w, v in trig]))
    facets = [p, *(p.get("facets") or [])]
    if len(facets) > 1:
        blocks.append(Para(f"{len(facets)} facets (a polysemantic neuron): the simulation is the "
                           "maximum over them; the facets were kept because together they "
                           "simulate held-apart windows better than the first alone."))
        blocks.append(Table(["facet", "class", "trigger words", "required context"],
                            [facet_row(i, f) for i, f in enumerate(facets)]))
    pruned = ex.get("pruned") or []
    if pruned:
        blocks.append(Table(["pruned context (ends at the peak)", "activation", "of original"],
                            [["".join(r["tokens"]), round(r["act"], 3),
                              f"{r['act'] / r['full_act']:.0%}" if r.get("full_act") else "-"]
                             for r in pruned[:10]]))
    subs = [s for s in ex.get("substitutions") or [] if s.get("where") == "peak"]
    if subs:
        subs = sorted(subs, key=lambda s: -s["fraction"])
        rows = [[f"'{s['original']}' → '{s['token']}'", s["source"], f"{s['fraction']:.0%}",
                 "fires" if s["fires"] else "does not fire"] for s in subs[:6] + subs[-6:]]
        blocks.append(Table(["substitution at the peak", "from", "activation kept", ""],
                            list({r[0]: r for r in rows}.values())))
    return Section(title, blocks)
