"""Layer-parallel batches: the neurons of one group (neurons of one layer) advance together, and
every activation they measure goes through one shared cache in a few large passes.

Each neuron keeps its own investigation (LangGraph thread, checkpoints, heaps, memory, report),
run in a thread of its own. The threads take turns: one holds the model at a time (the baton),
so hooks, the planner and the run files never race, and a run is as deterministic as a
sequential one. A thread that asks for activations (``measure_ids``: search prompts, held-out
windows, the explainer's pruned and substituted texts, test prompts) leaves its request and
passes the baton on; when every live thread is waiting, the union of their requests runs as one
pass that reads every neuron of the group (``tools/actcache.py``), and each thread takes its
columns. What cannot be shared (ablation, steering, the attack's gradients) runs per neuron, in
turn.

The search board: after a step's prompts are measured, they are posted to the group; each
neuron also takes the prompts the others posted (their activations for it are already in the
cache, from the same passes) as rows with status ``shared`` and source ``neuron L:I``: they enter
its heaps (so its explainer and hypotheses see them) and its ``prompts.csv``, not its prompt
memory or its search statistics.

Time: a neuron's wall time (``wall_s``, what its time budget counts) includes the other
neurons' turns; ``own_s`` in its summary and report leaves them out (a shared pass is split
equally between the neurons that asked for it), so the neurons' own times add up to the group's.

Kill safety: a neuron's run resumes from its own checkpoint; the cache file survives, so what a
killed batch measured is read, not measured again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurosleuth.agents.config import RunConfig
from neurosleuth.batch.queue import (
    NO_WRITERS,
    UNFINISHED,
    Batch,
    BatchQueue,
    Entry,
    Writers,
    finish_entry,
    run_neuron,
    start_entry,
)
from neurosleuth.tools.actcache import ActivationCache, ids_key
from neurosleuth.tools.measure import use_source
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId


class Board:
    """Prompts each neuron's search measured, for the other neurons of its group."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []  # (prompt, neuron that measured it)
        self.first: dict[str, str] = {}
        self.cursor: dict[str, int] = {}

    def post(self, neuron: str, prompts: Sequence[str]) -> None:
        for p in prompts:
            if p not in self.first:
                self.first[p] = neuron
                self.rows.append((p, neuron))

    def exchange(self, neuron: str, mine: Sequence[str]) -> list[tuple[str, str]]:
        """Post ``neuron``'s prompts of this step; take the others' new ones (not its own)."""
        self.post(neuron, mine)
        own = set(mine)
        return [(p, n) for p, n in self.take(neuron) if p not in own]

    def take(self, neuron: str) -> list[tuple[str, str]]:
        """Prompts other neurons posted since this neuron last took, each once."""
        start = self.cursor.get(neuron, 0)
        self.cursor[neuron] = len(self.rows)
        return [(p, n) for p, n in self.rows[start:] if n != neuron]


