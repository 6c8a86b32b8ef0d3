"""The atlas: how fast it maps SmolLM2-135M, and how good its records-only explanations are.

(a) **Throughput** (``neurosleuth atlas`` as it runs, ``atlas/build.py``):
    1. one layer (``--layer``, 1,536 neurons) end to end from a cold cache: the scan of that
       layer, then every neuron explained and scored from the records; neurons/hour;
    2. the scan of all 30 layers in the same passes, measured on a subset and stated as an
       extrapolation: the scan of the deepest layer alone (``t1``: the full forward pass and one
       layer's statistics) and of ``--subset`` layers ending at the deepest (``tk``); the cost of
       each further layer's statistics is ``(tk - t1) / (k - 1)``, so 30 layers cost
       ``t1 + 29 (tk - t1) / (k - 1)``;
    3. the whole model: that scan plus 30 times the per-layer explanation time of (1) (the
       per-neuron work does not depend on the layer: the same records, the same code).
(b) **Quality** on the 20 neurons of ``bench/explain.py`` (its ``NEURONS``): from the same scan
    (``--scan-tokens``), every method sees the top 12 windows; the atlas explanation also sees
    half of the scan's random sample (the explanations are then scored on data they never saw):
    - atlas: ``tools/records_explain.explain_records`` (no forward pass), its pattern simulating;
    - full explainer: ``tools/explain.explain`` (forward passes: prune, importance, augment);
    - token list: ``HeuristicPlanner.hypothesize``, simulated by keywords;
    scored as ``bench/explain.py``: Pearson r between simulated and real per-token activations
    over 12 held-out top windows (ranks 13-24) and 12 random held-out windows; bootstrap 95% CIs
    over tokens per neuron (300) and over neurons for the means (10,000).
(c) **Workers** (``atlas/workers.py``): the explanation phase of one layer (``--layer``, every
    neuron explained and scored from the cached scan, as ``build_atlas`` times it) with one worker
    (in this process) and with ``--workers`` processes (default: all cores), from the same scan
    and the same decoded windows, each after its processes have started and loaded WordNet (the
    pool's start is timed apart: ``build_atlas`` starts it before the scan). Each runs the layer
    twice: first with its word caches cold (a layer's first words), then again (the same words:
    the caches of a long atlas fill as it goes, so its later layers lie between the two). Ratios
    printed in the same run, with the load average before and after (the machine may be
    shared) and the CPU seconds of each run (this process and the workers, from ``/proc``: on a
    busy machine the wall ratio is the scheduler's, the CPU seconds say what the work cost); the
    rows of all four runs are checked to be the same.

(d) **The whole model** (``--whole``): every layer as ``neurosleuth atlas`` builds it, from a
    cold cache, then its search index: wall time, its split (scan, explanations, index) and the
    peak RSS of this process.

The ceiling: a per-token lookup table learned on the windows the atlas saw (``bench/explain.py``
``lookup_ceiling``), scored on the same held-out windows.

Last line: ``atlas: N neurons/hour; all 46,080 SmolLM2 neurons in H hours; mean r X vs full
explainer Y; token list Z; token-lookup ceiling C; bare token lists K/20; explanation of layer
L: 1 worker A s, N workers B s: Rx``. Targets: H <= 1 on 2 CPU cores, X >= 0.8 Y and R >= 1.7 on
2 cores.

Run: ``python bench/atlas.py [--threads 2] [--tokens 131072] [--layer 14] [--subset 3]
[--scan-tokens 32768] [--workers N] [--skip-throughput] [--skip-quality] [--skip-workers]
[--whole]``; JSON
to ``bench/results/atlas.json`` (the parts run replace theirs, the others are kept). The bench uses
its own cache folder (``--cache``, default a temporary one) so that the scans are timed cold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
console = Console(width=160)
N_LAYERS, D_MLP = 30, 1536


def throughput(lm, args) -> dict:
    from neurosleuth.atlas.build import AtlasConfig, build_atlas
    from neurosleuth.tools.exemplars import layer_scans
    from neurosleuth.tools.scan_config import ScanConfig

    cfg = AtlasConfig(ScanConfig(max_tokens=args.tokens, k=24), workers=args.workers)
    out = Path(tempfile.mkdtemp(prefix="atlas-bench-"))
    t0 = time.perf_counter()
    build_atlas(lm, [args.layer], out, cfg)
    wall = time.perf_counter() - t0
    meta = json.loads((out / "atlas.json").read_text())
    scan_s = meta["timings"]["scan_s"]
    neurons_s = meta["timings"]["neurons_s"][str(args.layer)]
    deepest = N_LAYERS - 1
    subset = sorted({int(x) for x in np.linspace(0, deepest, args.subset)})
    times = {}
    for layers in ([deepest], subset):
        t = time.perf_counter()
        layer_scans(lm, layers, None, 64, args.tokens, keep=cfg.scan.k, use_cache=False)
        times[len(layers)] = time.perf_counter() - t
    t1, tk = times[1], times[len(subset)]
    per_layer = max(0.0, (tk - t1) / (len(subset) - 1))
    scan_all = t1 + (N_LAYERS - 1) * per_layer
    total = scan_all + N_LAYERS * neurons_s
    return {"layer": args.layer, "tokens": args.tokens, "workers": args.workers,
            "wall_one_layer_s": round(wall, 1),
            "scan_one_layer_s": round(scan_s, 1), "explain_one_layer_s": round(neurons_s, 1),
            "neurons_per_hour_one_layer": round(D_MLP / wall * 3600),
            "explain_s_per_neuron": round(neurons_s / D_MLP, 4),
            "scan_deepest_alone_s": round(t1, 1), "scan_subset_layers": subset,
            "scan_subset_s": round(tk, 1), "scan_per_extra_layer_s": round(per_layer, 2),
            "scan_all_layers_s_extrapolated": round(scan_all, 1),
            "whole_model_h_extrapolated": round(total / 3600, 2),
            "neurons_per_hour_whole_model": round(N_LAYERS * D_MLP / total * 3600)}


def whole(lm, args) -> dict:
    """The whole model as ``neurosleuth atlas`` builds it (a fresh cache: the scan is cold), then
    its search index; wall time, its split and this process's peak RSS (the workers' own memory
    is not in it: they hold no model, only a chunk's records)."""
    import resource

    from neurosleuth.atlas.build import AtlasConfig, build_atlas
    from neurosleuth.atlas.search import AtlasIndex, bulk_embedder
    from neurosleuth.tools.scan_config import ScanConfig

    cfg = AtlasConfig(ScanConfig(max_tokens=args.tokens, k=24), workers=args.workers)
    out = Path(tempfile.mkdtemp(prefix="atlas-whole-"))
    t0 = time.perf_counter()
    build_atlas(lm, list(range(N_LAYERS)), out, cfg)
    table_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    AtlasIndex(out, bulk_embedder())
    index_s = time.perf_counter() - t1
    t = json.loads((out / "atlas.json").read_text())["timings"]
    return {"tokens": args.tokens, "workers": args.workers, "neurons": N_LAYERS * D_MLP,
            "scan_s": round(t["scan_s"], 1),
            "explain_s": round(sum(t["neurons_s"].values()), 1),
            "table_s": round(table_s, 1), "index_s": round(index_s, 1),
            "wall_s": round(table_s + index_s, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "folder_mb": round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
                               / 2**20, 1)}


