"""Word classes (``tools/wordclasses.py``): Unicode categories, number formats, markup,
whitespace, capitalisation, word forms by inflection and parts of speech, each a test on whole
words (and on raw tokens), named by ``concepts.candidate_names``."""

from __future__ import annotations

import pytest

from neurosleuth.tools import concepts as C
from neurosleuth.tools import wordclasses as W


@pytest.mark.parametrize(("cls", "members", "others"), [
    ("opening brackets", ["(", "[", "{", "([", '("', "「", " ("], [")", "()", "a(", "<"]),
    ("closing brackets", [")", "})", "],", ");", ").", '")', "」"], ["(", "()", ")(", "x)", ","]),
    ("quotation marks", ['"', "'", "“", "”", "«", '",', "`"], ["(", ",", "a'"]),
    ("currency symbols", ["$", "€", "£", "¥"], ["$5", "%", "s"]),
    ("math symbols", ["+", "=", "<", "==", "<=", "±", "×"], ["-", "(", "a"]),
    ("dashes", ["-", "–", "—", "--"], ["+", "_", "-a"]),
    # a replacement character is a piece of another script's character, not a symbol
    ("punctuation marks", [",", ".", "?!", "$", "—", "©"], ["a", "1", "", "\ufffd", "，\ufffd"]),
    ("years", ["1999", "2001", "1066", "2100"], ["999", "2101", "19999", "99"]),
    ("integers", ["0", "42", "1,000", "-3", "1999"], ["3.5", "1st", "x1"]),
    ("decimal numbers", ["3.14", ".5", "1,000.25"], ["3", "3.", "a.5"]),
    ("percentages", ["50%", "3.5%", "100%"], ["%", "50", "5 %x"]),
    ("ordinal numbers", ["1st", "2nd", "3rd", "4th", "11th", "12th", "21st", "113th"],
     ["1th", "2st", "11st", "first"]),
    ("times of day", ["10:30", "9:05", "23:59:01", "9:05pm", "11:00 a.m."], ["24:00", "10:60",
                                                                           "1030"]),
    ("markup tags", ["<div>", "</p>", "<br/>", '<a href="x">', "<!DOCTYPE html>"],
     ["<", "a<b", "<>", "& amp;"]),
    ("character entities", ["&amp;", "&lt;", "&#39;", "&#x27;"], ["&", "&amp", "amp;"]),
    ("indentation", ["    ", "\t", "ĠĠĠ", "  \t"], [" ", "\n", "Ċ", "a  "]),
    ("line breaks", ["\n", "Ċ", "ĊĊ", "\n  ", "\r\n"], ["  ", "a\n"]),
    ("capitalised words", ["Hola", "Paris", "Über", "When"], ["paris", "PARIS", "McDonald", "A"]),
    ("ALL-CAPS words", ["NASA", "FBI", "OK"], ["Nasa", "A", "N1"]),
    ("code syntax", ["self", "snake_case", "camelCase", "==", "("], ["cat", "Cat"]),
])
def test_surface_classes_on_whole_words(cls, members, others):
    assert [w for w in members if not W.is_member(w, cls)] == []
    assert [w for w in others if W.is_member(w, cls)] == []


def test_a_word_has_all_its_classes_and_raw_tokens_are_words():
    assert W.classes_of("1999")[:3] == ("years", "integers", "digits and numbers")
    assert W.classes_of(" )") == W.classes_of("Ġ)") == W.classes_of(")")
    assert W.classes_of("Привет")[0] == "Cyrillic script"
    assert W.norm("ĠĠcat ") == "cat" and W.norm("Ċ") == "" and W.raw("Ċĉ") == "\n\t"