@dataclass
class _Request:
    ids: Sequence[Sequence[int]]
    neurons: Sequence[NeuronId]
    tokens_per_batch: int | None
    result: list[np.ndarray] | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class Interleaver:
    """Runs jobs in threads, one at a time, and gathers their ``measure_ids`` into shared passes
    through ``cache`` (the module docstring). Install with ``tools.measure.use_source``."""

    cache: ActivationCache
    cond: threading.Condition = field(default_factory=threading.Condition)
    order: list[int] = field(default_factory=list)
    live: set[int] = field(default_factory=set)
    waiting: dict[int, _Request] = field(default_factory=dict)
    turn: int | None = None
    workers: dict[int, int] = field(default_factory=dict)  # thread ident -> worker
    flushes: int = 0
    gathered: int = 0  # requests answered by flushes
    others: dict[int, float] = field(default_factory=dict)  # worker -> seconds of others' work

    def others_s(self) -> float:
        """Seconds the calling worker spent on the other workers' turns (waiting for the baton,
        or running a shared pass beyond its own share of it); 0 outside a worker."""
        me = self.workers.get(threading.get_ident())
        return 0.0 if me is None else self.others.get(me, 0.0)

    def measure_ids(self, lm: LoadedModel, ids, neurons, tokens_per_batch=None):
        me = self.workers.get(threading.get_ident())
        if me is None or lm is not self.cache.lm or not self.cache.serves(neurons):
            return self.cache.measure_ids(lm, ids, neurons, tokens_per_batch)
        layers = {n.layer for n in neurons}
        if not self.cache.missing(ids, layers):  # all cached: no need to wait for the others
            self.cache.hits += len(ids)
            return self.cache.read(ids, neurons)
        req = _Request(ids, neurons, tokens_per_batch)
        with self.cond:
            self.waiting[me] = req
            self._pass(me)
            start = time.perf_counter()
            while not (req.done and self.turn == me):
                self.cond.wait()
            self.others[me] = self.others.get(me, 0.0) + time.perf_counter() - start
        if req.error is not None:
            raise req.error
        return req.result

    def _pass(self, me: int) -> None:
        """Give the baton to the next live worker that is not waiting; when all wait, run their
        requests as one pass first. Called with ``cond`` held by the baton holder."""
        if not self.live:
            self.turn = None
            self.cond.notify_all()
            return
        ring = self.order[self.order.index(me) + 1 :] + self.order[: self.order.index(me) + 1]
        nxt = next((w for w in ring if w in self.live and w not in self.waiting), None)
        if nxt is None:
            self._flush(me)
            nxt = next(w for w in ring if w in self.live)
        self.turn = nxt
        self.cond.notify_all()

    def _flush(self, runner: int) -> None:
        """One pass for every waiting request; its time is shared equally by the requesters
        (``others``: the runner is credited what was not its share)."""
        start = time.perf_counter()
        owners = list(self.waiting)
        reqs = list(self.waiting.values())
        self.waiting.clear()
        try:
            top = max(n.layer for r in reqs for n in r.neurons)
            todo, seen = [], set()
            for r in reqs:
                for seq in self.cache.missing(r.ids, {n.layer for n in r.neurons}):
                    if (k := ids_key(seq)) not in seen:
                        seen.add(k)
                        todo.append(seq)
            self.cache.hits += sum(len(r.ids) for r in reqs) - len(todo)
            self.cache.fill(todo, top, reqs[0].tokens_per_batch)
            for r in reqs:
                r.result = self.cache.read(r.ids, r.neurons)
        except Exception as err:  # noqa: BLE001 - each waiting thread re-raises it
            for r in reqs:
                r.error = err
        for r in reqs:
            r.done = True
        spent = time.perf_counter() - start
        self.others[runner] = self.others.get(runner, 0.0) + spent
        for w in owners:
            self.others[w] = self.others.get(w, 0.0) - spent / len(owners)
        self.flushes += 1
        self.gathered += len(reqs)

    def run(self, jobs: Sequence[Callable[[], Any]],
            on_interrupt: Callable[[], None] | None = None) -> list[Any]:
        """Run ``jobs`` (each to its end) interleaved; returns their results in order (an
        exception a job raised is returned in its place). A Ctrl-C calls ``on_interrupt`` (which
        asks every job to stop at its next step), waits for the jobs, then re-raises; a second
        Ctrl-C re-raises at once."""
        results: list[Any] = [None] * len(jobs)
        self.order = list(range(len(jobs)))
        self.live = set(self.order)
        self.turn = 0 if jobs else None

        def body(w: int) -> None:
            with self.cond:
                self.workers[threading.get_ident()] = w
                while self.turn != w:
                    self.cond.wait()
            try:
                results[w] = jobs[w]()
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                results[w] = err
            finally:
                with self.cond:
                    self.live.discard(w)
                    self.workers.pop(threading.get_ident(), None)
                    self._pass(w)

        threads = [threading.Thread(target=body, args=(w,), name=f"neuron-{w}", daemon=True)
                   for w in self.order]
        for t in threads:
            t.start()
        interrupted = False
        for t in threads:
            while t.is_alive():
                try:
                    t.join(timeout=0.2)  # wakes for Ctrl-C in the main thread
                except KeyboardInterrupt:
                    if interrupted or on_interrupt is None:
                        raise
                    interrupted = True
                    on_interrupt()
        if interrupted:
            raise KeyboardInterrupt
        return results


