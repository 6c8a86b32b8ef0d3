"""The frozen context of one running investigation: what every node and tool reads and nothing
reassigns (the model and neuron, the config, the run files, the prompt memory, the planner), and
what a caller attaches to it: the peers of a layer-parallel group, a stop event, an observer, a
reporter.

The reporter writes ``report.md`` and ``report.html`` at the end of the run. It is given from
above (the command line, and a batch, pass ``report.build.write_report``), because the report
stage sits above the agent and reads the run's files: the agent writes its data and never imports
the report. A run without one writes every file but the report (``neurosleuth report`` writes it
later from those files).

What changes as the run goes lives in the graph state (``agents/state.py``), checkpointed after
every node; the context holds only handles, loaded once (the dataset exemplars, a score cache).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.heuristic import HeuristicPlanner
from neurosleuth.agents.rundir import RunFiles
from neurosleuth.memory.dedup import PromptDeduper
from neurosleuth.tools import backoff
from neurosleuth.tools.measure import ActivationResult, measure
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.snippets import Snippet, snippets_from_json


class Peers(Protocol):
    """The other neurons investigated with this one (a layer-parallel batch group)."""

    def exchange(self, neuron: str, prompts: Sequence[str]) -> list[tuple[str, str]]:
        """Post this neuron's prompts of the step; take the others' new ones as
        ``(prompt, neuron)``: measured in shared passes, so reading them costs a cache read."""
        ...

    def others_s(self) -> float:
        """Seconds the calling thread spent on the other neurons' turns so far."""
        ...


class Alone:
    """No peers: an investigation on its own."""

    def exchange(self, neuron: str, prompts: Sequence[str]) -> list[tuple[str, str]]:
        return []

    def others_s(self) -> float:
        return 0.0


# called after every node with (node, event, state, update, context): a live view
Observer = Callable[[str, dict, dict, dict, "RunContext"], None]

# called once at the end of a run with (run folder, model, neuron): writes the report
Reporter = Callable[[Path, LoadedModel, NeuronId], object]


@dataclass
class Exemplars:
    """The neuron's dataset exemplars (``exemplars.json``): loaded at the seed node, or read back
    from the run folder on resume, then only read."""

    data: dict[str, Any] = field(default_factory=dict)
    snippets: list[Snippet] = field(default_factory=list)  # (act, peak, text)

    @property
    def dataset_max(self) -> float | None:
        top = self.data.get("top") or []
        return top[0].get("max_act") if top else None

    @property
    def top(self) -> list[dict[str, Any]]:
        return self.data.get("top", [])

    def set(self, data: dict[str, Any]) -> None:
        self.data = data
        self.snippets = snippets_from_json(data)


@dataclass(frozen=True)
class RunContext:
    cfg: RunConfig
    lm: LoadedModel
    neuron: NeuronId
    planner: Any  # HeuristicBackend | LLMPlanner | a test's scripted planner
    planner_note: str  # why this planner (Ollama found, embedded fallback, given by the caller)
    files: RunFiles
    memory: PromptDeduper  # FAISS de-duplication of the prompts measured so far
    peers: Peers = field(default_factory=Alone)
    stop: threading.Event = field(default_factory=threading.Event)  # set: report at next check
    observer: Observer | None = None
    reporter: Reporter | None = None  # writes report.md and report.html at the end
    exemplars: Exemplars = field(default_factory=Exemplars)
    score_cache: dict = field(default_factory=dict)  # neuron-level score evidence, reused
    # the heuristic's mutations top up a search an LLM's duplicates thinned (built once, with the
    # run's seed, by ``session``)
    mutations: HeuristicPlanner = field(default_factory=HeuristicPlanner)
    backoffs_at_start: int = field(default_factory=lambda: len(backoff.backoffs()))

    def measure(self, prompts: list[str]) -> ActivationResult:
        return measure(self.lm, prompts, [self.neuron])

    def load_exemplars(self) -> list[Snippet]:
        """Top dataset windows of the neuron, cut to end at their peak token (the model is
        causal: the text up to the peak carries the activation). Writes exemplars.json."""
        from neurosleuth.agents.exemplars import exemplar_snippets

        data, _ = exemplar_snippets(self.lm, self.neuron, self.cfg)
        self.files.write_json("exemplars.json", data)
        self.exemplars.set(data)
        return self.exemplars.snippets

    def reload_exemplars(self) -> None:
        """On resume: the exemplars from exemplars.json, without scanning again."""
        if not self.exemplars.data:
            self.exemplars.set(self.files.read_json("exemplars.json", {}) or {})

    def stopping(self) -> bool:
        return self.stop.is_set()
