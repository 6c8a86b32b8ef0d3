"""Activation patching on tiny models: exact restoration, hand-computed values, positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurosleuth.tools.interventions import MLPLayer, NeuronSet, Resid
from neurosleuth.tools.measure import measure
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.patch import (
    PatchResult,
    patch,
    patch_components,
    patch_head,
    patch_mlp,
    patch_neurons,
    patch_resid,
)
from neurosleuth.tools.sweep import patch_sweep, plot_heatmap
from tests.causal_models import N, path_lm, with_act

CLEAN = ["the cat sat on the mat", "king and queen"]
CORRUPT = ["the dog ran to the park", "man and woman"]
# A KL that is 0 in exact arithmetic comes out as float32 rounding of the log-probs (a few ulps of
# log(vocab) ~ 4 when the two runs are batched differently): KL_TOL bounds it. The clean-vs-
# corrupted KL these tests restore is ~7e-3 on the tiny model, ~1e3 KL_TOL.
KL_TOL = 64 * float(torch.finfo(torch.float32).eps)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))


def test_patching_the_residual_stream_restores_the_clean_run_exactly(tiny_lm):
    for layer in range(tiny_lm.n_layers):
        r = patch_resid(tiny_lm, CLEAN, CORRUPT, layer, target="paris", pair=("paris", "france"))
        np.testing.assert_allclose(r.effect.logit_new, r.clean_logit, atol=1e-5)
        np.testing.assert_allclose(r.effect.ld_new, r.clean_ld, atol=1e-5)
        assert (r.kl_clean_corrupt > 100 * KL_TOL).all()  # a gap to restore, not noise
        np.testing.assert_allclose(r.effect.kl_anchor, 0.0, atol=KL_TOL)
        np.testing.assert_allclose(r.recovered("logit_diff"), 1.0, atol=1e-3)
        np.testing.assert_allclose(r.recovered("kl"), 1.0, atol=KL_TOL / r.kl_clean_corrupt.min())


def test_patching_every_component_of_the_last_layer_input_restores(tiny_lm):
    """The last block reads only the residual before it; patching that (all positions) and
    nothing else makes the corrupted run identical to the clean one."""
    last = tiny_lm.n_layers - 1
    r = patch(tiny_lm, CLEAN, CORRUPT, Resid(last - 1), target="paris")
    np.testing.assert_allclose(r.effect.p_new, r.clean_p, atol=1e-6)
    # a component that is not the whole path restores only part of it
    part = patch_mlp(tiny_lm, CLEAN, CORRUPT, last, target="paris")
    assert np.abs(part.effect.kl_anchor).max() > 100 * KL_TOL


def test_patching_a_neuron_gives_the_hand_computed_logit():
    plm = path_lm()
    clean_act = [a[:, 0] for a in measure(plm, CLEAN, [NeuronId(0, N)]).acts]
    r = patch_neurons(plm, CLEAN, CORRUPT, NeuronId(0, N), target="paris")
    for i, corrupt in enumerate(CORRUPT):
        expected = float(with_act(plm, plm.encode(corrupt), -1, float(clean_act[i][-1])))
        assert r.effect.logit_new[i] == pytest.approx(expected, abs=1e-5)
    # the path neuron is the whole route to the target: the clean logit comes back exactly
    # only if the rest of the residual matches too, so recovery is finite but not forced to 1
    assert np.isfinite(r.recovered("logit")).all()


def test_patch_positions(tiny_lm):
    last = tiny_lm.n_layers - 1
    r = patch_resid(tiny_lm, CLEAN, CORRUPT, last, positions=[-1], at="last", target="paris")
    np.testing.assert_allclose(r.effect.kl_anchor, 0.0, atol=KL_TOL)  # last position restored
    early = patch_resid(tiny_lm, CLEAN, CORRUPT, last, positions=[0], at="last", target="paris")
    np.testing.assert_allclose(early.effect.kl, 0.0, atol=KL_TOL)  # last position untouched
    assert early.kl_clean_corrupt.min() > 100 * KL_TOL  # while the corruption there is real


def test_identity_patch_and_named_variants(tiny_lm):
    same = patch_head(tiny_lm, CLEAN, CLEAN, 1, 0, target="paris")
    np.testing.assert_allclose(same.effect.kl, 0.0, atol=KL_TOL)
    results = patch_components(
        tiny_lm,
        CLEAN,
        CORRUPT,
        [MLPLayer(0), NeuronSet((NeuronId(0, 1), NeuronId(1, 2)))],
        target="paris",
    )
    assert [r.component for r in results] == ["mlp0", "0:1,1:2"]
    for r in results:
        frame = r.to_frame()
        assert len(frame) == 2 and {"clean", "corrupt", "recovered_prob"} <= set(frame.columns)
        back = PatchResult.from_dict(r.to_dict())
        np.testing.assert_allclose(back.effect.kl, r.effect.kl)
        np.testing.assert_allclose(back.recovered("prob"), r.recovered("prob"))


def test_unequal_lengths_are_rejected(tiny_lm):
    with pytest.raises(ValueError, match="equal lengths"):
        patch_mlp(tiny_lm, ["the cat sat"], ["the dog"], 0)
    with pytest.raises(ValueError, match="pairs"):
        patch_mlp(tiny_lm, CLEAN, CORRUPT[:1], 0)


def test_patch_sweep(tiny_lm, tmp_path):
    result = patch_sweep(tiny_lm, CLEAN, CORRUPT, pair=("paris", "france"))
    table = result.pivot("recovered_kl")
    assert list(table.columns) == ["mlp", "resid", "h0", "h1"]
    gap = patch_resid(tiny_lm, CLEAN, CORRUPT, 0).kl_clean_corrupt.min()
    np.testing.assert_allclose(table["resid"].to_numpy(), 1.0, atol=KL_TOL / gap)
    assert plot_heatmap(result, tmp_path / "p.png").is_file()
