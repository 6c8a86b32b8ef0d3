"""The revision history of a run (``agents/revise.py``): after each hypothesis round, each clause of
the leader was put to an experiment on the model and edited where the experiment refuted it; the
edit was rescored on held-out windows and kept only when it held up. One table row per clause
test: the round, the clause, the experiment, its result and the edit, and per revision round
the hypothesis before and after with the margins that decided it. Read from ``evidence.json``
(findings of kind ``revise``)."""

from __future__ import annotations

from neurosleuth.report.blocks import Missing, Para, Section, Table
from neurosleuth.report.data import RunData


def revision_rows(evidence: list[dict]) -> tuple[list[list], list[list]]:
    """(rounds: [step, round, before, after, margins, kept], tests: [step, round, clause,
    experiment, result, verdict, edit])."""
    rounds, tests = [], []
    for f in evidence:
        if f.get("kind") != "revise":
            continue
        step, n = f.get("step"), f.get("round")
        before, after = f.get("margin_before"), f.get("margin_after")
        margins = (f"{before:+.3f} → {after:+.3f}" if before is not None and after is not None
                   else "" if before is None else f"{before:+.3f}")
        outcome = ("kept" if f.get("kept") else "not kept" if f.get("after")
                   else "no edit: every clause held or was undecided")
        rounds.append([step, n, f.get("before", ""), f.get("after") or "(no edit)", margins,
                       outcome])
        for t in f.get("tests", []):
            tests.append([step, n, t["clause"], t["experiment"], t["result"], t["verdict"],
                          t["edit"]])
    return rounds, tests


def revisions_section(data: RunData) -> Section:
    title = "Revisions"
    if "evidence.json" in data.missing:
        return Section(title, [Missing(data.why_missing("evidence.json"))])
    rounds, tests = revision_rows(data.evidence)
    if not rounds:
        return Section(title, [Missing("no hypothesis round has been revised yet")])
    intro = ("After each hypothesis round the leader's clauses were tested on the model, one "
             "experiment each (members one by one, seen and unseen; each required context "
             "deleted and absent; the kind of text; each facet), and edited where refuted. A "
             "revision leads when its margin over the floor on held-out windows rises, or when it "
             "only drops refuted clauses and the margin holds.")
    return Section(title, [
        Para(intro),
        Table(["step", "round", "hypothesis before", "revised", "margin", "outcome"], rounds),
        Table(["step", "round", "clause", "experiment", "result", "verdict", "edit"], tests),
    ])
