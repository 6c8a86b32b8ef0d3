"""Batch investigations: a persisted queue of neurons, one time budget split across them, and a
crash-safe loop that runs each neuron's investigation in its own run folder inside the batch.

Layout of ``DIR/ID/``: ``batch.json`` (the queue), one run folder per neuron named
``n<layer>-<index>`` (an ordinary run directory: ``neurosleuth resume n12-345 --runs-dir DIR/ID``
works on it too), and ``index.html`` (the report site, ``report/site.py``).

What a batch writes for people comes from above (``Writers``): the report stage sits above the
batch, so the command line hands it the reporter of each run (``report.md``, ``report.html``) and
the writer of ``index.html``; a batch given none writes its data only (``batch.json``, the runs).

Crash safety. ``batch.json`` is rewritten atomically (temporary file, fsync, rename) after every
change, so a kill at any moment leaves either the old or the new queue. On resume a neuron still
marked ``running`` was interrupted: its run continues from its LangGraph checkpoint
(``session.resume``); a run whose ``summary.json`` already says ``finished`` (killed between the
run's end and the queue update) is marked done without running again; ``done`` and ``failed``
neurons are never redone. An exclusive ``flock`` on ``.lock`` keeps two processes off one batch
(the kernel drops it when the holder dies).

Layer-parallel (``shared_cache``, the default): the neurons are cut into groups of one layer
(``group_size``, fixed by the whole batch so a resumed batch finds each group's activation cache)
and each group runs interleaved (``batch/interleave.py``); otherwise one neuron after another.
A group's neurons start together, each with ``(T - spent) * group / neurons_left``.

Time split. With a batch budget T, the next neuron gets ``(T - spent) / neurons_left`` minus the
mean overrun seen so far (each run stops at its next step boundary after its budget, then tests a
last hypothesis and writes its report), and never less than ``min_neuron_s``. The corpus scan
of the batch's layers runs once before the first neuron (local executor), so it is charged to
the batch, not to the first neuron of a layer; its depth, unless ``exemplar_tokens`` is given, is
chosen once from the batch's whole budget (``scan_depth`` in ``agents/config.py``: an overnight
batch scans deep, and every neuron of a layer reads that one cached scan). ``spent`` is the
batch's wall time summed over its processes (saved with every queue write, so time between the
last write and a kill is not counted). The interrupted neuron keeps the budget it started with;
its own clock (``elapsed_s`` in its checkpoint) carries across the kill. Without a batch budget
each neuron runs the configured iteration count.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neurosleuth.agents.config import RunConfig, run_path, scan_depth
from neurosleuth.agents.context import Reporter
from neurosleuth.agents.rundir import now_iso
from neurosleuth.batch.select import NeuronPick

LARGE_ITERATIONS = 100_000  # with a time budget, time (not iterations) ends each run
UNFINISHED = ("pending", "running")
PER_NEURON_FIELDS = ("neuron", "run_id", "runs_dir", "time_budget_s")


class BatchBusy(ValueError):
    """Another process holds the batch's lock."""


@dataclass(frozen=True)
class Writers:
    """What the batch writes for people, given by the caller above it (the command line passes
    ``report.build.write_report`` and ``report.site.write_site``). When ``site`` raises, the error
    goes to ``site_error.txt`` and the batch goes on."""

    reporter: Reporter | None = None  # each run's report.md and report.html, at its end
    site: Callable[[Path], object] | None = None  # the batch's index.html, from its folder


NO_WRITERS = Writers()  # data only


@dataclass
class Entry:
    """One neuron of the queue."""

    neuron: str
    run_id: str
    status: str = "pending"  # pending | running | done | failed
    reason: str | None = None  # why the neuron was picked
    error: str | None = None
    budget_s: float | None = None  # its run's time budget (set when it starts)
    seconds: float = 0.0  # wall time the batch spent on it, all attempts
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None


