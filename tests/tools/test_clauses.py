"""Clause tests and edits (``tools/clauses.py``) on a stand-in model whose neuron follows a known
rule, so that each edit can be checked against the truth: a spurious context is dropped and a
causal one kept, a quiet trigger is dropped and a firing word added, a class whose unseen members
stay quiet is dropped, a list whose class fires is named, a facet of quiet words is dropped.
(The same experiments on SmolLM2's planted neurons: ``tests/agents/test_planted_kinds.py``.)"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from neurosleuth.tools import clause_bench, clause_readings, clauses
from neurosleuth.tools.concepts import ConceptName
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.pattern import Pattern

NEURON = NeuronId(0, 0)
PREPOSITIONS = ConceptName("prepositions", ("on", "to"), 1.0, "grammar", "prepositions")


@dataclass
class RuleLM:
    """Words are tokens (with their leading space); the neuron's activation at a token is
    ``rule(words so far)``."""

    rule: object
    vocab: list[str] = field(default_factory=list)
    n_prefix: int = 0

    def encode(self, text: str) -> list[int]:
        out = []
        for w in re.findall(r"\s*[\w'-]+|\s*[^\w\s]|\s+", text):
            if w not in self.vocab:
                self.vocab.append(w)
            out.append(self.vocab.index(w))
        return out

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocab[i] for i in ids)


@pytest.fixture
def measured(monkeypatch):
    def measure_ids(lm, ids, neurons, tokens_per_batch=None):
        out = []
        for seq in ids:
            words = [lm.vocab[i].strip() for i in seq]
            out.append(np.array([[lm.rule(words[: j + 1])] for j in range(len(seq))]))
        return out

    monkeypatch.setattr(clauses, "measure_ids", measure_ids)  # the context clause
    monkeypatch.setattr(clause_bench, "measure_ids", measure_ids)  # words in place of the peak


def contexts(*texts: str) -> list[list[str]]:
    return [re.findall(r"\s*[\w'-]+|\s*[^\w\s]", t) for t in texts]


def token(triggers, required=None, free=1.0, concept=None, facets=()) -> Pattern:
    return Pattern("token", triggers, concept, required or {}, free, facets=tuple(facets))


ANIMALS = {"cat", "dog", "horse"}
OWN = contexts("I saw the cat", "We fed the dog", "He rode the horse", "Look at the cat")


def test_a_context_the_trigger_does_not_need_is_dropped(measured):
    lm = RuleLM(lambda w: 5.0 if w[-1] in ANIMALS else 0.0)
    p = token({"cat": 1.0, "dog": 0.9, "horse": 0.8}, {"the": 0.9}, free=0.2)
    assert p.needs() == ["the"]
    out = clauses.test_clauses(lm, NEURON, p, OWN)
    assert out.changed and not out.pattern.needs()
    test = next(t for t in out.tests if t.clause == "context 'the'")
    assert test.verdict == "fails" and test.edit == "drop the context 'the'"
    assert "keeps 100%" in test.result


def test_a_context_the_trigger_needs_is_kept_with_what_it_keeps(measured):
    lm = RuleLM(lambda w: 5.0 if w[-1] in ANIMALS and len(w) > 1 and w[-2] == "the" else 0.0)
    p = token({"cat": 1.0, "dog": 0.9, "horse": 0.8}, {"the": 0.9}, free=0.2)
    out = clauses.test_clauses(lm, NEURON, p, OWN)
    test = next(t for t in out.tests if t.clause == "context 'the'")
    assert test.verdict == "holds" and test.edit == "keep"
    assert out.pattern.needs() == ["the"]


def test_a_context_the_same_new_sentences_do_without_is_dropped(measured):
    """Deleting 'the' from the own contexts silences the trigger (here: a short fragment), but
    the same new sentences fire as much without it as with it: a co-occurrence, dropped."""
    frame_words = {"wrote", "talked", "came"}  # the words of ``FRAMES``

    def rule(w):
        return 5.0 if w[-1] in ANIMALS and (w[-2:-1] == ["the"] or frame_words & set(w)) else 0.0

    p = token({"cat": 1.0, "dog": 0.9, "horse": 0.8}, {"the": 0.9}, free=0.2)
    out = clauses.test_clauses(RuleLM(rule), NEURON, p, OWN)
    test = next(t for t in out.tests if t.clause == "context 'the'")
    assert "keeps 0%" in test.result and "it keeps 100%" in test.result, test.result
    assert test.verdict == "fails" and not out.pattern.needs()


def test_quiet_triggers_are_dropped_and_firing_words_added(measured):
    fire = ANIMALS | {"cow"}
    lm = RuleLM(lambda w: 5.0 if w[-1] in fire else 0.0)
    p = token({"cat": 1.0, "dog": 0.9, "horse": 0.8, "mat": 0.7})
    out = clauses.test_clauses(lm, NEURON, p, OWN, extra=["cow", "stone"])
    assert "mat" not in out.pattern.triggers and {"cat", "dog", "horse"} <= set(
        out.pattern.triggers)
    assert "cow" in out.pattern.triggers and "stone" not in out.pattern.triggers
    edits = [t.edit for t in out.tests]
    assert "drop 'mat'" in edits and "add 'cow'" in edits


def test_a_reading_of_pieces_drops_quiet_tokens_and_adds_firing_ones(measured):
    """Tokens wherever they stand, each in place of the peak token of the own contexts: a listed
    token that stays quiet there is dropped; a token the read windows fire on beyond the list,
    and a word the deep dive found, are added when they fire, a control is not."""
    fire = {"zq", "xv", "kw", "jy", "qo", "dot"}
    lm = RuleLM(lambda w: 5.0 if w[-1] in fire else 0.0)
    p = replace(token({" zq": 1.0, " xv": 0.9, " kw": 0.8, " mat": 0.7}), unit="piece")
    own = contexts("I saw the zq", "We fed the xv", "He rode the kw", "Look at the zq")
    window = ([" a", " jy", " b"], np.array([0.0, 4.0, 0.0]))  # ' jy' fires, is not listed
    # ' dot' fires in place of the peak, but the read windows hold it often, firing once
    common = ([" dot", " a", " dot", " dot", " dot", " dot"], np.array([4.0, 0, 0, 0, 0, 0]))
    out = clauses.test_clauses(lm, NEURON, p, own, extra=["qo", "stone"],
                               windows=[window, common])
    assert set(out.pattern.triggers) == {" zq", " xv", " kw", " jy", " qo"}, out.tests
    edits = [t.edit for t in out.tests]
    assert edits[-2:] == ["drop ' mat'", "add ' jy', ' qo'"]
    assert out.pattern.unit == "piece" and out.changed and out.forward_passes > 0
    # where every listed token fires, the reading is left as it was
    same = replace(token({" zq": 1.0, " xv": 0.9, " kw": 0.8}), unit="piece")
    kept = clauses.test_clauses(lm, NEURON, same, own, windows=[], add_words=False)
    assert not kept.changed and kept.pattern == same


def test_a_class_whose_unseen_members_stay_quiet_is_dropped(measured):
    lm = RuleLM(lambda w: 5.0 if w[-1] in {"on", "to", "into"} else 0.0)
    p = token({"on": 1.0, "to": 0.9, "into": 0.8}, concept=PREPOSITIONS)
    own = contexts("he sat on", "she went to", "they ran into", "it fell on")
    out = clauses.test_clauses(lm, NEURON, p, own)
    test = next(t for t in out.tests if t.clause == "class 'prepositions'")
    assert test.verdict == "fails" and test.edit.startswith("drop the class")
    assert out.pattern.concept is None and set(out.pattern.triggers) == {"on", "to", "into"}


def test_a_list_whose_class_fires_is_named(measured):
    from neurosleuth.tools.wordclasses import FUNCTION_WORDS

    preps = FUNCTION_WORDS["prepositions"]
    lm = RuleLM(lambda w: 5.0 if w[-1] in preps else 0.0)
    p = token({"on": 1.0, "to": 0.9, "into": 0.8, "from": 0.8})
    own = contexts("he sat on", "she went to", "they ran into", "it came from")
    out = clauses.test_clauses(lm, NEURON, p, own)
    assert out.changed and out.pattern.concept is not None
    assert out.pattern.concept.label == "prepositions"
    assert any(t.edit == "name the class 'prepositions'" for t in out.tests)


def test_a_facet_of_quiet_words_is_dropped_and_a_firing_one_kept(measured):
    lm = RuleLM(lambda w: 5.0 if w[-1] in ANIMALS | {"red", "blue"} else 0.0)
    quiet = token({"park": 1.0, "tower": 0.8})
    colours = token({"red": 1.0, "blue": 0.9})
    p = token({"cat": 1.0, "dog": 0.9, "horse": 0.8}, facets=[quiet, colours])
    out = clauses.test_clauses(lm, NEURON, p, OWN)
    assert out.pattern.facets == (colours,)
    verdicts = {t.clause: (t.verdict, t.edit) for t in out.tests if t.clause.startswith("facet")}
    assert verdicts["facet 'park', 'tower'"] == ("fails", "drop the facet")
    assert verdicts["facet 'red', 'blue'"][1] == "keep"


def test_every_clause_that_holds_leaves_the_pattern_as_it_was(measured):
    lm = RuleLM(lambda w: 5.0 if w[-1] in ANIMALS else 0.0)
    p = token({"cat": 1.0, "dog": 0.9, "horse": 0.8})
    out = clauses.test_clauses(lm, NEURON, p, OWN)
    assert not out.changed and out.pattern is p and out.forward_passes > 0
    assert clauses.test_clauses(lm, NEURON, Pattern("none", {}, None, {}, 0.0), OWN).tests == ()


def test_a_facet_of_the_main_class_is_merged_into_it(measured):
    from neurosleuth.tools.wordclasses import FUNCTION_WORDS

    preps = FUNCTION_WORDS["prepositions"]
    lm = RuleLM(lambda w: 5.0 if w[-1] in preps else 0.0)
    main = token({"on": 1.0, "to": 0.9}, concept=PREPOSITIONS)
    facet = token({"into": 0.8, "from": 0.7}, concept=PREPOSITIONS)
    own = contexts("he sat on", "she went to", "they ran into", "it came from")
    out = clauses.test_clauses(lm, NEURON, replace(main, facets=(facet,)), own)
    assert out.pattern.facets == () and set(out.pattern.triggers) == {"on", "to", "into", "from"}
    assert any(t.edit == "merge the facet into 'prepositions'" for t in out.tests)


def test_a_class_of_words_is_not_read_as_a_kind_of_text(measured, monkeypatch):
    """A neuron whose windows are one language but whose words a class names keeps the class:
    the kind test runs only for word readings without one."""
    asked = []
    monkeypatch.setattr(clause_readings, "compare_kind", lambda lm, n, kind: asked.append(kind))
    monkeypatch.setattr(clause_readings, "context_of", lambda tokens: "French text")
    lm = RuleLM(lambda w: 5.0 if w[-1] in {"on", "to", "into"} else 0.0)
    words = [f" w{i}" for i in range(12)]
    windows = [(words, np.array([5.0] * 10 + [0.0] * 2))] * 3
    named = token({"on": 1.0, "to": 0.9, "into": 0.8}, concept=PREPOSITIONS)
    own = contexts("he sat on", "she went to", "they ran into")
    clauses.test_clauses(lm, NEURON, named, own, windows=windows)
    assert asked == []
    clauses.test_clauses(lm, NEURON, replace(named, concept=None), own, windows=windows)
    assert asked == ["French text"]


def test_a_refuted_class_gives_way_to_a_narrower_one_that_fires(measured):
    """A neuron for musical instruments read as "objects" (the broad class that covers every
    trigger): unseen objects stay quiet, so the class is refuted, and the narrower class of the
    same words whose unseen members fire is named in its place."""
    from neurosleuth.tools.concepts import candidate_names, in_synset

    words = ["guitar", "violin", "piano", "drum"]
    broad = next(c for c in candidate_names(words, [1.0] * 4, limit=6) if c.label == "objects")
    lm = RuleLM(lambda w: 5.0 if in_synset(w[-1].lower(), "musical_instrument.n.01") else 0.0)
    p = token(dict(zip(words, (1.0, 0.9, 0.8, 0.8), strict=True)), concept=broad)
    own = contexts("he played the guitar", "she tuned the violin", "a new piano", "the drum")
    out = clauses.test_clauses(lm, NEURON, p, own)
    edits = {t.clause: (t.verdict, t.edit) for t in out.tests}
    assert edits["class 'objects'"][0] == "fails", out.tests
    assert out.pattern.concept is not None and "instrument" in out.pattern.concept.label
    assert set(out.pattern.triggers) >= set(words)
