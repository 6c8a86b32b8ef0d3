"""``score_hypothesis``: gather the evidence for a hypothesis about a neuron and score it
(``score/components.py``). Used by ``neurosleuth score``, the agent's test step and
``bench/score.py``.

Evidence, in order:

1. the neuron's dataset exemplars (``exemplars.json`` of a run, or the cached corpus scan), its
   threshold (the ``threshold_q`` token quantile, default 0.99) and top contexts (snippets that
   end at the peak, as the agent's seeds);
2. held-out windows: the exemplar windows ranked ``skip_top`` and below (the agent is shown the
   first 8), or an investigation's ``validation_top`` windows (``agents/exemplars.py``: ranked
   past every window its planner and explainers read) and random corpus windows outside the
   scan's kept top/bottom (``tools.exemplars.heldout_windows``), cut to ``judge_tokens`` tokens
   around their peak;
   more random windows (``pool_windows``) are the text the heuristic's test prompts come from;
3. neuron-level components, computed once: causality (ablation on the top contexts against
   ``baseline`` random neurons), robustness (perturbations of the top contexts), human (ratings);
4. per hypothesis (the one scored, a control written for another neuron of the same layer by
   the caller's planner or read off its peak tokens, and the empty hypothesis): test prompts,
   judgments of the held-out windows, simulations of ``sim_windows`` of them (half top, half
   random), all measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurosleuth.score import components as S
from neurosleuth.score.evidence import (
    ablation_kl,
    max_acts,
    perturbation_ratios,
    read_ratings,
    sim_slice,
    usable,
    window_acts,
)
from neurosleuth.score.requests import CallCost
from neurosleuth.score.writer import HeuristicWriter, peak_token_hypothesis, render
from neurosleuth.tools.ablate import Mode
from neurosleuth.tools.exemplars import heldout_windows
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.scan_config import ScanConfig
from neurosleuth.tools.snippets import Snippet, exemplar_data, snippets_from_json

# (neuron, model, its top exemplar snippets) -> a hypothesis about that neuron and what writing it
# cost: how the caller's planner writes the other-neuron control (``agents/scoring.py``)
Hypothesize = Callable[[str, str, list[Snippet]], tuple[str, CallCost]]


@dataclass(frozen=True)
class ScoreConfig:
    # the corpus scan the exemplars and held-out windows come from: by default the short scan of a
    # run without a time budget (``tools/scan_config.SHORT_SCAN``), so a score and such a run share
    # one cached scan; an investigation's own is ``RunConfig.scan()`` (``agents/scoring.py``)
    scan: ScanConfig = ScanConfig()
    n_prompts: int = 8  # positive and negative test prompts per hypothesis
    top_windows: int = 8  # held-out top exemplar windows judged
    skip_top: int = 8  # top exemplars the agent was shown (not held out)
    random_windows: int = 16  # random held-out windows judged
    pool_windows: int = 256  # more held-out windows: text for the heuristic's test prompts
    judge_tokens: int = 32  # tokens of each judged window (around its peak)
    sim_windows: int = 6  # half top, half random (one LLM call each)
    sim_tokens: int = 24
    contexts: int = 8  # top contexts for causality and robustness
    paraphrases: int = 4
    baseline: int = 20  # random neurons for the causality z-score
    ablation_mode: Mode = "mean"
    threshold_q: float = 0.99
    n_boot: int = 1000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The settings as saved with a score: flat, the scan's fields beside the others (the
        keys a score's ``config`` has always had)."""
        fields = asdict(self)
        return {**fields.pop("scan"), **fields}


@dataclass(frozen=True)
class Held:
    """Held-out windows, cut around their peak: token strings and real activations."""

    tokens: list[list[str]]
    acts: list[np.ndarray]
    kinds: list[str]  # "top" or "random"
    pool: list[list[str]]  # token strings of more held-out windows, for heuristic test prompts


def scanned_exemplars(lm: LoadedModel, neuron: NeuronId, c: ScoreConfig) -> dict:
    """The neuron's ``exemplars.json``-style data from the (cached) scan of ``c``'s settings."""
    s = c.scan
    return exemplar_data(lm, neuron, corpus=s.corpus, k=s.k, window=s.window,
                         max_tokens=s.max_tokens)[0]


def threshold_of(data: dict, q: float) -> float:
    quant = data.get("quantiles") or {}
    levels = sorted((float(k[1:]), float(v)) for k, v in quant.items())
    if not levels:
        raise ValueError("the exemplar data has no activation quantiles")
    return float(np.interp(q, [lv for lv, _ in levels], [v for _, v in levels]))


