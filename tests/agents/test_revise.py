"""The revision's fall-backs (agents/revise.py): a revision the held-out score refuses is
rescored with each of its context and facet edits put back in turn."""

from dataclasses import replace

import pytest

from neurosleuth.agents.revise import _variants
from neurosleuth.tools.pattern import Pattern, sentence_of

FACET = Pattern("token", {"skin": 1.0, "breast": 0.5}, None, {}, 1.0, unit="piece")
LEADER = Pattern("token", {"hair": 1.0, "nose": 0.8, "lips": 0.6}, None, {"the": 0.5}, 0.2,
                 facets=(FACET,))


def test_each_edit_is_put_back_alone():
    revised = replace(LEADER, required={}, context_free=1.0, facets=())
    got = [sentence_of(v) for v in _variants(LEADER, revised)]
    assert got[0] == sentence_of(revised)  # the whole revision first
    assert "mostly after 'the'" in got[1] and "also on" not in got[1]  # context put back
    assert "mostly after" not in got[2] and "also on" in got[2]  # facet put back
    assert len(got) == 3


def test_one_edit_has_no_variant_and_none_repeats_the_leader():
    revised = replace(LEADER, facets=())  # only the facet dropped
    got = _variants(LEADER, revised)
    assert [sentence_of(v) for v in got] == [sentence_of(revised)]


def test_a_round_whose_edits_leave_the_sentence_as_it_was_is_recorded(monkeypatch):
    """An edit the sentence does not show (a weight) is no revision to rescore, but the round
    and its experiments stay in the history (the report's clause table reads them)."""
    from types import SimpleNamespace

    from neurosleuth.agents import revise as R
    from neurosleuth.tools.clauses import Tested

    reweighted = replace(LEADER, triggers={**LEADER.triggers, "lips": 0.55})
    assert sentence_of(reweighted) == sentence_of(LEADER)
    test = SimpleNamespace(to_dict=lambda: {"clause": "triggers", "edit": "reweight"})
    monkeypatch.setattr(R, "own_contexts", lambda ctx: [])
    monkeypatch.setattr(R, "extra_words", lambda ctx, state=None: [])
    monkeypatch.setattr(R, "frames_for", lambda ctx, p: (R.FRAMES, "templates"))
    monkeypatch.setattr(R, "test_clauses", lambda *a, **k: Tested(reweighted, (test,), True, 7))
    monkeypatch.setattr(R, "_rescore", lambda *a: pytest.fail("nothing to rescore"))
    ctx = SimpleNamespace(exemplars=SimpleNamespace(top=[]), lm=None, neuron=None)
    hyp = {"text": sentence_of(LEADER), "score": {"margin": 0.2}}
    led, history, passes = R.revise(ctx, hyp, LEADER)
    assert led is hyp and passes == 7
    assert len(history) == 1 and not history[0]["kept"]
    assert history[0]["tests"] == [{"clause": "triggers", "edit": "reweight"}]
    assert "leave the sentence as it was" in history[0]["outcome"]
