"""The investigation's graph state: small, JSON-serialisable, checkpointed after every node.

Tensors and large data live in files under the run directory; the state holds what a resumed
run needs to continue exactly where it stopped (heaps, counters, the last action and outcome).
Lists that only grow use an ``operator.add`` reducer so a node returns just its new items.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, NotRequired, TypedDict

from neurosleuth.memory.topk import ActivationHeaps


class LLMUsage(TypedDict):
    calls: int
    tokens_in: int
    tokens_out: int
    failures: int
    repairs: int
    seconds: float
    fallbacks: int  # requests the heuristic answered because the LLM failed


class PromptRow(TypedDict):
    """One measured (or rejected) prompt: a line of ``prompts.csv``."""

    prompt: str
    status: str  # accepted | shared (a peer's) | duplicate | semantic | ...
    activation: float | None
    max_token: str | None
    source: str  # planner, heuristic, exemplar, attack, mutation, steer, neuron L:I, ...
    similarity: float | None


# What an experiment found: a dict of one of the typed records of ``agents/findings.py`` (a
# discriminated union on ``kind``), validated as it enters the state, read back typed.
Finding = dict[str, Any]


class Candidate(TypedDict, total=False):
    """A candidate hypothesis of a round and, once tested, its score."""

    text: str
    source: str  # explainer, planner, heuristic, previous best, researcher
    explanation: str
    pattern: dict[str, Any]  # how the explainer's pattern simulates it (explainer candidates)
    rejected: str  # why it was not scored (e.g. it quotes the exemplars)
    score_error: str
    score: dict[str, Any] | None  # score/run.py ScoreResult.to_dict()


class Hypothesis(Candidate, total=False):
    """A round's winner: a candidate with the round's table and how it was decided."""

    step: int
    candidates: list[dict[str, Any]]
    experiment: dict[str, Any] | None  # the concept or kind experiment of the round
    decided_by: dict[str, Any] | None  # the experiment that changed the winner, if one did


class ExperimentRecord(TypedDict):
    """One experiment run: who asked for it and why, and what it gave."""

    step: int
    kind: str
    source: str  # planner, heuristic, policy, steer, exemplar, recovery ...
    reason: str
    summary: str


class Outcome(TypedDict):
    """What a tool returns to the ``act`` node (``agents/handlers.py``)."""

    rows: list[PromptRow]
    forward_passes: int
    summary: str
    dedup: NotRequired[dict[str, Any]]  # the memory's decisions on a proposal
    evidence: NotRequired[Finding | None]
    hypothesis: NotRequired[Hypothesis]  # a comparison that overturned the leader


class Mark(TypedDict):
    """Where a ``plan`` sent the graph, and the run's counters then (the next plan measures the
    cost of what ran in between)."""

    elapsed_s: float
    forward_passes: int
    route: str  # act, round or report


class Costs(TypedDict, total=False):
    """The last step's and the last round's measured cost (``nodes.measured_costs``)."""

    step_s: float
    step_passes: int
    round_s: float
    round_passes: int


class Recovery(TypedDict):
    iteration: int
    strategy: str
    best: float | None


class Steering(TypedDict):
    """A researcher's message (``steer.jsonl``) and the step it took effect."""

    message: str
    received_at: str
    applied_step: int


class InvestigationState(TypedDict, total=False):
    iteration: int  # completed plan -> act -> record cycles
    forward_passes: int  # prompts run through the model (a batch of n counts n)
    elapsed_s: float  # wall time spent in nodes, summed across resumes
    own_s: float  # elapsed_s less the other neurons' turns (a layer-parallel batch's group)
    model_s: float
    llm: LLMUsage
    planner_used: str
    temperature: float
    action: dict[str, Any] | None  # the last planned action (``kind`` + fields)
    action_source: str  # who produced it: planner, heuristic, recovery, steer
    # every experiment run: {step, kind, source, reason, summary}
    experiments: Annotated[list[ExperimentRecord], operator.add]
    outcome: Outcome | None  # the last act result: rows measured or rejected
    heaps: dict[str, Any]  # memory.topk.ActivationHeaps.to_dict()
    stats: dict[str, Any]  # memory.topk.SearchStats.to_dict()
    stagnation: dict[str, Any]  # memory.stagnation.StagnationMonitor.to_dict()
    pending: list[dict[str, str]]  # prompts queued by a recovery strategy: {prompt, source}
    exemplar_cursor: int  # next dataset exemplar to use for an exemplar restart
    curve: Annotated[list[list[float]], operator.add]  # [forward_passes, iteration, best]
    recoveries: Annotated[list[Recovery], operator.add]
    hypotheses: Annotated[list[Hypothesis], operator.add]
    evidence: Annotated[list[Finding], operator.add]  # what the experiments found
    steering: list[Steering]
    steer_seen: int  # lines of steer.jsonl already taken
    user_hypotheses: list[str]  # the researcher's candidates (--hypothesis, steer --hypothesis)
    route: str  # where ``plan`` sent the graph: act, round or report (``policy.Route``)
    mark: Mark
    costs: Costs
    pending_hypothesis: Hypothesis | None  # drafted by hypothesize, scored by test
    done: bool
    stop_reason: str | None


def zero_usage() -> LLMUsage:
    return LLMUsage(calls=0, tokens_in=0, tokens_out=0, failures=0, repairs=0, seconds=0.0,
                    fallbacks=0)


def add_usage(a: LLMUsage, b: Mapping[str, Any]) -> LLMUsage:
    return LLMUsage(calls=a["calls"] + b.get("calls", 0),
                    tokens_in=a["tokens_in"] + b.get("tokens_in", 0),
                    tokens_out=a["tokens_out"] + b.get("tokens_out", 0),
                    failures=a["failures"] + b.get("failures", 0),
                    repairs=a["repairs"] + b.get("repairs", 0),
                    seconds=a["seconds"] + b.get("seconds", 0.0),
                    fallbacks=a["fallbacks"] + b.get("fallbacks", 0))


# What a function that only reads the state takes: the graph's state, or any mapping like it
State = Mapping[str, Any]


def heaps_of(state: State) -> ActivationHeaps:
    """The top-k / bottom-k prompts of the state (kept there as a plain dict, for checkpoints)."""
    return ActivationHeaps.from_dict(state["heaps"])


def leader(state: State) -> Hypothesis | None:
    """The latest hypothesis, or None before the first round."""
    hyps = state.get("hypotheses") or []
    return hyps[-1] if hyps else None
