"""What the score asks an LLM for, and through what: the pydantic objects a reply is validated
into, the prompt templates that ask for them, and ``Asker``, the one thing the score needs of an
LLM. All owned by the score so that the score depends on nothing of the agent: the agent's
planner implements ``Asker`` (``agents/planner.py`` ``LLMPlanner.ask``), asks for ``TestPrompts``
with the same template (``agents/prompts.py``) and validates its prompts as ``PromptText``
(``agents/actions.py``).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, Protocol, TypeVar, get_origin

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, create_model

JUDGE_BATCH = 8  # windows judged per request


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("a prompt must contain more than whitespace")
    return text


# Not stripped: a leading space is part of the first token (" Paris" is not "Paris").
PromptText = Annotated[str, StringConstraints(min_length=1, max_length=1000),
                       AfterValidator(_not_blank)]
Score = Annotated[int, Field(ge=0, le=10)]


class TestPrompts(BaseModel):
    """Prompts a hypothesis predicts: ``positive`` should activate the neuron, ``negative`` not."""

    kind: Literal["test_prompts"] = "test_prompts"
    positive: list[PromptText] = Field(min_length=1, max_length=12)
    negative: list[PromptText] = Field(min_length=1, max_length=12)


class JudgeWindows(BaseModel):
    """Per numbered text: does the hypothesis predict the neuron fires in it?"""

    kind: Literal["judge_windows"] = "judge_windows"
    applies: list[bool] = Field(min_length=1, max_length=JUDGE_BATCH)


class SimulateTokens(BaseModel):
    """Predicted activation, 0-10, of each numbered token in order."""

    kind: Literal["simulate_tokens"] = "simulate_tokens"
    values: list[Score] = Field(min_length=1, max_length=32)


class Paraphrases(BaseModel):
    """One rewrite per numbered text, in order."""

    kind: Literal["paraphrases"] = "paraphrases"
    texts: list[PromptText] = Field(min_length=1, max_length=4)


@functools.cache
def sized(schema: type[BaseModel], field_name: str, k: int) -> type[BaseModel]:
    """``schema`` with exactly ``k`` items in ``field_name`` (same class name): the grammar then
    makes a constrained model write the right number of items."""
    annotation = schema.model_fields[field_name].annotation  # list[X]
    if get_origin(annotation) is not list:
        raise TypeError(f"{schema.__name__}.{field_name} is not a list field")
    fields: dict[str, Any] = {field_name: (annotation, Field(min_length=k, max_length=k))}
    return create_model(schema.__name__, __base__=schema, __doc__=schema.__doc__, **fields)


TEST = (
    'Neuron {neuron} of {model}. Hypothesis about it: "{claim}"\n'
    "{steering}\n"
    "Write {n} short texts on which the neuron should fire if the hypothesis is right (positive), "
    "and {n} similar texts on which it should not fire (negative). Answer with JSON: "
    '{{"kind": "test_prompts", "positive": ["..."], "negative": ["..."]}}')

JUDGE = (
    'Neuron {neuron} of {model}. Hypothesis about it: "{hypothesis}"\n\n'
    "For each numbered text, say whether the hypothesis predicts that the neuron fires strongly "
    "somewhere in it.\n{texts}\n\n"
    'Answer with JSON: {{"kind": "judge_windows", "applies": [true, false, ...]}} with exactly '
    "{n} values, one per text, in order.")

SIMULATE = (
    'Neuron {neuron} of {model}. Hypothesis about it: "{hypothesis}"\n\n'
    "Using only the hypothesis, predict the neuron's activation on each token of this text, "
    "from 0 (silent) to 10 (strongest). The tokens, numbered:\n{tokens}\n\n"
    'Answer with JSON: {{"kind": "simulate_tokens", "values": [0, 3, 10, ...]}} with exactly '
    "{n} integers, one per token, in order.")

PARAPHRASE = (
    "Rewrite each numbered text in other words, keeping its meaning, style and length.\n"
    "{texts}\n\n"
    'Answer with JSON: {{"kind": "paraphrases", "texts": ["...", "..."]}} with exactly {n} '
    "texts, one per text, in order.")


M = TypeVar("M", bound=BaseModel)


class CallCost(Protocol):
    """What one request cost (``agents/planner.py`` ``CallInfo``); a writer adds them up."""

    calls: int
    failures: int
    repairs: int
    tokens_in: int
    tokens_out: int
    seconds: float
    errors: list[str]


class Asker(Protocol):
    """An LLM that answers a request with a pydantic object. ``ask`` returns the reply validated
    into ``schema``, or None when it could not get one (after its own retries and repairs: the
    caller falls back rather than asking again), and what the request cost. ``name`` names it in
    the score's record."""

    name: str

    def ask(self, schema: type[M], user: str, temperature: float) -> tuple[M | None, CallCost]:
        ...


def render_test_prompts(neuron: str, model: str, claim: str, n: int, steering: str = "") -> str:
    """The ``TEST`` request. ``steering``: the researcher's guidance as the planner renders it
    (a score has none)."""
    return TEST.format(neuron=neuron, model=model, claim=claim, steering=steering, n=n)