def group_cache_path(folder: Path, neurons: Sequence[NeuronId]) -> Path:
    """``activations/L<layers>-<hash of the neuron set>.sqlite`` in the batch folder."""
    names = ",".join(sorted(str(n) for n in neurons))
    layers = "-".join(str(x) for x in sorted({n.layer for n in neurons}))
    digest = hashlib.blake2b(names.encode(), digest_size=4).hexdigest()
    return Path(folder) / "activations" / f"L{layers}-{digest}.sqlite"


def groups(neurons: Sequence[str], size: int) -> list[list[int]]:
    """Indices of ``neurons`` (``L:I`` strings) in groups of at most ``size`` of one layer, in
    order of first appearance; fixed by the whole batch, so a resumed batch finds its caches."""
    by_layer: dict[int, list[int]] = {}
    for i, n in enumerate(neurons):
        by_layer.setdefault(NeuronId.parse(n).layer, []).append(i)
    return [idx[i : i + size] for idx in by_layer.values() for i in range(0, len(idx), size)]


@dataclass(frozen=True)
class GroupPeers:
    """The peers of a neuron in its layer group (``agents.context.Peers``): the group's search
    board, and the time this thread spent on the others' turns."""

    board: Board
    gatherer: Interleaver

    def exchange(self, neuron: str, prompts: Sequence[str]) -> list[tuple[str, str]]:
        return self.board.exchange(neuron, prompts)

    def others_s(self) -> float:
        return self.gatherer.others_s()


def run_group(folder: Path, members: Sequence[str], cfgs: Sequence[dict], lm: LoadedModel,
              run: Callable[..., dict], on_done: Callable[[int, dict], None]) -> list[dict]:
    """Investigate ``cfgs`` (neurons of one group whose members are ``members``) interleaved,
    sharing one cache and one search board. ``run(cfg, peers=..., stop=...)`` runs one neuron
    attached to the group; ``on_done(i, outcome)`` is called in turn as each finishes. Ctrl-C
    sets the group's stop event: every run stops at its next step (each writes its report)."""
    cache = ActivationCache(group_cache_path(folder, [NeuronId.parse(m) for m in members]), lm,
                            [NeuronId.parse(m) for m in members])
    gatherer = Interleaver(cache)
    peers = GroupPeers(Board(), gatherer)
    stopping = threading.Event()

    def job(i: int) -> Callable[[], dict]:
        def go() -> dict:
            outcome = run(cfgs[i], peers=peers, stop=stopping)
            outcome["cache"] = cache.stats()
            on_done(i, outcome)
            return outcome

        return go

    try:
        with use_source(lm, gatherer):
            results = gatherer.run([job(i) for i in range(len(cfgs))], stopping.set)
    finally:
        cache.close()
    out = []
    for r in results:
        if isinstance(r, BaseException):
            raise r
        out.append(r)
    return out


def batch_groups(batch: Batch) -> list[list[Entry]]:
    """The batch's layer groups (fixed by all its entries), each with work left."""
    out = []
    for idx in groups([e.neuron for e in batch.entries], batch.group_size):
        members = [batch.entries[i] for i in idx]
        if any(e.status in UNFINISHED for e in members):
            out.append(members)
    return out


def run_local_group(queue: BatchQueue, members: list[Entry], lm, planner_factory, display,
                    writers: Writers = NO_WRITERS) -> None:
    """One layer group's remaining neurons, interleaved, in this process."""
    todo = [e for e in members if e.status in UNFINISHED]
    cfgs = [start_entry(queue, e, display, parallel=len(todo)) for e in todo]

    def run(cfg: dict, **attach) -> dict:
        planner = planner_factory(RunConfig.model_validate(cfg)) if planner_factory else None
        return run_neuron(queue.folder, cfg, lm=lm, planner=planner, reporter=writers.reporter,
                          **attach)

    outcomes = run_group(queue.folder, [e.neuron for e in members], cfgs, lm, run,
                         lambda i, outcome: finish_entry(queue, todo[i], outcome, display, writers))
    if any(o["status"] == "interrupted" for o in outcomes):
        raise KeyboardInterrupt
