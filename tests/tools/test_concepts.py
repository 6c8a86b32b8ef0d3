"""Concept names (``tools/concepts.py``): surface classes without resources, WordNet ancestors
that are familiar rather than lowest, and names turned back into membership tests."""

from __future__ import annotations

import pytest

from neurosleuth.tools import concepts as C


@pytest.mark.parametrize(("tokens", "label"), [
    ([" 1", " 23", " 456"], "digits and numbers"),
    ([",", ".", ";", "!"], "punctuation marks"),
    ([" Привет", " мир", " да"], "Cyrillic script"),
])
def test_surface_classes(tokens, label):
    name = C.name_tokens(tokens)
    assert name.label == label and name.source == "surface" and name.coverage == 1.0


@pytest.mark.parametrize(("words", "expect"), [
    ("Monday Friday Tuesday", "weekdays"),
    ("January June March", "months"),
    ("red blue green", "colors"),
    ("cat dog horse", "mammals"),  # not the lowest common hypernym, 'placentals'
    ("France Germany Japan", "countries"),
    ("anger joy fear", "emotions"),
])
def test_wordnet_names_are_familiar(words, expect):
    name = C.name_tokens([" " + w for w in words.split()])
    assert name.label == expect and name.source == "wordnet"
    assert name.examples[:2] == tuple(words.split()[:2])


def test_mixed_time_words_fall_back_to_the_supersense():
    name = C.name_tokens([" Halloween", " Friday", " June"])
    assert name.source == "supersense" and name.label == "time expressions"


def test_names_become_membership_tests():
    days = C.name_tokens([" Monday", " Friday", " Tuesday"])
    test = C.member(days)
    assert test(" Wednesday") and test("Thursday") and not test(" dog") and not test(" ,")
    assert "weekday.n.01" in C.concept_synsets("weekdays")
    assert C.concept_synsets("the") == ()


def test_no_concept_is_said_plainly():
    name = C.name_tokens([" qzx", " vvk"])
    assert name.source == "none" and name.label == ""


def test_closed_word_classes_name_function_words():
    name = C.name_tokens([" or", " and", " but", " nor"])
    assert name.label == "conjunctions" and name.source == "grammar"
    assert C.member(name)(" yet") and not C.member(name)(" dog")
    mixed = C.name_tokens([" or", " and", " not", " no"])
    assert mixed.label == "conjunctions and negations"


def test_a_polysemantic_set_is_described_as_two_classes():
    name = C.name_tokens(["3", "2", " and", " or", "0", " not"], [1.0, 1.0, 1.0, 1.0, 0.5, 0.5])
    assert name.source == "mixture"
    assert name.label == "digits and numbers (3, 2, 0) and function words (and, or, not)"
    assert C.member(name)(" 9") and C.member(name)(" but") and not C.member(name)(" dog")
