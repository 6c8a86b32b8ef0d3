"""The records explainer reads words, word forms, surface classes and kinds of text: planted
neurons of each kind that made explanations fail (words split into pieces, a class left as its
member list, a spurious context, verb forms, brackets, another language, markup), each made as a
researcher's hand-made records would be, and each scored on held-out records with members the
explainer never saw."""

from __future__ import annotations

import numpy as np
import pytest

from neurosleuth.score.records import simulation_r
from neurosleuth.tools.records import Record
from neurosleuth.tools.records_explain import explain_records, folds
from neurosleuth.tools.words import FIRST, LAST, MIDDLE, WHOLE, words_of

# no member of any planted class (no past tense, no bracket, no tool) among the filler words
FILLER = ("the man says that we can see it from here and then they go home after a long day "
          "at work while it is still early in the year").split()


def sentence(rng, word_pieces: list[str] | None, length: int = 16) -> tuple[list[str], int]:
    """Filler words with one target word (its pieces) at a random place: (tokens, index of its
    last piece)."""
    words = [" " + w for w in rng.choice(FILLER, size=length)]
    if word_pieces is None:
        return words, -1
    at = int(rng.integers(2, length - 2))
    tokens = words[:at] + word_pieces + words[at:]
    return tokens, at + len(word_pieces) - 1


def planted(members: list[list[str]], rng, n: int = 24, on_last: bool = True,
            others: int = 24) -> tuple[list[Record], list[Record]]:
    """Top records, one member each (firing on its last piece, 4-6), and random records of
    filler (nothing fires)."""
    top = []
    order = [members[i % len(members)] for i in range(n)]
    for i in rng.permutation(n):
        pieces = order[i]
        tokens, at = sentence(rng, pieces)
        acts = np.abs(rng.normal(0, 0.1, len(tokens)))
        acts[at if on_last else at - len(pieces) + 1] = rng.uniform(4, 6)
        top.append(Record(tuple(tokens), acts))
    rand = [Record(tuple(t), np.abs(rng.normal(0, 0.1, len(t))))
            for t, _ in (sentence(rng, None) for _ in range(others))]
    return top, rand


def explained(members, test_members, seed=0, n=24):
    """Explain from the records of ``members``; score on records of ``test_members`` (never
    seen) against the same filler."""
    rng = np.random.default_rng(seed)
    top, rand = planted(members, rng, n=n)
    ex = explain_records(top, rand)
    held, held_rand = planted(test_members, rng, n=12)
    return ex, simulation_r(ex.pattern.simulate, held, held_rand, n_boot=0)


def test_words_are_rebuilt_from_pieces_spaces_and_markup():
    ws = words_of([" The", " fing", "ert", "ips", " of", " 1", "9", "9", "9", "."])
    assert [w.text for w in ws.words] == ["The", "fingertips", "of", "1999", "."]
    assert ws.position[1:4] == (FIRST, MIDDLE, LAST) and ws.position[0] == WHOLE
    assert ws.previous(3) == ["The"]  # the pieces of the word itself are not its context
    tags = words_of(["<", "div", ' class="', "a", '">', "Hello", "</", "p", ">"])
    assert [w.text for w in tags.words] == ['<div class="a">', "Hello", "</p>"]
    assert [w.text for w in words_of([" walk", "ed", " 3", ".", "14", "%"]).words] == \
        ["walked", "3.14%"]
    spm = words_of(["▁the", "▁cat"])  # SentencePiece marks are kept as such, not split
    assert len(spm.words) == 2
    assert [w.text for w in words_of(["red", "cat", "sat"]).words] == ["red", "cat", "sat"]


def test_a_class_of_split_words_is_named_on_whole_words():
    """(a) tools split into pieces, firing on the last piece: triggers are words, the class is
    named, and the first piece of the same word is not called context."""
    seen = [[" ham", "mer"], [" wren", "ch"], [" chis", "el"], [" screw", "driver"],
            [" pl", "iers"], [" sc", "alpel"]]
    unseen = [[" mal", "let"], [" hack", "saw"], [" tro", "wel"], [" dr", "ill"]]
    ex, score = explained(seen, unseen)
    assert len({"hammer", "wrench", "chisel", "screwdriver", "pliers", "scalpel"}
               & set(ex.pattern.triggers)) >= 3, ex.pattern.triggers
    assert "tool" in ex.sentence.lower() or "implement" in ex.sentence.lower(), ex.sentence
    assert "mostly after" not in ex.sentence, ex.sentence
    assert ex.pattern.where == "end"
    assert score.r > 0.5, (score, ex.sentence)


