"""Does the score tell right hypotheses from wrong ones? SmolLM2-135M, six neurons.

For each neuron of ``NEURONS``: the "right" hypothesis is written from its top dataset exemplars
the way the agent's heuristic planner does (``HeuristicPlanner.hypothesize``: the most common
peak tokens of the top 10 exemplar snippets); the "shuffled" one is the next neuron's right
hypothesis (a fixed derangement). Both are scored by ``score_hypothesis`` (the neuron-level
evidence and the controls computed once per neuron and shared). The benchmark prints a table and
ends with ``margin: <m> (95% CI <lo>..<hi>)``: the mean over neurons of aggregate(right) -
aggregate(shuffled), with a percentile bootstrap over neurons (10,000 resamples, seed 0).

Neurons: 18 drawn at random (``numpy`` seed 1, 6 from each of layers 4, 5 and 12), of which the
six whose top-20 exemplar peaks are most concentrated on one token (so a token-level hypothesis
can be right): 4:724 ' def', 4:1458 months, 5:1268 'parse', 5:648 ' light', 12:1211 ' right',
12:1282 'lock'. The choice favours neurons a keyword hypothesis can describe; the margin on
neurons with diffuse exemplars would be smaller.

Timing: seconds per score on CPU with ``--threads`` (default 1) torch threads: the first score of
a neuron (held-out windows, ablation against ``baseline`` random neurons, perturbations, the
control hypotheses) and a re-score (the cached neuron-level evidence reused: what each refinement
of a hypothesis costs in an investigation). Wall time on a shared machine is inflated by other
processes; CPU time is recorded beside it.

Run: ``python bench/score.py [--planner heuristic|embedded] [--threads 1]``; JSON to
``bench/results/score.json`` (heuristic) or ``score-<planner>.json``. The exemplar scan
(65,536 corpus tokens per layer) is cached; a cold cache adds about a minute per layer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.heuristic import HeuristicPlanner
from neurosleuth.agents.planner import make_planner
from neurosleuth.agents.prompts import PlannerView
from neurosleuth.agents.scoring import planner_control, planner_writer
from neurosleuth.score.run import ScoreConfig, scanned_exemplars, score_hypothesis
from neurosleuth.tools.explain import explain
from neurosleuth.tools.model import load_model
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.scan_config import ScanConfig
from neurosleuth.tools.snippets import snippets_from_json

HERE = Path(__file__).resolve().parent
NEURONS = ("4:724", "4:1458", "5:1268", "5:648", "12:1211", "12:1282")
console = Console(width=160)


def explainer_hypothesis(lm, neuron: NeuronId, config: ScoreConfig) -> str:
    """The evidence explainer's sentence from the top 12 exemplars (its text only is scored)."""
    top = scanned_exemplars(lm, neuron, config)["top"][:12]
    texts = ["".join(e["tokens"][: e["argmax"] + 1]) for e in top]
    windows = [(e["tokens"], np.asarray(e["acts"], dtype=float)) for e in top]
    return explain(lm, neuron, texts, windows).sentence