def held_out(lm: LoadedModel, neuron: NeuronId, data: dict, c: ScoreConfig) -> Held:
    if "validation_top" in data:  # an investigation's: top windows that nothing else read
        tops = data["validation_top"][: c.top_windows]
    else:
        tops = data.get("top", [])
        tops = tops[c.skip_top : c.skip_top + c.top_windows] if len(tops) > c.skip_top else tops
    tokens = [list(e["tokens"]) for e in tops]
    acts = [np.asarray(e["acts"], float) for e in tops]
    kinds = ["top"] * len(tokens)
    wins = heldout_windows(
        lm,
        neuron,
        c.random_windows + c.pool_windows,
        corpus=c.scan.corpus,
        window=c.scan.window,
        max_tokens=c.scan.max_tokens,
        seed=c.seed,
    )
    judged, spare = wins[: c.random_windows], wins[c.random_windows :]
    tokens += [list(w.tokens) for w in judged]
    acts += window_acts(lm, neuron, [w.token_ids for w in judged])
    kinds += ["random"] * len(judged)
    cut_t, cut_a = [], []
    for t, a in zip(tokens, acts, strict=True):
        s, e = sim_slice(len(a), int(np.argmax(a)), c.judge_tokens)
        cut_t.append(t[s:e])
        cut_a.append(a[s:e])
    return Held(cut_t, cut_a, kinds, [list(w.tokens) for w in spare])


def neuron_components(
    lm: LoadedModel,
    neuron: NeuronId,
    data: dict,
    writer: HeuristicWriter,
    c: ScoreConfig,
    human: str | Path | None = None,
) -> dict[str, S.Component]:
    """Causality, robustness and (ratings given) human: the same for every hypothesis."""
    contexts = [t for _, _, t in snippets_from_json(data)][: c.contexts]
    t_kl, b_kl, info = ablation_kl(
        lm, neuron, contexts, mode=c.ablation_mode, baseline=c.baseline, seed=c.seed
    )
    out = {"causality": S.causality(t_kl, b_kl, seed=c.seed, n_boot=c.n_boot, details=info)}
    para = writer.paraphrase(contexts[: c.paraphrases])
    ratios, rinfo = perturbation_ratios(lm, neuron, contexts, para, seed=c.seed)
    rinfo["paraphrase_source"] = (
        "heuristic prefix" if type(writer) is HeuristicWriter else writer.name
    )
    out["robustness"] = S.robustness(ratios, seed=c.seed, n_boot=c.n_boot, details=rinfo)
    if human is not None:
        texts, ratings = read_ratings(human)
        out["human"] = S.human(max_acts(lm, neuron, texts), ratings, seed=c.seed, n_boot=c.n_boot)
    return out


def hypothesis_evidence(
    lm: LoadedModel,
    neuron: NeuronId,
    hypothesis: str,
    writer: HeuristicWriter,
    held: Held,
    c: ScoreConfig,
) -> S.HypothesisEvidence:
    pos, neg = writer.test_prompts(hypothesis, c.n_prompts, held.pool)
    pos, neg = usable(lm, pos), usable(lm, neg)
    judge = writer.judge(hypothesis, held.tokens)
    half = c.sim_windows // 2
    pick = [i for i, k in enumerate(held.kinds) if k == "top"][: c.sim_windows - half] + [
        i for i, k in enumerate(held.kinds) if k == "random"
    ][:half]
    pred, real = [], []
    for i in pick:
        a = held.acts[i]
        s, e = sim_slice(len(a), int(np.argmax(a)), c.sim_tokens)
        pred.append(np.asarray(writer.simulate(hypothesis, held.tokens[i][s:e]), float))
        real.append(a[s:e])
    return S.HypothesisEvidence(
        hypothesis,
        tuple(pos),
        max_acts(lm, neuron, pos),
        tuple(neg),
        max_acts(lm, neuron, neg),
        tuple(render(t) for t in held.tokens),
        np.asarray(judge, float),
        np.array([a.max() for a in held.acts]),
        tuple(pred),
        tuple(real),
    )


def control_hypothesis(
    lm: LoadedModel,
    neuron: NeuronId,
    c: ScoreConfig,
    writer: HeuristicWriter,
    hypothesize: Hypothesize | None = None,
) -> str:
    """A hypothesis written for a random other neuron of the same layer from its top 8 exemplar
    snippets: by ``hypothesize`` (its cost counted with the writer's), else read off their peak
    tokens."""
    rng = np.random.default_rng([c.seed, neuron.layer, neuron.index])
    other = NeuronId(neuron.layer, int((neuron.index + rng.integers(1, lm.d_mlp)) % lm.d_mlp))
    snippets = snippets_from_json(scanned_exemplars(lm, other, c))[:8]
    if hypothesize is None:
        return peak_token_hypothesis(snippets, snippets)[0]
    text, info = hypothesize(str(other), lm.name, snippets)
    writer.stats.add(info)
    return text


