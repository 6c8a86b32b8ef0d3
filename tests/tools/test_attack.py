"""attack() and minimal_edits(): known answers on hand-set models, determinism, budget, options."""

import numpy as np
import pytest
import torch

from neurosleuth.tools.attack import AttackConfig, attack, minimal_edits
from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.neurons import NeuronError, NeuronId
from neurosleuth.tools.readout import cross_entropy, sequence_cross_entropy
from tests.attack_models import NEURON, TRIGGER, hand_activation, trigger_lm
from tests.fixtures import WORDS, tiny_random_lm, token_id

TRIG = NeuronId(0, NEURON)


@pytest.fixture(scope="module")
def trig_lm():
    return trigger_lm()


def test_trigger_model_peaks_at_the_trigger_token(trig_lm):
    acts = hand_activation(trig_lm, list(range(len(WORDS))))[:, NEURON]
    assert int(acts.argmax()) == TRIGGER


def test_attack_raises_activation_deterministically(tiny_lm):
    n = NeuronId(1, 3)
    kw = dict(length=5, steps=4, candidates=8, seed=0)
    r1, r2 = attack(tiny_lm, n, **kw), attack(tiny_lm, n, **kw)
    assert r1.best.activation > r1.initial.activation
    assert r1.prompts == r2.prompts and r1.curve == r2.curve and r1.n_forward == r2.n_forward
    best = [b for _, b in r1.curve]
    assert best == sorted(best) and best[-1] == pytest.approx(r1.best.activation)
    assert attack(tiny_lm, n, **{**kw, "seed": 1}).prompts != r1.prompts


def test_attack_finds_the_trigger_token(trig_lm):
    kw = dict(init=["the cat sat"], steps=10, candidates=8, population=4, fluency_weights=(0.0,),
              top_k=4, seed=0)
    r = attack(trig_lm, TRIG, **kw)
    assert TRIGGER not in r.initial.token_ids
    assert r.best.token_ids[-1] == TRIGGER
    peak = float(hand_activation(trig_lm, [TRIGGER])[0, NEURON])
    assert r.best.activation == pytest.approx(peak, rel=1e-4)
    banned = attack(trig_lm, TRIG, **kw, forbid=["paris"])
    assert TRIGGER not in banned.best.token_ids and banned.best.activation < peak


def test_down_direction_and_max_position(tiny_lm):
    n = NeuronId(0, 9)
    r = attack(tiny_lm, n, length=4, steps=4, candidates=8, direction="down", position="max")
    assert r.best.activation < r.initial.activation
    ids = [list(p.token_ids) for p in r.prompts]
    acts = measure_ids(tiny_lm, ids, [n])
    for p, a in zip(r.prompts, acts, strict=True):
        assert p.activation == pytest.approx(float(a[:, 0].min()), abs=1e-5)
        assert p.position == int(a[:, 0].argmin())


def test_cross_entropy_is_the_mean_next_token_nll():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=gen) * 4
    ids = torch.randint(11, (3, 5), generator=gen)
    want = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1), reduction="none").view(3, 4)
    assert torch.allclose(cross_entropy(logits, ids), want.mean(1), atol=1e-5)
    assert torch.allclose(cross_entropy(logits, ids, start=2), want[:, 1:].mean(1), atol=1e-5)
    assert cross_entropy(logits[:, :1], ids[:, :1]).tolist() == [0.0, 0.0, 0.0]


def test_reported_values_match_measure_and_cross_entropy():
    lm = tiny_random_lm(prepend_bos=True)
    n = NeuronId(1, 4)
    r = attack(lm, n, length=4, steps=3, candidates=8, fluency_weights=(0.0, 0.5))
    seqs = [[lm.tokenizer.bos_token_id, *p.token_ids] for p in r.prompts]
    acts = measure_ids(lm, seqs, [n])
    ces = sequence_cross_entropy(lm, seqs)
    for p, a, ce in zip(r.prompts, acts, ces, strict=True):
        assert p.activation == pytest.approx(float(a[-1, 0]), abs=1e-5)
        assert p.cross_entropy == pytest.approx(ce, abs=1e-4)
        assert lm.encode(p.text)[1:] == list(p.token_ids)  # the text reproduces the tokens
    # Pareto frontier: activation falls as cross-entropy falls
    acts_sorted = [p.activation for p in r.prompts]
    assert acts_sorted == sorted(acts_sorted, reverse=True)
    assert [p.cross_entropy for p in r.prompts] == sorted([p.cross_entropy for p in r.prompts],
                                                          reverse=True)


