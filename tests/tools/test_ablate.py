"""Ablation, steering, the random-neuron baseline, sweeps and hook hygiene, on tiny models with
known answers (tests/causal_models.py), plus one SmolLM2 integration test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurosleuth.tools.ablate import ablate, random_components, token_id
from neurosleuth.tools.interventions import (
    AttnHead,
    MLPLayer,
    NeuronSet,
    SetPerToken,
    Site,
    active_hooks,
    hooked,
    run_variants,
)
from neurosleuth.tools.measure import measure, pad_right
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.reference import mean_activations
from neurosleuth.tools.steer import steer
from neurosleuth.tools.sweep import plot_heatmap, sweep
from tests.causal_models import TOK, N, by_hand, path_lm, target_logit, with_act
from tests.fixtures import tiny_random_lm

PROMPTS = ["the cat sat on the mat", "the dog ran to the park .", "king and queen"]
NEURON = NeuronId(0, N)
# Float32 results computed in batches of other shapes (padding, other reduction orders) agree to a
# few hundred ulps of the numbers involved; compared effects are chosen >= 1e3 times larger.
F32 = float(torch.finfo(torch.float32).eps)
TOL = {"rel": 1e3 * F32, "abs": 1e3 * F32}
LOUD = NeuronId(0, 4)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def plm():
    return path_lm()


@pytest.fixture(scope="module")
def loud_lm():
    """The tiny random model with unit-scale weights, so its logits are O(1) and neuron ``LOUD``
    (its output scaled x4) moves them by O(1) through layer 1's attention. With the default
    initialisation the outputs are near uniform and a neuron's KL effect (~1e-8) is float32
    noise."""
    lm = tiny_random_lm(seed=0)
    hf = lm.model.original_model
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 2:  # (out, in): unit-variance outputs for unit-variance inputs
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
        hf.model.embed_tokens.weight.mul_(math.sqrt(lm.d_model))
        hf.lm_head.weight.mul_(3.0)
        hf.model.layers[LOUD.layer].mlp.down_proj.weight[:, LOUD.index] *= 4.0
    return lm


def _last_hand(plm, prompt):
    ids = plm.encode(prompt)
    _, resid = by_hand(plm, ids)
    return ids, float(target_logit(plm, resid[-1]))


def test_clean_logit_matches_hand_computation(plm):
    r = ablate(plm, PROMPTS, NEURON, "zero", target="paris", baseline=0)
    hand = [_last_hand(plm, p)[1] for p in PROMPTS]
    np.testing.assert_allclose(r.effect.logit_clean, hand, rtol=1e-5, atol=1e-5)
    assert min(abs(h) for h in hand) > 0.1  # the path carries a real contribution


def test_zero_ablation_removes_exactly_the_path_contribution(plm):
    r = ablate(plm, PROMPTS, NEURON, "zero", target="paris", baseline=0)
    np.testing.assert_allclose(r.effect.logit_new, 0.0, atol=1e-6)
    np.testing.assert_allclose(r.effect.d_logit, -r.effect.logit_clean, atol=1e-6)
    assert (r.effect.kl > 0).all() and r.baseline is None


def test_scale_mode_multiplies_the_activation(plm):
    r = ablate(plm, PROMPTS, NEURON, "scale", scale=2.5, target="paris", baseline=0)
    for i, p in enumerate(PROMPTS):
        ids = plm.encode(p)
        a = float(by_hand(plm, ids)[0][-1, N])
        assert r.effect.logit_new[i] == pytest.approx(
            float(with_act(plm, ids, -1, 2.5 * a)), abs=1e-5
        )


def test_mean_mode_uses_the_reference_mean(plm):
    reference = ["one two three four five", "red blue green"]
    acts = measure(plm, reference, [NEURON]).acts
    mean = float(np.concatenate([a[:, 0] for a in acts]).mean())
    r = ablate(plm, PROMPTS, NEURON, "mean", reference=reference, target="paris", baseline=0)
    for i, p in enumerate(PROMPTS):
        expected = float(with_act(plm, plm.encode(p), -1, mean))
        assert r.effect.logit_new[i] == pytest.approx(expected, abs=1e-5)
    # default reference (no corpus here): the prompts themselves
    own = ablate(plm, PROMPTS, NEURON, "mean", target="paris", baseline=0)
    assert own.params["reference"] in ("prompts", "corpus")


def test_mean_is_cached_on_disk(plm, tmp_path):
    ids = [plm.encode(p) for p in PROMPTS]
    hook = NEURON.hook_name
    first = mean_activations(plm, ids, [hook])[hook]
    files = list((tmp_path / "cache" / "means").glob("*.pt"))
    assert len(files) == 1
    torch.save(first * 0 + 123.0, files[0])  # a cache hit must read the file, not recompute
    assert float(mean_activations(plm, ids, [hook])[hook][0]) == 123.0


def test_resample_mode_takes_values_from_other_prompts(plm):
    prompts = ["the cat sat on the mat", "dog"]
    acts = [a[:, 0] for a in measure(plm, prompts, [NEURON]).acts]
    r = ablate(plm, prompts, NEURON, "resample", target="paris", baseline=0, seed=3)
    ids0, ids1 = plm.encode(prompts[0]), plm.encode(prompts[1])
    # prompt 0 can only draw from the single token of prompt 1
    assert r.effect.logit_new[0] == pytest.approx(
        float(with_act(plm, ids0, -1, acts[1][0])), abs=1e-5
    )
    # prompt 1 draws one of prompt 0's activations
    options = [float(with_act(plm, ids1, -1, float(a))) for a in acts[0]]
    assert min(abs(r.effect.logit_new[1] - o) for o in options) < 1e-5
    again = ablate(plm, prompts, NEURON, "resample", target="paris", baseline=0, seed=3)
    np.testing.assert_array_equal(r.effect.logit_new, again.effect.logit_new)
    with pytest.raises(ValueError, match="second prompt"):
        ablate(plm, ["dog"], NEURON, "resample", baseline=0)


def test_positions_limit_the_edit(plm):
    r = ablate(plm, PROMPTS, NEURON, "zero", target="paris", positions=[0], at="last", baseline=0)
    # the last token was not edited: its KL is 0 up to float32 rounding of the log-probs
    np.testing.assert_allclose(r.effect.kl, 0.0, atol=TOL["abs"])
    np.testing.assert_allclose(r.effect.d_logit, 0.0, atol=1e-6)
    r = ablate(plm, PROMPTS, NEURON, "zero", target="paris", positions=[-1], at="last", baseline=0)
    np.testing.assert_allclose(r.effect.logit_new, 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        ablate(plm, PROMPTS, NEURON, "zero", positions=[10], baseline=0)


def test_steering_a_neuron_adds_to_its_activation(plm):
    r = steer(plm, PROMPTS, NEURON, 1.5, target="paris", baseline=5)
    for i, p in enumerate(PROMPTS):
        ids = plm.encode(p)
        a = float(by_hand(plm, ids)[0][-1, N])
        assert r.effect.logit_new[i] == pytest.approx(
            float(with_act(plm, ids, -1, a + 1.5)), abs=1e-5
        )
    assert r.baseline is not None and len(r.baseline.components) == 5
    assert r.promoted[0][0].strip() == "paris"  # the path token rises most
    vec = steer(plm, PROMPTS, torch.ones(16), 0.5, layer=0, baseline=3)
    assert vec.baseline is not None and np.isfinite(vec.summary()["kl"])


def test_baseline_zscore_large_for_the_path_neuron_small_for_a_random_one(plm):
    hit = ablate(plm, PROMPTS, NEURON, "zero", target="paris", baseline=20, seed=1)
    assert hit.baseline is not None and len(hit.baseline.components) == 20
    assert str(NEURON) not in hit.baseline.components
    assert hit.zscore("kl") > 10
    assert hit.zscore("d_prob") < -5
    assert "(random neurons: " in hit.headline() and "z=" in hit.headline()
    assert len(hit.to_frame()) == len(PROMPTS)
    plain = ablate(plm, PROMPTS, NeuronId(0, 3), "zero", target="paris", baseline=20, seed=1)
    assert abs(plain.zscore("kl")) < 3
    frame = hit.summary_frame()
    assert {"kl", "d_prob", "d_loss", "top1_change"} <= set(frame["metric"])


def test_random_components_are_matched_and_exclude_the_target(tiny_lm):
    target = NeuronSet((NeuronId(0, 1), NeuronId(0, 2), NeuronId(1, 5)))
    rand = random_components(tiny_lm, target, 8, seed=0)
    assert len(rand) == 8
    for c in rand:
        assert [n.layer for n in c.neurons].count(0) == 2 and len(c.neurons) == 3
        assert not set(c.neurons) & set(target.neurons)
    heads = random_components(tiny_lm, AttnHead(1, 0), 5)
    assert heads == [AttnHead(1, 1)]
    assert random_components(tiny_lm, MLPLayer(0), 5) == []


def test_head_and_mlp_ablation_equal_editing_the_weights():
    lm, ref = tiny_random_lm(seed=2), tiny_random_lm(seed=2)
    layer = ref.model.original_model.model.layers[1]
    dh = 16 // 2
    with torch.no_grad():
        layer.self_attn.o_proj.weight[:, dh : 2 * dh] = 0.0  # head 1 of layer 1 removed
    head = ablate(lm, PROMPTS, AttnHead(1, 1), "zero", target="paris", baseline=0)
    edited = ablate(ref, PROMPTS, NeuronId(0, 0), "scale", scale=1.0, target="paris", baseline=0)
    np.testing.assert_allclose(head.effect.logit_new, edited.effect.logit_clean, atol=1e-5)
    np.testing.assert_allclose(head.effect.loss_new, edited.effect.loss_clean, atol=1e-5)
    whole = ablate(lm, PROMPTS, MLPLayer(0), "zero", target="paris", baseline=0)
    every = ablate(
        lm,
        PROMPTS,
        NeuronSet(tuple(NeuronId(0, i) for i in range(32))),
        "zero",
        target="paris",
        baseline=0,
    )
    np.testing.assert_allclose(whole.effect.logit_new, every.effect.logit_new, atol=1e-5)


def test_padding_does_not_change_results(loud_lm):
    assert len({len(loud_lm.encode(p)) for p in PROMPTS}) == len(PROMPTS)  # the batch is padded
    alone = [ablate(loud_lm, [p], LOUD, "zero", target="paris", baseline=0) for p in PROMPTS]
    batch = ablate(loud_lm, PROMPTS, LOUD, "zero", target="paris", baseline=0)
    assert batch.effect.kl.min() > 1e3 * TOL["abs"]  # an effect, not float32 noise
    assert np.abs(batch.effect.d_loss).min() > 1e3 * TOL["abs"]
    for i, r in enumerate(alone):
        for metric in ("kl", "d_loss", "d_logit", "d_prob", "top1_change"):
            got, want = getattr(batch.effect, metric)[i], getattr(r.effect, metric)[0]
            assert got == pytest.approx(want, **TOL), (metric, PROMPTS[i])


def test_hooks_are_removed_even_when_a_hook_raises(tiny_lm):
    tokens, mask = pad_right([tiny_lm.encode(p) for p in PROMPTS], 0, tiny_lm.device)
    with torch.inference_mode():
        before = tiny_lm.model(tokens, attention_mask=mask)

    def boom(act, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), hooked(tiny_lm, [(NEURON.hook_name, boom)]):
        tiny_lm.model(tokens, attention_mask=mask)
    assert active_hooks(tiny_lm) == 0
    # the engine path: an op whose values are missing fails inside the hook
    bad = (SetPerToken(()),)
    from neurosleuth.tools.interventions import Edit

    with pytest.raises(IndexError):
        run_variants(
            tiny_lm,
            [tiny_lm.encode(PROMPTS[0])],
            [(Edit(Site(NEURON.hook_name, 0, 2, (1,)), bad[0]),)],
        )
    assert active_hooks(tiny_lm) == 0
    with torch.inference_mode():
        after = tiny_lm.model(tokens, attention_mask=mask)
    assert torch.equal(before, after)


def test_bad_inputs_raise_clear_errors(tiny_lm):
    with pytest.raises(ValueError, match="layer 9"):
        ablate(tiny_lm, PROMPTS, NeuronId(9, 0))
    with pytest.raises(ValueError, match="unknown mode"):
        ablate(tiny_lm, PROMPTS, NeuronId(0, 0), "banana")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one token"):
        token_id(tiny_lm, "the cat")
    with pytest.raises(ValueError, match="head 5"):
        ablate(tiny_lm, PROMPTS, AttnHead(0, 5))


def test_sweep_table_and_heatmap(loud_lm, tmp_path):
    result = sweep(loud_lm, PROMPTS[:2], "zero", target="paris")
    assert len(result.frame) == loud_lm.n_layers * (1 + loud_lm.n_heads)
    table = result.pivot("kl")
    assert list(table.columns) == ["mlp", "h0", "h1"] and table.shape == (2, 3)
    assert np.isfinite(table.to_numpy()).all()
    single = ablate(loud_lm, PROMPTS[:2], AttnHead(1, 1), "zero", target="paris", baseline=0)
    assert single.summary()["kl"] > 1e3 * TOL["abs"]  # an effect, not float32 noise
    assert table.loc[1, "h1"] == pytest.approx(single.summary()["kl"], **TOL)
    path = plot_heatmap(result, tmp_path / "sweep.png")
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
    mean = sweep(loud_lm, PROMPTS[:2], "mean", heads=False)
    assert len(mean.frame) == loud_lm.n_layers and not math.isnan(mean.frame["kl"].iloc[0])


@pytest.mark.integration
def test_smollm2_ablation_with_baseline(smollm2):
    r = ablate(
        smollm2,
        ["The Eiffel Tower is in the city of", "Paris is the capital of"],
        NeuronId(12, 345),
        "zero",
        target=" Paris",
        baseline=5,
    )
    s = r.summary()
    assert all(np.isfinite(s[m]) for m in ("kl", "top1_change", "d_loss", "d_prob"))
    assert r.baseline is not None and len(r.baseline.components) == 5
    assert np.isfinite(r.baseline.mean("kl")) and np.isfinite(r.zscore("kl"))
    assert TOK >= 0  # path model constant imported for the known-answer tests


def test_bf16_clean_and_edited_runs_share_one_batch_shape():
    """In bfloat16 a no-op edit changes (next to) nothing whatever the batching: the clean run is a
    row of the same stacked batch as the edited ones, so no kernel chosen for another batch shape
    (as GPU libraries do) can move the reference. Every pass of a chunk has the same shape."""
    from neurosleuth.tools.interventions import Scale, edits, run_variants

    prompts = ["the cat sat on the mat", "a dog ran to the park", "hello world , print ( x )"]
    bf16 = tiny_random_lm(3, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    ids = [bf16.encode(p) for p in prompts]
    noop = [edits(NeuronId(1, i), Scale(1.0)) for i in range(7)]
    shapes = []
    handle = bf16.model.register_forward_pre_hook(lambda m, args: shapes.append(args[0].shape))
    try:
        for budget in (8, 64, 4096):  # 1, several and all variants per pass
            shapes.clear()
            for e in run_variants(bf16, ids, noop, tokens_per_batch=budget):
                assert float(np.abs(e.kl).max()) < 1e-6
            rows: dict[int, set[int]] = {}  # per chunk (its padded width): the rows of each pass
            for shape in shapes:
                rows.setdefault(shape[1], set()).add(shape[0])
            assert all(len(r) == 1 for r in rows.values()), shapes
    finally:
        handle.remove()
