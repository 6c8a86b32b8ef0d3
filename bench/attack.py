"""Attack vs dataset: with a fixed budget of forward passes, does the gradient-guided prompt search
(``tools/attack.py``) find a prompt that drives a neuron higher than the best window of the corpus,
at a fluency comparable to natural text?

For each of 10 fixed SmolLM2 neurons (a spread of layers and indices, listed below):

1. dataset max: the top window of ``tools.exemplars.exemplars`` (the project's default corpus and
   token budget, 64-token windows; the scan is cached per layer, so only the first run pays it),
   and that exemplar's cross-entropy per token over its window up to the max token;
2. attack: the population starts from the top ``--inits`` exemplars, each cut to the ``--length``
   tokens ending at its max token (what the agent does), then searches with ``--budget`` forward
   passes; fluency weights are ``--fluency`` x the dataset max (in activation per nat), so the
   trade-off means the same for a neuron that peaks at 0.5 and one that peaks at 8;
3. fluency bar: the cross-entropy per token of ``--natural`` random corpus windows (neither top
   nor bottom exemplars) cut to the same length; the attack counts only with a prompt whose
   cross-entropy is at most the ``--pct`` percentile of those (default 75: at least as fluent as
   a quarter of natural text of that length);
4. the attack beats the dataset when its best prompt under the bar exceeds the dataset max. The
   table also says whether it beats its own starting prompts (an exemplar cut to ``--length``
   tokens can itself exceed the dataset max: context changes activations), and the best prompt
   under the stricter bar of the natural median.

Caveats: the dataset max is over a corpus of ``max_tokens`` tokens; a bigger corpus raises it.
The attack's prompts are short (``--length`` tokens), the exemplars have up to 64 tokens of
context. Cross-entropies of short texts run higher than of long ones (less context), which is why
the bar is set on natural windows of the attack's length. Timings are wall-clock on a shared
machine: the JSON records the load average and the threads used. One forward pass of a 12-token
prompt through SmolLM2 with logits costs ~25-35 ms of CPU time on one thread, so the default
800 passes take ~30 s of CPU per neuron; the first run also scans the corpus for the ten layers
(cached afterwards).

Run: ``python bench/attack.py [--neurons 2] [--budget 800] [--threads 1]``. Prints a table, writes
``bench/results/attack.json``, and ends with the line ``attack beats dataset max on N/10 neurons``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from neurosleuth.tools.attack import attack
from neurosleuth.tools.exemplars import exemplars, heldout_windows
from neurosleuth.tools.model import LoadedModel, load_model
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.readout import sequence_cross_entropy

NEURONS = [NeuronId(*x) for x in [(1, 1187), (4, 400), (7, 77), (10, 1024), (13, 3),
                                   (16, 900), (19, 512), (22, 1300), (25, 64), (28, 777)]]
HERE = Path(__file__).resolve().parent
console = Console(width=150)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--neurons", type=int, default=len(NEURONS), help="run the first N neurons")
    p.add_argument("--budget", type=int, default=800, help="forward passes per neuron")
    p.add_argument("--length", type=int, default=12, help="free tokens of the attack prompt")
    p.add_argument("--inits", type=int, default=4, help="top exemplars used as starting prompts")
    p.add_argument("--fluency", default="0.02,0.1,0.3,1", help="weights x dataset max per nat")
    p.add_argument("--candidates", type=int, default=12, help="candidates per member per step")
    p.add_argument("--top-k", type=int, default=32)
    p.add_argument("--natural", type=int, default=64, help="natural windows for the fluency bar")
    p.add_argument("--pct", type=float, default=75.0, help="percentile of natural CE as the bar")
    p.add_argument("--max-tokens", type=int, default=None, help="corpus tokens (project default)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: 2, or 1 when the load average shows the cores "
                        "busy: spinning threads on a shared machine cost more than they give)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results" / "attack.json")
    return p.parse_args(argv)


def fluency_bar(lm: LoadedModel, neuron: NeuronId, args) -> tuple[float, float]:
    """(bar, median): percentile ``pct`` and median CE per token of natural ``length``-token
    corpus windows."""
    wins = heldout_windows(lm, neuron, args.natural, max_tokens=args.max_tokens, seed=args.seed)
    bos = [int(lm.tokenizer.bos_token_id)] if lm.n_prefix else []
    ces = sequence_cross_entropy(lm, [bos + list(w.token_ids[: args.length]) for w in wins])
    return float(np.percentile(ces, args.pct)), float(np.median(ces))


def run_neuron(lm: LoadedModel, neuron: NeuronId, ex, bar: float, median: float, args) -> dict:
    top = ex.top[0]
    bos = [int(lm.tokenizer.bos_token_id)] if lm.n_prefix else []
    ex_ce = sequence_cross_entropy(lm, [bos + list(top.window.token_ids[: top.pos + 1])])[0]
    inits = [list(e.window.token_ids[max(0, e.pos + 1 - args.length) : e.pos + 1])
             for e in ex.top[: args.inits]]
    inits = [x for x in inits if len(x) == args.length] or inits
    weights = tuple(float(w) * max(top.value, 1e-3) for w in args.fluency.split(","))
    start = time.perf_counter()
    res = attack(lm, neuron, init=inits, length=args.length, budget=args.budget,
                 steps=10_000, fluency_weights=weights, candidates=args.candidates,
                 top_k=args.top_k, seed=args.seed, keep=16)
    seconds = time.perf_counter() - start
    fluent, strict = res.best_within(bar), res.best_within(median)
    return {
        "neuron": str(neuron), "dataset_max": top.value, "exemplar_ce": ex_ce,
        "exemplar_text": lm.tokenizer.decode(list(top.window.token_ids[: top.pos + 1]))[-200:],
        "init_act": res.initial.activation, "init_ce": res.initial.cross_entropy,
        "best_act": res.best.activation, "best_ce": res.best.cross_entropy,
        "best_text": res.best.text,
        "fluent_act": None if fluent is None else fluent.activation,
        "fluent_ce": None if fluent is None else fluent.cross_entropy,
        "fluent_text": None if fluent is None else fluent.text,
        "beats": bool(fluent is not None and fluent.activation > top.value),
        "beats_init": bool(fluent is not None and fluent.activation > res.initial.activation),
        "median_act": None if strict is None else strict.activation,
        "median_ce": None if strict is None else strict.cross_entropy,
        "beats_at_median": bool(strict is not None and strict.activation > top.value),
        "forward_passes": res.n_forward, "seconds": seconds,
        "curve": [list(c) for c in res.curve], "fluency_weights": list(weights),
    }


def print_table(rows: list[dict], bar: float, median: float) -> None:
    t = Table(title=f"attack vs dataset max (fluency bar: CE <= {bar:.2f}; natural median "
                    f"{median:.2f})")
    for col in ("neuron", "dataset max", "exemplar CE", "init act (CE)", "best act (CE)",
                "under bar (CE)", "beats", "> init", "under median (CE)", "passes", "s"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r["neuron"], f"{r['dataset_max']:.3f}", f"{r['exemplar_ce']:.2f}",
                  _pair(r["init_act"], r["init_ce"]), _pair(r["best_act"], r["best_ce"]),
                  _pair(r["fluent_act"], r["fluent_ce"]), "yes" if r["beats"] else "no",
                  "yes" if r["beats_init"] else "no", _pair(r["median_act"], r["median_ce"]),
                  str(r["forward_passes"]), f"{r['seconds']:.0f}")
    console.print(t)
    for r in rows:
        if r["fluent_text"] is not None:
            console.print(f"{r['neuron']}: {r['fluent_text']!r}", markup=False, highlight=False)


def _pair(act: float | None, ce: float | None) -> str:
    return "-" if act is None else f"{act:.3f} ({ce:.2f})"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    load_before = os.getloadavg()
    if args.threads is None:
        cores = os.cpu_count() or 1
        args.threads = 1 if load_before[0] >= cores - 0.5 else min(2, cores)
    torch.set_num_threads(args.threads)
    lm = load_model(args.model, device="cpu" if not torch.cuda.is_available() else None)
    neurons = NEURONS[: args.neurons]
    t0 = time.perf_counter()
    ex = exemplars(lm, neurons, k=max(args.inits, 1), max_tokens=args.max_tokens)
    scan_s = time.perf_counter() - t0
    bar, median = fluency_bar(lm, neurons[0], args)
    rows = [run_neuron(lm, n, ex[n], bar, median, args) for n in neurons]
    print_table(rows, bar, median)
    wins = sum(r["beats"] for r in rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[1]  # paths saved repo-relative, not machine paths
    config = {k: (str(v.resolve().relative_to(repo)) if isinstance(v, Path)
                  and v.resolve().is_relative_to(repo) else
                  str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({
        "config": config, "model": lm.describe(), "fluency_bar": bar, "natural_median_ce": median,
        "scan_seconds": scan_s, "attack_seconds": sum(r["seconds"] for r in rows),
        "total_seconds": time.perf_counter() - start, "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(), "neurons": rows,
        "beats": wins, "beats_at_median": sum(r["beats_at_median"] for r in rows),
        "n": len(rows)}, indent=1))
    console.print(f"wrote {args.out}", markup=False)
    print(f"attack beats dataset max on {wins}/{len(rows)} neurons")


if __name__ == "__main__":
    main()
