"""Actions the planner may emit: pydantic models, dispatched by type (never by a name string).

An LLM's output is data: it is parsed into one of these models and validated; nothing it says is
executed. Prompt text is bounded in count and length here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# the score asks for test prompts too; both are the score's (score/requests.py)
from neurosleuth.score.requests import PromptText, TestPrompts


class Experiment(BaseModel):
    """One experiment the planner can choose; ``reason`` is logged beside its result."""

    reason: str = Field("", max_length=400, description="why this experiment now, in a sentence")


class ProposePrompts(Experiment):
    """Write new prompts and measure the neuron on them (the prompt search)."""

    kind: Literal["propose_prompts"] = "propose_prompts"
    prompts: list[PromptText] = Field(min_length=1, max_length=16)
    rationale: str = Field("", max_length=600)


def search(reason: str = "") -> ProposePrompts:
    """A prompt search chosen before its prompts are written (the planner writes them next)."""
    return ProposePrompts.model_construct(prompts=[], reason=reason, rationale="",
                                          kind="propose_prompts")


class StateHypothesis(BaseModel):
    """What the neuron responds to, in one sentence, and why the evidence says so."""

    kind: Literal["hypothesis"] = "hypothesis"
    text: str = Field(min_length=3, max_length=300)
    explanation: str = Field("", max_length=1500)


class TestSentences(BaseModel):
    """New sentences for the clause tests (``agents/revise.py``): each holds ``{w}`` once, where
    the word under test is put."""

    sentences: list[str] = Field(min_length=1, max_length=6)


class RunAttack(Experiment):
    """Gradient-guided prompt search from the best prompts: drive the neuron up (find stronger
    prompts) or down (find where it is most negative)."""

    kind: Literal["attack"] = "attack"
    steps: int = Field(20, ge=1, le=200)
    length: int = Field(8, ge=2, le=32)
    direction: Literal["up", "down"] = "up"


class RunAblation(Experiment):
    """Ablate the neuron on its top prompts (zero, mean or resample): how much the model's
    next-token distribution and loss change, next to random neurons of the same layer."""

    kind: Literal["ablate"] = "ablate"
    mode: Literal["zero", "mean", "resample"] = "zero"
    prompts: int = Field(8, ge=1, le=32)


class RunAttribution(Experiment):
    """Which input tokens drive the neuron on the best prompt (integrated gradients)."""

    kind: Literal["attribute"] = "attribute"
    steps: int = Field(32, ge=4, le=256)


class RunSteering(Experiment):
    """Add the neuron's output direction (x alpha) on prompts where it is quiet: which next
    tokens it promotes, i.e. what it writes."""

    kind: Literal["steer"] = "steer"
    alpha: float = Field(8.0, ge=-100, le=100)


class RunPatch(Experiment):
    """Patch the neuron's activation from its best prompt into its quietest prompts: does the
    model's next-token distribution move the way firing moves it (its effect is causal there)?"""

    kind: Literal["patch"] = "patch"
    prompts: int = Field(4, ge=1, le=16)


class RunHypothesis(Experiment):
    """Run the explainer on the evidence so far, gather candidate hypotheses and score each on
    held-out text (prompts of its own, paraphrases, simulation)."""

    kind: Literal["hypothesize"] = "hypothesize"


class TestHypothesis(Experiment):
    """Measure prompts the leading hypothesis predicts: ``positive`` should fire, ``negative``
    not (left empty: written for the hypothesis). Prediction accuracy is the result."""

    kind: Literal["test_hypothesis"] = "test_hypothesis"
    hypothesis: str = Field("", max_length=300)
    positive: list[PromptText] = Field(default_factory=list, max_length=12)
    negative: list[PromptText] = Field(default_factory=list, max_length=12)
    texts: list[PromptText] = Field(default_factory=list, max_length=12,
                                    description="texts to measure as they are (no prediction)")


class CompareHypotheses(Experiment):
    """Test two rival hypotheses against each other on prompts where their predictions differ
    (each one's test prompts, simulated by both): whose predictions the neuron bears out. Left
    empty: the two leading candidates of the last round."""

    kind: Literal["compare"] = "compare"
    a: str = Field("", max_length=300)
    b: str = Field("", max_length=300)


class Finish(Experiment):
    """Stop: the leading hypothesis is decided (its margin interval clears its rivals')."""

    kind: Literal["finish"] = "finish"


# What the planner may choose at a step: one experiment. Its reason is kept beside it.
EXPERIMENTS: tuple[type[Experiment], ...] = (
    ProposePrompts, RunAttack, RunAblation, RunAttribution, RunSteering, RunPatch, RunHypothesis,
    TestHypothesis, CompareHypotheses, Finish,
)
_ACTION_MODELS: tuple[type[BaseModel], ...] = (*EXPERIMENTS, StateHypothesis, TestPrompts)
ACTION_TYPES: dict[str, type[BaseModel]] = {
    m.model_fields["kind"].default: m for m in _ACTION_MODELS
}
# the experiments alone, by kind (a menu choice names one of these)
EXPERIMENT_TYPES: dict[str, type[Experiment]] = {
    m.model_fields["kind"].default: m for m in EXPERIMENTS
}


def kind_of(action: type[BaseModel] | BaseModel) -> str:
    cls = action if isinstance(action, type) else type(action)
    return cls.model_fields["kind"].default


def action_from_dict(data: dict) -> BaseModel:
    """Rebuild an action saved in graph state (a dict with its ``kind``)."""
    return ACTION_TYPES[data["kind"]].model_validate(data)