def test_a_wordnet_class_beats_its_complete_member_list():
    """(b) six members sharing a hypernym, seen in every record half: the class, not the list."""
    seen = [[" violin"], [" trumpet"], [" piano"], [" flute"], [" drum"], [" guitar"]]
    ex, score = explained(seen, [[" cello"], [" clarinet"], [" harp"]])
    assert "instrument" in ex.sentence.lower(), ex.sentence
    assert not ex.pattern.bare_list()
    assert score.r > 0.5, (score, ex.sentence)


def test_no_spurious_context_for_members_that_fire_anywhere():
    """(c) members fire wherever they stand: no "mostly after" clause."""
    seen = [[" lion"], [" tiger"], [" wolf"], [" bear"], [" fox"], [" deer"]]
    for seed in range(3):
        ex, _ = explained(seen, [[" otter"], [" badger"]], seed=seed)
        assert "mostly after" not in ex.sentence, ex.sentence


def test_a_verb_form_is_named_not_its_pieces():
    """(d) past-tense verbs, several split into stem + 'ed': the word form."""
    seen = [[" jump", "ed"], [" walk", "ed"], [" smil", "ed"], [" travel", "led"],
            [" stop", "ped"], [" laugh", "ed"], [" ask", "ed"], [" play", "ed"]]
    unseen = [[" clean", "ed"], [" open", "ed"], [" watch", "ed"], [" pull", "ed"]]
    ex, score = explained(seen, unseen)
    assert "past" in ex.sentence.lower(), ex.sentence
    assert "'ed'" not in ex.sentence and "'ped'" not in ex.sentence, ex.sentence
    assert score.r > 0.5, (score, ex.sentence)


def test_closing_brackets_are_a_class():
    """(e) closing brackets of several kinds: the Unicode class, and an unseen one fires."""
    ex, score = explained([[")"], ["]"], ["}"], ["⟩"]], [["〕"], ["）"], [")"]])
    assert "closing" in ex.sentence.lower() and "bracket" in ex.sentence.lower(), ex.sentence
    assert score.r > 0.5, (score, ex.sentence)


SPANISH = ("El río pasa por la ciudad y los niños juegan en la plaza cada tarde. La casa de mi "
           "abuela tiene un jardín muy grande con árboles y flores. Los estudiantes leen libros en "
           "la biblioteca porque quieren aprender mucho sobre la historia del país. Nosotros "
           "comemos juntos los domingos y hablamos de nuestras familias.").split()


def spanish_records(rng, n: int) -> list[Record]:
    out = []
    for _ in range(n):
        at = int(rng.integers(0, len(SPANISH) - 24))
        tokens = [" " + w for w in SPANISH[at: at + 24]]
        out.append(Record(tuple(tokens), rng.uniform(2, 4, len(tokens))))
    return out


def test_text_in_another_language_is_named_as_such():
    """(f) every token of Spanish prose fires a little: the kind of text, not 'Los', 'La'."""
    rng = np.random.default_rng(0)
    top = spanish_records(rng, 16)
    rand = [Record(tuple(t), np.abs(rng.normal(0, 0.1, len(t))))
            for t, _ in (sentence(rng, None) for _ in range(24))]
    ex = explain_records(top, rand)
    assert "spanish" in ex.sentence.lower(), ex.sentence
    held = spanish_records(rng, 8)
    held_rand = [Record(tuple(t), np.zeros(len(t)))
                 for t, _ in (sentence(rng, None) for _ in range(8))]
    assert simulation_r(ex.pattern.simulate, held, held_rand, n_boot=0).r > 0.8


@pytest.mark.parametrize("tags", [[["<", "div", ">"], ["<", "p", ">"], ["</", "span", ">"],
                                   ["<", "li", ">"], ["</", "a", ">"], ["<", "br", "/>"]]])
def test_markup_tags_are_a_class(tags):
    """(f) tags in pieces ('<', 'div', '>'), firing on the closing '>': markup tags."""
    ex, score = explained(tags, [["<", "table", ">"], ["</", "td", ">"], ["<", "h1", ">"]])
    assert "tag" in ex.sentence.lower() or "markup" in ex.sentence.lower(), ex.sentence
    assert score.r > 0.5, (score, ex.sentence)


