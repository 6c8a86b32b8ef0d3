"""What the hypothesis report reads: the run directory (layout: README "Runs"), and the two
analyses that need the model under study.

Reading is tolerant by design: a run killed early may lack any file, and a file being rewritten
while we read it may be truncated. A missing or unreadable file becomes an entry in
``RunData.missing`` (shown by the report) instead of an exception; ``events.jsonl`` keeps its good
lines and counts the bad ones.

Model analyses (only when a ``LoadedModel`` is given):

- per-token activations of the top and bottom prompts (and of the latest score's counterexamples
  and test prompts), re-measured in one batched ``measure`` call (the run stores only each
  prompt's max). The largest difference between a re-measured max and the
  recorded one is reported: it should be ~0, and a large value means the model given to the report
  is not the one the run studied.
- the vocabulary projection of the neuron's output weights (the direct logit effect per unit of
  activation; Geva et al. 2022, "Transformer Feed-Forward Layers Build Predictions by Promoting
  Concepts in the Vocabulary Space"; nostalgebraist 2020, "logit lens"):
  ``(W_out[layer, index] * g) @ W_U`` where ``g`` is the final norm's weight (``1 + w`` for Gemma's
  RMSNorm). Approximation: it ignores everything between the neuron and the unembedding (later
  attention and MLP layers can amplify, cancel or move this direction), the norm's per-position
  scale (a positive factor, so rankings are unaffected), LayerNorm's bias and the unembedding bias
  (the same for every activation value). For a LayerNorm model the vector is mean-centred first, as
  LayerNorm would do. The ranking is exact for the direct path only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from neurosleuth.agents.rundir import RunSummary
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronError, NeuronId

JSON_FILES = {  # file -> the JSON type it must hold
    "config.json": dict,
    "summary.json": dict,
    "hypotheses.json": list,
    "heaps.json": dict,
    "exemplars.json": dict,
    "evidence.json": list,
    "explanation.json": dict,
}
CSV_FILES = ("prompts.csv", "curve.csv")


@dataclass(frozen=True)
class RunData:
    """Everything the report reads from one run directory; absent parts are empty."""

    run_dir: Path
    config: dict[str, Any]
    summary: RunSummary
    hypotheses: list[dict[str, Any]]
    heaps: dict[str, Any]
    exemplars: dict[str, Any]
    prompts: pd.DataFrame | None
    curve: pd.DataFrame | None
    events: list[dict[str, Any]]
    evidence: list[dict[str, Any]] = field(default_factory=list)  # causal probes
    explanation: dict[str, Any] = field(default_factory=dict)  # the explainer's last result
    missing: dict[str, str] = field(default_factory=dict)  # file -> "missing" | "unreadable: why"

    def value(self, key: str, default: Any = None) -> Any:
        """``key`` from summary.json, else from config.json, else ``default``."""
        sources: tuple[Mapping[str, Any], ...] = (self.summary, self.config)
        for source in sources:
            if source.get(key) is not None:
                return source[key]
        return default

    def why_missing(self, *files: str) -> str:
        """'not available (heaps.json missing)' for the first of ``files`` that is absent."""
        for f in files:
            if f in self.missing:
                return f"not available ({f} {self.missing[f]})"
        return "not available (no data recorded yet)"


def load_run(run_dir: str | Path) -> RunData:
    """Read every file of the run-dir contract that is present and well-formed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    missing: dict[str, str] = {}
    parsed = {name: _read_json(run_dir / name, kind, missing) for name, kind in JSON_FILES.items()}
    tables = {name: _read_csv(run_dir / name, missing) for name in CSV_FILES}
    hyps = [h for h in parsed["hypotheses.json"] or [] if isinstance(h, dict)]
    return RunData(
        run_dir=run_dir,
        config=parsed["config.json"] or {},
        summary=cast(RunSummary, parsed["summary.json"] or {}),  # read as written, unchecked
        hypotheses=hyps,
        heaps=parsed["heaps.json"] or {},
        exemplars=parsed["exemplars.json"] or {},
        prompts=tables["prompts.csv"],
        curve=tables["curve.csv"],
        events=_read_events(run_dir / "events.jsonl", missing),
        evidence=[e for e in parsed["evidence.json"] or [] if isinstance(e, dict)],
        explanation=parsed["explanation.json"] or {},
        missing=missing,
    )


def _read_json(path: Path, kind: type, missing: dict[str, str]) -> Any:
    if not path.is_file():
        missing[path.name] = "missing"
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        missing[path.name] = f"unreadable: {type(err).__name__}"
        return None
    if not isinstance(data, kind):
        missing[path.name] = f"unreadable: expected a JSON {kind.__name__}"
        return None
    return data


def _read_csv(path: Path, missing: dict[str, str]) -> pd.DataFrame | None:
    if not path.is_file():
        missing[path.name] = "missing"
        return None
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as err:
        missing[path.name] = f"unreadable: {type(err).__name__}"
        return None


def _read_events(path: Path, missing: dict[str, str]) -> list[dict[str, Any]]:
    if not path.is_file():
        missing[path.name] = "missing"
        return []
    events, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(ev, dict):
            events.append(ev)
    if bad:
        missing[path.name] = f"partly unreadable: {bad} bad line(s) skipped"
    return events