def score_hypothesis(
    lm: LoadedModel,
    neuron: NeuronId,
    hypothesis: str,
    *,
    writer: HeuristicWriter | None = None,
    hypothesize: Hypothesize | None = None,
    exemplars: dict | None = None,
    config: ScoreConfig | None = None,
    control: str | None = None,
    human: str | Path | None = None,
    weights: str | dict | None = None,
    cache: dict | None = None,
) -> S.ScoreResult:
    """Score ``hypothesis`` about ``neuron`` (module docstring). ``writer``: who writes the test
    prompts, judgments, simulations and paraphrases: an ``LLMWriter`` over the caller's LLM, a
    ``HeuristicWriter`` that knows the explainer's patterns, or by default keywords.
    ``hypothesize``: who writes the other-neuron control (default: its peak tokens); ``control``:
    that control, given. ``exemplars``: a run's ``exemplars.json`` data (else the cached scan).
    ``config``: the scan settings and seed (an investigation's: ``agents/scoring.py``). ``cache``:
    a dict kept by the caller across calls; the neuron-level evidence (held-out windows,
    causality, robustness, human) and the controls' evidence are computed once per (neuron,
    settings, writer) and reused, so re-scoring refined hypotheses costs only their own prompts,
    judgments and simulations."""
    start = time.perf_counter()
    c = config or ScoreConfig()
    weights = S.parse_weights(weights)
    neuron.validate(lm.n_layers, lm.d_mlp)
    writer = writer or HeuristicWriter(str(neuron), lm.name)
    key = (lm.name, str(neuron), c, str(human), writer.name)
    entry = cache.get(key) if cache is not None else None
    if entry is None:
        data = (
            exemplars
            if exemplars and exemplars.get("top")
            else scanned_exemplars(lm, neuron, c)
        )
        entry = {
            "threshold": threshold_of(data, c.threshold_q),
            "held": held_out(lm, neuron, data, c),
            "shared": neuron_components(lm, neuron, data, writer, c, human),
            "controls": {},
        }
        if cache is not None:
            cache[key] = entry
    held, threshold = entry["held"], entry["threshold"]
    main = hypothesis_evidence(lm, neuron, hypothesis, writer, held, c)
    if control is None and "control" not in entry:
        entry["control"] = control_hypothesis(lm, neuron, c, writer, hypothesize)
    other = entry["control"] if control is None else control
    for text in (other, ""):
        if text not in entry["controls"]:
            entry["controls"][text] = hypothesis_evidence(lm, neuron, text, writer, held, c)
    controls = [("other-neuron", entry["controls"][other]), ("empty", entry["controls"][""])]
    evidence = {
        "positive": [[t, float(a)] for t, a in zip(main.positive, main.positive_acts, strict=True)],
        "negative": [[t, float(a)] for t, a in zip(main.negative, main.negative_acts, strict=True)],
        "judged": [
            [t, float(s), float(a), k]
            for t, s, a, k in zip(
                main.windows, main.judge_scores, main.window_max, held.kinds, strict=True
            )
        ],
    }
    return S.assemble(
        lm.name,
        str(neuron),
        main,
        entry["shared"],
        controls,
        threshold,
        weights,
        seed=c.seed,
        n_boot=c.n_boot,
        evidence=evidence,
        llm=writer.stats.to_dict(),
        seconds=time.perf_counter() - start,
        config={**c.to_dict(), "threshold": threshold},
    )


def attack_counterexamples(
    lm: LoadedModel,
    neuron: NeuronId,
    hypothesis: str,
    seeds: list[str],
    threshold: float,
    *,
    steps: int = 8,
    seed: int = 0,
    limit: int = 5,
    writer: HeuristicWriter | None = None,
) -> tuple[list[dict], int]:
    """Counterexamples found by the attack (``tools/attack.py``): prompts the gradient search
    drives above ``threshold`` that the hypothesis, as judged by ``writer`` (default: keywords),
    does not cover. Returns them (most active first) and the forward passes the search cost."""
    from neurosleuth.tools.attack import AttackConfig, attack

    seeds = [s for s in seeds if s.strip()]
    if not seeds:
        return [], 0
    cfg = AttackConfig(
        steps=steps, position="max", seed=seed, candidates=12, budget=steps * 48, keep=8
    )
    result = attack(lm, neuron, init=seeds, config=cfg)
    fired = [p for p in result.prompts if p.activation >= threshold]
    if not fired:
        return [], result.n_forward
    writer = writer or HeuristicWriter(str(neuron), lm.name)
    tokens = [list(lm.token_strs(list(p.token_ids))) for p in fired]
    said = writer.judge(hypothesis, tokens)
    found: list[dict[str, Any]] = [
        {"text": p.text, "activation": float(p.activation), "source": "attack"}
        for p, s in zip(fired, said, strict=True)
        if s < S.JUDGE_CUT
    ]
    return sorted(found, key=lambda d: -d["activation"])[:limit], result.n_forward
