"""The evidence explainer: known answers of prune / importance / augment on hand-set activation
functions, and planted neurons (``tests/planted.py``) whose concept it must name and whose right
hypothesis must score above wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

from neurosleuth.score.records import explain_held_out
from neurosleuth.score.run import ScoreConfig, score_hypothesis
from neurosleuth.score.writer import HeuristicWriter
from neurosleuth.tools import explain as E
from neurosleuth.tools.concepts import member
from neurosleuth.tools.measure import measure
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.records import Record
from neurosleuth.tools.scan_config import ScanConfig
from neurosleuth.tools.wordnet import wordnet_status
from tests.fixtures import WORDS, tiny_random_lm, token_id
from tests.planted import plant

COLORS = {token_id(w) for w in ("red", "blue", "green")}


def _texts(rng, n=60):
    vocab = [w for w in WORDS[3:]]
    return [" ".join(rng.choice(vocab, size=8)) for _ in range(n)]


@pytest.fixture(scope="module")
def colour_lm():
    """A 1-layer tiny model (attention writes nothing, so the MLP reads the token alone) whose
    neuron 3 is planted on the colour words."""
    lm = tiny_random_lm(seed=3, n_layers=1, d_model=64)
    lm.model.original_model.model.layers[0].self_attn.o_proj.weight.data.zero_()
    rng = np.random.default_rng(0)
    texts = _texts(rng) + [f"the {c} {w}" for c in ("red", "blue", "green")
                           for w in ("cat", "park", "dog", "mat", "king", "tower")]
    plant(lm, 0, 3, texts, lambda i, ids: ids[i] in COLORS)
    return lm


def test_wordnet_is_installed():
    """``make install`` installs WordNet (``make wordnet``); the naming tests below need it."""
    assert wordnet_status().startswith("WordNet 3.0"), wordnet_status()


def test_planted_neuron_fires_on_its_concept(colour_lm):
    res = measure(colour_lm, ["the cat sat on the red mat", "a dog ran to the green park"],
                  NeuronId(0, 3))
    assert res.max_token(0) == "red" and res.max_token(1) == "green"


def test_explainer_names_the_planted_colour_concept(colour_lm):
    n = NeuronId(0, 3)
    texts = ["the cat is red", "a big blue", "the dog sat in green", "he ran to the red"]
    ex = E.explain(colour_lm, n, texts)
    assert {"red", "blue", "green"} <= set(ex.pattern.triggers)
    assert "color" in ex.sentence.lower()
    assert member(ex.pattern.concept)(" purple")  # a colour it never saw
    assert not member(ex.pattern.concept)(" cat")
    sim = ex.pattern.simulate(["the", " purple", " cat"])
    assert sim[1] > 0 and sim[0] == 0 and sim[2] == 0
    assert ex.to_dict()["pattern"]["kind"] == "token"


def test_the_deep_dive_is_an_explainer(colour_lm):
    """``DeepDive`` reads records as ``explain`` reads windows and the texts cut at their peak;
    through ``explain_held_out`` it is scored on the records it did not see."""
    n = NeuronId(0, 3)
    texts = ["the cat is red", "a big blue dog", "the dog sat in green", "he ran to the red",
             "my blue car", "a green park", "the red king", "one blue mat"]
    res = measure(colour_lm, texts, n)
    top = sorted((Record(tuple(res.tokens[i]), res.per_token(i, n).astype(float))
                  for i in range(len(texts))), key=lambda r: -r.max)
    cut = ["".join(r.tokens[: int(np.argmax(r.acts)) + 1]) for r in top]
    ex = E.DeepDive(colour_lm, n)(top)
    by_hand = E.explain(colour_lm, n, cut, [r.pair() for r in top])
    assert (ex.sentence, ex.details, ex.pattern) == (by_hand.sentence, by_hand.details,
                                                      by_hand.pattern)
    held = explain_held_out(E.DeepDive(colour_lm, n), top)
    assert "color" in held.explanation.sentence.lower() and held.top == top[1::2]
    assert held.score(n_boot=0).r > 0.5


def test_prune_importance_augment_known_answers(monkeypatch, colour_lm):
    """A hand-set activation: 4.0 at a last token 'red' when 'on' is among the two before it,
    0.4 for 'red' without it, 3.0 for 'blue' after 'on'; everything else 0."""
    on, red, blue = token_id("on"), token_id("red"), token_id("blue")

    def last_act(lm, seqs, neuron):
        out = []
        for s in seqs:
            ctx = on in s[-3:-1]
            out.append({red: 4.0 if ctx else 0.4, blue: 3.0 if ctx else 0.3}.get(s[-1], 0.0))
        return np.array(out)

    monkeypatch.setattr(E, "_last_acts", last_act)
    cfg = E.ExplainConfig()
    ids = [token_id(w) for w in "the cat sat on the red".split()]
    pruned = E.prune(colour_lm, NeuronId(0, 3), [("", ids, 4.0)], cfg)
    assert pruned[0][0] == ids[-3:] and pruned[0][1] == 4.0  # 'on the red': shortest that keeps
    imp = E.importance(colour_lm, NeuronId(0, 3), pruned)
    assert imp[0] == [pytest.approx(0.9), 0.0]  # deleting 'on' costs 90%, 'the' nothing
    monkeypatch.setattr(E, "neighbours", lambda lm, t, k, banned: [blue, token_id("cat")])
    subs = E.augment(colour_lm, NeuronId(0, 3), pruned, imp, cfg)
    peak = {s.token: s.fires for s in subs if s.where == "peak"}
    assert peak["blue"] is True and peak["cat"] is False
    assert any(s.where == "context" and s.original == "on" and not s.fires for s in subs)


def test_right_hypothesis_beats_wrong_ones_on_the_planted_neuron(colour_lm, tmp_path):
    rng = np.random.default_rng(1)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(_texts(rng, 300)))
    config = ScoreConfig(ScanConfig(corpus=str(corpus), window=16, max_tokens=4000), baseline=8,
                         n_boot=300)
    n, cache = NeuronId(0, 3), {}

    def margin(text):
        r = score_hypothesis(colour_lm, n, text, config=config, cache=cache,
                             writer=HeuristicWriter(str(n), colour_lm.name), control="")
        return r.margin.value, r.margin.lo

    right, right_lo = margin("Fires on colors (purple, pink).")  # names the concept only
    for wrong in ("Fires on animals (cat, dog).", "Fires on the tokens 'king', 'queen'."):
        assert margin(wrong)[0] < right - 0.15
    assert right_lo > 0.1


def test_neighbours_are_the_nearest_by_cosine_and_memoised():
    import torch

    from neurosleuth.tools.readout import embedding_weights

    lm = tiny_random_lm(seed=5, n_layers=1, d_model=32)
    w = torch.nn.functional.normalize(embedding_weights(lm)[0].float(), dim=-1)
    tok = token_id("cat")
    brute = [t for t in torch.argsort(w @ w[tok], descending=True).tolist() if t != tok]
    assert E.neighbours(lm, tok, 5, set()) == brute[:5]
    assert E.neighbours(lm, tok, 3, {brute[0]}) == brute[1:4]  # banned tokens are skipped
    assert tok in E._NEAR[lm][1]  # memoised per model and token
    lm.model.W_E.data.zero_()  # the memo answers, not the (changed) weights
    assert E.neighbours(lm, tok, 5, set()) == brute[:5]
