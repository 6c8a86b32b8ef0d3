"""Detect a stalled search and name the next recovery strategy.

``StagnationMonitor.update(iteration, best)`` is called once per search iteration with the best
activation so far. An iteration *improves* when ``best - reference >= required_gain``, where
``reference`` is the best value at the last improvement (or at the last trigger) and

- ``mode="relative"`` (default): ``required_gain = min_delta * max(|reference|, 1.0)``, i.e. a
  relative gain of ``min_delta`` (1%) for activations of magnitude >= 1 and an absolute gain of
  ``min_delta`` below that, so tiny activations near zero cannot trigger on noise-sized steps;
- ``mode="absolute"``: ``required_gain = min_delta``.

After ``patience`` consecutive ``update`` calls without an improvement (counted in calls, not in
iteration numbers, so skipped numbers do not matter), ``update`` returns the next strategy name
in round-robin order, appends a ``Trigger`` to ``history`` and restarts its window from the
current best. When a later iteration improves before the next trigger, that trigger's
``recovered_at`` is set: the report can say which recoveries worked. ``best=None`` (nothing
measured yet) is ignored.

The earlier tool (seed 004) had one recovery, random prompts; the default rotation here is
exemplar-seeded restart, random prompts, a higher planner temperature, then the attack tool.
The monitor only names the strategy; the agent carries it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

DEFAULT_STRATEGIES: tuple[str, ...] = (
    "exemplar_restart",
    "random_prompts",
    "raise_temperature",
    "attack",
)


@dataclass
class Trigger:
    """One stagnation event: when, which strategy was chosen, and the best value at the time."""

    iteration: int
    strategy: str
    best: float
    recovered_at: int | None = None  # iteration of the next improvement, if before next trigger


@dataclass
class StagnationMonitor:
    """Counts iterations without a real improvement and rotates recovery strategies."""

    patience: int = 5
    min_delta: float = 0.01
    strategies: Sequence[str] = DEFAULT_STRATEGIES
    mode: Literal["relative", "absolute"] = "relative"
    reference: float | None = None
    stale: int = 0
    n_triggers: int = 0
    history: list[Trigger] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")
        if self.mode not in ("relative", "absolute"):
            raise ValueError(f"mode must be 'relative' or 'absolute', got {self.mode!r}")
        self.strategies = tuple(self.strategies)
        if not self.strategies:
            raise ValueError("at least one recovery strategy is needed")

    def required_gain(self, reference: float) -> float:
        """Smallest gain over ``reference`` that counts as an improvement."""
        if self.mode == "absolute":
            return self.min_delta
        return self.min_delta * max(abs(reference), 1.0)

    def update(self, iteration: int, best: float | None) -> str | None:
        """Feed one iteration's best-so-far; returns a strategy name when the search stalled."""
        if best is None:
            return None
        best = float(best)
        if self.reference is None:
            self.reference = best
            return None
        if best - self.reference >= self.required_gain(self.reference):
            self.reference = best
            self.stale = 0
            if self.history and self.history[-1].recovered_at is None:
                self.history[-1].recovered_at = int(iteration)
            return None
        self.stale += 1
        if self.stale < self.patience:
            return None
        strategy = self.strategies[self.n_triggers % len(self.strategies)]
        self.n_triggers += 1
        self.history.append(Trigger(int(iteration), strategy, best))
        self.reference = max(self.reference, best)
        self.stale = 0
        return strategy

    @property
    def next_strategy(self) -> str:
        """The strategy the next trigger will return."""
        return self.strategies[self.n_triggers % len(self.strategies)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["strategies"] = list(self.strategies)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StagnationMonitor:
        d = dict(d)
        d["history"] = [Trigger(**t) for t in d.get("history", [])]
        d["strategies"] = tuple(d["strategies"])
        return cls(**d)