@dataclass
class Batch:
    batch_id: str
    run_config: dict[str, Any]  # RunConfig fields shared by every neuron
    entries: list[Entry]
    time_budget_s: float | None = None
    min_neuron_s: float = 30.0
    executor: str = "local"
    shared_cache: bool = True  # layer-parallel: groups of one layer share passes and a cache
    group_size: int = 32  # neurons investigated together (one cache, one search board)
    status: str = "pending"  # pending | running | finished | interrupted
    wall_s: float = 0.0
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    version: int = 1

    def todo(self) -> list[Entry]:
        return [e for e in self.entries if e.status in UNFINISHED]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("pending", "running", "done", "failed")}
        for e in self.entries:
            out[e.status] = out.get(e.status, 0) + 1
        return out


def new_batch_id() -> str:
    return f"batch-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def neuron_run_id(neuron: str) -> str:
    return "n" + neuron.replace(":", "-")


def neuron_budget(total_s: float, spent_s: float, n_left: int, min_s: float,
                  overhead_s: float = 0.0, parallel: int = 1) -> float:
    """Seconds for the next neuron's own loop: an equal share of what is left of the batch
    budget (``parallel`` neurons at a time), less the overrun per neuron, at least ``min_s``."""
    share = (total_s - spent_s) * max(1, min(parallel, n_left)) / max(1, n_left) - overhead_s
    return max(min_s, share)


def overrun_estimate(entries: list[Entry]) -> float:
    """Mean seconds a finished neuron ran past its budget (hypothesis test, report)."""
    over = [max(0.0, e.seconds - e.budget_s) for e in entries
            if e.status == "done" and e.budget_s is not None and e.attempts == 1]
    return sum(over) / len(over) if over else 0.0


