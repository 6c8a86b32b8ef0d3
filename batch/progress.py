"""Progress of a batch: one rich display on a terminal (overall bar, current neuron's bar against
its time budget, ETA, best activation vs dataset max, latest hypothesis and its score), plain
lines when stdout is not a terminal (logs of overnight runs, CI).

Live numbers come from the running neurons' ``summary.json`` and ``hypotheses.json`` (written by
the run at every step), read at each refresh, so the display needs no hook into the graph and
shows Ray workers' runs the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.text import Text

from neurosleuth.batch.queue import BatchQueue, Entry


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_facts(folder: Path, entry: Entry) -> dict[str, Any]:
    """Best activation, dataset max, iteration and latest hypothesis of one neuron's run."""
    run = folder / entry.run_id
    summary = _read(run / "summary.json") or {}
    hyps = _read(run / "hypotheses.json") or []
    last = hyps[-1] if isinstance(hyps, list) and hyps else {}
    return {"best": summary.get("best_activation"), "max": summary.get("dataset_max"),
            "iteration": summary.get("iterations"), "elapsed": summary.get("wall_s"),
            "hypothesis": last.get("text"), "score": (last.get("score") or {}).get("aggregate")}


def _g(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}"


def describe(facts: dict[str, Any]) -> str:
    ratio = (f" ({facts['best'] / facts['max']:.0%} of dataset max {_g(facts['max'])})"
             if facts["best"] is not None and facts["max"] else "")
    hyp = f"; hypothesis score {_g(facts['score'])}: {facts['hypothesis']}" \
        if facts["hypothesis"] else ""
    return f"best {_g(facts['best'])}{ratio}{hyp}"


def eta_s(queue: BatchQueue) -> float | None:
    """Seconds left: the rest of the time budget, else the mean time per finished neuron."""
    b = queue.batch
    if b.time_budget_s is not None:
        return max(0.0, b.time_budget_s - queue.spent_s()) if b.todo() else 0.0
    finished = [e.seconds for e in b.entries if e.status in ("done", "failed") and e.seconds]
    if not finished:
        return None
    return sum(finished) / len(finished) * len(b.todo())


def fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class RichDisplay:
    """Live display for a terminal."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TaskProgressColumn(), TextColumn("{task.fields[note]}"),
                                 console=console)
        self.live: Live | None = None
        self.queue: BatchQueue | None = None

    def start(self, queue: BatchQueue) -> None:
        self.queue = queue
        self.overall = self.progress.add_task("batch", total=len(queue.batch.entries), note="")
        self.current = self.progress.add_task("neuron", total=1, note="", visible=False)
        self.live = Live(console=self.console, get_renderable=self.render, refresh_per_second=2,
                         transient=False)
        self.live.start()

    def neuron_started(self, entry: Entry) -> None:
        pass  # the live view reads the queue

    def note(self, text: str) -> None:
        self.console.print(Text(text))

    def neuron_finished(self, entry: Entry) -> None:
        assert self.queue is not None
        facts = run_facts(self.queue.folder, entry)
        note = f": {entry.error}" if entry.error else f": {describe(facts)}"
        self.console.print(Text(f"{entry.neuron} {entry.status} in {entry.seconds:.0f} s{note}"))

    def render(self) -> Any:
        q = self.queue
        if q is None:
            return Text("")
        b = q.batch
        counts = b.counts()
        running = [e for e in b.entries if e.status == "running"]
        lines = []
        frac = 0.0
        for e in running[:4]:
            facts = run_facts(q.folder, e)
            spent = facts["elapsed"] or 0.0
            if e.budget_s:
                frac += min(0.95, spent / e.budget_s)  # full only once recorded
            lines.append(Text(f"  {e.neuron}: iteration {facts['iteration'] or 0}, "
                              f"{describe(facts)}", overflow="ellipsis", no_wrap=True))
        finished = counts["done"] + counts["failed"]
        self.progress.update(self.overall, completed=finished + frac,
                             note=f"{finished}/{len(b.entries)} neurons, {counts['failed']} failed,"
                                  f" ETA {fmt_s(eta_s(q))}")
        if running:
            e = running[0]
            facts = run_facts(q.folder, e)
            total = e.budget_s or float(b.run_config.get("iterations") or 1)
            done = (facts["elapsed"] or 0.0) if e.budget_s else (facts["iteration"] or 0)
            self.progress.update(self.current, description=f"neuron {e.neuron}", total=total,
                                 completed=min(done, total), visible=True,
                                 note=f"{done:.0f}/{total:.0f} {'s' if e.budget_s else 'it'}")
        else:
            self.progress.update(self.current, visible=False)
        return Group(self.progress, *lines)

    def close(self) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.stop()
            self.live = None


class PlainDisplay:
    """One line per event, for logs (stdout not a terminal)."""

    def __init__(self, console: Console):
        self.console = console
        self.queue: BatchQueue | None = None

    def _say(self, text: str) -> None:
        self.console.print(Text(text), soft_wrap=True)

    def start(self, queue: BatchQueue) -> None:
        self.queue = queue
        b = queue.batch
        budget = f", time budget {fmt_s(b.time_budget_s)}" if b.time_budget_s else ""
        self._say(f"batch {b.batch_id}: {len(b.entries)} neurons, {len(b.todo())} to run"
                  f"{budget}, executor {b.executor}")

    def _position(self, entry: Entry) -> str:
        assert self.queue is not None
        return f"[{self.queue.batch.entries.index(entry) + 1}/{len(self.queue.batch.entries)}]"

    def note(self, text: str) -> None:
        self._say(text)

    def neuron_started(self, entry: Entry) -> None:
        budget = f" (budget {entry.budget_s:.0f} s)" if entry.budget_s else ""
        self._say(f"{self._position(entry)} {entry.neuron} started{budget}")

    def neuron_finished(self, entry: Entry) -> None:
        assert self.queue is not None
        facts = run_facts(self.queue.folder, entry)
        note = entry.error if entry.error else describe(facts)
        self._say(f"{self._position(entry)} {entry.neuron} {entry.status} in {entry.seconds:.0f}"
                  f" s: {note}; ETA {fmt_s(eta_s(self.queue))}")

    def close(self) -> None:
        if self.queue is not None:
            counts = self.queue.batch.counts()
            self._say("batch " + ", ".join(f"{v} {k}" for k, v in counts.items()))


def make_display(console: Console) -> RichDisplay | PlainDisplay:
    return RichDisplay(console) if console.is_terminal else PlainDisplay(console)