def right_hypothesis(lm, neuron: NeuronId, config: ScoreConfig) -> str:
    snippets = snippets_from_json(scanned_exemplars(lm, neuron, config))
    view = PlannerView(neuron=str(neuron), model=lm.name, exemplars=snippets[:10])
    return HeuristicPlanner(config.seed).hypothesize(view).text


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bootstrap_mean(x: np.ndarray, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--planner", default="heuristic", choices=["heuristic", "embedded", "ollama"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=65536, help="corpus tokens scanned")
    ap.add_argument("--baseline", type=int, default=20, help="random neurons for causality")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--right", default="explainer", choices=["explainer", "token-list"],
                    help="who writes the right hypotheses")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model("smollm2-135m", device="cpu")
    planner, note = make_planner(RunConfig(planner=args.planner))
    config = ScoreConfig(ScanConfig(max_tokens=args.max_tokens), baseline=args.baseline)
    neurons = [NeuronId.parse(s) for s in NEURONS]
    load_before = os.getloadavg()
    write = explainer_hypothesis if args.right == "explainer" else right_hypothesis
    hyps = [write(lm, n, config) for n in neurons]
    rows = []
    for i, n in enumerate(neurons):
        cache: dict = {}
        shuffled = hyps[(i + 1) % len(hyps)]
        right, w1, c1 = timed(lambda n=n, i=i, cache=cache: score_hypothesis(
            lm, n, hyps[i], writer=planner_writer(planner, n, lm.name),
            hypothesize=planner_control(planner), config=config, cache=cache))
        wrong, w2, c2 = timed(lambda n=n, cache=cache, h=shuffled: score_hypothesis(
            lm, n, h, writer=planner_writer(planner, n, lm.name),
            hypothesize=planner_control(planner), config=config, cache=cache))
        rows.append({"neuron": str(n), "right": hyps[i], "shuffled": shuffled,
                     "right_score": right.aggregate.value, "shuffled_score": wrong.aggregate.value,
                     "floor": right.floor.value, "right_margin": right.margin.value,
                     "shuffled_margin": wrong.margin.value,
                     "right_components": {k: c.value for k, c in right.components.items()},
                     "shuffled_components": {k: c.value for k, c in wrong.components.items()},
                     "first_wall_s": w1, "first_cpu_s": c1, "rescore_wall_s": w2,
                     "rescore_cpu_s": c2,
                     "llm_failures": right.llm_failures + wrong.llm_failures})
        console.print(f"{n}: right {right.summary()} | shuffled {wrong.summary()} "
                      f"({w1:.1f} s + {w2:.1f} s)", markup=False, highlight=False)
    diffs = np.array([r["right_score"] - r["shuffled_score"] for r in rows])
    lo, hi = bootstrap_mean(diffs)
    table = Table(title=f"score: right vs shuffled hypotheses, SmolLM2-135M, writer "
                        f"{planner.name}, {args.threads} thread(s)")
    for col in ("neuron", "right hypothesis", "right", "shuffled", "floor", "diff",
                "1st score s", "re-score s"):
        table.add_column(col, justify="left" if "hyp" in col or col == "neuron" else "right")
    for r in rows:
        table.add_row(r["neuron"], r["right"][:60], f"{r['right_score']:.3f}",
                      f"{r['shuffled_score']:.3f}", f"{r['floor']:.3f}",
                      f"{r['right_score'] - r['shuffled_score']:+.3f}",
                      f"{r['first_wall_s']:.1f} ({r['first_cpu_s']:.1f} cpu)",
                      f"{r['rescore_wall_s']:.1f} ({r['rescore_cpu_s']:.1f} cpu)")
    console.print(table)
    first = float(np.median([r["first_wall_s"] for r in rows]))
    again = float(np.median([r["rescore_wall_s"] for r in rows]))
    per_score = sum(r["first_wall_s"] + r["rescore_wall_s"] for r in rows) / (2 * len(rows))
    console.print(f"seconds per score (CPU, {args.threads} thread): first {first:.1f} (median), "
                  f"re-score {again:.1f} (median), mean over all {per_score:.1f}")
    name = "score.json" if args.planner == "heuristic" else f"score-{args.planner}.json"
    if args.right != "explainer":
        name = name.replace(".json", f"-{args.right}.json")
    out = args.json or HERE / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": "smollm2-135m", "writer": planner.name, "writer_note": note,
        "threads": args.threads, "config": config.to_dict(), "neurons": rows,
        "right_written_by": args.right,
        "margin": float(diffs.mean()), "margin_ci": [lo, hi],
        "seconds_per_score": {"first_median": first, "rescore_median": again,
                              "mean": per_score},
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "machine": platform.platform(), "torch": torch.__version__}, indent=1))
    console.print(f"wrote {out}")
    print(f"margin: {diffs.mean():.3f} (95% CI {lo:.3f}..{hi:.3f})")


if __name__ == "__main__":
    main()
