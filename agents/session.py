"""Open an investigation: resolve the run directory, load the model, check the neuron, pick the
planner, open (or restore) the prompt memory, save the resolved config, and run it.

A caller attaches to a run what it needs to watch, share or report it: an ``observer`` called
after every node (a live view), ``peers`` (the other neurons of a layer-parallel batch group), a
``stop`` event (set: the run writes its report at the next step), a ``reporter`` (writes
``report.md`` and ``report.html`` at the end; the command line passes
``report.build.write_report``, see ``agents/context.py``)."""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path

from neurosleuth.agents import graph
from neurosleuth.agents.config import RunConfig, run_path
from neurosleuth.agents.context import Alone, Observer, Peers, Reporter, RunContext
from neurosleuth.agents.heuristic import HeuristicPlanner
from neurosleuth.agents.planner import make_planner
from neurosleuth.agents.rundir import RunFiles
from neurosleuth.memory.dedup import PromptDeduper
from neurosleuth.memory.embedder import load_embedder
from neurosleuth.tools.model import LoadedModel, load_model
from neurosleuth.tools.neurons import NeuronId


def new_run_id(neuron: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-n{neuron.replace(':', '-')}-{secrets.token_hex(2)}"


def open_investigation(
    cfg: RunConfig, lm: LoadedModel | None = None, resume: bool = False, planner=None,
    observer: Observer | None = None, peers: Peers | None = None,
    stop: threading.Event | None = None, reporter: Reporter | None = None,
) -> RunContext:
    """Everything a run needs; raises a clear error for a bad neuron, model or planner."""
    if not cfg.run_id:
        cfg = cfg.model_copy(update={"run_id": new_run_id(cfg.neuron)})
    files = RunFiles(cfg.run_dir())
    if (files / "config.json").is_file() and not resume:
        raise FileExistsError(
            f"run {cfg.run_id} exists in {cfg.runs_dir}: use `neurosleuth resume`"
        )
    lm = lm or load_model(cfg.model, device=cfg.device, dtype=cfg.dtype,
                          device_map=cfg.device_map)
    if cfg.dtype in (None, "auto"):  # record the dtype chosen, so that a resume uses the same
        cfg = cfg.model_copy(update={"dtype": str(lm.dtype).removeprefix("torch.")})
    neuron = NeuronId.parse(cfg.neuron).validate(lm.n_layers, lm.d_mlp)
    planner, note = (planner, "given by the caller") if planner else make_planner(cfg)
    embedder = load_embedder()
    dedup_dir = files / "dedup"
    if resume and dedup_dir.is_dir():
        dedup = PromptDeduper.load(dedup_dir, embedder)
    else:
        dedup = PromptDeduper(embedder, threshold=cfg.dedup_threshold)
    files.write_json("config.json", cfg.public_dict())
    return RunContext(cfg, lm, neuron, planner, note, files, dedup, peers=peers or Alone(),
                      stop=stop or threading.Event(), observer=observer, reporter=reporter,
                      mutations=HeuristicPlanner(cfg.seed))


def investigate(cfg: RunConfig, lm: LoadedModel | None = None, planner=None,
                **attach) -> Path:
    """Run a new investigation to the end of its budget; returns the run directory.
    ``attach``: ``observer``, ``peers``, ``stop``, ``reporter`` (the module's docstring)."""
    ctx = open_investigation(cfg, lm, planner=planner, **attach)
    graph.run(ctx)
    return ctx.files.path


def resume(
    runs_dir: str | Path, run_id: str, lm: LoadedModel | None = None, planner=None,
    observer: Observer | None = None, peers: Peers | None = None,
    stop: threading.Event | None = None, reporter: Reporter | None = None, **changes
) -> Path:
    """Continue a run from its last checkpoint (killed, interrupted, or finished with a new
    budget given in ``changes``, e.g. ``iterations=60``)."""
    path = run_path(runs_dir, run_id)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no run {run_id!r} in {runs_dir}")
    data = json.loads((path / "config.json").read_text())
    data.setdefault("policy", "fixed")  # a run from before the planner chose: its schedule
    saved = RunConfig.model_validate(data)
    cfg = saved.model_copy(
        update={"runs_dir": str(runs_dir), **{k: v for k, v in changes.items() if v is not None}}
    )
    ctx = open_investigation(cfg, lm, resume=True, planner=planner, observer=observer,
                             peers=peers, stop=stop, reporter=reporter)
    graph.run(ctx, resume=True)
    return ctx.files.path