@pytest.mark.parametrize(("cls", "members", "others"), [
    ("past tense verbs", ["walked", "ran", "went", "was", "sped", "Walked", "saw", "found"],
     ["red", "bed", "feed", "shed", "put", "hundred", "walk", "taken"]),
    ("past participles", ["walked", "taken", "seen", "gone", "sung", "been"],
     ["red", "bed", "ran", "went", "seed"]),
    ("-ing forms", ["running", "eating", "walking"], ["morning", "evening", "ceiling", "thing",
                                                      "king", "string", "bring", "during"]),
    ("third-person -s verbs", ["runs", "walks", "has", "goes"], ["cats", "news", "bus", "this"]),
    ("plural nouns", ["cats", "dogs", "mice", "children", "axes", "leaves", "glasses"],
     ["news", "species", "bus", "series", "this", "us", "has"]),
    ("comparatives", ["bigger", "faster", "better", "redder"], ["number", "summer", "water",
                                                               "never", "big"]),
    ("superlatives", ["biggest", "fastest", "best"], ["forest", "honest", "big", "west"]),
])
def test_word_forms_are_real_inflections(cls, members, others):
    assert [w for w in members if not W.is_member(w, cls)] == []
    assert [w for w in others if W.is_member(w, cls)] == []


@pytest.mark.parametrize(("cls", "members", "others"), [
    ("nouns", ["table", "dog", "happiness"], ["quickly", "the", "and", "happy", "walked", "ran"]),
    ("verbs", ["walked", "eat", "running"], ["table", "quickly", "is"]),
    ("adjectives", ["happy", "red", "big"], ["table", "quickly", "walked"]),
    ("adverbs", ["quickly", "slowly", "happily"], ["table", "happy", "run"]),
])
def test_parts_of_speech_where_they_are_clear(cls, members, others):
    assert [w for w in members if not W.is_member(w, cls)] == []
    assert [w for w in others if W.is_member(w, cls)] == []


def test_wordnet_senses_without_letters_and_abbreviations():
    assert W.wordnet_senses("W", "n") == () and W.wordnet_senses("OK", "n") == ()
    assert W.wordnet_senses("mph", "n") == () and W.wordnet_senses("ess", "n") == ()
    assert W.wordnet_senses("tungsten", "n") and W.wordnet_senses("okay", "n")
    assert W.abbreviation_only("W") and W.abbreviation_only("mph")
    assert not W.abbreviation_only("tungsten") and not W.abbreviation_only("qzx")
    assert W.plural("hand tool") == "hand tools" and W.plural("day of the week") == \
        "days of the week" and W.plural("clothing") == "clothing"


@pytest.mark.parametrize(("words", "label", "unseen", "outside"), [
    (["walked", "ran", "went"], "past tense verbs", ["jumped", "sang"], ["red", "walk", "bed"]),
    (["taken", "seen", "gone"], "past participles", ["written"], ["ran", "took"]),
    (["bigger", "faster", "taller"], "comparatives", ["smaller"], ["number", "big"]),
    (["(", "[", "{"], "opening brackets", ["(["], [")", ","]),
    ([")", "})", "],"], "closing brackets", [");"], ["(", ",", "()"]),
    (["1999", "2001", "1850"], "years", ["1776"], ["42", "3000"]),
    (["<div>", "</p>", "<br/>"], "markup tags", ["<span>"], ["div", "&amp;"]),
    (["    ", "\t\t", "  "], "indentation", ["ĠĠĠĠ"], [" ", "\n", "a"]),
    (["NASA", "FBI", "CIA"], "ALL-CAPS words", ["IBM"], ["Nasa", "nasa"]),
    (["10:30", "9:15", "23:59"], "times of day", ["7:45"], ["1030", "10"]),
    (["1st", "2nd", "3rd"], "ordinal numbers", ["22nd"], ["first", "2"]),
    (["$", "€", "£"], "currency symbols", ["¥"], ["%", "$5"]),
])
def test_word_classes_name_trigger_words(words, label, unseen, outside):
    name = C.name_tokens(words)
    assert name.label == label, C.candidate_names(words)
    test = C.member(name)
    assert all(test(w) for w in [*words, *unseen]) and not any(test(w) for w in outside)
    assert C.name_violations([(name, words)]) == []


def test_whitespace_examples_are_shown_visibly():
    name = C.name_tokens(["    ", "\t", "  "])
    assert name.label == "indentation" and "␣␣␣␣" in name.phrase() and "\\t" in name.phrase()
    assert W.unshow(W.show("\n  ")) == "\n  " and W.unshow("a␣") == "a␣"
