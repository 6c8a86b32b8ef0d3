"""Speed of the causal tools on SmolLM2-135M: an ablation with its random-neuron baseline.

Figures, one run, one thread setting, neuron ``--neuron`` (default 12:345, a middle layer):

(a) ``ablate(..., baseline=R)`` (R random neurons + the target, one shared clean run, variants
    stacked along the batch) on 2 and 8 short prompts (8-10 tokens), for the zero, mean (reference
    means cached on disk, warm), resample and scale modes;
(b) the same work done one variant at a time: R + 1 calls of ``ablate(..., baseline=0)``, each
    with its own clean run (how a tool without batching would compute the baseline);
(c) ``sweep``: every MLP layer and every head (30 + 270 components) zero-ablated on one prompt;
(d) the experiment store: the same ablation read back through ``memory.store.cached``.

Wall seconds and this process's CPU seconds (medians over ``--repeats``, after a warm-up). On a
shared machine wall time is inflated by other processes; with one thread, CPU time is close to
what the work costs on an idle core. The JSON records the load average before and after.

Run: ``python bench/ablate.py [--threads 1] [--baseline 20] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from neurosleuth.memory.store import ExperimentStore, cached
from neurosleuth.tools.ablate import InterventionResult, ablate
from neurosleuth.tools.model import load_model
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.sweep import sweep

HERE = Path(__file__).resolve().parent
console = Console()
PROMPTS = [
    "The Eiffel Tower is in the city of",
    "The capital of France is",
    "She poured the milk into a glass and",
    "def add(x, y): return x +",
    "In 1969 the first humans walked on the",
    "The cat sat on the mat and looked at",
    "Water boils at one hundred degrees",
    "My favourite colour is blue because",
]


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall s, median CPU s) of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def measure_all(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    lm = load_model("smollm2-135m", device=args.device)
    neuron, r = NeuronId.parse(args.neuron), args.baseline
    rows: dict[str, tuple[float, float]] = {}
    for n in (2, 8):
        prompts = PROMPTS[:n]
        for mode in ("zero", "mean", "resample", "scale"):
            rows[f"(a) {mode}, R={r}, {n} prompts"] = timed(
                lambda p=prompts, m=mode: ablate(lm, p, neuron, m, scale=3.0, baseline=r),
                args.repeats,
            )
        rows[f"(b) zero, {r + 1} separate calls, {n} prompts"] = timed(
            lambda p=prompts: [
                ablate(lm, p, NeuronId(neuron.layer, i), "zero", baseline=0) for i in range(r + 1)
            ],
            max(1, args.repeats // 2),
        )
    rows["(c) sweep zero, 30 MLP + 270 heads, 1 prompt"] = timed(
        lambda: sweep(lm, PROMPTS[:1], "zero"), 1
    )
    store = ExperimentStore(Path(tempfile.mkdtemp()) / "bench.sqlite")
    spec = {"model": lm.name, "component": str(neuron), "prompts": PROMPTS[:2], "baseline": r}

    def run():
        return ablate(lm, PROMPTS[:2], neuron, "zero", baseline=r)

    rows["(d) store hit (same ablation again)"] = timed(
        lambda: cached(store, ablate, spec, run, InterventionResult.from_dict), args.repeats
    )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--neuron", default="12:345")
    p.add_argument("--baseline", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = measure_all(args)
    table = Table(title=f"causal tools on smollm2-135m, {args.threads} thread(s), {args.device}")
    for col in ("figure", "wall s (median)", "CPU s (median)"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for k, (wall, cpu) in rows.items():
        table.add_row(k, f"{wall:.3f}", f"{cpu:.3f}")
    console.print(table)
    out = {
        "threads": args.threads, "device": args.device, "neuron": args.neuron,
        "baseline": args.baseline, "repeats": args.repeats,
        "results": {k: {"wall_s": w, "cpu_s": c} for k, (w, c) in rows.items()},
        "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "torch": torch.__version__,
    }  # fmt: skip
    (HERE / "results").mkdir(exist_ok=True)
    path = HERE / "results" / f"ablate-{args.device}.json"
    path.write_text(json.dumps(out, indent=2))
    console.print(f"wrote {path}")
    wall, cpu = rows[f"(a) zero, R={args.baseline}, 2 prompts"]
    seq = rows[f"(b) zero, {args.baseline + 1} separate calls, 2 prompts"]
    console.print(
        f"ablation with {args.baseline}-neuron baseline, 2 prompts: {wall:.2f} s wall, "
        f"{cpu:.2f} s CPU ({seq[1] / cpu:.1f}x less CPU than one variant at a time)"
    )


if __name__ == "__main__":
    main()
