"""Context-level evidence for the explainer (``tools/explain.py``): what kind of text a window
is (``context_of``: source code, a non-Latin script, quoted text, from surface evidence only), and
whether a neuron reads that kind of text rather than a token (``context_level``: the share of
top-window tokens that fire, the kind >= 75% of the windows share, distinct firing tokens)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from neurosleuth.tools import concepts as C

CONTEXT_FIRE = 0.35  # share of the window max at which a token counts as firing
CODE_RE = re.compile(r"^\s*(def|class|import|from|return|if|for|while|elif|else|try|except)\b"
                     r"|[(){}\[\]=:]|\bself\b|_\w|\w_")


def context_of(tokens: Sequence[str]) -> str | None:
    """The kind of text a window is: "source code", "<Script> script text", "quoted text", or
    None (ordinary prose). Surface evidence only, so it works on any text."""
    text = "".join(tokens)
    if not text.strip():
        return None
    script = C._script(text)
    if script and sum(ch.isalpha() and ord(ch) > 0x24F for ch in text) > 0.3 * len(text):
        return f"{script.title()} script text"
    words = [t for t in tokens if t.strip()]
    code = sum(bool(CODE_RE.search(t)) for t in words) + 3 * text.count("\n    ")
    if words and code / len(words) >= 0.3:
        return "source code"
    if text.count('"') >= 2 or text.count("“") >= 1:
        return "quoted text"
    return None


def context_level(windows: Sequence[tuple[Sequence[str], np.ndarray]]
                  ) -> tuple[float, str | None, int]:
    """(share of tokens that fire in the top windows, the context >= 75% of them share, distinct
    firing tokens). A token fires at >= ``CONTEXT_FIRE`` x the median window max."""
    if not windows:
        return 0.0, None, 0
    thr = CONTEXT_FIRE * float(np.median([float(np.max(a)) for _, a in windows]))
    shares, firing, kinds = [], Counter(), Counter()
    for toks, acts in windows:
        on = np.asarray(acts) >= thr
        shares.append(float(on.mean()))
        firing.update(C.norm(t) for t, o in zip(toks, on, strict=True) if o)
        kinds[context_of(toks)] += 1
    kind, n = kinds.most_common(1)[0]
    share = float(np.median(shares))
    return share, (kind if n >= 0.75 * len(windows) else None), len(firing)