class BatchQueue:
    """``batch.json`` of one batch folder; every change is saved at once, atomically."""

    def __init__(self, folder: Path, batch: Batch):
        self.folder = Path(folder)
        self.batch = batch
        self._lock = threading.Lock()
        self._since = time.monotonic()

    @property
    def path(self) -> Path:
        return self.folder / "batch.json"

    @classmethod
    def create(cls, runs_dir: str | Path, batch_id: str, picks: list[NeuronPick],
               run_config: RunConfig, time_budget_s: float | None = None,
               min_neuron_s: float = 30.0, executor: str = "local", shared_cache: bool = True,
               group_size: int = 32) -> BatchQueue:
        """A new batch folder with every neuron pending; refuses an existing batch."""
        if not picks:
            raise ValueError("the batch has no neurons")
        folder = run_path(runs_dir, batch_id)
        if (folder / "batch.json").is_file():
            raise FileExistsError(f"batch {batch_id} exists in {runs_dir}: use "
                                  f"`neurosleuth resume {batch_id} --runs-dir {runs_dir}`")
        shared = {k: v for k, v in run_config.public_dict().items() if k not in PER_NEURON_FIELDS}
        if time_budget_s is not None and "iterations" not in run_config.model_fields_set:
            shared["iterations"] = LARGE_ITERATIONS
        if "exemplar_tokens" not in run_config.model_fields_set:  # one scan for the whole batch
            shared["exemplar_tokens"] = scan_depth(time_budget_s, run_config.device,
                                                   run_config.model)[0]
        entries = [Entry(str(p.neuron), neuron_run_id(str(p.neuron)), reason=p.reason)
                   for p in picks]
        folder.mkdir(parents=True, exist_ok=True)
        if group_size < 1:
            raise ValueError(f"group size must be at least 1, got {group_size}")
        queue = cls(folder, Batch(batch_id, shared, entries, time_budget_s, min_neuron_s, executor,
                                  shared_cache, group_size))
        queue.save()
        return queue

    @classmethod
    def load(cls, folder: str | Path) -> BatchQueue:
        folder = Path(folder)
        if not (folder / "batch.json").is_file():
            raise FileNotFoundError(f"no batch at {folder} (batch.json missing)")
        data = json.loads((folder / "batch.json").read_text())
        entries = [Entry(**e) for e in data.pop("entries")]
        return cls(folder, Batch(entries=entries, **data))

    def save(self) -> None:
        with self._lock:
            now = time.monotonic()
            self.batch.wall_s += now - self._since
            self._since = now
            self.batch.updated_at = now_iso()
            tmp = self.folder / ".batch.json.tmp"
            with open(tmp, "w") as f:
                json.dump(asdict(self.batch), f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def spent_s(self) -> float:
        """Batch wall time so far, this process included."""
        return self.batch.wall_s + (time.monotonic() - self._since)

    def update(self, entry: Entry, **changes: Any) -> None:
        for k, v in changes.items():
            setattr(entry, k, v)
        self.save()

    def set_status(self, status: str) -> None:
        self.batch.status = status
        self.save()

    def next_budget(self, parallel: int = 1) -> float | None:
        b = self.batch
        if b.time_budget_s is None:
            return None
        self.save()  # brings wall_s up to now
        return round(neuron_budget(b.time_budget_s, b.wall_s, len(b.todo()), b.min_neuron_s,
                                   overrun_estimate(b.entries), parallel), 1)

    def run_config(self, entry: Entry) -> dict[str, Any]:
        """The RunConfig fields of one neuron's run (``runs_dir`` is the batch folder)."""
        return {**self.batch.run_config, "neuron": entry.neuron, "run_id": entry.run_id,
                "runs_dir": str(self.folder), "time_budget_s": entry.budget_s}


@contextmanager
def batch_lock(folder: Path) -> Iterator[None]:
    """Hold the batch's lock; raises BatchBusy when another live process holds it."""
    with open(Path(folder) / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchBusy(f"batch {Path(folder).name} is being run by another process") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_neuron(folder: Path, cfg: dict[str, Any], lm=None, planner=None, **attach
               ) -> dict[str, Any]:
    """Run (or continue) one neuron's investigation in ``folder/run_id``. Returns
    ``{"status": done|failed|interrupted, "error", "seconds", "prior_s"}``; an exception is
    returned as ``failed`` (traceback in ``error.txt``), never raised; KeyboardInterrupt is.
    ``attach``: ``peers`` and ``stop`` of a layer-parallel group, the ``reporter``
    (``agents/session.py``)."""
    from neurosleuth.agents import session

    run_dir = Path(folder) / cfg["run_id"]
    summary = _read(run_dir / "summary.json")
    if summary.get("status") == "finished":
        return {"status": "done", "error": None, "seconds": 0.0, "prior_s": 0.0}
    prior = float(summary.get("wall_s") or 0.0)  # node time of an earlier, killed attempt
    start = time.monotonic()
    try:
        if (run_dir / "config.json").is_file():
            session.resume(folder, cfg["run_id"], lm=lm, planner=planner, **attach,
                           time_budget_s=cfg.get("time_budget_s"))
        else:
            session.investigate(RunConfig.model_validate(cfg), lm=lm, planner=planner,
                                **attach)
    except Exception as err:  # noqa: BLE001 - one neuron's failure must not stop the batch
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(traceback.format_exc())
        message = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        return {"status": "failed", "error": message, "seconds": time.monotonic() - start,
                "prior_s": prior}
    status = _read(run_dir / "summary.json").get("status")
    return {"status": "interrupted" if status == "interrupted" else "done", "error": None,
            "seconds": time.monotonic() - start, "prior_s": prior}


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def record_outcome(queue: BatchQueue, entry: Entry, outcome: dict[str, Any]) -> None:
    """Fold one neuron's outcome into the queue (an interrupted run goes back to pending: it
    continues from its checkpoint on resume)."""
    status = {"done": "done", "failed": "failed"}.get(outcome["status"], "pending")
    prior = outcome.get("prior_s", 0.0) if entry.seconds == 0 else 0.0
    queue.update(entry, status=status, error=outcome.get("error"), finished_at=now_iso(),
                 seconds=round(entry.seconds + prior + outcome["seconds"], 3))


PlannerFactory = Callable[[RunConfig], Any]


def run_local(queue: BatchQueue, lm=None, planner_factory: PlannerFactory | None = None,
              display=None, writers: Writers = NO_WRITERS) -> None:
    """Run the queue's remaining neurons in this process (one model): layer-parallel groups
    sharing one activation cache each (``batch/interleave.py``), or one after another."""
    from neurosleuth.tools.model import load_model

    if not queue.batch.todo():
        return
    cfg0 = queue.batch.run_config
    lm = lm or load_model(cfg0["model"], device=cfg0.get("device"), dtype=cfg0.get("dtype"),
                          device_map=cfg0.get("device_map"))
    layers = sorted({int(e.neuron.split(":")[0]) for e in queue.batch.todo()})
    if layers:
        if display:
            display.note(f"corpus scan of layer(s) {', '.join(map(str, layers))} (cached after "
                         "the first time) ...")
        warm_scans(lm, cfg0, layers)
    if queue.batch.shared_cache:
        from neurosleuth.batch.interleave import batch_groups, run_local_group

        for members in batch_groups(queue.batch):
            run_local_group(queue, members, lm, planner_factory, display, writers)
        return
    for entry in queue.batch.todo():
        cfg = start_entry(queue, entry, display)
        planner = planner_factory(RunConfig.model_validate(cfg)) if planner_factory else None
        outcome = run_neuron(queue.folder, cfg, lm=lm, planner=planner,
                             reporter=writers.reporter)
        finish_entry(queue, entry, outcome, display, writers)
        if outcome["status"] == "interrupted":
            raise KeyboardInterrupt


def start_entry(queue: BatchQueue, entry: Entry, display=None, parallel: int = 1
                ) -> dict[str, Any]:
    """Mark a neuron running with its budget (an interrupted one keeps the budget it started
    with); returns its run config."""
    budget = (entry.budget_s if entry.attempts and entry.budget_s
              else queue.next_budget(parallel=parallel))
    queue.update(entry, status="running", budget_s=budget, started_at=now_iso(),
                 attempts=entry.attempts + 1)
    if display:
        display.neuron_started(entry)
    return queue.run_config(entry)


def finish_entry(queue: BatchQueue, entry: Entry, outcome: dict[str, Any], display=None,
                 writers: Writers = NO_WRITERS) -> None:
    record_outcome(queue, entry, outcome)
    write_site_quietly(queue.folder, writers)
    if display:
        display.neuron_finished(entry)


def warm_scans(lm, cfg: dict[str, Any], layers: list[int]) -> None:
    """Scan the corpus for every layer of the batch once, before any neuron's clock starts
    (each run then reads its exemplars from the cache, exactly as ``agents/exemplars.py`` asks)."""
    from neurosleuth.tools.exemplars import DEFAULT_KEEP, layer_scans

    k = max(int(cfg["k"]), 2 * int(cfg["prompts_per_step"]))
    layer_scans(lm, layers, cfg.get("corpus"), int(cfg["window"]), cfg.get("exemplar_tokens"),
                keep=max(k, DEFAULT_KEEP))


def write_site_quietly(folder: Path, writers: Writers) -> None:
    """Rewrite index.html when the batch has a site writer; a site error must never stop a batch
    (it is rebuilt at the end)."""
    if writers.site is None:
        return
    try:
        writers.site(folder)
    except Exception as err:  # noqa: BLE001
        (Path(folder) / "site_error.txt").write_text(f"{type(err).__name__}: {err}\n")


def run_batch(folder: Path, lm=None, planner_factory: PlannerFactory | None = None,
              display=None, executor: str | None = None, ray_address: str | None = None,
              time_budget_s: float | None = None, writers: Writers = NO_WRITERS) -> Batch:
    """Run (or continue) the batch in ``folder`` to its end; returns its final state.
    ``executor`` and ``time_budget_s`` (a new total) override the saved ones when given;
    ``writers`` write the reports and the site (``Writers``; none: data only).
    KeyboardInterrupt (Ctrl-C) leaves the batch resumable and is re-raised."""
    with batch_lock(folder):
        queue = BatchQueue.load(folder)
        if time_budget_s is not None:
            queue.batch.time_budget_s = time_budget_s
        executor = executor or queue.batch.executor
        if executor not in ("local", "ray"):
            raise ValueError(f"unknown executor {executor!r}: use local or ray")
        queue.set_status("running")
        if display:
            display.start(queue)
        try:
            if executor == "ray":
                from neurosleuth.batch.ray_executor import run_ray

                run_ray(queue, address=ray_address, display=display, writers=writers)
            else:
                run_local(queue, lm, planner_factory, display, writers)
        except BaseException:
            queue.set_status("interrupted")
            raise
        finally:
            write_site_quietly(folder, writers)
            if display:
                display.close()
        queue.set_status("finished")
        write_site_quietly(folder, writers)
        return queue.batch