def workers(lm, args) -> dict:
    from neurosleuth.atlas.build import AtlasConfig, _Tokens, layer_rows
    from neurosleuth.atlas.workers import RowMaker, warm
    from neurosleuth.tools.exemplars import layer_scans
    from neurosleuth.tools.scan_config import ScanConfig

    cfg = AtlasConfig(ScanConfig(max_tokens=args.tokens, k=24))
    windows, scans, _, _ = layer_scans(lm, [args.layer], None, 64, args.tokens, keep=24)
    scan, tokens = scans[args.layer], _Tokens(lm, windows)
    for i in range(len(windows)):  # decoded once, before either run
        tokens(i)
    load_before = os.getloadavg()
    warm_s = warm()  # WordNet and the like, in this process, as each worker does at its start

    def cpu_s(maker: RowMaker) -> float:
        """CPU seconds so far of this process and the maker's worker processes (Linux /proc)."""
        pids = [os.getpid(), *(maker.pool._processes if maker.pool else ())]  # noqa: SLF001
        ticks = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def passes(maker: RowMaker) -> tuple[list[float], list[float], list[list[dict]]]:
        """The layer twice: word caches cold, then warm (the same words again); wall and CPU
        seconds of each."""
        times, cpus, rows = [], [], []
        for _ in range(2):
            t0, c0 = time.perf_counter(), cpu_s(maker)
            rows.append(layer_rows(lm, scan, windows, cfg, tokens, maker=maker))
            times.append(time.perf_counter() - t0)
            cpus.append(cpu_s(maker) - c0)
        return times, cpus, rows

    with RowMaker(1, cfg.seed, cfg.n_boot) as one:
        one_s, one_cpu, one_rows = passes(one)
    t0 = time.perf_counter()
    with RowMaker(args.workers, cfg.seed, cfg.n_boot) as many:
        assert many.pool is not None
        for f in [many.pool.submit(time.sleep, 0.5) for _ in range(args.workers)]:
            f.result()  # every worker started and warmed
        start_s = time.perf_counter() - t0
        many_s, many_cpu, many_rows = passes(many)
    rows = [json.dumps(r, sort_keys=True) for r in one_rows + many_rows]
    return {"layer": args.layer, "tokens": args.tokens, "neurons": len(one_rows[0]),
            "workers": args.workers, "process_warm_up_s": round(warm_s, 1),
            "pool_start_s": round(start_s, 1),
            "explain_1_worker_s": round(one_s[0], 1), "explain_n_workers_s": round(many_s[0], 1),
            "speedup": round(one_s[0] / many_s[0], 2),
            "explain_1_worker_again_s": round(one_s[1], 1),
            "explain_n_workers_again_s": round(many_s[1], 1),
            "speedup_again": round(one_s[1] / many_s[1], 2),
            "cpu_1_worker_s": [round(c, 1) for c in one_cpu],
            "cpu_n_workers_s": [round(c, 1) for c in many_cpu], "same_rows": len(set(rows)) == 1,
            "load_before": load_before, "load_after": os.getloadavg()}


