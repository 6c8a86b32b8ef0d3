"""measure(): hand-computed values, padding invariance, BOS handling, validation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM

from neurosleuth.tools.measure import measure, measure_ids
from neurosleuth.tools.model import from_hf_model
from neurosleuth.tools.neurons import NeuronError, NeuronId, parse_neurons
from tests.fixtures import tiny_config, tiny_random_lm, tiny_tokenizer


@pytest.fixture(scope="module")
def hand_lm():
    """Two layers whose attention and layer-0 MLP write nothing: every layer's MLP sees the
    RMS-normalised token embedding, so hook_post = silu(W_gate x) * (W_up x) by hand."""
    torch.manual_seed(1)
    hf = LlamaForCausalLM(tiny_config(n_layers=2)).eval()
    with torch.no_grad():
        for layer in hf.model.layers:
            layer.self_attn.o_proj.weight.zero_()
        hf.model.layers[0].mlp.down_proj.weight.zero_()
    return from_hf_model(hf, tiny_tokenizer(), name="tiny-hand")


@torch.no_grad()
def hand_post(hf, layer: int, ids: list[int]) -> np.ndarray:
    e = hf.model.embed_tokens.weight[ids].double()  # (T, d_model)
    norm = hf.model.layers[layer].post_attention_layernorm
    x = (
        e
        / torch.sqrt(e.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
        * norm.weight.double()
    )
    mlp = hf.model.layers[layer].mlp
    return (
        F.silu(x @ mlp.gate_proj.weight.double().T) * (x @ mlp.up_proj.weight.double().T)
    ).numpy()


def test_matches_hand_computation(hand_lm):
    hf = hand_lm.model.original_model
    prompts = ["the cat sat on the mat .", "def x ( ) : return y", "hello"]
    neurons = [NeuronId(0, 3), NeuronId(1, 17), NeuronId(1, 0)]
    result = measure(hand_lm, prompts, neurons)
    for i, p in enumerate(prompts):
        ids = hand_lm.encode(p)
        for j, n in enumerate(neurons):
            expected = hand_post(hf, n.layer, ids)[:, n.index]
            np.testing.assert_allclose(result.acts[i][:, j], expected, rtol=1e-4, atol=1e-5)
            assert result.max_act[i, j] == pytest.approx(expected.max(), rel=1e-4, abs=1e-5)
            assert result.argmax_pos[i, j] == int(expected.argmax())


def test_padding_never_changes_real_tokens(tiny_lm):
    prompts = [
        "the cat sat on the mat and the dog ran to the park .",
        "hello",
        "a big red dog",
        "one two three four five",
        "king",
    ]
    neurons = [NeuronId(0, 5), NeuronId(1, 3), NeuronId(1, 31)]
    batched = measure(tiny_lm, prompts, neurons)
    tiny_batches = measure(tiny_lm, prompts, neurons, tokens_per_batch=1)  # one prompt a pass
    for i, p in enumerate(prompts):
        alone = measure(tiny_lm, [p], neurons)
        np.testing.assert_allclose(batched.acts[i], alone.acts[0], atol=1e-5)
        np.testing.assert_allclose(tiny_batches.acts[i], alone.acts[0], atol=1e-5)
        assert batched.acts[i].shape == (len(tiny_lm.encode(p)), len(neurons))


def test_results_in_input_order_and_frame(tiny_lm):
    prompts = ["a", "the cat sat on the mat", "dog ran"]
    r = measure(tiny_lm, prompts, NeuronId(1, 2))
    assert [len(t) for t in r.tokens] == [1, 6, 2]
    assert r.tokens[1] == ["the", "cat", "sat", "on", "the", "mat"]
    df = r.to_frame()
    assert list(df["prompt"]) == prompts
    assert set(df.columns) >= {"prompt", "neuron", "max_act", "argmax_pos", "argmax_token"}
    assert len(r.token_frame()) == 9


def test_bos_is_run_but_not_reported():
    lm = tiny_random_lm(prepend_bos=True)
    assert lm.n_prefix == 1 and lm.encode("cat")[0] == lm.tokenizer.bos_token_id
    r = measure(lm, ["the cat"], NeuronId(1, 1))
    assert r.tokens[0] == ["the", "cat"]
    full = measure_ids(lm, [lm.encode("the cat")], [NeuronId(1, 1)])[0]
    np.testing.assert_allclose(r.acts[0], full[1:])


def test_validation_errors(tiny_lm):
    with pytest.raises(NeuronError, match="layer 2 out of range"):
        measure(tiny_lm, ["cat"], NeuronId(2, 0))
    with pytest.raises(NeuronError, match="neuron 32 out of range"):
        measure(tiny_lm, ["cat"], NeuronId(1, 32))
    with pytest.raises(NeuronError):
        NeuronId.parse("12-x")
    with pytest.raises(ValueError, match="no tokens"):
        measure(tiny_lm, [""], NeuronId(0, 0))


def test_parse_neurons():
    assert NeuronId.parse("12:345") == NeuronId(12, 345)
    assert NeuronId.parse("L3N7") == NeuronId(3, 7)
    assert parse_neurons("1:2, 3:4-6") == [
        NeuronId(1, 2),
        NeuronId(3, 4),
        NeuronId(3, 5),
        NeuronId(3, 6),
    ]
    assert NeuronId(12, 3).hook_name == "blocks.12.mlp.hook_post"
