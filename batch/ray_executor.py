"""``--executor ray``: each layer group of a layer-parallel batch (or, with
``--no-shared-cache``, each neuron) runs as one Ray task; the driver keeps the queue.

A group task runs its neurons interleaved in one worker (``batch/interleave.py``: one model, one
activation cache, one search board), so the sharing holds inside each task, and returns every
neuron's outcome; the driver records them when the task ends.

Each task calls ``batch.run_neuron`` in a Ray worker process: the worker loads the model once
(``load_model`` caches per process, and Ray reuses workers), investigates one neuron (or resumes
it from its checkpoint) and writes the run folder under the batch folder. A task asks for one
GPU when the cluster has GPUs (``num_gpus=1``), else for one CPU. The driver alone writes
``batch.json`` and ``index.html``, as tasks finish (``ray.wait``).

Cluster use: ``ray.init(address=...)`` connects to an existing cluster (``--ray-address auto``
or ``ray://host:10001``); every node needs neurosleuth installed. With a shared file system at the
same path the run folders are written in place (and a killed batch resumes each run from its
checkpoint); otherwise a task on another node returns its run folder as a tar archive and the
driver unpacks it into the batch folder.

Time budget: the remaining budget is shared by as many neurons at a time as the cluster runs
(task slots, GPUs else CPUs, times the neurons of a group), each neuron getting
``remaining * parallel / neurons_left``. The activation cache of a group that ran on another node
stays there (it is a cache: a resumed batch measures those texts again).
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any

from neurosleuth.agents.context import Reporter
from neurosleuth.batch.interleave import batch_groups
from neurosleuth.batch.queue import (
    NO_WRITERS,
    UNFINISHED,
    BatchQueue,
    Writers,
    record_outcome,
    run_neuron,
    start_entry,
    write_site_quietly,
)


def pack_run(run_dir: Path) -> bytes:
    """The run folder as a gzipped tar (member names relative to its parent)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(run_dir, arcname=run_dir.name)
    return buf.getvalue()


def unpack_run(data: bytes, folder: Path, run_id: str) -> None:
    """Extract a ``pack_run`` archive of ``run_id`` into ``folder`` (nothing outside it)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            if m.name != run_id and not m.name.startswith(run_id + "/"):
                raise ValueError(f"archive member {m.name!r} is outside run {run_id}")
        tar.extractall(folder, filter="data")


def neuron_task(folder: str, cfg: dict[str, Any], driver_node: str,
                reporter: Reporter | None = None) -> dict[str, Any]:
    """Body of the Ray task: one neuron, in a worker process (``reporter``: a module-level
    function, which Ray pickles by name)."""
    import ray
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    outcome = run_neuron(Path(folder), cfg, reporter=reporter)
    outcome["node"] = ray.get_runtime_context().get_node_id()
    if outcome["node"] != driver_node and (Path(folder) / cfg["run_id"]).is_dir():
        outcome["archive"] = pack_run(Path(folder) / cfg["run_id"])
    return outcome


def group_task(folder: str, members: list[str], cfgs: list[dict[str, Any]], driver_node: str,
               reporter: Reporter | None = None) -> list[dict[str, Any]]:
    """Body of a group's Ray task: its neurons interleaved in one worker; their outcomes."""
    import ray
    import torch

    from neurosleuth.batch.interleave import run_group
    from neurosleuth.tools.model import load_model

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    lm = load_model(cfgs[0]["model"], device=cfgs[0].get("device"),
                           dtype=cfgs[0].get("dtype"), device_map=cfgs[0].get("device_map"))
    outcomes = run_group(Path(folder), members, cfgs, lm,
                         lambda cfg, **attach: run_neuron(Path(folder), cfg, lm=lm,
                                                          reporter=reporter, **attach),
                         lambda i, outcome: None)
    node = ray.get_runtime_context().get_node_id()
    for cfg, outcome in zip(cfgs, outcomes, strict=True):
        outcome["node"] = node
        if node != driver_node and (Path(folder) / cfg["run_id"]).is_dir():
            outcome["archive"] = pack_run(Path(folder) / cfg["run_id"])
    return outcomes


def init_ray(address: str | None = None) -> bool:
    """Connect to (or start) Ray; returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    return True


def run_ray(queue: BatchQueue, address: str | None = None, display=None,
            writers: Writers = NO_WRITERS) -> None:
    """Run the queue's remaining neurons (or layer groups) as Ray tasks and record each
    outcome as its task finishes (the tasks write the reports, the driver the site)."""
    import ray

    started_here = init_ray(address)
    try:
        resources = ray.cluster_resources()
        gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        slots = int(resources.get("GPU" if gpus else "CPU", 1)) or 1
        driver = ray.get_runtime_context().get_node_id()
        pending: dict[Any, list] = {}
        if queue.batch.shared_cache:
            group = ray.remote(num_gpus=gpus, max_retries=0)(group_task)
            for members in batch_groups(queue.batch):
                todo = [e for e in members if e.status in UNFINISHED]
                cfgs = [start_entry(queue, e, display, parallel=slots * len(todo)) for e in todo]
                ref = group.remote(str(queue.folder), [e.neuron for e in members], cfgs, driver,
                                   writers.reporter)
                pending[ref] = todo
        else:
            single = ray.remote(num_gpus=gpus, max_retries=0)(neuron_task)
            for entry in queue.batch.todo():
                cfg = start_entry(queue, entry, display, parallel=slots)
                pending[single.remote(str(queue.folder), cfg, driver, writers.reporter)] = [entry]
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                entries = pending.pop(ref)
                for entry, outcome in zip(entries, _results(ref, entries, queue.folder),
                                          strict=True):
                    record_outcome(queue, entry, outcome)
                    if display:
                        display.neuron_finished(entry)
                write_site_quietly(queue.folder, writers)
    finally:
        if started_here:
            ray.shutdown()


def _results(ref, entries, folder: Path) -> list[dict[str, Any]]:
    """The outcomes of one task (a neuron's, or a group's), run folders unpacked."""
    import ray

    start = time.monotonic()
    try:
        outcomes = ray.get(ref)
    except ray.exceptions.RayError as err:  # the worker died, or the task raised outside run_neuron
        failed = {"status": "failed", "error": f"{type(err).__name__}: {err}".splitlines()[0][:500],
                  "seconds": time.monotonic() - start, "prior_s": 0.0}
        return [dict(failed) for _ in entries]
    outcomes = outcomes if isinstance(outcomes, list) else [outcomes]
    for entry, outcome in zip(entries, outcomes, strict=True):
        archive = outcome.pop("archive", None)
        if archive is not None:
            unpack_run(archive, folder, entry.run_id)
    return outcomes
