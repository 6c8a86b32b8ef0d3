"""Explainer vs token list vs embedded LLM: whose hypothesis simulates a neuron best?

For each of 20 SmolLM2-135M neurons (two per layer on ten layers from 2 to 29, indices drawn once
with numpy seed 11 before any result was seen; listed in ``NEURONS``):

1. records: the corpus scan's top 24 windows and its random sample of 32 windows
   (``--scan-tokens`` per layer, cached; ``tools/exemplars.scan_records``), split as the atlas
   and ``explain --records`` split them (``score/records.explain_held_out``): the odd-ranked top
   windows that fire (1st, 3rd, ...) and half the random sample are the evidence every method
   sees, the others are held out;
2. hypotheses, from the same evidence:
   (a) the deep dive (``tools/explain.DeepDive``) on the evidence windows and their texts cut at
       the peak, simulated by its own pattern;
   (b) the token-list heuristic (``HeuristicPlanner.hypothesize``: the most common peak tokens of
       the evidence windows), simulated by keyword matching (``score/writer.py``);
   (c) the embedded LLM's hypothesis (SmolLM2-135M-Instruct under the JSON grammar, the agent's
       hypothesis prompt), simulated by the same keyword/concept matcher (``--no-llm`` skips it);
3. score: simulation correlation as in OpenAI's neuron-explainer (Bills et al. 2023,
   ``score/records.simulation_r``): Pearson r between predicted and real per-token activations,
   pooled over the held-out top and random windows (all 64 tokens of each); bootstrap 95% CI over
   windows per neuron (1,000 resamples) and over neurons for the means (10,000), seed 0. A
   constant prediction (r undefined) counts as r = 0 in the means.

The ceiling: a per-token lookup table (each token's mean activation) learned on the evidence
windows (top and random), correlated on the held-out windows: the best a reading of tokens alone
can do, beside ours so that the gap shows. A bare token list is an explanation
whose every facet names only tokens (``Pattern.bare_list``).

Last line: ``explainer beats token list on N/20 neurons; mean r X (95% CI a..b) vs Y (a..b);
token-lookup ceiling C; bare token lists K/20``.
Timing: CPU seconds of the explainer per neuron (``time.process_time``).

Run: ``python bench/explain.py [--threads 1] [--scan-tokens 32768] [--no-llm]``; JSON to
``bench/results/explain.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from neurosleuth.agents.heuristic import HeuristicPlanner
from neurosleuth.agents.prompts import PlannerView
from neurosleuth.score.records import explain_held_out
from neurosleuth.score.stats import pearson
from neurosleuth.score.writer import HeuristicWriter
from neurosleuth.tools.exemplars import heldout_windows, scan_records
from neurosleuth.tools.explain import DeepDive
from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.model import load_model
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.records import Record
from neurosleuth.tools.scan_config import ScanConfig

HERE = Path(__file__).resolve().parent
LAYERS = (2, 5, 8, 11, 14, 17, 20, 23, 26, 29)
_rng = np.random.default_rng(11)
NEURONS = [NeuronId(layer, int(i)) for layer in LAYERS for i in _rng.integers(0, 1536, 2)]
console = Console(width=160)


def r_or_zero(r: float) -> float:
    """An r for the means over neurons: a constant prediction (r undefined) correlates with
    nothing, 0."""
    return 0.0 if math.isnan(r) else r


def num(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 4)


def boot_ci(values: np.ndarray, stat, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), (n, len(values)))
    samples = np.array([stat(values[i]) for i in idx]) if values.ndim > 1 else stat(values[idx])
    return float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))


def random_windows(lm, n: NeuronId, max_tokens: int, seed: int):
    """(tokens, activations) of 12 random windows of the corpus (``bench/atlas.py``'s)."""
    rand = heldout_windows(lm, n, 12, max_tokens=max_tokens, seed=seed)
    prefix = list(lm.encode("")[: lm.n_prefix])
    acts = measure_ids(lm, [prefix + list(w.token_ids) for w in rand], [n])
    return [(list(w.tokens), a[lm.n_prefix :, 0].astype(float))
            for w, a in zip(rand, acts, strict=True)]


def held_out(lm, n: NeuronId, top, max_tokens: int):
    """(tokens, activations) of the top windows ranked 13 to 24 and 12 random windows (the
    held-out windows of ``bench/atlas.py``)."""
    rows = [(list(e.window.tokens), np.asarray(e.acts, dtype=float)) for e in top[12:24]]
    return rows + random_windows(lm, n, max_tokens, seed=7)


def lookup_ceiling(train, held) -> float:
    """The best a token-level reading can do: each token's mean activation on the training
    windows (a token never seen there: 0), correlated with the held-out activations."""
    table: dict[str, list[float]] = {}
    for toks, acts in train:
        for t, a in zip(toks, acts, strict=True):
            table.setdefault(t, []).append(float(a))
    means = {t: float(np.mean(v)) for t, v in table.items()}
    pred, real = simulate(lambda toks: np.array([means.get(t, 0.0) for t in toks]), held)
    return r_or_zero(pearson(pred, real))


def simulate(fn, rows) -> tuple[np.ndarray, np.ndarray]:
    pred = np.concatenate([np.asarray(fn(toks), dtype=float) for toks, _ in rows])
    real = np.concatenate([acts for _, acts in rows])
    return pred, real


def token_list_hypothesis(lm, n: NeuronId, top: Sequence[Record]) -> tuple[PlannerView, str]:
    """The planner's view of (up to 12 of) the top windows every method sees, and the token-list
    heuristic's hypothesis from it (``HeuristicPlanner.hypothesize``: the most common peak
    tokens)."""
    snippets = []
    for r in top[:12]:
        p = int(np.argmax(r.acts))
        snippets.append((r.max, r.tokens[p], "".join(r.tokens[max(0, p - 16): p + 1])))
    view = PlannerView(neuron=str(n), model=lm.name, exemplars=snippets[:8], top=snippets)
    return view, HeuristicPlanner(0).hypothesize(view).text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scan-tokens", type=int, default=32768)
    ap.add_argument("--no-llm", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "explain.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model("smollm2-135m", device="cpu")
    planner = None
    if not args.no_llm:
        from neurosleuth.agents.config import RunConfig
        from neurosleuth.agents.planner import make_planner

        planner, _ = make_planner(RunConfig(planner="embedded"))
    writer = HeuristicWriter()
    scan = ScanConfig(max_tokens=args.scan_tokens, k=24)
    rows_out = []
    for n in NEURONS:
        records = scan_records(lm, n, scan)
        t0 = time.process_time()
        held = explain_held_out(DeepDive(lm, n), records.top, records.random)
        cpu = time.process_time() - t0
        ex = held.explanation
        view, token_list = token_list_hypothesis(lm, n, held.learned_top)
        seen = [r.pair() for r in [*held.learned_top, *held.learned_random]]
        result = {"neuron": str(n), "explainer": ex.sentence, "token_list": token_list,
                  "explainer_cpu_s": round(cpu, 2), "pattern_kind": ex.pattern.kind,
                  "bare_list": ex.pattern.bare_list(), "facets": len(ex.pattern.facets),
                  "held_windows": [len(held.top), len(held.random)],
                  "ceiling": round(lookup_ceiling(seen, [r.pair() for r in
                                                         [*held.top, *held.random]]), 4)}
        sims = {"explainer": ex.pattern.simulate,
                "token_list": lambda t, h=token_list: writer.simulate(h, t)}
        if planner is not None:
            action, _ = planner.hypothesize(view)
            result["llm"] = action.text
            sims["llm"] = lambda t, h=action.text: writer.simulate(h, t)
        for name, sim in sims.items():
            s = held.score(sim)
            result[f"r_{name}"], result[f"ci_{name}"] = round(r_or_zero(s.r), 4), [num(s.lo),
                                                                                num(s.hi)]
        rows_out.append(result)
        console.print(f"{n}: r explainer {result['r_explainer']:+.3f} token list "
                      f"{result['r_token_list']:+.3f}  ({cpu:.1f} s CPU)  {ex.sentence}")
    table = Table(title="simulation correlation on held-out windows (top + random)")
    for col in ("neuron", "explainer", "r", "token list", "r", "llm", "r", "ceiling", "CPU s"):
        table.add_column(col, overflow="fold")
    for r in rows_out:
        table.add_row(r["neuron"], r["explainer"], f"{r['r_explainer']:+.3f}", r["token_list"],
                      f"{r['r_token_list']:+.3f}", r.get("llm", "-"),
                      f"{r['r_llm']:+.3f}" if "r_llm" in r else "-", f"{r['ceiling']:+.3f}",
                      f"{r['explainer_cpu_s']:.1f}")
    console.print(table)
    summary = {}
    for name in ("explainer", "token_list", "llm"):
        vals = np.array([r[f"r_{name}"] for r in rows_out if f"r_{name}" in r])
        if len(vals):
            lo, hi = boot_ci(vals, lambda s: s.mean(axis=-1))
            summary[name] = {"mean_r": round(float(vals.mean()), 4), "ci": [round(lo, 4),
                                                                           round(hi, 4)]}
    wins = sum(r["r_explainer"] > r["r_token_list"] for r in rows_out)
    ceiling = float(np.mean([r["ceiling"] for r in rows_out]))
    bare = sum(r["bare_list"] for r in rows_out)
    out = {"neurons": rows_out, "summary": summary, "wins": wins, "n": len(rows_out),
           "ceiling": round(ceiling, 4), "bare_lists": bare,
           "threads": args.threads, "scan_tokens": args.scan_tokens,
           "cpu_s_per_neuron": round(float(np.mean([r["explainer_cpu_s"] for r in rows_out])),
                                     2),
           "machine": platform.machine(), "load": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    if "llm" in summary:
        s = summary["llm"]
        lo, hi = s["ci"]
        console.print(f"embedded LLM: mean r {s['mean_r']:.3f} ({lo:.3f}..{hi:.3f})")
    e, t = summary["explainer"], summary["token_list"]
    print(f"explainer beats token list on {wins}/{len(rows_out)} neurons; mean r "
          f"{e['mean_r']:.3f} (95% CI {e['ci'][0]:.3f}..{e['ci'][1]:.3f}) vs {t['mean_r']:.3f} "
          f"({t['ci'][0]:.3f}..{t['ci'][1]:.3f}); token-lookup ceiling {ceiling:.3f}; "
          f"bare token lists {bare}/{len(rows_out)}")


if __name__ == "__main__":
    main()
