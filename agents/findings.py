"""What the experiments found, as a discriminated union of typed records (``kind`` decides the
type): ablation, attribution, steering, patching, a test of the leader on new prompts, a
comparison of two rivals, and a revision round's clause tests (``agents/revise.py``).

The graph state keeps findings as plain dicts (it is JSON, checkpointed); every finding is
validated here when it enters the state (``validated``) and read back through ``findings_of``,
never by string keys.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

log = logging.getLogger(__name__)

Pair = tuple[str, float]  # a text (or token) and its activation (or effect)


class _Finding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    step: int = 0
    headline: str = ""


class Ablation(_Finding):
    kind: Literal["ablate"] = "ablate"
    mode: str
    prompts: int
    kl: float | None = None
    kl_z: float | None = None
    loss_change: float | None = None
    loss_z: float | None = None
    top1_change: float | None = None


class Attribution(_Finding):
    kind: Literal["attribute"] = "attribute"
    prompt: str
    peak_token: str
    activation: float
    drivers: list[Pair]
    completeness_gap: float | None = None


class Steering(_Finding):
    kind: Literal["steer"] = "steer"
    alpha: float
    kl: float | None = None
    kl_z: float | None = None
    promoted: list[Pair]


class Patch(_Finding):
    kind: Literal["patch"] = "patch"
    peak: float
    prompts: int
    kl: float | None = None
    kl_z: float | None = None
    promoted: list[Pair]


class Test(_Finding):
    kind: Literal["test"] = "test"
    hypothesis: str
    threshold: float
    positive: list[Pair] = []
    negative: list[Pair] = []
    texts: list[Pair] = []
    accuracy: float | None = None


class Comparison(_Finding):
    kind: Literal["compare"] = "compare"
    a: str
    b: str
    prompts: int
    disagree: int
    a_right: int
    b_right: int
    p: float
    verdict: Literal["a", "b", "undecided"]
    winner: str | None = None
    threshold: float


class ClauseResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    clause: str
    experiment: str
    result: str
    verdict: Literal["holds", "fails", "undecided"]
    edit: str


class Revision(_Finding):
    """One revision round: the clause tests of the leader, and whether the edit was kept."""

    kind: Literal["revise"] = "revise"
    round: int
    before: str
    after: str | None = None
    margin_before: float | None = None
    margin_after: float | None = None
    kept: bool
    outcome: str
    tests: list[ClauseResult]
    sentences_by: str = "templates"  # who wrote the new sentences of the clause tests


Finding = Annotated[Ablation | Attribution | Steering | Patch | Test | Comparison | Revision,
                    Field(discriminator="kind")]
_ADAPTER: TypeAdapter[Finding] = TypeAdapter(Finding)


def parse(data: dict) -> Finding:
    """The typed record of a finding dict (raises ``ValidationError`` when it is not one)."""
    return _ADAPTER.validate_python(data)


def validated(data: dict) -> dict:
    """A finding dict checked against its type, as it enters the graph state."""
    return parse(data).model_dump()


class Findings:
    """The findings of a state, typed, with the reads the policy and the report need."""

    def __init__(self, items: list[Finding]):
        self.items = items

    def of(self, cls: type[_Finding]) -> list:
        return [f for f in self.items if isinstance(f, cls)]

    @property
    def ablations(self) -> list[Ablation]:
        return self.of(Ablation)

    def kinds(self) -> frozenset[str]:
        return frozenset(f.kind for f in self.items)

    def compared_pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset((min(f.a, f.b), max(f.a, f.b)) for f in self.of(Comparison))

    def tested_hypotheses(self) -> frozenset[str]:
        return frozenset(f.hypothesis for f in self.of(Test))


def findings_of(state: dict) -> Findings:
    """The state's findings, typed; one that does not parse (a run written by an older version)
    is skipped with a warning."""
    out: list[Finding] = []
    for d in state.get("evidence", []):
        try:
            out.append(parse(d))
        except ValidationError as err:
            log.warning("finding of kind %r skipped: %s", d.get("kind"), err.errors()[:1])
    return Findings(out)
