"""Search benchmark: with the same budget of forward passes per neuron, does the investigation agent
find prompts that drive a neuron higher than the earlier tool's loop, and how do both compare with
the best dataset exemplar?

For each of 10 fixed SmolLM2 neurons (``NEURONS``: layers 3..27, varied indices):

1. dataset max: the top window of ``tools.exemplars.exemplars(lm, neurons, k=1,
   max_tokens=--exemplar-tokens)``, the same scan (and cache) the agent's seed step reads;
2. agent: ``agents.session.investigate`` with ``planner=--planner`` (embedded by default),
   ``max_forward_passes=--budget`` and a large iteration budget, in a temporary runs dir. Its
   tools and memory are all in play: exemplar seeding, de-duplication, stagnation recovery;
3. baseline: ``bench/seed004_loop.py`` (the earlier tool's loop: the same LLM proposes from its
   top/bottom lists, semantic filter, random prompts on stagnation; no exemplars, no other tools).

Fairness: both measure with ``tools.measure.measure`` and count one forward pass per measured
prompt. The baseline stops exactly at the budget; the agent checks its budget between steps and
may overshoot by one step, so its best is also read *within the budget*: its prompts are replayed
in order from ``prompts.csv`` with ``curve.csv`` supplying passes spent outside the heaps (attack
search, hypothesis tests), and prompts measured after the budget are not counted. "Agent beats
baseline" compares that within-budget best with the baseline's best (a strict ``>``).

Reported per method: best activation, forward passes, LLM calls (retries and the agent's
hypothesis/test calls included), wall time, and the planner's share of wall time (LLM seconds /
wall seconds; the agent's from ``summary.json``: ``planner_s / wall_s``).

Caveats: wall times are from a shared 2-core machine (the JSON records the load average); the
embedded planner decodes ~8-10 tokens/s on one thread. SmolLM2-135M-Instruct is a weak planner:
a small budget measures the memory and seeding more than the planner's ideas. The agent's wall
time includes its report (plots) and the end-of-run hypothesis and test.

Run: ``python bench/search.py [--neurons 2] [--budget 32] [--planner embedded] [--threads 1]``.
Prints a table, writes ``bench/results/search.json`` after every neuron, and ends with
``agent beats baseline on N/10 neurons``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed004_loop import HeuristicProposer, LLMProposer, run_baseline  # noqa: E402

from neurosleuth.agents.config import RunConfig  # noqa: E402
from neurosleuth.agents.planner import LLMPlanner, make_planner  # noqa: E402
from neurosleuth.agents.session import investigate  # noqa: E402
from neurosleuth.report.build import write_report  # noqa: E402
from neurosleuth.tools.exemplars import exemplars  # noqa: E402
from neurosleuth.tools.model import LoadedModel, load_model  # noqa: E402
from neurosleuth.tools.neurons import NeuronId  # noqa: E402

NEURONS = [NeuronId(*x) for x in [(3, 1200), (5, 77), (8, 640), (11, 1024), (13, 3),
                                   (16, 900), (19, 512), (22, 1300), (25, 64), (27, 777)]]
HERE = Path(__file__).resolve().parent
console = Console(width=170)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--neurons", type=int, default=len(NEURONS), help="run the first K neurons")
    p.add_argument("--neuron", action="append", default=None,
                   help="explicit neuron L:I (repeatable; replaces the fixed list)")
    p.add_argument("--budget", type=int, default=32, help="forward passes per neuron and method")
    p.add_argument("--planner", choices=["embedded", "heuristic", "auto"], default="embedded")
    p.add_argument("--per-step", type=int, default=8, help="prompts per planner call (both)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the model under study")
    p.add_argument("--exemplar-tokens", type=int, default=RunConfig().exemplar_tokens)
    p.add_argument("--corpus", default=None, help="corpus for exemplars (project default)")
    p.add_argument("--window", type=int, default=RunConfig().window)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-runs", type=Path, default=None, help="keep agent runs here")
    p.add_argument("--out", type=Path, default=HERE / "results" / "search.json")
    return p.parse_args(argv)


def agent_config(args, neuron: NeuronId, runs_dir: str) -> RunConfig:
    # the prompt search alone: the fixed schedule searches at every step
    return RunConfig(run_id=f"bench-{neuron.layer}-{neuron.index}", runs_dir=runs_dir,
                     model=args.model, neuron=str(neuron), planner=args.planner, policy="fixed",
                     iterations=10_000, max_forward_passes=args.budget,
                     prompts_per_step=args.per_step, seed=args.seed, corpus=args.corpus,
                     exemplar_tokens=args.exemplar_tokens, window=args.window)


def best_within_budget(run: Path, budget: int) -> tuple[float | None, int]:
    """(best activation over the prompts measured within ``budget`` forward passes, passes
    counted). Replays prompts.csv step by step; a step's passes beyond its measured prompts
    (from curve.csv: attack search, hypothesis tests of the step before) are charged first."""
    with open(run / "prompts.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "accepted"]
    with open(run / "curve.csv", newline="") as f:
        fp_after = {int(r["step"]): int(r["forward_passes"]) for r in csv.DictReader(f)}
    best, used, last = None, 0, 0
    for step in sorted({int(r["step"]) for r in rows} | set(fp_after)):
        step_rows = [r for r in rows if int(r["step"]) == step]
        total = fp_after.get(step, last + len(step_rows)) - last
        used += max(total - len(step_rows), 0)
        last = fp_after.get(step, last + len(step_rows))
        for r in step_rows:
            if used >= budget:
                return best, used
            used += 1
            act = float(r["activation"])
            best = act if best is None else max(best, act)
    return best, used


def run_agent(lm: LoadedModel, neuron: NeuronId, args, runs_dir: str, planner) -> dict[str, Any]:
    start = time.perf_counter()
    run = investigate(agent_config(args, neuron, runs_dir), lm=lm, planner=planner,
                      reporter=write_report)
    wall = time.perf_counter() - start
    s = json.loads((run / "summary.json").read_text())
    within, used = best_within_budget(run, args.budget)
    return {"best": within, "best_final": s["best_activation"], "best_prompt": s["best_prompt"],
            "forward_passes": s["forward_passes"], "passes_within_budget": used,
            "llm_calls": s["llm_calls"], "llm_failures": s["llm_failures"],
            "llm_tokens_out": s["llm_tokens_out"], "iterations": s["iterations"],
            "wall_s": wall, "graph_wall_s": s["wall_s"], "planner_s": s["planner_s"],
            "model_s": s["model_s"], "planner_used": s["planner_used"],
            "stats": {k: v for k, v in s["stats"].items() if k != "history"},
            "recoveries": s["recoveries"]}


def run_neuron(lm, neuron, args, runs_dir, planner, proposer, dataset_max) -> dict[str, Any]:
    agent = run_agent(lm, neuron, args, runs_dir, planner)
    base = run_baseline(lm, neuron, proposer, args.budget, n=args.per_step, seed=args.seed,
                        max_prompt_chars=RunConfig().max_prompt_chars).to_dict()
    base["best"] = base["best_activation"]
    beats = agent["best"] is not None and (base["best"] is None or agent["best"] > base["best"])
    return {"neuron": str(neuron), "dataset_max": dataset_max, "agent": agent,
            "baseline": base, "agent_beats_baseline": bool(beats)}


def make_methods(args, runs_dir: str):
    """The agent's planner (built once, shared across neurons) and the baseline's proposer on
    the same LLM (or the heuristic mutations when the planner is heuristic)."""
    planner, note = make_planner(agent_config(args, NEURONS[0], runs_dir))
    if isinstance(planner, LLMPlanner):
        return planner, LLMProposer(planner.chat, args.model), note
    return planner, HeuristicProposer(args.seed), note


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_table(rows: list[dict], budget: int) -> None:
    t = Table(title=f"agent vs seed-004 loop vs dataset max ({budget} forward passes each)")
    for col in ("neuron", "dataset max", "agent", "baseline", "winner", "fp agent (all)",
                "fp base", "LLM agent", "LLM base", "wall agent s", "wall base s",
                "planner % agent", "planner % base"):
        t.add_column(col, justify="right")
    for r in rows:
        a, b = r["agent"], r["baseline"]
        t.add_row(r["neuron"], _f(r["dataset_max"]), _f(a["best"]), _f(b["best"]),
                  "agent" if r["agent_beats_baseline"] else "baseline",
                  f"{a['passes_within_budget']} ({a['forward_passes']})",
                  str(b["forward_passes"]), str(a["llm_calls"]), str(b["llm_calls"]),
                  f"{a['wall_s']:.0f}", f"{b['wall_s']:.0f}",
                  f"{100 * a['planner_s'] / max(a['graph_wall_s'], 1e-9):.0f}",
                  f"{100 * b['planner_s'] / max(b['wall_s'], 1e-9):.0f}")
    console.print(t)


def totals(rows: list[dict]) -> dict[str, Any]:
    def share(key: str, wall: str) -> float | None:
        w = sum(r[key][wall] for r in rows)
        return sum(r[key]["planner_s"] for r in rows) / w if w > 0 else None

    return {"n": len(rows), "beats": sum(r["agent_beats_baseline"] for r in rows),
            "agent_above_dataset": sum(r["agent"]["best"] is not None and r["dataset_max"]
                                       is not None and r["agent"]["best"] > r["dataset_max"]
                                       for r in rows),
            "baseline_above_dataset": sum(r["baseline"]["best"] is not None and r["dataset_max"]
                                          is not None and r["baseline"]["best"] > r["dataset_max"]
                                          for r in rows),
            "agent_planner_share": share("agent", "graph_wall_s"),
            "baseline_planner_share": share("baseline", "wall_s"),
            "agent_wall_s": sum(r["agent"]["wall_s"] for r in rows),
            "baseline_wall_s": sum(r["baseline"]["wall_s"] for r in rows)}


def main(argv: list[str] | None = None, lm: LoadedModel | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    start, load_before = time.perf_counter(), os.getloadavg()
    torch.set_num_threads(args.threads)
    lm = lm or load_model(args.model, device="cpu")
    neurons = [NeuronId.parse(s) for s in args.neuron] if args.neuron else NEURONS[: args.neurons]
    for n in neurons:
        n.validate(lm.n_layers, lm.d_mlp)
    t0 = time.perf_counter()
    ex = exemplars(lm, neurons, corpus=args.corpus, k=1, window=args.window,
                   max_tokens=args.exemplar_tokens)
    scan_s = time.perf_counter() - t0
    console.print(f"exemplar scan: {scan_s:.0f} s for layers {sorted({n.layer for n in neurons})}",
                  markup=False)
    repo = Path(__file__).resolve().parents[1]  # paths saved repo-relative, not machine paths
    config = {k: (str(v.resolve().relative_to(repo)) if isinstance(v, Path)
                  and v.resolve().is_relative_to(repo) else
                  str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        runs_dir = str(args.keep_runs or tmp)
        planner, proposer, note = make_methods(args, runs_dir)
        console.print(f"planner: {planner.name} ({note})", markup=False)
        for n in neurons:
            dmax = ex[n].top[0].value if ex[n].top else None
            rows.append(run_neuron(lm, n, args, runs_dir, planner, proposer, dmax))
            r = rows[-1]
            console.print(f"{r['neuron']}: agent {_f(r['agent']['best'])} baseline "
                          f"{_f(r['baseline']['best'])} dataset {_f(dmax)} "
                          f"({time.perf_counter() - start:.0f} s elapsed)", markup=False)
            result = {"config": config, "model": lm.describe(), "planner": planner.name,
                      "planner_note": note, "scan_seconds": scan_s,
                      "total_seconds": time.perf_counter() - start, "loadavg_before": load_before,
                      "loadavg_now": os.getloadavg(), "complete": len(rows) == len(neurons),
                      "totals": totals(rows), "neurons": rows}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1, default=str))
    print_table(rows, args.budget)
    tot = totals(rows)
    console.print(f"planner share of wall time: agent {_f(tot['agent_planner_share'], 2)}, "
                  f"baseline {_f(tot['baseline_planner_share'], 2)}; above dataset max: agent "
                  f"{tot['agent_above_dataset']}/{tot['n']}, baseline "
                  f"{tot['baseline_above_dataset']}/{tot['n']}", markup=False)
    console.print(f"wrote {args.out}", markup=False)
    print(f"agent beats baseline on {tot['beats']}/{tot['n']} neurons")
    return result


if __name__ == "__main__":
    main()
