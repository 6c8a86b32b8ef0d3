"""attribute() and locate(): IG completeness, gradient x input by hand, locate vs real ablation."""

import numpy as np
import pytest
import torch

from neurosleuth.tools.attribute import attribute, locate
from neurosleuth.tools.measure import measure
from neurosleuth.tools.neurons import NeuronError, NeuronId
from tests.attack_models import NEURON, TARGET, hand_activation, locate_lm, trigger_lm
from tests.fixtures import tiny_random_lm

TEXT = "the cat sat on the mat"


@pytest.mark.parametrize("baseline", ["zero", "pad"])
@pytest.mark.parametrize("bos", [False, True])
def test_ig_completeness(baseline, bos):
    lm = tiny_random_lm(prepend_bos=bos)
    n = NeuronId(1, 3)
    a = attribute(lm, n, TEXT, steps=256, baseline=baseline, position="last")
    assert a.method == "ig" and a.steps == 256 and a.baseline == baseline
    assert a.activation == pytest.approx(float(measure(lm, [TEXT], n).acts[0][-1, 0]), rel=1e-5)
    assert abs(a.activation - a.baseline_activation) > 1e-4
    # sum of scores = f(x) - f(baseline), up to a quadrature error small next to the scores
    assert abs(a.completeness_gap) < 0.01 * np.abs(a.scores).sum()
    assert len(a.scores) == len(a.tokens) == 6  # text tokens only, BOS excluded


def test_ig_gap_shrinks_with_steps():
    lm = tiny_random_lm(prepend_bos=True)
    gaps = [abs(attribute(lm, NeuronId(1, 3), TEXT, steps=s, position="last").completeness_gap)
            for s in (32, 512)]
    assert gaps[1] < gaps[0] / 20


def test_ig_zero_after_the_read_position_and_max_position(tiny_lm):
    n = NeuronId(0, 7)
    res = measure(tiny_lm, [TEXT], n)
    a = attribute(tiny_lm, n, TEXT, position="max", steps=16)
    assert a.position == int(res.argmax_pos[0, 0])
    assert a.activation == pytest.approx(float(res.max_act[0, 0]), rel=1e-5)
    assert np.all(a.scores[a.position + 1 :] == 0.0)  # causal: later tokens cannot matter


def test_grad_x_input_matches_hand_computation():
    """One layer, attention off: f depends on e_t alone (t = read position), and
    e . df/de = (silu'(a) b (g . w*e) + silu(a) (u . w*e)) * eps / r**3,
    with r = sqrt(mean(e^2) + eps)."""
    eps = 0.7
    lm = trigger_lm(seed=3, eps=eps)
    hf = lm.model.original_model
    layer = hf.model.layers[0]
    ids = lm.encode(TEXT)
    pos = 2
    a = attribute(lm, NeuronId(0, NEURON), TEXT, method="grad_x_input", position=pos)
    e = hf.model.embed_tokens.weight[ids[pos]].double()
    w = layer.post_attention_layernorm.weight.double()
    g = layer.mlp.gate_proj.weight[NEURON].double()
    u = layer.mlp.up_proj.weight[NEURON].double()
    r = torch.sqrt(e.pow(2).mean() + eps)
    x = w * e / r
    pre_gate, pre_up = float(g @ x), float(u @ x)
    sig = 1 / (1 + np.exp(-pre_gate))
    silu, dsilu = pre_gate * sig, sig * (1 + pre_gate * (1 - sig))
    hand = (dsilu * pre_up * float(g @ (w * e)) + silu * float(u @ (w * e))) * eps / float(r) ** 3
    assert a.activation == pytest.approx(float(hand_activation(lm, ids)[pos, NEURON]), rel=1e-5)
    assert a.scores[pos] == pytest.approx(hand, rel=1e-4, abs=1e-7)
    assert abs(hand) > 1e-3
    others = np.delete(a.scores, pos)
    np.testing.assert_allclose(others, 0.0, atol=1e-7)
    assert a.completeness_gap is None


