"""``atlas --executor ray``: the layers of an atlas as Ray tasks across the GPUs and machines of a
Ray cluster, one layer a shard; the driver keeps the atlas folder.

A shard (``layer_shard``) runs in a Ray actor (``ShardWorker``: one per GPU where the cluster
has GPUs, ``num_gpus=1``; else one per ``workers`` CPUs), a long-lived worker process that loads
the model once (``load_model`` caches per process) and keeps it for its next layer (a Ray task
that holds a GPU gets a fresh process each time, and would load the model again). A shard scans
its one layer (``tools/exemplars.layer_scans``: the corpus windows and that layer's scan, from
the node's cache where it holds them; the forward pass stops at the layer), explains and scores
every neuron with ``workers`` processes (``atlas/workers.py``; the actor asks Ray for as many
CPUs) and returns the rows. The driver writes ``layers/L.parquet`` atomically as each shard
returns, as the local build does, so no shared file system is needed, and then
``atlas.parquet``.

The same table as a local run: the scan of one layer alone is the scan of that layer among others
(the same windows, random sample and batches), and a row depends on its records alone
(``atlas/neuron.py``). (On a GPU the batch size follows the free memory, so the last bits of an
activation can differ between runs, local or not.) ``atlas.json``'s ``scan_s`` is then the sum
of the shards' scans.

Failures: a shard whose worker dies (killed, out of memory, node lost) or that raises is
submitted again, to a fresh actor, up to ``RETRIES`` more times; a layer is written only from a
shard that returned, once, so nothing is lost or counted twice. Layers already in ``layers/`` are
not submitted (a killed driver resumes, as a local atlas does). Time budget (``time_s``): no
shard starts once it is spent; those running finish.

The caller connects to Ray first (``batch/ray_executor.init_ray``: ``--ray-address`` or a local
instance); every node needs neurosleuth installed and the model and corpus reachable.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from neurosleuth.atlas.build import (
    ATLAS_VERSION,
    AtlasConfig,
    Say,
    finish_atlas,
    layer_rows,
    layers_done,
    open_atlas,
    record_layer,
    write_layer,
)

RETRIES = 2  # more tries of a shard whose worker died or that raised
Placement = dict[str, str | None]  # load_model's device, dtype and device_map
Shard = Callable[[str, Placement, int, AtlasConfig], dict[str, Any]]


def layer_shard(model: str, placement: Placement, layer: int, cfg: AtlasConfig
                ) -> dict[str, Any]:
    """Body of a shard's Ray task: one layer scanned, explained and scored in this worker;
    returns its rows and how long each stage took."""
    import ray
    import torch

    from neurosleuth.tools.corpus import composition, resolve_corpus
    from neurosleuth.tools.exemplars import layer_scans
    from neurosleuth.tools.model import load_model

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    lm = load_model(model, **placement)
    scan = cfg.scan
    t0 = time.perf_counter()
    windows, scans, _, _ = layer_scans(lm, [layer], scan.corpus, scan.window, scan.max_tokens,
                                       keep=scan.k)
    scan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = layer_rows(lm, scans[layer], windows, cfg)
    return {"layer": layer, "rows": rows, "scan_s": scan_s,
            "neurons_s": time.perf_counter() - t0, "workers": cfg.workers,
            "windows": int(len(windows)), "scan_tokens": int(len(windows) * windows.width),
            "corpus": composition(resolve_corpus(scan.corpus), windows=windows),
            "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def shard_resources(workers: int | None) -> tuple[int, int, int]:
    """(GPUs, CPUs) a shard asks for, and how many shards the cluster runs at once: one GPU each
    where the cluster has GPUs; ``workers`` CPUs each (at most a node's CPUs; default: the
    cluster's CPUs per GPU where it has GPUs, else one)."""
    import ray

    total = ray.cluster_resources()
    gpus = 1 if total.get("GPU", 0) >= 1 else 0
    node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    if workers is None:
        workers = int(total.get("CPU", 1) // total["GPU"]) if gpus else 1
    cpus = max(1, min(workers, max(node_cpus, default=1)))
    slots = int(total["GPU"]) if gpus else int(total.get("CPU", 1)) // cpus
    return gpus, cpus, max(1, slots)


class _Driver:
    """The driver's side: which layers are submitted, running, to retry, written."""

    def __init__(self, out: Path, settings: dict[str, Any], cfg: AtlasConfig, say: Say,
                 retries: int):
        self.out, self.settings, self.cfg, self.say, self.retries = out, settings, cfg, say, retries
        self.meta = open_atlas(out, settings) | settings
        self.tries: Counter[int] = Counter()
        self.failed: dict[int, str] = {}

    def received(self, layer: int, ref: Any) -> Literal["written", "retry", "failed"]:
        """Write a finished shard's layer, or count its failure: to retry while tries are left,
        else failed."""
        import ray

        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as err:
            self.tries[layer] += 1
            why = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            if self.tries[layer] > self.retries:
                self.failed[layer] = why
                self.say(f"layer {layer}: failed {self.tries[layer]} times ({why})")
                return "failed"
            self.say(f"layer {layer}: {why}; trying again ({self.tries[layer]}/{self.retries})")
            return "retry"
        write_layer(self.out, layer, result["rows"])
        self.meta |= {"windows": result["windows"], "corpus": result["corpus"]}
        timings = self.meta.setdefault("timings", {})
        timings["scan_s"] = timings.get("scan_s", 0.0) + result["scan_s"]
        timings["scan_tokens"] = result["scan_tokens"]
        record_layer(self.out, self.meta, layer, result["neurons_s"], result["workers"])
        self.say(f"layer {layer}: {len(result['rows'])} neurons explained in "
                 f"{result['neurons_s']:.1f} s ({result['workers']} workers, node "
                 f"{str(result['node'])[:8]})")
        return "written"


class ShardWorker:
    """A Ray actor that runs shards, one at a time, in one long-lived worker process: the model
    it loads stays loaded (on the GPU the actor holds) for its next layer."""

    def run(self, shard: Shard, model: str, placement: Placement, layer: int, cfg: AtlasConfig
            ) -> dict[str, Any]:
        return shard(model, placement, layer, cfg)


def build_atlas_ray(model: str, layers: Sequence[int], out: Path,
                    cfg: AtlasConfig, placement: Placement | None = None,
                    say: Say = lambda m: None, shard: Shard = layer_shard,
                    retries: int = RETRIES, workers: int | None = None) -> Path:
    """Build (or continue) the atlas of ``model`` in ``out`` with one Ray task a layer (module
    docstring), on the Ray instance this process is connected to; returns
    ``out/atlas.parquet``. ``shard``: the task body (``layer_shard``); ``workers``: processes a
    shard (``shard_resources``; ``cfg.workers`` is not read)."""
    import ray

    start = time.perf_counter()
    settings = {"model": model, "config": cfg.settings(), "version": ATLAS_VERSION}
    driver = _Driver(out, settings, cfg, say, retries)
    queue = [L for L in layers if L not in layers_done(out)]
    gpus, cpus, slots = shard_resources(workers)
    actor = ray.remote(num_gpus=gpus, num_cpus=cpus, max_restarts=0)(ShardWorker)
    cfg_here = replace(cfg, time_s=None, workers=cpus)
    say(f"{len(queue)} layers as Ray tasks, {slots} at a time ({gpus} GPU, {cpus} CPU each)")
    idle: list[Any] = [actor.remote() for _ in range(min(slots, len(queue)))]  # actor handles
    pending: dict[Any, tuple[int, Any]] = {}  # task -> (layer, actor)
    try:
        while queue or pending:
            spent = cfg.time_s is not None and time.perf_counter() - start > cfg.time_s
            while queue and idle and not spent:
                layer, worker = queue.pop(0), idle.pop()
                ref = worker.run.remote(shard, model, placement or {}, layer, cfg_here)
                pending[ref] = (layer, worker)
            if not pending:
                say(f"time budget spent: {len(queue)} layers left; run again to continue")
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                layer, worker = pending.pop(ref)
                status = driver.received(layer, ref)
                if status != "written":  # the actor may be dead: a fresh one takes its place
                    ray.kill(worker, no_restart=True)
                    worker = actor.remote()
                if status == "retry":
                    queue.insert(0, layer)
                idle.append(worker)
    finally:
        for worker in idle + [w for _, w in pending.values()]:
            ray.kill(worker, no_restart=True)
    if driver.failed:
        lines = "; ".join(f"layer {L}: {why}" for L, why in sorted(driver.failed.items()))
        raise RuntimeError(f"{len(driver.failed)} layers failed ({lines}); the others are "
                           f"written: run again to retry")
    return finish_atlas(out, settings)
