"""The architecture matrix: tiny random models of ten architectures (tests/architectures.py), each
loaded from a local folder in float32 and in bfloat16 on the CPU, through every tool and a
3-iteration investigation. The activation read must be the input of each MLP's down projection
(GPT-2's transposed Conv1D included), and every parameter and buffer must sit where the load says.
"""

import json
import re

import numpy as np
import pytest
import torch

from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.planner import HeuristicBackend
from neurosleuth.score.run import ScoreConfig, score_hypothesis
from neurosleuth.tools.ablate import ablate
from neurosleuth.tools.attack import attack
from neurosleuth.tools.attribute import attribute
from neurosleuth.tools.explain import explain
from neurosleuth.tools.measure import measure
from neurosleuth.tools.model import load_model, misplaced
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.patch import patch_neurons
from neurosleuth.tools.scan_config import ScanConfig
from tests.agent_helpers import CORPUS, investigate, resume, write_corpus
from tests.architectures import ARCHITECTURES, save_architecture

NEURON = NeuronId(1, 3)
TEXTS = ["the cat sat on the mat and the dog ran to the park .", "def x ( ) : return y + x"]
DTYPES = ("float32", "bfloat16")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("archs")
    return {name: save_architecture(name, root / name) for name in ARCHITECTURES}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def _down_proj(hf, layer: int) -> torch.nn.Module:
    """The MLP's output projection of ``layer``: the Hugging Face module itself (Linear, or GPT-2's
    Conv1D), inside the bridge's wrappers (``._original_component``)."""
    pattern = re.compile(rf"\.(h|layers)\.{layer}\.mlp\.(down_proj|c_proj|dense_4h_to_h|fc2)$")
    found = [m for name, m in hf.named_modules()
             if pattern.search(name.replace("._original_component", ""))
             and not any(True for _ in m.children())]
    assert len(found) == 1, [n for n, _ in hf.named_modules() if ".mlp." in n][:8]
    return found[0]


@pytest.mark.parametrize(("arch", "dtype"), [(a, d) for a in ARCHITECTURES for d in DTYPES]
                         + [("llama", "float16"), ("gemma3", "float16")])
def test_every_tool_on_every_architecture(arch, dtype, folders, corpus, tmp_path):
    lm = load_model(str(folders[arch]), device="cpu", dtype=dtype)
    assert misplaced(lm) == []
    assert all(p.dtype == getattr(torch, dtype) and p.device.type == "cpu"
               for p in lm.model.parameters())
    assert lm.prepend_bos == ARCHITECTURES[arch][2] and lm.describe().endswith(f"cpu, {dtype}")

    # the activation read is the input of the down projection, bit for bit
    ids = torch.tensor([lm.encode(TEXTS[0])])
    seen = {}

    def grab(mod, inp, out) -> None:
        seen["x"] = inp[0]

    handle = _down_proj(lm.model.original_model, NEURON.layer).register_forward_hook(grab)
    try:
        with torch.inference_mode():
            lm.model(ids)  # the bridge runs the Hugging Face modules, hooked where it reads
    finally:
        handle.remove()
    read = measure(lm, [TEXTS[0]], [NEURON]).per_token(0)
    want = seen["x"][0, lm.n_prefix:, NEURON.index].float().numpy()
    np.testing.assert_array_equal(read, want)

    abl = ablate(lm, TEXTS, NEURON, "mean", baseline=4)
    assert np.isfinite(abl.summary()["kl"]) and abl.summary()["kl"] >= 0
    pat = patch_neurons(lm, ["the cat sat on the mat"], ["the dog sat on the mat"], NEURON)
    assert np.isfinite(pat.summary()["kl"])
    att = attack(lm, NEURON, init=TEXTS, steps=2, population=4, length=4, candidates=8)
    assert att.best.activation >= att.initial.activation - 1e-6
    ig = attribute(lm, NEURON, TEXTS[0])  # completeness, up to quadrature and rounding error
    delta = abs(ig.activation - ig.baseline_activation)
    rounding = 4 * torch.finfo(lm.dtype).eps * max(abs(ig.activation), 0.1)
    assert abs(ig.completeness_gap) < 0.2 * delta + rounding, (ig.completeness_gap, delta)
    ex = explain(lm, NEURON, TEXTS)
    assert ex.sentence and ex.forward_passes > 0
    cfg = ScoreConfig(ScanConfig(corpus=str(corpus), window=16, max_tokens=2000), baseline=4,
                      n_boot=100)
    s = score_hypothesis(lm, NEURON, ex.sentence, config=cfg)
    assert np.isfinite(s.aggregate.value)

    run = investigate(RunConfig(run_id="r", runs_dir=str(tmp_path), model=str(folders[arch]),
                                neuron=str(NEURON), iterations=3, prompts_per_step=3,
                                corpus=str(corpus), exemplar_tokens=2000, window=16, k=5,
                                hypothesis_every=3, planner="heuristic"),
                      lm=lm, planner=HeuristicBackend(0))
    hyps = json.loads((run / "hypotheses.json").read_text())
    assert hyps and hyps[-1]["text"]
    saved = json.loads((run / "config.json").read_text())
    assert saved["dtype"] == dtype  # resolved and recorded: a resume loads the same dtype
    assert f"cpu, {dtype}" in (run / "report.md").read_text()
    if arch == "llama" and dtype == "bfloat16":  # as `neurosleuth resume` runs it: the model
        # loaded from the saved config (no lm passed), one more iteration in the same dtype
        resume(str(tmp_path), "r", planner=HeuristicBackend(0), iterations=4)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["iterations"] == 4 and summary["model_desc"].endswith("cpu, bfloat16")


def test_the_tokenizers_round_trip_through_each_architectures_class(folders):
    """Each architecture's own tokenizer class (AutoTokenizer picks it) reads the fixture back."""
    from transformers import AutoTokenizer

    for name, folder in folders.items():
        tok = AutoTokenizer.from_pretrained(folder)
        ids = tok(CORPUS[0])["input_ids"]
        assert tok.decode(ids, skip_special_tokens=True) == CORPUS[0], name
        assert (ids[0] == tok.bos_token_id) == ARCHITECTURES[name][2], name
