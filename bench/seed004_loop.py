"""Baseline for ``bench/search.py``: the earlier tool's search loop (seed 004, "Neural Activation
Maximization Tool", ``NeuronActivationAgent.run_search``) re-implemented on this project's parts.

The seed tool's loop, as its README describes it, and what stands for each piece here:

1. seed prompts: a few generic, diverse texts ("Mechanistic interpretability is the study of", ...)
   measured first (``SEED_PROMPTS``); no dataset exemplars;
2. generate: an LLM sees the current top and bottom prompts (activation, text) and proposes new
   prompts (``PROPOSE``: no dataset exemplars, no hypothesis, no peak tokens, no other tools).
   The seed asked for one prompt per LLM call; here one call asks for ``n`` (8, as the agent
   does) so both methods spend the LLM alike per measured prompt. The LLM is the agent's own
   (``EmbeddedChatModel`` with the same grammar-constrained ``with_structured_output`` on a
   ``ProposePrompts``-like schema, ``Proposal``); an unparsable reply is retried (``retries``)
   and counted, never fatal;
3. semantic filter: ``memory.dedup.PromptDeduper`` over all-MiniLM-L6-v2 embeddings with its
   adaptive threshold (the seed's ``SemanticPromptFilter``: exact duplicates by hash, semantic
   near-duplicates by cosine, stricter near mediocre prompts). The seed had no junk filter (it
   measured LLM chatter and kept it in its bottom-10), so the chatter rules are off here
   (``JunkFilter(patterns=())``; empty and over-long texts are still dropped);
4. measure: ``tools.measure.measure`` (batched), one forward pass counted per measured prompt,
   stopping exactly at the budget;
5. heaps: ``memory.topk.ActivationHeaps`` (top-k / bottom-k);
6. stagnation: no improvement for ``patience`` rounds -> random prompts
   (``memory.seeds.random_prompts``) are measured next (the seed's only recovery).

``run_baseline`` takes any ``Proposer`` (``LLMProposer`` for the benchmark, ``HeuristicProposer``
for a no-LLM run, a scripted one in tests) and returns a ``BaselineResult``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field, StringConstraints

from neurosleuth.agents.planner import HeuristicBackend
from neurosleuth.agents.prompts import PlannerView
from neurosleuth.memory.dedup import PromptDeduper
from neurosleuth.memory.embedder import TextEmbedder, load_embedder
from neurosleuth.memory.junk import JunkFilter
from neurosleuth.memory.seeds import random_prompts
from neurosleuth.memory.stagnation import StagnationMonitor
from neurosleuth.memory.topk import ActivationHeaps, Record
from neurosleuth.tools.measure import measure
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId

SEED_PROMPTS: tuple[str, ...] = (
    "Mechanistic interpretability is the study of",
    "The quick brown fox jumps over the lazy dog.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "In 1492, Columbus sailed across the Atlantic Ocean.",
    "I can't believe it's already Monday again!",
    "The stock market fell sharply on Tuesday after the announcement.",
    "Photosynthesis converts sunlight into chemical energy.",
    "Qwerty 12345 !@#$% zxcvbn",
)

SYSTEM = (
    "You are an expert in mechanistic interpretability. You write text prompts that make one "
    "neuron of a language model activate as strongly as possible. "
    "You answer only with the JSON object asked for."
)

PROPOSE = """We are searching for texts that maximally activate neuron {neuron} (layer {layer}) of {model}.

Prompts with the highest activation so far (activation, prompt):
{top}

Prompts with the lowest activation so far:
{bottom}

Analyse what the best prompts have in common and write {n} new prompts that should activate the neuron even more strongly. Be creative, and make each one different from the prompts above. Answer with JSON: {{"prompts": ["...", "..."]}}"""  # noqa: E501

PromptText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=400)]


class Proposal(BaseModel):
    """The LLM's reply: new prompts to measure."""

    prompts: list[PromptText] = Field(min_length=1, max_length=16)


@dataclass
class ProposerCall:
    """One proposal: the prompts and what asking for them cost."""

    prompts: list[str]
    calls: int = 0
    failures: int = 0
    tokens_out: int = 0
    seconds: float = 0.0


Proposer = Callable[[NeuronId, list[Record], list[Record], int, float], ProposerCall]


def _rows(records: list[Record]) -> str:
    return "\n".join(f"{r.activation:.2f}  {r.prompt!r}" for r in records) or "(none yet)"


def render_propose(neuron: NeuronId, model: str, top: list[Record], bottom: list[Record],
                   n: int) -> str:
    return PROPOSE.format(neuron=neuron.index, layer=neuron.layer, model=model, top=_rows(top),
                          bottom=_rows(bottom), n=n)


class LLMProposer:
    """Asks a LangChain chat model (the embedded SmolLM2 by default use) for a ``Proposal``."""

    def __init__(self, chat: Any, model: str, retries: int = 2):
        self.chat, self.model, self.retries = chat, model, retries

    def __call__(self, neuron, top, bottom, n, temperature) -> ProposerCall:
        messages = [SystemMessage(SYSTEM),
                    HumanMessage(render_propose(neuron, self.model, top, bottom, n))]
        runnable = self.chat.model_copy(update={"temperature": temperature}).with_structured_output(
            Proposal, include_raw=True)
        call = ProposerCall(prompts=[])
        start = time.perf_counter()
        for _ in range(self.retries + 1):
            call.calls += 1
            try:
                out = runnable.invoke(messages)
            except Exception:  # noqa: BLE001 - a backend error is counted, never fatal
                call.failures += 1
                continue
            usage = getattr(out.get("raw"), "usage_metadata", None) or {}
            call.tokens_out += int(usage.get("output_tokens", 0))
            if out.get("parsed") is not None:
                call.prompts = list(out["parsed"].prompts)[:n]
                break
            call.failures += 1
        call.seconds = time.perf_counter() - start
        return call