def test_facets_of_a_polysemantic_neuron():
    """Weekdays and closing brackets, half the records each: two facets (or a mixture of two
    classes), each named, and the reading simulates both kinds of held-out record."""
    days = [[" Monday"], [" Tuesday"], [" Wednesday"], [" Thursday"], [" Friday"]]
    brackets = [[")"], ["]"], ["}"], ["⟩"]]
    ex, score = explained(days + brackets, [[" Saturday"], [" Sunday"], ["）"], [")"]], n=48)
    text = ex.sentence.lower()
    assert "; also on" in text or ex.pattern.concept.source == "mixture", ex.sentence
    assert ("weekday" in text or "day" in text) and "bracket" in text, ex.sentence
    assert score.r > 0.5, (score, ex.sentence)


def test_a_neuron_that_reads_a_piece_is_read_as_tokens():
    """Fires on the single-letter piece that starts a word (' s' of 'sane', 'snake' ...): no
    word recurs, the piece does: the reading of pieces wins, and it predicts new words."""
    ends = ("ane nake ighed cone lope warm ket nug pree crap mog nob lab quat wig tag pud rub "
            "lurp nack crim plat quib trop vel wab yod zet brin cug").split()
    rng = np.random.default_rng(0)
    top, rand = planted([[" s", e] for e in ends], rng, n=len(ends), on_last=False)
    ex = explain_records(top, rand)  # each word once, firing on its first piece
    held, held_rand = planted([[" s", "wirl"], [" s", "lid"], [" s", "quid"]], rng, n=12,
                              on_last=False)
    score = simulation_r(ex.pattern.simulate, held, held_rand, n_boot=0)
    assert ex.pattern.unit == "piece" and "'s'" in ex.sentence, ex.sentence
    assert "whatever word" in ex.sentence
    assert score.r > 0.5, (score, ex.sentence)


def test_a_word_that_fires_inside_is_simulated_on_the_piece_it_fires_on():
    """Code identifiers that fire on a middle piece ('all' of 'PyMem_RawMalloc') while most
    words fire on their last: the reading keeps the piece each word fires on, the sentence says
    it, and held-out occurrences of those words are predicted on that piece, not on the last."""
    words = [[" Py", "Mem", "_Raw", "M", "all", "oc"], [" Py", "Mem", "_Setup", "Deb", "ug"],
             [" number", "2", "symbol"], [" undo", "block"]]
    peak = {0: 4, 1: 3, 2: 2, 3: 1}  # the piece each fires on

    def records(rng, n):
        top = []
        for i in range(n):
            pieces = words[i % len(words)]
            tokens, last = sentence(rng, pieces)
            acts = np.abs(rng.normal(0, 0.1, len(tokens)))
            acts[last - len(pieces) + 1 + peak[i % len(words)]] = rng.uniform(4, 6)
            top.append(Record(tuple(tokens), acts))
        return top, [Record(tuple(t), np.abs(rng.normal(0, 0.1, len(t))))
                     for t, _ in (sentence(rng, None) for _ in range(n))]

    rng = np.random.default_rng(3)
    top, rand = records(rng, 24)
    ex = explain_records(top, rand)
    assert ex.pattern.at.get("PyMem_RawMalloc") == "all", ex.pattern.at
    assert ex.pattern.at.get("PyMem_SetupDebug") == "Deb" and "undoblock" not in ex.pattern.at
    assert "(at 'all')" in ex.sentence or "(at 'Deb')" in ex.sentence, ex.sentence
    sim = ex.pattern.simulate([" x", " Py", "Mem", "_Raw", "M", "all", "oc", " y"])
    assert sim[5] > 0.5 and sim[6] == 0.0, sim
    held_top, held_rand = records(rng, 12)
    assert simulation_r(ex.pattern.simulate, held_top, held_rand, n_boot=0).r > 0.8


def test_readings_are_judged_on_four_folds():
    """Each fold learns from three quarters of the records and is judged on the fourth."""
    def rec(n):
        return Record(tuple(" w" for _ in range(n)), np.zeros(n))

    top = [rec(20) for _ in range(8)]
    others = [rec(3) for _ in range(8)] + [rec(1) for _ in range(4)]
    split = folds(top, others)
    assert len(split) == 4
    for learn_top, learn_others, held in split:
        assert sorted(len(r.tokens) for r in held) == [1, 3, 3, 20, 20]
        assert len(learn_top) == 6 and len(learn_others) == 9