def test_budget_init_prefix_suffix(tiny_lm):
    n = NeuronId(1, 3)
    r = attack(tiny_lm, n, init=["the cat sat on"], prefix="hello world", suffix=[token_id(".")],
               steps=100, budget=120, restarts=2, candidates=8)
    assert r.n_forward <= 120 and r.curve[-1][0] <= 120
    assert r.initial.prompt_ids == tuple(token_id(w) for w in "the cat sat on".split())
    for p in r.prompts:
        assert p.token_ids[:2] == (token_id("hello"), token_id("world"))
        assert p.token_ids[-1] == token_id(".") and len(p.token_ids) == 7
    assert r.config["budget"] == 120 and r.config["length"] == 4
    frame = r.to_frame()
    assert list(frame.columns[:3]) == ["text", "activation", "cross_entropy"]


def test_special_tokens_forbidden_by_default(tiny_lm):
    r = attack(tiny_lm, NeuronId(1, 3), length=4, steps=5, candidates=16, top_k=62)
    specials = {token_id("<pad>"), token_id("<bos>"), token_id("<unk>")}
    for p in r.prompts:
        assert not specials & set(p.prompt_ids)


def test_attack_errors(tiny_lm):
    n = NeuronId(1, 3)
    with pytest.raises(ValueError, match="unknown attack option"):
        attack(tiny_lm, n, lenght=3)
    with pytest.raises(ValueError, match="budget"):
        attack(tiny_lm, n, budget=5)
    with pytest.raises(ValueError, match="direction"):
        attack(tiny_lm, n, direction="sideways")
    with pytest.raises(ValueError, match="context"):
        attack(tiny_lm, n, length=100)
    with pytest.raises(NeuronError):
        attack(tiny_lm, NeuronId(0, 99))
    assert AttackConfig().direction == "up"


def test_minimal_edits_kill_by_removing_the_trigger(trig_lm):
    prompt = "the cat sat in paris"
    res = minimal_edits(trig_lm, TRIG, prompt, threshold=0.5)
    assert res.n_edits == 1 and res.exhaustive
    peak = float(hand_activation(trig_lm, [TRIGGER])[0, NEURON])
    assert res.activation == pytest.approx(peak, rel=1e-4)
    assert all(k.edits[0].position == 4 for k in res.killers)  # only touching "paris" kills
    assert any(k.edits[0].new is None for k in res.killers)  # deleting it is among them
    for k in res.killers:
        real = hand_activation(trig_lm, list(k.token_ids))[:, NEURON].max()
        assert k.activation == pytest.approx(float(real), rel=1e-4, abs=1e-6)
        assert k.fraction < 0.5


def test_minimal_edits_needs_two_edits_when_the_trigger_repeats(trig_lm):
    res = minimal_edits(trig_lm, TRIG, "paris cat paris", threshold=0.5)
    assert res.n_edits == 2
    assert {e.position for e in res.killers[0].edits} == {0, 2}
    none = minimal_edits(trig_lm, TRIG, "paris cat paris", threshold=0.5, max_edits=1)
    assert none.killers == () and none.n_edits is None and none.closest is not None


def test_minimal_edits_fixed_position_and_errors(trig_lm, tiny_lm):
    res = minimal_edits(trig_lm, TRIG, "paris cat dog", position=0, threshold=0.5)
    assert res.n_edits == 1 and all(k.edits[0].new is not None for k in res.killers)
    with pytest.raises(ValueError, match="threshold"):
        minimal_edits(trig_lm, TRIG, "paris cat", threshold=1.5)
    acts = measure_ids(tiny_lm, [tiny_lm.encode("the cat")], [NeuronId(0, j) for j in range(32)])
    negative = int(np.argmin(acts[0].max(axis=0)))
    assert acts[0][:, negative].max() < 0
    with pytest.raises(ValueError, match="nothing to kill"):
        minimal_edits(tiny_lm, NeuronId(0, negative), "the cat")


@pytest.mark.integration
def test_attack_on_smollm2(smollm2):
    n = NeuronId(6, 100)
    r = attack(smollm2, n, length=6, steps=2, candidates=8, budget=100, seed=0)
    assert r.n_forward <= 100 and r.best.activation >= r.initial.activation
    again = measure_ids(smollm2, [smollm2.encode(r.best.text)], [n])[0]
    assert float(again[-1, 0]) == pytest.approx(r.best.activation, abs=1e-3)
    assert np.isfinite(r.best.cross_entropy)
    torch.testing.assert_close(torch.tensor(r.curve[0][1]), torch.tensor(r.initial.activation))
