"""load_model: errors that say what to do, caching, and (integration) SmolLM2 matches HF."""

import subprocess
import sys

import pytest
import torch

from neurosleuth.tools.model import ModelLoadError, load_model


def test_unknown_model_says_what_to_use():
    with pytest.raises(ModelLoadError, match="unknown model 'no-such-model'.*smollm2-135m"):
        load_model("no-such-model")


def test_missing_gguf_and_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(str(tmp_path / "x.gguf"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


@pytest.mark.integration
def test_smollm2_matches_hf_and_is_cached(smollm2):
    assert load_model("smollm2-135m", device="cpu") is smollm2
    assert (smollm2.n_layers, smollm2.d_mlp, smollm2.prepend_bos) == (30, 1536, False)
    ids = torch.tensor([smollm2.encode("The Eiffel Tower is in Paris.")])
    hf = smollm2.model.original_model
    seen = {}

    def grab(mod, inp, out):
        seen["x"] = inp[0]

    handle = hf.model.layers[12].mlp.down_proj.register_forward_hook(grab)
    with torch.inference_mode():
        hf_logits = hf(ids).logits
        handle.remove()
        logits, cache = smollm2.model.run_with_cache(ids, names_filter="blocks.12.mlp.hook_post")
    torch.testing.assert_close(logits, hf_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cache["blocks.12.mlp.hook_post"], seen["x"], atol=1e-5, rtol=1e-5)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "neurosleuth.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.integration
def test_cli_measure_and_errors():
    ok = run_cli(
        "measure", "--model", "smollm2-135m", "--neuron", "12:345", "The cat sat on the mat."
    )
    assert ok.returncode == 0, ok.stderr
    assert "' mat'" in ok.stdout and "neuron 12:345" in ok.stdout
    bad = run_cli("measure", "--neuron", "12:99999", "hi")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "out of range" in bad.stderr
    unknown = run_cli("measure", "--model", "nope", "--neuron", "1:1", "hi")
    assert unknown.returncode == 2 and "unknown model" in unknown.stderr
