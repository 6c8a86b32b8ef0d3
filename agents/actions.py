"""Actions the planner may emit: pydantic models, dispatched by type (never by a name string).

An LLM's output is data: it is parsed into one of these models and validated; nothing it says is
executed. Prompt text is bounded in count and length here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

# the score asks for test prompts too; both are the score's (score/requests.py)
from neurosleuth.score.requests import PromptText, TestPrompts


class ProposePrompts(BaseModel):
    """New prompts to measure on the neuron."""

    kind: Literal["propose_prompts"] = "propose_prompts"
    prompts: list[PromptText] = Field(min_length=1, max_length=16)
    rationale: str = Field("", max_length=600)


class StateHypothesis(BaseModel):
    """What the neuron responds to, in one sentence, and why the evidence says so."""

    kind: Literal["hypothesis"] = "hypothesis"
    text: str = Field(min_length=3, max_length=300)
    explanation: str = Field("", max_length=1500)


class RunAttack(BaseModel):
    """Gradient-guided prompt search seeded with the best prompt so far."""

    kind: Literal["attack"] = "attack"
    steps: int = Field(20, ge=1, le=200)
    length: int = Field(8, ge=2, le=32)


class RunAblation(BaseModel):
    """Ablate the neuron on the top prompts: its causal effect next to random neurons."""

    kind: Literal["ablate"] = "ablate"
    mode: Literal["zero", "mean"] = "zero"
    prompts: int = Field(8, ge=1, le=32)


class RunAttribution(BaseModel):
    """Which input tokens drive the neuron on the best prompt (integrated gradients)."""

    kind: Literal["attribute"] = "attribute"
    steps: int = Field(32, ge=4, le=256)


class RunSteering(BaseModel):
    """Add the neuron's output direction (x alpha) on plain prompts: what it writes."""

    kind: Literal["steer"] = "steer"
    alpha: float = Field(8.0, ge=-100, le=100)


class Finish(BaseModel):
    """Stop exploring: the evidence is enough."""

    kind: Literal["finish"] = "finish"
    reason: str = Field("", max_length=300)


ExploreAction = Annotated[ProposePrompts | RunAttack | Finish, Field(discriminator="kind")]
ACTION_TYPES: dict[str, type[BaseModel]] = {
    m.model_fields["kind"].default: m
    for m in (
        ProposePrompts,
        StateHypothesis,
        TestPrompts,
        RunAttack,
        RunAblation,
        RunAttribution,
        RunSteering,
        Finish,
    )
}


def action_from_dict(data: dict) -> BaseModel:
    """Rebuild an action saved in graph state (a dict with its ``kind``)."""
    return ACTION_TYPES[data["kind"]].model_validate(data)
