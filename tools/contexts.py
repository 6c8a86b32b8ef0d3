"""Context-level evidence for the explainer (``tools/explain.py``): what kind of text a window is
(``context_of``), and whether a neuron reads that kind of text rather than a token
(``context_level``: the share of top-window tokens that fire, the kind two thirds of the
windows share, distinct firing tokens).

Kinds of text come from libraries, in this order:

1. a non-Latin script (Unicode character names): "Cyrillic script text";
2. a file format or programming language from Google's Magika (Fratantonio et al. 2024, a small
   deep model over the bytes, shipped in its PyPI package, ONNX on the CPU), when it is confident
   (``FORMAT_SCORE``) and the format is not plain text: "JSON document", "LaTeX document",
   "Python source code", "XML document", "Markdown document", "SQL source code" ...;
3. the language of natural-language text from langid (Lui and Baldwin 2012, ``py3langid``, 97
   languages), when it is not English and confident (``LANGUAGE_PROB``), named by ISO 639
   (``pycountry``): "Spanish text", "German text";
4. surface rules the models miss on short windows: code punctuation and keywords ("source code"),
   quotation marks ("quoted text").

Each window is classified once (memoised on its text); Magika takes ~8 ms a window on one core.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from neurosleuth.tools import concepts as C

CONTEXT_FIRE = 0.35  # share of the window max at which a token counts as firing
KIND_SHARE = 2 / 3  # share of the top windows that must be one kind (or family) of text
CODE_RE = re.compile(r"^\s*(def|class|import|from|return|if|for|while|elif|else|try|except)\b"
                     r"|[(){}\[\]=:]|\bself\b|_\w|\w_")


FORMAT_SCORE = 0.8  # Magika's confidence needed to name a format
LANGUAGE_PROB = 0.9  # langid's normalised probability needed to name a language
MIN_LETTERS = 20  # letters a window needs before its language is guessed


def context_of(tokens: Sequence[str]) -> str | None:
    """The kind of text a window is (module docstring), or None for English prose."""
    return _kind("".join(tokens), tuple(tokens))


@functools.lru_cache(maxsize=8192)
def _kind(text: str, tokens: tuple[str, ...]) -> str | None:
    if not text.strip():
        return None
    script = C._script(text)
    if script and sum(ch.isalpha() and ord(ch) > 0x24F for ch in text) > 0.3 * len(text):
        return f"{script.title()} script text"
    found = file_format(text) or language(text)
    if found:
        return found
    words = [t for t in tokens if t.strip()]
    code = sum(bool(CODE_RE.search(t)) for t in words) + 3 * text.count("\n    ")
    if words and code / len(words) >= 0.3:
        return "source code"
    if text.count('"') >= 2 or text.count("“") >= 1:
        return "quoted text"
    return None


@functools.cache
def _magika():
    """Magika with its ONNX session on one thread that sleeps when idle. Its default session
    spreads each 64-token window over every core and spin-waits between runs: 14 ms of CPU a
    window for 11 ms of wall, and in the atlas's worker pool each worker's spinning threads take
    the cores the others need; on one thread a window costs ~8 ms of CPU and wall, the same
    labels."""
    try:
        import onnxruntime as rt
        from magika import Magika
    except ImportError:  # the kind of text then comes from the surface rules alone
        return None

    class OneThreadMagika(Magika):
        def _init_onnx_session(self) -> rt.InferenceSession:
            opts = rt.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return rt.InferenceSession(self._model_path, sess_options=opts,
                                       providers=["CPUExecutionProvider"])

    return OneThreadMagika()


def file_format(text: str) -> str | None:
    """Magika's name for the format of ``text`` ("JSON document", "Python source"), or None
    for plain text or an unsure guess."""
    model = _magika()
    if model is None:
        return None
    result = model.identify_bytes(text.encode("utf-8", "replace"))
    out = result.output
    if result.score < FORMAT_SCORE or out.label in ("txt", "unknown", "empty", "undefined"):
        return None
    name = out.description  # "Python source" -> "Python source code"
    return f"{name} code" if name.endswith(" source") else name


@functools.cache
def _langid():
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        return None
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language(text: str) -> str | None:
    """"<Language> text" for confidently non-English natural language, else None."""
    model = _langid()
    if model is None or sum(ch.isalpha() for ch in text) < MIN_LETTERS:
        return None
    code, prob = model.classify(text)
    if code == "en" or prob < LANGUAGE_PROB:
        return None
    try:
        import pycountry

        found = pycountry.languages.get(alpha_2=code)
        name = code if found is None else found.name
    except (ImportError, AttributeError, KeyError, LookupError):
        name = code
    return f"{name} text"


def context_level(windows: Sequence[tuple[Sequence[str], np.ndarray]]
                  ) -> tuple[float, str | None, int]:
    """(share of tokens that fire in the top windows, the context two thirds of them share (a
    kind, else its family), distinct
    firing tokens). A token fires at >= ``CONTEXT_FIRE`` x the median window max."""
    if not windows:
        return 0.0, None, 0
    thr = CONTEXT_FIRE * float(np.median([float(np.max(a)) for _, a in windows]))
    shares: list[float] = []
    firing: Counter[str] = Counter()
    kinds: Counter[str | None] = Counter()
    for toks, acts in windows:
        on = np.asarray(acts) >= thr
        shares.append(float(on.mean()))
        firing.update(C.norm(t) for t, o in zip(toks, on, strict=True) if o)
        kinds[context_of(toks)] += 1
    kind, n = kinds.most_common(1)[0]
    if n < KIND_SHARE * len(windows):  # several programming languages: source code
        family = Counter(family_of(k) for k in kinds.elements())
        kind, n = family.most_common(1)[0]
    share = float(np.median(shares))
    return share, (kind if kind and n >= KIND_SHARE * len(windows) else None), len(firing)


def family_of(kind: str | None) -> str | None:
    """The family a kind of text belongs to: every programming language is "source code"."""
    return "source code" if kind and kind.endswith("source code") else kind


def same_kind(kind: str | None, context: str | None) -> bool:
    """Is a text of ``kind`` a text of the pattern's ``context`` (a kind, or its family)?"""
    return kind is not None and (kind == context or family_of(kind) == context)
