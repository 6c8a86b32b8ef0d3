"""Atlas rows on every core: per-neuron explanation and scoring in worker processes.

Each neuron's row is CPU work on its records alone (``atlas/neuron.py``: ~30 ms of word
look-ups, pattern fitting and bootstrap scoring), so a layer's neurons are cut into chunks of
``CHUNK`` inputs and each chunk is one task of a process pool. The workers never see the model:
a task carries its neurons' records (token strings and activations, the random windows' token
tuples shared within a chunk, which pickle sends once) and their output-token names.

Start: ``forkserver`` where the platform has it, else ``spawn`` (never ``fork``: the parent holds
torch's threads). The fork server imports ``atlas/neuron.py`` once and every worker forks from it
with the modules loaded. Each worker then warms its per-process caches once, at start (``warm``:
WordNet's reader takes seconds to load, lemminflect's tables and the concept and word-class
look-ups of ``tools/concepts.py`` and ``tools/wordclasses.py`` fill on first use), by making the
row of a small made-up neuron. The pool lives as long as the ``RowMaker`` (one per atlas, not one
per layer), so the start-up is paid once, and it starts when entered (``build_atlas`` enters it
before the scan, which then hides it where there are cores to spare).

Rows come back in neuron order. A row depends on its input alone (the caches are pure
look-ups), so the table is the same whatever the number of workers; ``workers=1`` makes every row
in this process, with no pool, and so does a job of one chunk (``useful_workers``: no more workers
than chunks).
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from types import TracebackType

import numpy as np

from neurosleuth.atlas.neuron import NeuronInput, neuron_row
from neurosleuth.tools.records import Record

CHUNK = 64  # neurons a task: ~2 s of work, against a few ms to send and return them
Progress = Callable[[int, int], None]  # (neurons done, neurons in the layer)


def default_workers() -> int:
    """Processes to use by default: one per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def useful_workers(workers: int, neurons: int) -> int:
    """``workers``, but no more than there are chunks of ``neurons`` to give them (a pool for
    one chunk only costs its start)."""
    return max(1, min(workers, -(-neurons // CHUNK)))


def warm() -> float:
    """Fill this process's lazy caches (WordNet, lemminflect, concept look-ups) by making the row
    of a small made-up neuron that fires on colour words; returns the seconds it took."""
    t0 = time.perf_counter()
    words = ("the", " red", " cat", " sat", " on", " blue", " mats", " running")
    top = [Record(words, np.array([0.0, 2.0, 0.1, 0.0, 0.0, 1.5 + i / 10, 0.0, 0.2]))
           for i in range(4)]
    rand = [Record(words[::-1], np.zeros(len(words)))] * 2
    neuron_row(NeuronInput(0, 0, top, rand, top[:1], 2.4, 0.0, 0.3, 0.6, 0.4, [" x"], [" y"]),
               seed=0, n_boot=10)
    return time.perf_counter() - t0


def rows_of(chunk: Sequence[NeuronInput], seed: int, n_boot: int) -> list[dict]:
    """The rows of one chunk of neurons (a worker's task)."""
    return [neuron_row(inp, seed, n_boot) for inp in chunk]


def _context() -> mp.context.BaseContext:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # workers fork from a server that has imported these (and the main module, as default)
        ctx.set_forkserver_preload(["__main__", "neurosleuth.atlas.neuron"])
        return ctx
    return mp.get_context("spawn")


class RowMaker:
    """Makes atlas rows with ``workers`` processes (a context manager: the pool closes on exit).
    ``seed`` and ``n_boot``: the bootstrap of each neuron's score interval; ``chunk``: neurons a
    task (default ``CHUNK``)."""

    def __init__(self, workers: int, seed: int = 0, n_boot: int = 200,
                 chunk: int | None = None):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers, self.seed, self.n_boot = workers, seed, n_boot
        self.chunk = chunk or CHUNK  # neurons a task
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> RowMaker:
        """Start the workers now (each warms as it starts), not at the first chunk: entered
        before the scan, their start-up overlaps it."""
        if self.workers > 1:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=_context(),
                                            initializer=warm)
            for _ in range(self.workers):  # each submit to a busy pool starts one more worker
                self.pool.submit(os.getpid)
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def rows(self, chunks: Iterable[Sequence[NeuronInput]], total: int,
             progress: Progress | None = None) -> list[dict]:
        """The row of every input, in their order (``chunks``: the inputs cut into tasks, made
        as the pool asks for them, so that at most ``2 * workers`` chunks are in memory);
        ``progress(done, total)`` after each chunk."""
        parts: dict[int, list[dict]] = {}

        def record(i: int, rows: list[dict]) -> None:
            parts[i] = rows
            if progress is not None:
                progress(sum(map(len, parts.values())), total)

        todo = enumerate(chunks)
        if self.pool is None:
            for i, chunk in todo:
                record(i, rows_of(chunk, self.seed, self.n_boot))
        else:
            pending: dict[Future[list[dict]], int] = {}
            while True:
                for i, chunk in itertools.islice(todo, 2 * self.workers - len(pending)):
                    pending[self.pool.submit(rows_of, chunk, self.seed, self.n_boot)] = i
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    record(pending.pop(fut), fut.result())
        return [row for i in sorted(parts) for row in parts[i]]