def test_locate_ranks_the_built_neuron_first_and_verifies_by_real_ablation():
    lm = locate_lm()
    prompt = "the cat is in paris"
    res = locate(lm, prompt, "france", top=5)
    top = res.table.iloc[0]
    assert (int(top["layer"]), int(top["index"])) == (0, NEURON)
    assert res.neurons[0] == NeuronId(0, NEURON) and res.target_id == TARGET
    # real ablation: zero the neuron's output column in the weights and rerun the model
    hf = lm.model.original_model
    down = hf.model.layers[0].mlp.down_proj.weight
    ids = torch.tensor([lm.encode(prompt)])
    saved = down[:, NEURON].clone()
    try:
        with torch.no_grad():
            down[:, NEURON] = 0.0
            ablated = torch.log_softmax(lm.model(ids)[0, -1], -1)[TARGET].item()
    finally:
        with torch.no_grad():
            down[:, NEURON] = saved
    with torch.no_grad():
        clean = torch.log_softmax(lm.model(ids)[0, -1], -1)[TARGET].item()
    assert res.clean_metric == pytest.approx(clean, abs=1e-5)
    assert float(top.verified_effect) == pytest.approx(ablated - clean, abs=1e-5)
    assert float(top.verified_effect) < -0.1
    assert (res.table.verified_effect.abs().iloc[1:] < abs(top.verified_effect)).all()


def test_locate_without_verification_and_layer_choice(tiny_lm):
    res = locate(tiny_lm, TEXT, "mat", layers=[1], top=4, verify=False)
    assert list(res.table.layer) == [1] * 4
    assert res.table.verified_effect.isna().all()
    assert list(res.table["rank"]) == [1, 2, 3, 4]
    assert (np.diff(res.table.attribution.abs()) <= 0).all()


def test_errors(tiny_lm):
    n = NeuronId(0, 1)
    with pytest.raises(ValueError, match="method"):
        attribute(tiny_lm, n, TEXT, method="saliency")
    with pytest.raises(ValueError, match="baseline"):
        attribute(tiny_lm, n, TEXT, baseline="noise")
    with pytest.raises(ValueError, match="position"):
        attribute(tiny_lm, n, TEXT, position=40)
    with pytest.raises(NeuronError):
        attribute(tiny_lm, NeuronId(5, 0), TEXT)
    with pytest.raises(NeuronError):
        locate(tiny_lm, TEXT, "mat", layers=[9])
    with pytest.raises(ValueError, match="no tokens"):
        locate(tiny_lm, TEXT, "")


@pytest.fixture()
def cli(monkeypatch, tiny_lm):
    import importlib

    from typer.testing import CliRunner

    from neurosleuth.cli import app  # imports and registers every command module first

    cli_attack = importlib.import_module("neurosleuth.cli.attack")
    monkeypatch.setattr(cli_attack, "load", lambda model, *placement: tiny_lm)
    return lambda *args: CliRunner().invoke(app, list(args))


def test_cli_attribute_locate_attack(cli, tmp_path):
    png = tmp_path / "heat.png"
    r = cli("attribute", "--neuron", "1:3", TEXT, "--png", str(png))
    assert r.exit_code == 0, r.output
    assert "completeness gap" in r.output and png.read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "loc.csv"
    r = cli("locate", TEXT, "--target", "mat", "--top", "3", "--out", str(out))
    assert r.exit_code == 0, r.output
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["rank", "neuron", "layer", "index"] and len(table) == 3
    r = cli("attack", "--neuron", "1:3", "--steps", "2", "--length", "4", "--edits")
    assert r.exit_code == 0, r.output
    assert "forward passes" in r.output and "activation" in r.output


def test_cli_errors_are_one_line(cli):
    r = cli("attack", "--neuron", "7:3", "--steps", "2")
    assert r.exit_code == 2 and "out of range" in r.output and "Traceback" not in r.output
    r = cli("attribute", "--neuron", "1:3", TEXT, "--position", "middle")
    assert r.exit_code == 2 and "bad position" in r.output
    r = cli("attack", "--neuron", "1:3", "--fluency", "a,b")
    assert r.exit_code == 2 and "bad list" in r.output