def as_float(x: Any) -> float | None:
    """A finite float, or None (for null, NaN, strings that are not numbers)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def heap_records(data: RunData, side: str) -> list[dict[str, Any]]:
    """The well-formed records of ``heaps.json[side]`` (side: 'top' or 'bottom')."""
    recs = data.heaps.get(side) or []
    return [r for r in recs if isinstance(r, dict) and isinstance(r.get("prompt"), str)]


@dataclass(frozen=True)
class TokenActs:
    """Per-token activations of one text for the neuron (positions exclude BOS)."""

    text: str
    tokens: list[str]
    acts: np.ndarray  # (T,)

    @property
    def argmax(self) -> int:
        return int(np.argmax(self.acts)) if len(self.acts) else 0


@dataclass(frozen=True)
class VocabProjection:
    """Tokens whose logits the neuron's output direction raises / lowers the most."""

    promoted: list[tuple[str, float]]  # (token, logit change per unit activation), descending
    suppressed: list[tuple[str, float]]  # ascending
    norm: str  # how the final norm was folded in


@dataclass(frozen=True)
class ModelAnalysis:
    """The report's model-dependent parts; ``note`` says why a part is absent."""

    token_acts: dict[str, TokenActs]  # prompt -> per-token activations
    vocab: VocabProjection | None
    max_abs_diff: float | None  # re-measured vs recorded max activation
    note: str


def analyse(data: RunData, lm: LoadedModel | None, neuron: NeuronId | None,
            texts: list[str] | tuple[str, ...] = ()) -> ModelAnalysis:
    """Re-measure heap prompts (and ``texts``, e.g. a score's counterexamples) and project the
    output weights, when a model and neuron are known."""
    if lm is None:
        return ModelAnalysis({}, None, None, "not available (report written without the model)")
    if neuron is None:
        return ModelAnalysis({}, None, None, "not available (the run does not name its neuron)")
    neuron.validate(lm.n_layers, lm.d_mlp)
    records = heap_records(data, "top") + heap_records(data, "bottom")
    acts = remeasure(lm, neuron, [r["prompt"] for r in records] + list(texts))
    diffs = [
        abs(float(acts[r["prompt"]].acts.max()) - rec)
        for r in records
        if r["prompt"] in acts and (rec := as_float(r.get("activation"))) is not None
    ]
    return ModelAnalysis(acts, vocab_projection(lm, neuron), max(diffs) if diffs else None, "")


def remeasure(lm: LoadedModel, neuron: NeuronId, prompts: list[str]) -> dict[str, TokenActs]:
    """Per-token activations of ``prompts`` (one batched call); prompts with no tokens skipped."""
    from neurosleuth.tools.measure import measure

    unique = [p for p in dict.fromkeys(prompts) if len(lm.encode(p)) > lm.n_prefix]
    if not unique:
        return {}
    res = measure(lm, unique, neuron)
    return {p: TokenActs(p, res.tokens[i], res.per_token(i, neuron).astype(float))
            for i, p in enumerate(unique)}


def vocab_projection(lm: LoadedModel, neuron: NeuronId, k: int = 15) -> VocabProjection:
    """Top-``k`` promoted and suppressed tokens of the neuron's direct logit effect (docstring)."""
    neuron.validate(lm.n_layers, lm.d_mlp)
    with torch.no_grad():
        # one layer's W_out (d_mlp, d_model); the bridge's W_out property stacks every layer
        w_out = lm.model.blocks[neuron.layer].mlp.W_out[neuron.index].float()  # (d_model,)
        gain, norm = final_norm_gain(lm)
        if norm.startswith("LayerNorm"):
            w_out = w_out - w_out.mean()
        if gain is not None:
            w_out = w_out * gain.to(w_out.device)
        logits = (w_out @ lm.model.W_U.float()).cpu().numpy()  # (vocab,)
    k = min(k, logits.shape[0])
    order = np.argsort(logits)
    top, bottom = order[::-1][:k], order[:k]
    strs = lm.token_strs([int(i) for i in np.concatenate([top, bottom])])
    promoted = [(s, float(logits[i])) for s, i in zip(strs[:k], top, strict=True)]
    suppressed = [(s, float(logits[i])) for s, i in zip(strs[k:], bottom, strict=True)]
    return VocabProjection(promoted, suppressed, norm)


def final_norm_gain(lm: LoadedModel) -> tuple[torch.Tensor | None, str]:
    """The final norm's elementwise gain (d_model,) and a description; (None, why) if none found."""
    ln = getattr(lm.model, "ln_final", None)
    if ln is None:
        return None, "no final norm found: raw W_out @ W_U"
    inner = getattr(ln, "_original_component", ln)
    kind = type(inner).__name__
    weight = getattr(inner, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.shape != (lm.d_model,):
        return None, f"{kind} without an elementwise weight: raw W_out @ W_U"
    if "Gemma" in kind:
        return 1.0 + weight.float(), f"{kind}: scaled by (1 + weight)"
    label = "LayerNorm" if "RMS" not in kind and "LayerNorm" in kind else kind
    return weight.float(), f"{label}: scaled by its weight" + (
        ", mean-centred" if label == "LayerNorm" else "")


def neuron_of(data: RunData, neuron: NeuronId | None) -> NeuronId | None:
    """The neuron given, else the one the run names (None if it names none or a bad one)."""
    if neuron is not None:
        return neuron
    spec = data.value("neuron")
    try:
        return NeuronId.parse(str(spec)) if spec is not None else None
    except NeuronError:
        return None
