"""neurosleuth on a GPU: scan throughput against the device's own bf16 matmul rate, one
investigation's wall time by node, and a small batch's neurons/hour, per model, in one run.

Figures, all measured in the same run on the same device and dtype:

(a) matmul rate: ``torch.matmul`` of two n x n matrices in the run's dtype (n = 8192 on a GPU,
    1024 on a CPU), median of 7 after 2 warm-ups: the FLOP-bound limit of this device.
(b) corpus scan: ``tools.scan.scan_layers`` over ``--scan-tokens`` tokens of the default corpus in
    64-token windows, every neuron of the middle layer (the cached per-layer scan an investigation
    starts with; windows are built before timing). Tokens/s, and the share of (a) it reaches:
    needed FLOPs per token (2 x the matrix parameters of blocks 0..L, plus attention scores and
    values, 4 x T x d_model per layer) x tokens/s / (a).
(c) one investigation (``--iterations``, heuristic planner, a hypothesis at the end) of neuron
    L:100: wall time, and its time by graph node from ``events.jsonl``.
(d) a batch of ``--batch-neurons`` neurons of layer L (layer-parallel, 2 iterations each, one
    hypothesis round): neurons/hour.

(e) with ``--shapes smollm2,llama-1b,llama-8b``: the atlas's scan with every layer hooked, on
    SmolLM2 and on random-weight models of the Llama-3.2-1B and Llama-3.1-8B shapes (built from
    their configs on the device, no download), in tokens/s, as a share of the card's bf16 dense
    peak, and the projected hours of a whole atlas at 10M and 100M tokens (``gpu_atlas.py`` has
    the method). ``--tiny`` shrinks the Llama shapes so that this runs on a CPU in seconds; on a
    CPU no bound share is given.

Run on a CUDA machine: ``python bench/gpu.py`` (SmolLM2 and Gemma-3-270m in bfloat16), or
``python bench/gpu.py --shapes smollm2,llama-1b,llama-8b`` ((e) alone unless ``--models`` is
given). Anywhere: ``python bench/gpu.py --device cpu --models smollm2-135m --scan-tokens 8192
--batch-neurons 2``, ``python bench/gpu.py --device cpu --shapes llama-1b,llama-8b --tiny``.
Writes JSON (default ``bench/results/gpu-<device>.json``; ``gpu-shapes-<device>.json`` for (e)
alone); the last line printed is ``gpu: X tokens/s (Y% of bf16 bound); investigation Z s; batch W
neurons/hour`` (the first model), or with shapes ``gpu: X tokens/s (Y% of bf16 bound) on
llama-1b-shape; 8b-shape atlas of 458,752 neurons at 10M tokens: H hours``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from neurosleuth.agents.config import resolve_config
from neurosleuth.agents.session import investigate
from neurosleuth.batch.queue import BatchQueue, Writers, run_batch
from neurosleuth.batch.select import NeuronPick
from neurosleuth.report.build import write_report
from neurosleuth.report.site import write_site
from neurosleuth.tools.corpus import build_windows, default_corpus
from neurosleuth.tools.model import load_model
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.reference import model_fingerprint
from neurosleuth.tools.scan import scan_layers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gpu_atlas import (  # noqa: E402
    PROJECT_TOKENS,
    ShapeOptions,
    bench_shape,
    bound_for,
    flops_per_token,
    sync,
)

console = Console()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None,
                   help="models for (a)-(d) (default: smollm2-135m,gemma3-270m; none with "
                   "--shapes unless given)")
    p.add_argument("--shapes", default="",
                   help="atlas scan (e): smollm2,llama-1b,llama-8b (random weights, no download)")
    p.add_argument("--tiny", action="store_true",
                   help="scaled-down Llama shapes (hidden 64/128, 2 layers): runs on a CPU")
    p.add_argument("--shape-tokens", type=int, default=1 << 20,
                   help="corpus tokens the shapes read (default 16,384 windows: full samples)")
    p.add_argument("--scan-seconds", type=float, default=20.0,
                   help="timed seconds of each shape's scan pass, after a warm-up batch")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--scan-tokens", type=int, default=1 << 20)
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--batch-neurons", type=int, default=16)
    p.add_argument("--window", type=int, default=64, help="corpus window (tokens)")
    p.add_argument("--json", type=Path, help="default: bench/results/gpu-<device>.json, or "
                   "gpu-shapes-<device>.json when no --models run")
    args = p.parse_args(argv)
    if args.models is None:
        args.models = "" if args.shapes else "smollm2-135m,gemma3-270m"
    return args


def matmul_tflops(device: str, dtype: torch.dtype) -> float:
    n = 8192 if torch.device(device).type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = []
    for i in range(9):
        sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


def bench_model(name: str, args, runs: Path) -> dict:
    console.print(f"[bold]{name}[/] on {args.device} in {args.dtype}")
    t0 = time.perf_counter()
    lm = load_model(name, device=args.device, dtype=args.dtype)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model_fingerprint(lm)
    fingerprint_s = time.perf_counter() - t0
    tflops = matmul_tflops(args.device, lm.dtype)
    layer = lm.n_layers // 2
    w = args.window
    windows = build_windows(lm, default_corpus(), w, args.scan_tokens)
    scan_layers(lm, [layer], build_windows(lm, default_corpus(), w, 64 * w), keep=20)  # warm-up
    sync(lm.device)
    t0 = time.perf_counter()
    scan_layers(lm, [layer], windows, keep=20)
    sync(lm.device)
    scan_s = time.perf_counter() - t0
    tokens = int(windows.ids.size)
    rate = tokens / scan_s
    share = rate * flops_per_token(lm, w + lm.n_prefix, through=layer) / (tflops * 1e12)

    cfg = resolve_config(None, model=name, planner="heuristic", iterations=args.iterations,
                         device=args.device, dtype=args.dtype, runs_dir=str(runs), window=w,
                         neuron=f"{layer}:{min(100, lm.d_mlp - 1)}",
                         exemplar_tokens=args.scan_tokens, run_id=f"inv-{Path(name).name}")
    cfg = cfg.model_copy(update={"hypothesis_every": args.iterations})
    t0 = time.perf_counter()
    run = investigate(cfg, lm=lm, reporter=write_report)
    inv_s = time.perf_counter() - t0
    by_node: dict[str, float] = {}
    for line in (run / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        by_node[e["node"]] = by_node.get(e["node"], 0.0) + float(e.get("duration_s") or 0.0)

    picks = [NeuronPick(NeuronId(layer, i)) for i in range(args.batch_neurons)]
    bcfg = cfg.model_copy(update={"iterations": 2, "hypothesis_every": 2, "run_id": ""})
    queue = BatchQueue.create(runs, f"batch-{Path(name).name}", picks, bcfg)
    t0 = time.perf_counter()
    run_batch(queue.folder, lm=lm, writers=Writers(reporter=write_report, site=write_site))
    batch_s = time.perf_counter() - t0
    done = sum(e.status == "done" for e in BatchQueue.load(queue.folder).batch.entries)
    return {
        "model": name, "describe": lm.describe(), "load_s": load_s,
        "fingerprint_s": fingerprint_s, "matmul_tflops": tflops, "layer": layer,
        "scan_tokens": tokens, "scan_s": scan_s, "scan_tokens_per_s": rate,
        "scan_share_of_bound": share, "investigation_s": inv_s,
        "investigation_by_node_s": dict(sorted(by_node.items(), key=lambda x: -x[1])),
        "batch_neurons": args.batch_neurons, "batch_done": done, "batch_s": batch_s,
        "batch_neurons_per_hour": 3600 * done / batch_s if batch_s else None,
        "peak_memory_gib": (torch.cuda.max_memory_allocated(lm.device) / 2**30
                            if lm.device.type == "cuda" else None),
    }


def say(message: str) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def run_shapes(args, failed: list[dict]) -> list[dict]:
    """(e) every ``--shapes`` shape, after the device's bf16 matmul rate (on a GPU); a shape
    that fails (out of memory, say) goes to ``failed`` and the others still run."""
    dtype = getattr(torch, args.dtype)
    on_gpu = torch.device(args.device).type == "cuda"
    tflops = matmul_tflops(args.device, dtype) if on_gpu else None
    bound, source = bound_for(args.device, tflops)
    opts = ShapeOptions(args.device, dtype, args.tiny, args.shape_tokens, args.window,
                        seconds=args.scan_seconds, bound_tflops=bound, bound_source=source)
    out: list[dict] = []
    for shape in [s for s in args.shapes.split(",") if s]:
        try:
            r = bench_shape(shape, opts, say)
        except (torch.OutOfMemoryError, RuntimeError) as err:  # the other shapes still run
            say(f"{shape}: failed: {type(err).__name__}: {str(err).splitlines()[0]}")
            failed.append({"shape": shape, "error": f"{type(err).__name__}: {err}"})
            continue
        out.append(r | {"matmul_tflops": tflops})
        gc.collect()  # the shape's model and scan state go before the next one is built
        if on_gpu:
            torch.cuda.empty_cache()
    return out


def models_table(results: list[dict], args) -> Table:
    table = Table(title=f"neurosleuth on {args.device}, {args.dtype}")
    for col in ("model", "load s", "matmul TFLOP/s", "scan tokens/s", "% of bound",
                "investigation s", "slowest nodes", "batch neurons/hour"):
        table.add_column(col, justify="right")
    for r in results:
        nodes = ", ".join(f"{k} {v:.1f}" for k, v in list(r["investigation_by_node_s"].items())[:3])
        table.add_row(r["model"], f"{r['load_s']:.1f}", f"{r['matmul_tflops']:.1f}",
                      f"{r['scan_tokens_per_s']:,.0f}", f"{100 * r['scan_share_of_bound']:.1f}",
                      f"{r['investigation_s']:.1f}", nodes, f"{r['batch_neurons_per_hour']:.0f}")
    return table


def share_text(r: dict) -> str:
    share = r["share_of_bound"]
    return "n/a on cpu" if share is None else f"{100 * share:.1f}"


def shapes_table(shapes: list[dict], args) -> Table:
    table = Table(title=f"atlas scan, all layers hooked, on {args.device}, {args.dtype}")
    cols: tuple[str, ...] = ("shape", "neurons", "batch tokens", "tokens/s", "% of bf16 bound",
                             "finish s")
    cols += tuple(f"atlas h @{t // 1_000_000}M" for t in PROJECT_TOKENS)
    for col in cols:
        table.add_column(col, justify="right")
    for r in shapes:
        hours = [f"{p['total_h']:.2f}" for p in r["projected_hours"].values()]
        table.add_row(r["shape"], f"{r['neurons']:,}", f"{r['batch_tokens']:,}",
                      f"{r['tokens_per_s']:,.0f}", share_text(r), f"{r['finish_s']:.1f}", *hours)
    return table


def shapes_line(shapes: list[dict]) -> str:
    """``gpu: X tokens/s (Y% of bf16 bound) on <1b>; <8b> atlas of N neurons at 10M tokens: H
    hours``: the 1B shape's rate (else the first shape's) and the 8B shape's atlas (else the
    last shape's)."""
    by = {r["shape"].removesuffix("-shape").removesuffix("-tiny"): r for r in shapes}
    rate, atlas = by.get("llama-1b", shapes[0]), by.get("llama-8b", shapes[-1])
    share = rate["share_of_bound"]
    bound = ("no bf16 bound: n/a on cpu" if share is None
             else f"{100 * share:.1f}% of bf16 bound")
    return (f"gpu: {rate['tokens_per_s']:,.0f} tokens/s ({bound}) on {rate['shape']}; "
            f"{atlas['shape'].removeprefix('llama-')} atlas of {atlas['neurons']:,} neurons at "
            f"10M tokens: {atlas['projected_hours']['10M']['total_h']:.1f} hours")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        results = [bench_model(m, args, runs) for m in args.models.split(",") if m]
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    failed: list[dict] = []
    shapes = run_shapes(args, failed) if args.shapes else []
    wide = max(console.width, 140)  # a log (not a terminal) is 80 wide: names would be cut
    if results:
        console.print(models_table(results, args), width=wide)
    if shapes:
        console.print(shapes_table(shapes, args), width=wide)
    device_name = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                   else platform.processor() or platform.machine())
    kind = torch.device(args.device).type
    out = args.json or HERE / "results" / (f"gpu-{kind}.json" if results
                                           else f"gpu-shapes-{kind}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device_name, "torch": torch.__version__,
                               "args": {k: str(v) for k, v in vars(args).items() if k != "json"},
                               "results": results, "shapes": shapes,
                               "shapes_failed": failed}, indent=1))
    if shapes:
        line = shapes_line(shapes)
    elif results:
        r = results[0]
        line = (f"gpu: {r['scan_tokens_per_s']:,.0f} tokens/s "
                f"({100 * r['scan_share_of_bound']:.1f}% of bf16 bound); investigation "
                f"{r['investigation_s']:.0f} s; batch {r['batch_neurons_per_hour']:.0f} "
                "neurons/hour")
    else:
        line = "gpu: nothing run (give --models or --shapes)"
    console.print(line, markup=False, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
