"""The revision's fall-backs (agents/revise.py): a revision the held-out score refuses is
rescored with each of its context and facet edits put back in turn."""

from dataclasses import replace

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
