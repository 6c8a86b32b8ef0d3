"""Activation records with no model: the three formats round-trip, bad files give one line, and
the records explainer names a planted neuron's concept from its measured records alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from neurosleuth.score import stats
from neurosleuth.score.records import explain_held_out, simulation_r, split
from neurosleuth.tools.correlation import pearson
from neurosleuth.tools.explain import variants
from neurosleuth.tools.measure import measure
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.pattern import Pattern
from neurosleuth.tools.records import (
    FORMATS,
    NeuronRecords,
    Record,
    RecordsError,
    read,
    to_openai,
    write,
)
from neurosleuth.tools.records_explain import (
    RecordsExplainer,
    explain_records,
    held_apart_r,
    records_pattern,
)
from tests.fixtures import WORDS
from tests.tools.test_explain import colour_lm  # noqa: F401  (the planted tiny model)

NEURON = NeuronId(0, 3)


@pytest.fixture(scope="module")
def colour_records(colour_lm):  # noqa: F811
    """The planted colour neuron's real records: the 20 strongest of 200 random texts of the
    tiny vocabulary ('red' is the strongest colour by a little, so they all hold 'red', as a
    real top list can be all one token) and a random sample of 20 of the others."""
    rng = np.random.default_rng(1)
    vocab = list(WORDS[3:])
    texts = [" ".join(rng.choice(vocab, size=10)) for _ in range(200)]
    res = measure(colour_lm, texts, NEURON)
    recs = [Record(tuple(res.tokens[i]), res.per_token(i, NEURON).astype(float))
            for i in range(len(texts))]
    order = np.argsort([-r.max for r in recs])
    sample = rng.choice(order[20:], size=20, replace=False)
    return NeuronRecords(str(NEURON), [recs[i] for i in order[:20]], [recs[i] for i in sample],
                         "tiny")


def test_records_explainer_names_the_planted_concept(colour_records):
    held = explain_held_out(RecordsExplainer(str(NEURON)), colour_records.top,
                            colour_records.random)
    ex = held.explanation
    assert {"red", "blue", "green"} <= set(ex.pattern.triggers), ex.pattern.triggers
    assert "color" in ex.sentence.lower(), ex.sentence
    assert ex.forward_passes == 0 and ex.pattern.kind == "token"
    # scored on held-out records: the explanation simulates the neuron, a wrong one does not
    right = held.score()
    wrong = held.score(lambda toks: np.array([float(t.strip() == "cat") for t in toks]))
    assert right.r > 0.8 and right.lo > wrong.hi, (right, wrong)
    assert len(variants(ex)) == 2  # the concept and its token list


def test_explain_held_out_is_the_one_split(colour_records):
    """Alternate ranks of the top records that fire and of the random ones: the explainer sees
    one half, the score the other; a top record that never fires is in neither."""
    dead = Record((" the", " cat"), np.array([0.0, -0.5]))
    top, rand = colour_records.top, colour_records.random
    seen = []

    def explainer(t, o):
        seen.append((list(t), list(o)))
        return explain_records(t, o, str(NEURON))

    held = explain_held_out(explainer, [*top, dead], rand)
    assert seen == [(top[0::2], rand[0::2])]
    assert (held.learned_top, held.learned_random) == (top[0::2], rand[0::2])
    assert (held.top, held.random) == (top[1::2], rand[1::2]) == (split(top)[1], split(rand)[1])
    # the same numbers as explaining and scoring by hand
    by_hand = simulation_r(explain_records(top[0::2], rand[0::2], str(NEURON)).pattern.simulate,
                           top[1::2], rand[1::2], seed=4, n_boot=100)
    assert held.score(seed=4, n_boot=100) == by_hand


def test_a_constant_reading_ranks_as_the_worst_r():
    """Pearson is undefined (nan) for a constant simulation; choosing a reading counts it as -1,
    so a reading that correlates at all is preferred and the choice is never left to nan."""
    flat = Pattern("token", {}, None, {}, 1.0)
    recs = [Record((" a", " b"), np.array([0.0, 1.0]))]
    assert np.isnan(held_apart_r([(flat, recs)])) and np.isnan(pearson([1.0, 1.0], [0.0, 1.0]))
    assert stats.pearson is pearson


def test_required_context_needs_occurrences_without_it():
    """'york' fires only after 'new': required, with the token keeping ~nothing alone; a
    context that is always there is not called required."""
    def rec(words, on):
        toks = tuple(" " + w for w in words)
        return Record(toks, np.array([5.0 if i in on else 0.0 for i in range(len(words))]))

    top = [rec([w, "new", "york", "today"], {2}) for w in ("in", "to", "from", "near", "at")]
    others = [rec(["old", "york", "was", "here"], set()) for _ in range(6)]
    ex = explain_records(top, others)
    assert set(ex.pattern.required) == {"new"} and ex.pattern.context_free == 0.0
    assert ex.sentence.endswith("mostly after 'new'."), ex.sentence
    sim = ex.pattern.simulate([" new", " york", " old", " big", " the", " york"])
    assert sim[1] > 0.4 and sim[5] <= 0.2 * sim[1] + 1e-9  # expected value, cut without 'new'
    ex = explain_records(top)  # never seen without 'new': no evidence that it is needed
    assert ex.pattern.required == {} and ex.pattern.context_free == 1.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_round_trips_with_the_same_scores(colour_records, tmp_path, fmt):
    path = write(tmp_path / f"r.{fmt}", [colour_records], fmt)
    (back,) = read(path)
    assert back.neuron == "0:3" and len(back.top) == 20 and len(back.random) == 20
    for a, b in zip(colour_records.top + colour_records.random, back.top + back.random,
                    strict=True):
        assert a.tokens == b.tokens and np.allclose(a.acts, b.acts, atol=1e-6)
    ex = explain_records(colour_records.top[0::2])
    before = simulation_r(ex.pattern.simulate, colour_records.top, colour_records.random)
    after = simulation_r(ex.pattern.simulate, back.top, back.random)
    assert after.r == pytest.approx(before.r, abs=1e-6)
    assert (after.lo, after.hi) == pytest.approx((before.lo, before.hi), abs=1e-6)


def test_several_neurons_in_one_file(tmp_path):
    a = NeuronRecords("1:2", [Record((" a", " b"), np.array([0.0, 2.0]))])
    b = NeuronRecords("4:5", [Record((" c",), np.array([1.0]))],
                      [Record((" d",), np.array([0.5]))])
    for fmt in FORMATS:
        back = read(write(tmp_path / f"two.{fmt}", [a, b], fmt))
        assert [(n.neuron, len(n.top), len(n.random)) for n in back] == [("1:2", 1, 0),
                                                                          ("4:5", 1, 1)]


def test_external_shapes_are_read(tmp_path):
    """What the other tools write: a Neuronpedia feature export (no random sample, the layer as
    "6-mlp") and OpenAI records with quantile samples and a bare list of records."""
    np_export = {"modelId": "gpt2-small", "layer": "6-mlp", "index": "17", "explanations": [],
                 "activations": [{"tokens": ["a", "b"], "values": [0.1, 3.0], "maxValue": 3.0,
                                  "maxValueTokenIndex": 1, "dataIndex": 7},
                                 {"tokens": ["c"], "values": [5.0], "maxValue": 5.0}]}
    (tmp_path / "np.json").write_text(json.dumps(np_export))
    (nr,) = read(tmp_path / "np.json")
    assert (nr.neuron, nr.model, len(nr.top), nr.random) == ("6:17", "gpt2-small", 2, [])
    assert nr.top[0].tokens == ("c",)  # strongest first
    oa = to_openai(NeuronRecords("2:9", [Record(("x",), np.array([1.0]))]))
    oa["random_sample_by_quantile"] = [[{"tokens": ["q"], "activations": [0.2]}]]
    (tmp_path / "oa.json").write_text(json.dumps(oa))
    assert [r.tokens for r in read(tmp_path / "oa.json")[0].random] == [("q",)]
    (tmp_path / "list.json").write_text(json.dumps([{"tokens": ["z"], "activations": [1]}]))
    assert read(tmp_path / "list.json")[0].top[0].tokens == ("z",)


@pytest.mark.parametrize("content, message", [
    ('{"most_positive_activation_records": [{"tokens": ["a", "b"], "activations": [1]}]}',
     "bad.json: record 1 (most_positive_activation_records[0]): field 'activations': 1 values "
     "for 2 tokens"),
    ('{"most_positive_activation_records": [{"tokens": ["a"], "activations": [1]}, '
     '{"tokens": ["a"]}]}',
     "bad.json: record 2 (most_positive_activation_records[1]): field 'activations' is missing"),
    ('{"activations": [{"tokens": ["a"], "values": ["x"]}]}',
     "bad.json: record 1 (activations[0]): field 'values' holds 'x', not a finite number"),
    ('{"most_positive_activation_records": [{"tokens": ["a", "b"], "activat',
     "bad.json: not valid JSON"),
    ('{"neuron": "1:2", "tokens": ["a"], "activations": [1.0]}\n{"tokens": ["b"], "activ',
     "bad.json: record 2 (line 2): not valid JSON"),
    ('{"tokens": [1], "activations": [1.0]}',
     "bad.json: record 1 (item 0): field 'tokens' holds a value that is not a string"),
    ('{"rows": []}', "bad.json: not a records file"),
])
def test_a_bad_file_gives_one_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(RecordsError) as err:
        read(path)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_cli_explains_and_scores_records_with_no_model(colour_records, tmp_path):
    from neurosleuth.cli import app

    path = write(tmp_path / "r.jsonl", [colour_records], "jsonl")
    out = tmp_path / "ex.json"
    res = CliRunner().invoke(app, ["explain", "--records", str(path), "--json", str(out)],
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    (got,) = json.loads(out.read_text())
    assert "color" in got["explanation"].lower() and got["scores"][0]["r"] > 0.8
    assert got["learned_from"] == {"top": 10, "random": 10}
    res = CliRunner().invoke(app, ["score", "--records", str(path), "--hypothesis",
                                   "colour words", "--json", str(out)], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["r"] > 0.8  # the concept the hypothesis names
    truncated = tmp_path / "t.json"
    truncated.write_text(path.read_text()[:50])
    res = CliRunner().invoke(app, ["explain", "--records", str(truncated)])
    assert res.exit_code == 2 and "t.json" in res.output and "truncated" in res.output
    res = CliRunner().invoke(app, ["score", "--records", str(path), "--hypothesis", "x",
                                   "--neuron", "9:9"])
    assert res.exit_code == 2 and "no records for neuron 9:9" in res.output


def test_pooled_r_from_sums_is_pearson_over_all_tokens():
    rng = np.random.default_rng(3)
    top = [Record(tuple("abcdefgh"[: n]), rng.normal(size=n)) for n in (5, 8, 3)]
    rand = [Record(tuple("abcd"), rng.normal(size=4)) for _ in range(4)]
    sim = lambda toks: np.array([ord(t) % 5 for t in toks], dtype=float)  # noqa: E731
    s = simulation_r(sim, top, rand, n_boot=50)
    recs = top + rand
    expected = np.corrcoef(np.concatenate([sim(list(r.tokens)) for r in recs]),
                           np.concatenate([r.acts for r in recs]))[0, 1]
    assert s.r == pytest.approx(expected, abs=1e-9) and s.lo <= s.r <= s.hi
    assert np.isnan(simulation_r(lambda toks: np.zeros(len(toks)), top, rand).r)


@pytest.mark.parametrize("others_fire, concept", [(True, True), (False, False)])
def test_the_records_decide_between_a_concept_and_its_list(others_fire, concept):
    """Half the records name the concept from 'red' and 'blue'; the other half hold colours the
    first never saw: when they fire the concept stays, when they do not the list is the answer."""
    def rec(words, fire):
        return Record(tuple(" " + w for w in words),
                      np.array([5.0 if w in fire else 0.0 for w in words]))

    seen, unseen = {"red", "blue"}, {"green", "yellow", "purple", "orange"}
    fire = seen | (unseen if others_fire else set())
    filler = "the car was near our house and a dog sat by it".split()
    top = []
    for i in range(12):  # the 1st, 3rd, ... hold a seen colour; the 2nd, 4th, ... an unseen too
        words = [*filler[:5], sorted(seen)[i // 2 % 2], *filler[5:]]
        if i % 2:
            words[8] = sorted(unseen)[i // 2 % len(unseen)]
        top.append(rec(words, fire))
    ex = explain_records(top, [rec(filler, fire) for _ in range(4)])
    named = ex.pattern.concept is not None and "color" in ex.sentence.lower()
    assert named == concept, ex.sentence


def test_two_required_contexts_that_cover_every_occurrence():
    """'york' fires after 'new' or 'in' and every occurrence has one of them: context_free is
    still a number (from the context whose absence costs least), never nan."""
    def rec(words, on):
        return Record(tuple(" " + w for w in words),
                      np.array([5.0 if i in on else 0.0 for i in range(len(words))]))

    top = ([rec(["in", "new", "york"], {2})] * 4 + [rec(["x", "new", "york"], {2}),
                                                     rec(["x", "in", "york"], {2})])
    others = [rec(["x", "new", "york"], set())] * 3 + [rec(["x", "in", "york"], set())] * 3
    pattern = records_pattern(top, others, decide=False)  # the context as learned, not chosen
    assert set(pattern.required) == {"new", "in"}  # each lifts it; together they cover all
    assert not np.isnan(pattern.context_free) and 0.0 <= pattern.context_free <= 0.5
