"""``--executor ray``: each neuron of a batch runs as one Ray task; the driver keeps the queue.

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

Time budget: the remaining budget is shared by as many neurons at a time as the cluster has task
slots (GPUs, else CPUs), each neuron getting ``remaining * slots / neurons_left``.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any

from neurosleuth.agents.rundir import now_iso
from neurosleuth.batch.queue import BatchQueue, record_outcome, run_neuron, write_site_quietly


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


def neuron_task(folder: str, cfg: dict[str, Any], driver_node: str) -> dict[str, Any]:
    """Body of the Ray task: one neuron, in a worker process."""
    import ray
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    outcome = run_neuron(Path(folder), cfg)
    outcome["node"] = ray.get_runtime_context().get_node_id()
    if outcome["node"] != driver_node and (Path(folder) / cfg["run_id"]).is_dir():
        outcome["archive"] = pack_run(Path(folder) / cfg["run_id"])
    return outcome


def init_ray(address: str | None = None) -> bool:
    """Connect to (or start) Ray; returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    return True


def run_ray(queue: BatchQueue, address: str | None = None, display=None) -> None:
    """Run the queue's remaining neurons as Ray tasks and record each as it finishes."""
    import ray

    started_here = init_ray(address)
    try:
        resources = ray.cluster_resources()
        gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        slots = int(resources.get("GPU" if gpus else "CPU", 1)) or 1
        task = ray.remote(num_gpus=gpus, max_retries=0)(neuron_task)
        driver = ray.get_runtime_context().get_node_id()
        pending: dict[Any, Any] = {}
        todo = queue.batch.todo()
        for entry in todo:
            started = entry.attempts and entry.budget_s  # keeps the budget it started with
            budget = entry.budget_s if started else queue.next_budget(parallel=slots)
            queue.update(entry, status="running", budget_s=budget, started_at=now_iso(),
                         attempts=entry.attempts + 1)
            if display:
                display.neuron_started(entry)
            pending[task.remote(str(queue.folder), queue.run_config(entry), driver)] = entry
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                entry = pending.pop(ref)
                outcome = _result(ref, entry, queue.folder)
                record_outcome(queue, entry, outcome)
                write_site_quietly(queue.folder)
                if display:
                    display.neuron_finished(entry)
    finally:
        if started_here:
            ray.shutdown()


def _result(ref, entry, folder: Path) -> dict[str, Any]:
    import ray

    start = time.monotonic()
    try:
        outcome = ray.get(ref)
    except ray.exceptions.RayError as err:  # the worker died, or the task raised outside run_neuron
        return {"status": "failed", "error": f"{type(err).__name__}: {err}".splitlines()[0][:500],
                "seconds": time.monotonic() - start, "prior_s": 0.0}
    archive = outcome.pop("archive", None)
    if archive is not None:
        unpack_run(archive, folder, entry.run_id)
    return outcome
