"""The model-side measurements behind a hypothesis score (``score/components.py``): activations of
written prompts and held-out windows, activation under perturbations, the ablation KL against
random neurons, and human ratings read from CSV. No LLM here: texts come in already written.

Perturbations of a top context (``perturbation_ratios``), each scored as
activation(perturbed) / activation(original) clipped to [0, 1], where activation is the max over
the text's tokens:

- ``dropout``: each token except the original peak is dropped with probability ``rate`` (at
  least one is dropped), on token ids (no re-tokenisation), ``draws`` times per context;
- ``case``: the text lower-cased, or (already lower case) each word capitalised;
- ``paraphrase``: a rewrite supplied by the caller (an LLM paraphrase, or the heuristic's).

Contexts whose original activation is not positive are skipped (a ratio means nothing there).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neurosleuth.tools.ablate import Mode, ablate
from neurosleuth.tools.measure import measure, measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId


def usable(lm: LoadedModel, texts: Sequence[str]) -> list[str]:
    """The texts that have at least one token (others cannot be measured)."""
    return [t for t in texts if t and len(lm.encode(t)) > lm.n_prefix]


def max_acts(lm: LoadedModel, neuron: NeuronId, texts: Sequence[str]) -> np.ndarray:
    """(P,) the neuron's max activation over each text's tokens (empty input: empty array)."""
    if not texts:
        return np.zeros(0)
    return measure(lm, list(texts), [neuron]).max_act[:, 0].astype(float)


def window_acts(lm: LoadedModel, neuron: NeuronId, token_ids: Sequence[Sequence[int]]
                ) -> list[np.ndarray]:
    """Per-token activations (T_i,) of pre-tokenised windows (text tokens, no BOS)."""
    if not token_ids:
        return []
    prefix = lm.encode("")[: lm.n_prefix]
    acts = measure_ids(lm, [prefix + [int(t) for t in ids] for ids in token_ids], [neuron])
    return [a[lm.n_prefix:, 0].astype(float) for a in acts]


def sim_slice(n_tokens: int, peak: int, length: int, after: int = 4) -> tuple[int, int]:
    """[start, end) of ``length`` tokens holding ``peak``, with up to ``after`` tokens after it."""
    end = min(n_tokens, max(peak + 1 + after, length))
    return max(0, end - length), end


def case_variant(text: str) -> str:
    if text != text.lower():
        return text.lower()
    return re.sub(r"\b([a-z])", lambda m: m.group(1).upper(), text)


def _dropout_ids(body: list[int], peak: int, rate: float, rng: np.random.Generator) -> list[int]:
    keep = rng.random(len(body)) >= rate
    keep[peak] = True
    others = [i for i in range(len(body)) if i != peak]
    if keep.all() and others:
        keep[others[int(rng.integers(len(others)))]] = False
    return [t for t, k in zip(body, keep, strict=True) if k]


def perturbation_ratios(lm: LoadedModel, neuron: NeuronId, contexts: Sequence[str],
                        paraphrases: Sequence[str | None] = (), *, rate: float = 0.15,
                        draws: int = 2, seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Ratios per perturbation kind (module docstring) and a record of what was measured."""
    contexts = usable(lm, contexts)
    if not contexts:
        return {}, {"contexts": 0}
    rng = np.random.default_rng(seed)
    ids = [lm.encode(t) for t in contexts]
    k = lm.n_prefix
    orig = [a[k:, 0] for a in measure_ids(lm, ids, [neuron])]
    keep = [i for i, a in enumerate(orig) if a.max() > 0]
    if not keep:
        return {}, {"contexts": 0}
    base = {i: float(orig[i].max()) for i in keep}
    dropped = [ids[i][:k] + _dropout_ids(ids[i][k:], int(orig[i].argmax()), rate, rng)
               for i in keep for _ in range(draws)]
    owner = [i for i in keep for _ in range(draws)]
    drop_acts = [float(a[k:, 0].max()) for a in measure_ids(lm, dropped, [neuron])]
    ratios: dict[str, list[float]] = {
        "dropout": [a / base[i] for a, i in zip(drop_acts, owner, strict=True)]}
    variants = {"case": [(i, case_variant(contexts[i])) for i in keep]}
    para = list(paraphrases) + [None] * (len(contexts) - len(paraphrases))
    variants["paraphrase"] = [(i, p) for i in keep if (p := para[i])]
    examples: dict[str, list] = {}
    for kind, pairs in variants.items():
        pairs = [(i, t) for i, t in pairs if usable(lm, [t])]
        acts = max_acts(lm, neuron, [t for _, t in pairs])
        ratios[kind] = [float(a) / base[i] for (i, _), a in zip(pairs, acts, strict=True)]
        examples[kind] = [{"original": contexts[i], "perturbed": t, "ratio": min(1.0, r)}
                          for (i, t), r in zip(pairs[:3], ratios[kind], strict=False)]
    out = {kind: np.clip(np.asarray(v, float), 0, 1) for kind, v in ratios.items() if v}
    return out, {"contexts": len(keep), "dropout_rate": rate, "draws": draws,
                 "examples": examples}


def ablation_kl(lm: LoadedModel, neuron: NeuronId, contexts: Sequence[str], *,
                mode: Mode = "mean", baseline: int = 20, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-context KL (next token at the last position, where the contexts peak) of ablating
    ``neuron``, and the mean KL of each of ``baseline`` random neurons of its layer."""
    contexts = usable(lm, contexts)
    if not contexts:
        return np.zeros(0), np.zeros(0), {"contexts": 0}
    res = ablate(lm, contexts, neuron, mode=mode, baseline=baseline, seed=seed, at="last")
    base = res.baseline.values("kl") if res.baseline else np.zeros(0)
    return (np.asarray(res.effect.kl, float), base,
            {"contexts": len(contexts), "mode": mode, "random_neurons": len(base),
             "headline": res.headline("kl")})


def read_ratings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """A CSV with columns ``text`` and ``rating`` (other columns ignored) -> texts, ratings."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ratings file {path}")
    try:
        frame = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path} is not a readable CSV: {str(err).splitlines()[0]}") from None
    cols = {c.strip().lower(): c for c in frame.columns}
    if "text" not in cols or "rating" not in cols:
        raise ValueError(f"{path} needs columns 'text' and 'rating' (has {list(frame.columns)})")
    frame = frame[[cols["text"], cols["rating"]]].dropna()
    ratings = pd.to_numeric(frame[cols["rating"]], errors="coerce")
    if ratings.isna().any():
        raise ValueError(f"{path}: every rating must be a number")
    if len(frame) < 3:
        raise ValueError(f"{path}: need at least 3 rated texts, found {len(frame)}")
    return [str(t) for t in frame[cols["text"]]], ratings.to_numpy(float)

