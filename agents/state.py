"""The investigation's graph state: small, JSON-serialisable, checkpointed after every node.

Tensors and large data live in files under the run directory; the state holds what a resumed
run needs to continue exactly where it stopped (heaps, counters, the last action and outcome).
Lists that only grow use an ``operator.add`` reducer so a node returns just its new items.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class LLMUsage(TypedDict):
    calls: int
    tokens_in: int
    tokens_out: int
    failures: int
    repairs: int
    seconds: float
    fallbacks: int  # requests the heuristic answered because the LLM failed


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
    experiments: Annotated[list[dict[str, Any]], operator.add]
    outcome: dict[str, Any] | None  # the last act result: rows measured or rejected
    heaps: dict[str, Any]  # memory.topk.ActivationHeaps.to_dict()
    stats: dict[str, Any]  # memory.topk.SearchStats.to_dict()
    stagnation: dict[str, Any]  # memory.stagnation.StagnationMonitor.to_dict()
    pending: list[dict[str, str]]  # prompts queued by a recovery strategy: {prompt, source}
    exemplar_cursor: int  # next dataset exemplar to use for an exemplar restart
    curve: Annotated[list[list[float]], operator.add]  # [forward_passes, iteration, best]
    recoveries: Annotated[list[dict[str, Any]], operator.add]
    hypotheses: Annotated[list[dict[str, Any]], operator.add]
    evidence: Annotated[list[dict[str, Any]], operator.add]  # causal probes (agents/probes.py)
    steering: list[dict[str, Any]]  # {message, received_at, applied_step}
    steer_seen: int  # lines of steer.jsonl already taken
    user_hypotheses: list[str]  # the researcher's candidates (--hypothesis, steer --hypothesis)
    hypothesis_due: bool
    pending_hypothesis: dict[str, Any] | None  # drafted by hypothesize, scored by test
    done: bool
    stop_reason: str | None


def zero_usage() -> LLMUsage:
    return LLMUsage(calls=0, tokens_in=0, tokens_out=0, failures=0, repairs=0, seconds=0.0,
                    fallbacks=0)


def add_usage(a: LLMUsage, b: dict[str, Any]) -> LLMUsage:
    return LLMUsage(**{k: a[k] + b.get(k, 0) for k in a})  # type: ignore[misc]