def quality(lm, args) -> dict:
    from explain import (
        NEURONS,
        boot_ci,
        held_out,
        lookup_ceiling,
        pearson,
        r_or_zero,
        simulate,
        token_list_hypothesis,
    )

    from neurosleuth.score.writer import HeuristicWriter
    from neurosleuth.tools.exemplars import exemplars, layer_scans
    from neurosleuth.tools.explain import explain
    from neurosleuth.tools.records import Record
    from neurosleuth.tools.records_explain import explain_records

    writer, rows = HeuristicWriter(), []
    for n in NEURONS:
        top = exemplars(lm, [n], k=24, max_tokens=args.scan_tokens)[n].top
        windows, scans, _, _ = layer_scans(lm, [n.layer], None, 64, args.scan_tokens, keep=32)
        scan = scans[n.layer]
        rand = [Record(tuple(lm.token_strs([int(x) for x in windows.ids[int(w)]])),
                       scan.rand_acts[j, n.index].astype(float))
                for j, w in enumerate(scan.rand_win)][0::2]
        seen = [Record(tuple(e.window.tokens), np.asarray(e.acts, float)) for e in top[:12]]
        held = held_out(lm, n, top, args.scan_tokens)
        t0 = time.process_time()
        atlas_ex = explain_records(seen, rand, str(n))
        atlas_cpu = time.process_time() - t0
        texts = ["".join(e.window.tokens[: e.pos + 1]) for e in top[:12]]
        t0 = time.process_time()
        full = explain(lm, n, texts, [r.pair() for r in seen])
        full_cpu = time.process_time() - t0
        _, token_list = token_list_hypothesis(lm, n, seen)
        row = {"neuron": str(n), "atlas": atlas_ex.sentence, "full": full.sentence,
               "token_list": token_list, "atlas_cpu_s": round(atlas_cpu, 3),
               "full_cpu_s": round(full_cpu, 2),
               "ceiling": round(lookup_ceiling([r.pair() for r in [*seen, *rand]], held), 4),
               "bare_list": atlas_ex.pattern.bare_list()}
        preds = {"atlas": simulate(atlas_ex.pattern.simulate, held),
                 "full": simulate(full.pattern.simulate, held),
                 "token_list": simulate(lambda t, h=token_list: writer.simulate(h, t), held)}
        for name, (pred, real) in preds.items():
            pairs = np.stack([pred, real], axis=1)
            lo, hi = boot_ci(pairs, lambda s: pearson(s[:, 0], s[:, 1]), n=300)
            row[f"r_{name}"] = round(pearson(pred, real), 4)
            row[f"ci_{name}"] = [round(lo, 4), round(hi, 4)]
        rows.append(row)
        console.print(f"{n}: atlas {row['r_atlas']:+.3f}  full {row['r_full']:+.3f}  list "
                      f"{row['r_token_list']:+.3f}  {atlas_ex.sentence}", markup=False)
    summary = {}
    for name in ("atlas", "full", "token_list"):
        vals = np.array([r_or_zero(r[f"r_{name}"]) for r in rows])  # as bench/explain.py
        lo, hi = boot_ci(vals, lambda s: s.mean(axis=-1))
        summary[name] = {"mean_r": round(float(vals.mean()), 4), "ci": [round(lo, 4),
                                                                       round(hi, 4)]}
    summary["atlas_vs_full"] = round(summary["atlas"]["mean_r"] / summary["full"]["mean_r"], 3)
    summary["ceiling"] = round(float(np.mean([r["ceiling"] for r in rows])), 4)
    summary["bare_lists"] = int(sum(r["bare_list"] for r in rows))
    return {"neurons": rows, "summary": summary, "scan_tokens": args.scan_tokens}