class HeuristicProposer:
    """No LLM: the project's heuristic mutations of the top prompts (no exemplars shown)."""

    def __init__(self, seed: int = 0):
        self.backend = HeuristicBackend(seed)
        self.iteration = 0

    def __call__(self, neuron, top, bottom, n, temperature) -> ProposerCall:
        self.iteration += 1
        view = PlannerView(neuron=str(neuron), model="", iteration=self.iteration,
                           top=[(r.activation, r.max_token, r.prompt) for r in top],
                           bottom=[(r.activation, r.max_token, r.prompt) for r in bottom])
        action, _ = self.backend.propose(view, n, temperature)
        return ProposerCall(prompts=list(action.prompts))


@dataclass(frozen=True)
class BaselineResult:
    best_activation: float | None
    best_prompt: str | None
    forward_passes: int
    llm_calls: int
    llm_failures: int
    llm_tokens_out: int
    rounds: int
    generated: int
    accepted: int
    rejected: dict[str, int]
    random_restarts: int
    wall_s: float
    planner_s: float
    model_s: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (forward passes, best)
    top: list[tuple[float, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Tally:
    fp: int = 0
    calls: int = 0
    failures: int = 0
    tokens_out: int = 0
    generated: int = 0
    restarts: int = 0
    planner_s: float = 0.0
    model_s: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)


def run_baseline(lm: LoadedModel, neuron: NeuronId, propose: Proposer, budget: int, *,
                 n: int = 8, k: int = 20, patience: int = 5, temperature: float = 0.7,
                 threshold: float = 0.9, seed: int = 0, max_prompt_chars: int = 300,
                 embedder: TextEmbedder | None = None, max_rounds: int | None = None,
                 seeds: tuple[str, ...] = SEED_PROMPTS) -> BaselineResult:
    """The seed tool's loop (module doc) until ``budget`` prompts have been measured (or
    ``max_rounds``, default ``4 * budget``, rounds have passed)."""
    start = time.perf_counter()
    heaps = ActivationHeaps(k=k)
    dedup = PromptDeduper(embedder or load_embedder(), threshold=threshold, adaptive=True,
                          junk=JunkFilter(patterns=()))
    monitor = StagnationMonitor(patience=patience, strategies=("random_prompts",))
    rng = np.random.default_rng(seed)
    queue, source, t, rounds = list(seeds), "seed", _Tally(), 0
    while t.fp < budget and rounds < (max_rounds or 4 * budget):
        rounds += 1
        if queue:
            batch, queue = queue, []
        else:
            call = propose(neuron, heaps.top(10), heaps.bottom(5), n, temperature)
            batch, source = call.prompts, "llm"
            t.calls, t.failures = t.calls + call.calls, t.failures + call.failures
            t.tokens_out, t.planner_s = t.tokens_out + call.tokens_out, t.planner_s + call.seconds
        _measure_batch(lm, neuron, [p[:max_prompt_chars] for p in batch], dedup, heaps, t,
                       budget, rounds, source)
        if monitor.update(rounds, heaps.best):
            queue, source = random_prompts(n, rng), "random"
            t.restarts += 1
    st = dedup.stats
    best = heaps.top(1)
    return BaselineResult(
        best_activation=best[0].activation if best else None,
        best_prompt=best[0].prompt if best else None, forward_passes=t.fp, llm_calls=t.calls,
        llm_failures=t.failures, llm_tokens_out=t.tokens_out, rounds=rounds,
        generated=t.generated, accepted=st.accepted,
        rejected={"duplicate": st.duplicate, "semantic": st.semantic, "junk": st.junk},
        random_restarts=t.restarts, wall_s=time.perf_counter() - start, planner_s=t.planner_s,
        model_s=t.model_s, curve=t.curve,
        top=[(r.activation, r.prompt) for r in heaps.top(5)])


def _measure_batch(lm: LoadedModel, neuron: NeuronId, batch: list[str], dedup: PromptDeduper,
                   heaps: ActivationHeaps, t: _Tally, budget: int, step: int,
                   source: str) -> None:
    """Filter a batch, measure what passes (up to the budget), update heaps, memory, tally."""
    t.generated += len(batch)
    checked = dedup.check(batch)
    accepted = [p for p in checked.accepted if lm.encode(p)[lm.n_prefix:]][: budget - t.fp]
    if not accepted:
        return
    start = time.perf_counter()
    res = measure(lm, accepted, [neuron])
    t.model_s += time.perf_counter() - start
    acts = res.max_act[:, 0]  # (P,)
    for i, p in enumerate(accepted):
        heaps.push(Record(float(acts[i]), p, res.max_token(i), step, source))
    dedup.add(accepted, acts)
    t.fp += len(accepted)
    t.curve.append((t.fp, float(heaps.best)))
