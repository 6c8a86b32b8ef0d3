"""Selection by experiment (agents/candidates.py ``decide``, tools/compare.py ``_verdict``): the
concept-or-list experiment overrides the held-out score only where that score cannot tell the
two readings apart."""

from neurosleuth.agents.candidates import decide
from neurosleuth.tools.compare import _verdict

CONCEPT = {"concept": {"label": "mammals", "source": "wordnet"}}
LIST = {"concept": None}


def cand(text, pattern, margin, ci, source="explainer"):
    return {"text": text, "source": source, "pattern": pattern,
            "score": {"margin": margin, "margin_ci": ci}}


def experiment(verdict):
    return {"experiment": "unseen members", "verdict": verdict, "why": "w", "summary": "s"}


def test_verdicts_from_the_three_medians():
    seen, controls = {"dog": 4.0, "cat": 5.0}, {"table": 0.0, "idea": 0.2}
    assert _verdict(seen, {"horse": 4.0, "cow": 3.0, "sheep": 5.0}, controls)[0] == "concept"
    assert _verdict(seen, {"horse": 0.1, "cow": 0.3, "sheep": 0.0}, controls)[0] == "list"
    assert _verdict(seen, {"horse": 1.5, "cow": 2.0, "sheep": 1.0}, controls)[0] == "undecided"
    assert _verdict(seen, {"horse": 4.0}, controls)[0] == "undecided"  # too few members
    assert _verdict({"dog": 0.0}, {"a": 1, "b": 1, "c": 1}, controls)[0] == "undecided"


def test_a_concept_whose_unseen_members_fire_beats_its_list():
    concept = cand("Fires on mammals.", CONCEPT, 0.10, [0.0, 0.2])
    listed = cand("Fires on the tokens 'dog', 'cat'.", LIST, 0.12, [0.05, 0.2])
    won, why = decide([concept, listed], listed, experiment("concept"))
    assert won is concept and why["changed"] and why["instead_of"] == listed["text"]
    # the experiment agrees with the score: nothing changes
    won, why = decide([concept, listed], concept, experiment("concept"))
    assert won is concept and not why["changed"]


def test_a_list_beats_a_concept_whose_unseen_members_stay_quiet():
    concept = cand("Fires on time expressions.", CONCEPT, 0.15, [0.1, 0.2])
    listed = cand("Fires on the tokens 'Monday'.", LIST, 0.12, [0.05, 0.16])
    won, why = decide([concept, listed], concept, experiment("list"))
    assert won is listed and why["verdict"] == "list"


def test_the_score_wins_when_it_can_tell_them_apart_or_nothing_was_decided():
    concept = cand("Fires on mammals.", CONCEPT, 0.02, [-0.05, 0.04])
    listed = cand("Fires on the tokens 'dog', 'cat'.", LIST, 0.30, [0.2, 0.4])
    won, why = decide([concept, listed], listed, experiment("concept"))
    assert won is listed and not why["changed"] and "clearly lower" in why["why_not"]
    assert decide([concept, listed], listed, experiment("undecided"))[0] is listed
    won, why = decide([listed], listed, experiment("concept"))  # the concept was rejected
    assert won is listed and why["why_not"] == "no candidate with the other reading was scored"
    assert decide([concept, listed], listed, None) == (listed, None)


def test_a_revised_class_agrees_with_a_concept_verdict_whoever_wrote_it():
    """The revision broadened the explainer's class ('birds' to 'animals'); unseen birds that fire
    agree with it, so the experiment does not hand the round back to the narrower class."""
    broader = cand("Fires on animals.", CONCEPT, 0.114, [0.05, 0.21], source="previous best")
    narrower = cand("Fires on birds.", CONCEPT, 0.064, [0.01, 0.121])
    won, why = decide([narrower, broader], broader, experiment("concept"))
    assert won is broader and not why["changed"]
    listed = cand("Fires on the words 'parrot', 'geese'.", LIST, 0.12, [0.05, 0.2],
                  source="previous best")
    won, why = decide([narrower, listed], listed, experiment("concept"))
    assert won is narrower and why["changed"]  # a list from any source still gives way