def main() -> None:
    from neurosleuth.atlas.workers import default_workers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=1 << 17, help="atlas scan tokens")
    ap.add_argument("--layer", type=int, default=14)
    ap.add_argument("--subset", type=int, default=3, help="layers scanned for the extrapolation")
    ap.add_argument("--scan-tokens", type=int, default=32768, help="scan of the quality part")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-workers", action="store_true")
    ap.add_argument("--whole", action="store_true",
                    help="also build the whole model's atlas and its search index (~20 min)")
    ap.add_argument("--workers", type=int, default=default_workers(),
                    help="processes for the parallel runs (default: all cores)")
    ap.add_argument("--cache", default=None, help="cache folder (default: a fresh one)")
    ap.add_argument("--out", default=str(HERE / "results" / "atlas.json"))
    args = ap.parse_args()
    os.environ["NEUROSLEUTH_CACHE"] = args.cache or tempfile.mkdtemp(prefix="atlas-cache-")
    torch.set_num_threads(args.threads)
    from neurosleuth.tools.model import load_model

    lm = load_model("smollm2-135m", device="cpu")
    path = Path(args.out)
    out = json.loads(path.read_text()) if path.is_file() else {}  # parts not run are kept
    out |= {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__}
    if not (args.skip_throughput and args.skip_quality):
        out |= {"threads": args.threads, "load_before": os.getloadavg()}
    if not args.skip_throughput:
        out["throughput"] = throughput(lm, args)
        tp = out["throughput"]
        table = Table(title=f"atlas throughput ({args.threads} threads)")
        for k in ("wall_one_layer_s", "scan_one_layer_s", "explain_one_layer_s",
                  "neurons_per_hour_one_layer", "scan_per_extra_layer_s",
                  "scan_all_layers_s_extrapolated", "whole_model_h_extrapolated"):
            table.add_row(k, str(tp[k]))
        console.print(table)
    if not args.skip_quality:
        out["quality"] = quality(lm, args)
    if not (args.skip_throughput and args.skip_quality):
        out["load_after"] = os.getloadavg()
    if not args.skip_workers:
        out["workers"] = workers(lm, args)
    if args.whole:
        out["whole"] = whole(lm, args)
        table = Table(title=f"the whole model ({args.workers} workers, {args.threads} threads)")
        for k, v in out["whole"].items():
            table.add_row(k, str(v))
        console.print(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    parts = []
    if not args.skip_throughput:
        tp = out["throughput"]
        parts.append(f"atlas: {tp['neurons_per_hour_whole_model']:,} neurons/hour; all 46,080 "
                     f"SmolLM2 neurons in {tp['whole_model_h_extrapolated']:.1f} hours")
    if not args.skip_quality:
        s = out["quality"]["summary"]
        parts.append(f"mean r {s['atlas']['mean_r']:.3f} ({s['atlas']['ci'][0]:.3f}.."
                     f"{s['atlas']['ci'][1]:.3f}) vs full explainer {s['full']['mean_r']:.3f} "
                     f"({s['full']['ci'][0]:.3f}..{s['full']['ci'][1]:.3f}); token list "
                     f"{s['token_list']['mean_r']:.3f}; token-lookup ceiling {s['ceiling']:.3f}; "
                     f"bare token lists {s['bare_lists']}/{len(out['quality']['neurons'])}")
    if not args.skip_workers:
        w = out["workers"]
        parts.append(f"explanation of layer {w['layer']} ({w['neurons']:,} neurons): 1 worker "
                     f"{w['explain_1_worker_s']:.1f} s, {w['workers']} workers "
                     f"{w['explain_n_workers_s']:.1f} s: {w['speedup']:.2f}x (again, caches "
                     f"warm: {w['speedup_again']:.2f}x; pool start {w['pool_start_s']:.1f} s; "
                     f"same rows: {w['same_rows']}; load {w['load_before'][0]:.1f} -> "
                     f"{w['load_after'][0]:.1f})")
    if args.whole:
        w = out["whole"]
        parts.append(f"whole SmolLM2 ({w['neurons']:,} neurons, {w['workers']} workers): "
                     f"{w['table_s'] / 60:.1f} min (scan {w['scan_s']:.0f} s, explanations "
                     f"{w['explain_s']:.0f} s) + search index {w['index_s'] / 60:.1f} min; "
                     f"peak RSS {w['peak_rss_gb']:.1f} GB")
    print("; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
