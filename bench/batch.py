"""Batch throughput: the same neurons of one layer investigated (a) one after another and (b)
layer-parallel (``batch/interleave.py``: interleaved investigations, shared passes, one
activation cache), in one run, with the same per-neuron settings and seeds.

Both batches get the same neurons, planner (the heuristic: no LLM time in the figures), search
iterations, hypothesis rounds, explainer and score sample sizes; the corpus scan of the layer is
warmed first and charged to neither. Per mode: wall time, forward passes (sequences run through
the model by measurement: the cache's passes and rows for (b); every neuron's own count from
its summary for both), neurons/hour. Agreement: per neuron, the hypothesis text and its score
(aggregate and margin) in (a) and (b); (b) differs by design (each neuron also sees the rows of
the other neurons' searches), so scores are compared against (a)'s 95% interval.

Run: ``python bench/batch.py [--neurons 24] [--layer 12] [--iterations 4]``; writes
``bench/results/batch.json``. The last line is
``layer-parallel: X neurons/hour vs Y sequential (Z.Zx)``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from neurosleuth.agents.config import resolve_config
from neurosleuth.batch.queue import BatchQueue, Writers, run_batch, warm_scans
from neurosleuth.batch.select import NeuronPick
from neurosleuth.report.build import write_report
from neurosleuth.report.site import write_site
from neurosleuth.tools.measure import active_hooks, direct_measure_ids, use_source
from neurosleuth.tools.model import load_model
from neurosleuth.tools.neurons import NeuronId

WRITERS = Writers(reporter=write_report, site=write_site)  # as `neurosleuth batch` runs it

HERE = Path(__file__).resolve().parent
console = Console()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--neurons", type=int, default=24)
    p.add_argument("--layer", type=int, default=12)
    p.add_argument("--first", type=int, default=0, help="first neuron index")
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--hypothesis-every", type=int, default=4)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default=None)
    p.add_argument("--keep", type=Path, default=None, help="keep the batch folders here")
    p.add_argument("--json", type=Path, default=HERE / "results" / "batch.json")
    return p.parse_args(argv)


class Stopwatch:
    """A ``measure_ids`` source that runs the model as usual and adds up the time spent in the
    measurements a shared cache could serve (those taken with no hooks attached)."""

    def __init__(self) -> None:
        self.seconds, self.sequences = 0.0, 0

    def measure_ids(self, lm, ids, neurons, tokens_per_batch=None):
        if active_hooks(lm):
            return direct_measure_ids(lm, ids, neurons, tokens_per_batch)
        start = time.perf_counter()
        out = direct_measure_ids(lm, ids, neurons, tokens_per_batch)
        self.seconds += time.perf_counter() - start
        self.sequences += len(ids)
        return out


def run_mode(lm, runs: Path, name: str, picks, cfg, shared: bool) -> dict:
    queue = BatchQueue.create(runs, name, picks, cfg, shared_cache=shared,
                              group_size=len(picks))
    watch = Stopwatch()
    start, cpu = time.perf_counter(), time.process_time()
    if shared:
        run_batch(queue.folder, lm=lm, writers=WRITERS)
    else:
        with use_source(lm, watch):
            run_batch(queue.folder, lm=lm, writers=WRITERS)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    neurons = {}
    for e in BatchQueue.load(queue.folder).batch.entries:
        run = queue.folder / e.run_id
        summary = json.loads((run / "summary.json").read_text())
        hyps = json.loads((run / "hypotheses.json").read_text())
        best = (hyps or [{}])[-1]
        score = best.get("score") or {}
        neurons[e.neuron] = {
            "status": e.status, "forward_passes": summary["forward_passes"],
            "hypothesis": best.get("text"), "source": best.get("source"),
            "aggregate": score.get("aggregate"), "ci": score.get("ci"),
            "margin": score.get("margin"), "margin_ci": score.get("margin_ci"),
            "best_activation": summary["best_activation"],
            "shared_rows": sum(1 for line in (run / "prompts.csv").read_text().splitlines()
                               if ",shared," in line),
        }
    cache = {}
    for f in (queue.folder / "activations").glob("*.sqlite"):
        db = sqlite3.connect(f)
        rows, tokens, worst = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(tokens), 0), COALESCE(MAX(computed), 0) FROM acts"
        ).fetchone()
        db.close()
        cache = {"rows": rows, "tokens": tokens, "max_computed": worst}
    done = sum(1 for n in neurons.values() if n["status"] == "done")
    return {"wall_s": wall, "cpu_s": cpu, "neurons_done": done,
            "shareable_s": None if shared else watch.seconds,
            "shareable_sequences": None if shared else watch.sequences,
            "neurons_per_hour": 3600 * done / wall if wall else None,
            "forward_passes": sum(n["forward_passes"] for n in neurons.values()),
            "cache": cache, "neurons": neurons}


def agreement(seq: dict, par: dict) -> dict:
    same_text = inside = 0
    rows = []
    for n, a in seq["neurons"].items():
        b = par["neurons"].get(n, {})
        same = a.get("hypothesis") == b.get("hypothesis")
        ci = a.get("ci") or [None, None]
        ok = (b.get("aggregate") is not None and ci[0] is not None
              and ci[0] <= b["aggregate"] <= ci[1])
        same_text += same
        inside += ok
        rows.append((n, same, ok, a.get("aggregate"), b.get("aggregate")))
    return {"same_hypothesis": same_text, "score_within_ci": inside, "neurons": len(rows),
            "rows": rows}


def warm_up() -> None:
    """One-time costs of a process (WordNet, report imports), paid before either mode."""
    import neurosleuth.report.build  # noqa: F401
    from neurosleuth.tools.wordnet import wordnet

    wordnet()


def main(argv=None) -> None:
    args = parse_args(argv)
    lm = load_model(args.model, device=args.device)
    picks = [NeuronPick(NeuronId(args.layer, args.first + i)) for i in range(args.neurons)]
    cfg = resolve_config(None, model=args.model, planner="heuristic", iterations=args.iterations,
                         device=args.device)
    cfg = cfg.model_copy(update={"hypothesis_every": args.hypothesis_every})
    warm_scans(lm, cfg.public_dict(), [args.layer])  # charged to neither mode
    warm_up()
    runs = args.keep or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    load = os.getloadavg()
    try:
        console.print(f"sequential: {args.neurons} neurons ...", style="dim")
        seq = run_mode(lm, runs, "sequential", picks, cfg, shared=False)
        console.print(f"layer-parallel: {args.neurons} neurons ...", style="dim")
        par = run_mode(lm, runs, "parallel", picks, cfg, shared=True)
    finally:
        if args.keep is None:
            shutil.rmtree(runs, ignore_errors=True)
    agree = agreement(seq, par)
    table = Table(title=f"{args.neurons} neurons of {args.model} layer {args.layer}, "
                  f"{args.iterations} iterations, a hypothesis every {args.hypothesis_every}")
    for col in ("mode", "wall s", "CPU s", "neurons/hour", "forward passes (neurons' own)",
                "cache rows", "cache tokens"):
        table.add_column(col, justify="right")
    for name, r in (("sequential", seq), ("layer-parallel", par)):
        table.add_row(name, f"{r['wall_s']:.0f}", f"{r['cpu_s']:.0f}",
                      f"{r['neurons_per_hour']:.1f}", str(r["forward_passes"]),
                      str(r["cache"].get("rows", "-")), str(r["cache"].get("tokens", "-")))
    console.print(table)
    console.print(f"same hypothesis text: {agree['same_hypothesis']}/{agree['neurons']}; "
                  f"layer-parallel score inside the sequential 95% CI: "
                  f"{agree['score_within_ci']}/{agree['neurons']}; "
                  f"cache rows measured more than once: {par['cache'].get('max_computed', 0) > 1}")
    speedup = par["neurons_per_hour"] / seq["neurons_per_hour"]
    rest = seq["wall_s"] - seq["shareable_s"]
    bound = seq["wall_s"] / rest if rest > 0 else None
    console.print(f"sequential: {seq['shareable_s']:.0f} s of {seq['wall_s']:.0f} s "
                  f"({100 * seq['shareable_s'] / seq['wall_s']:.0f}%) in measurements a shared "
                  f"cache can serve ({seq['shareable_sequences']} sequences); the rest is "
                  f"per-neuron work (attack, ablation, steering, attribution, reports), so "
                  f"sharing every measurement at no cost would give at most "
                  f"{bound:.1f}x" if bound else "")
    paths = ("keep", "json")  # no machine paths in the results
    out = {"args": {k: str(v) for k, v in vars(args).items() if k not in paths},
           "machine": platform.platform(),
           "cpus": os.cpu_count(), "load_before": load, "load_after": os.getloadavg(),
           "sequential": seq, "layer_parallel": par, "agreement": agree, "speedup": speedup,
           "sharing_bound": bound}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"layer-parallel: {par['neurons_per_hour']:.1f} neurons/hour vs "
                  f"{seq['neurons_per_hour']:.1f} sequential ({speedup:.1f}x)")


if __name__ == "__main__":
    main()
