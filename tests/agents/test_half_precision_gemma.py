"""Gemma-3-270m, the real checkpoint, in bfloat16 on the CPU: loaded from its GGUF in bfloat16,
scanned, explained, ablated against random neurons and scored. A whole investigation in bfloat16
runs on SmolLM2 (``test_half_precision.py``) and on a tiny random Gemma-3 through every tool
(``tests/tools/test_architectures.py``); Gemma's own took over 20 minutes of this CPU, which
emulates bfloat16 (its probe round alone 270 s: a 262k-token vocabulary's logits per pass)."""

import numpy as np
import pytest
import torch

from neurosleuth.score.run import ScoreConfig, score_hypothesis
from neurosleuth.tools.ablate import ablate
from neurosleuth.tools.exemplars import exemplars
from neurosleuth.tools.explain import ExplainConfig, explain
from neurosleuth.tools.model import load_model
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.scan_config import ScanConfig

pytestmark = pytest.mark.integration
NEURON = NeuronId(9, 100)


def test_gemma_in_bfloat16_is_scanned_explained_ablated_and_scored():
    lm = load_model("gemma3-270m", device="cpu", dtype="bfloat16")
    assert lm.describe().endswith("18 layers, d_mlp 2048, cpu, bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in lm.model.parameters())
    top = exemplars(lm, [NEURON], max_tokens=2048)[NEURON].top[:8]
    assert top and all(np.isfinite(e.value) for e in top)
    texts = ["".join(e.window.tokens[: e.pos + 1]) for e in top]
    ex = explain(lm, NEURON, texts, config=ExplainConfig(texts=6, sweep=0))
    assert ex.sentence.startswith("Fires"), ex.sentence
    effect = ablate(lm, texts[:2], NEURON, "zero", baseline=2, seed=0)
    assert np.isfinite(effect.summary()["kl"]) and np.isfinite(effect.zscore("kl"))
    cfg = ScoreConfig(ScanConfig(max_tokens=2048), top_windows=4, skip_top=4, random_windows=4,
                      sim_windows=4, contexts=2, n_prompts=3, paraphrases=1, baseline=2,
                      n_boot=100)
    score = score_hypothesis(lm, NEURON, ex.sentence, config=cfg)
    assert np.isfinite(score.aggregate.value)
