"""What an investigation shows while it runs, on stderr (stdout keeps the result): in a terminal a
live panel (rich), redrawn after every graph node; elsewhere (a pipe, a log file, CI) one plain
line per step and one per seed, probe, hypothesis and test.

The panel: the step against the iteration budget, time and forward passes used against theirs,
the node running and what the last one did, the experiment of the step (who chose it and why),
the best activation against the dataset max, and the leading hypothesis with its margin over the
floor. Plain lines: each experiment other than the prompt search, with its reason and result.
The view is an observer of the graph's nodes (the run context's ``observer``:
``agents/context.py``); an error in it never stops the run.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from neurosleuth.memory.topk import ActivationHeaps

NEXT = {"seed": "plan", "act": "record", "record": "plan", "probe": "hypothesize",
        "hypothesize": "test", "test": "revise", "revise": "plan"}
ROUTED = {"act": "act", "round": "probe", "report": "report"}  # plan's route -> the next node


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class LiveView:
    """Observer of an investigation's nodes: a rich ``Live`` panel, or plain lines."""

    def __init__(self, console: Console, cfg, neuron: str, plain: bool | None = None):
        self.console, self.cfg, self.neuron = console, cfg, neuron
        self.plain = (not console.is_terminal) if plain is None else plain
        self.live: Live | None = None
        self.started = time.perf_counter()
        self.last: dict[str, Any] = {}
        self.values: dict[str, Any] = {"step": 0, "best": None, "passes": 0, "elapsed": 0.0}
        self.hypothesis: tuple[str, float | None] | None = None
        self.experiment: tuple[str, str] | None = None  # (kind, reason) of the step
        self.dataset_max: float | None = None

    def __enter__(self) -> LiveView:
        if not self.plain:
            self.live = Live(console=self.console, refresh_per_second=2, transient=True,
                             get_renderable=self.render)  # redrawn twice a second: the clock
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def __call__(self, node: str, event: dict, state: dict, update: dict, ctx=None) -> None:
        try:
            self._observe(node, event, state, update, ctx)
        except Exception:  # noqa: BLE001 - the view never stops the run
            pass

    def _observe(self, node: str, event: dict, state: dict, update: dict, ctx) -> None:
        merged = {**state, **update}
        self.last = {"node": node, **event}
        if node == "plan":
            self.experiment = (str(event.get("action", "")), str(event.get("reason") or ""))
            self.last["next"] = ROUTED.get(str(update.get("route")), "act")
        self.values["step"] = merged.get("iteration", self.values["step"])
        self.values["passes"] = merged.get("forward_passes", self.values["passes"])
        self.values["elapsed"] = merged.get("elapsed_s", self.values["elapsed"])
        if merged.get("heaps"):
            top = ActivationHeaps.from_dict(merged["heaps"]).top(1)
            self.values["best"] = top[0].activation if top else None
        if ctx is not None and ctx.exemplars.dataset_max is not None:
            self.dataset_max = ctx.exemplars.dataset_max
        hyps = update.get("hypotheses") or state.get("hypotheses") or []
        if hyps:
            score = hyps[-1].get("score") or {}
            self.hypothesis = (str(hyps[-1].get("text", "")), score.get("margin"))
        if self.plain:
            self._line(node, event)
        elif self.live is not None:
            self.live.refresh()

    def _line(self, node: str, event: dict) -> None:
        v = self.values
        if node == "record":
            best = "-" if v["best"] is None else f"{v['best']:.3f}"
            top = "" if self.dataset_max is None else f" (dataset max {self.dataset_max:.3f})"
            self.console.print(f"step {v['step']}/{self.cfg.iterations}: best {best}{top}, "
                               f"{v['passes']} forward passes, {v['elapsed']:.0f} s", markup=False,
                               highlight=False, soft_wrap=True)
        elif node == "act" and event.get("action") != "propose_prompts":
            why = f" ({event['reason']})" if event.get("reason") else ""
            self.console.print(f"experiment {event.get('action')}{why}: {event.get('summary', '')}",
                               markup=False, highlight=False, soft_wrap=True)
        elif node in ("probe", "hypothesize", "test", "revise", "seed"):
            self.console.print(f"{node}: {event.get('summary', '')}", markup=False,
                               highlight=False, soft_wrap=True)

    def render(self) -> Panel:
        v, cfg = self.values, self.cfg
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        budget = f"{v['step']} of {cfg.iterations} iterations"
        if cfg.time_budget_s:
            budget += f", {v['elapsed']:.0f} of {cfg.time_budget_s:.0f} s"
        if cfg.max_forward_passes:
            budget += f", {v['passes']} of {cfg.max_forward_passes} forward passes"
        else:
            budget += f", {v['passes']} forward passes"
        grid.add_row("budget", budget)
        node = self.last.get("node")
        grid.add_row("now", "starting (model, corpus scan)" if node is None
                     else f"{self.last.get('next') or NEXT.get(node, node)} (after {node}: "
                     f"{_cut(str(self.last.get('summary', '')), 110)})")
        if self.experiment:
            kind, why = self.experiment
            grid.add_row("experiment", Text(_cut(f"{kind}: {why}" if why else kind, 200)))
        best = "-" if v["best"] is None else f"{v['best']:.3f}"
        if self.dataset_max is not None:
            best += f" vs dataset max {self.dataset_max:.3f}"
        grid.add_row("best activation", best)
        if self.hypothesis:
            text, margin = self.hypothesis
            grid.add_row("leading hypothesis", Text(_cut(text, 200)))
            grid.add_row("margin over floor", "-" if margin is None else f"{margin:+.3f}")
        else:
            grid.add_row("leading hypothesis", "none yet")
        wall = time.perf_counter() - self.started
        title = f"neurosleuth: neuron {self.neuron} of {cfg.model} ({wall:.0f} s)"
        return Panel(Group(grid), title=title, expand=False)
