"""Speed of the prompt memory: sentence embedding throughput and FAISS look-ups at 10k prompts.

Figures, measured in one run with one torch / OpenMP thread setting:

(a) embedding throughput of all-MiniLM-L6-v2 (``load_embedder().embed``) on ``--prompts`` random
    restart prompts (``memory.seeds.random_prompts``: word salad, code, numbers, ~5-15 words),
    in one call (the embedder batches by 64), prompts/second of wall time and of this process's
    CPU time (the second is less sensitive to other processes on a shared machine);
(b) FAISS ``IndexFlatIP`` at ``--size`` normalised 384-d vectors: one query (k=1), a batch of 10
    queries, and ``add`` of 10 vectors, median and min over ``--repeats`` runs, milliseconds;
(c) ``PromptDeduper.check`` of a batch of 10 new prompts against ``--size`` stored prompts,
    end to end (junk filter, hashes, MiniLM embedding, FAISS search), milliseconds.

The 10k stored vectors are random unit vectors (search cost of exact flat search does not depend
on the values); the stored texts for (c) are random prompts. Other processes on the machine
inflate every figure: the JSON records the load average before and after.

Run: ``python bench/memory.py [--threads 1] [--size 10000] [--prompts 2000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from neurosleuth.memory.dedup import PromptDeduper
from neurosleuth.memory.embedder import load_embedder
from neurosleuth.memory.seeds import random_prompts

HERE = Path(__file__).resolve().parent
console = Console()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # keep the tokenizer on one thread too


def timed_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, min) wall milliseconds of ``fn()`` over ``repeats`` runs after a warm-up. On a
    shared machine the minimum is the better estimate of the cost itself: preemption adds
    ~5-15 ms spikes to single runs."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times), 1000 * min(times)


def measure_all(args: argparse.Namespace) -> dict[str, tuple[float, float | None]]:
    """Every figure of the module doc: name -> (value or median, min or None)."""
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    emb = load_embedder()
    load_s = time.perf_counter() - t
    texts = random_prompts(args.prompts, rng)
    emb.embed(texts[:64])  # warm-up
    t, c = time.perf_counter(), time.process_time()
    emb.embed(texts)
    embed_wall, embed_cpu = time.perf_counter() - t, time.process_time() - c

    vecs = rng.normal(size=(args.size, emb.dim)).astype(np.float32)  # (size, 384)
    faiss.normalize_L2(vecs)
    index = faiss.IndexFlatIP(emb.dim)
    index.add(vecs)
    q1, q10 = vecs[:1] + 0.01, vecs[:10] + 0.01  # (1, 384), (10, 384)

    stored = random_prompts(args.size, rng)
    dedup = PromptDeduper(emb, adaptive=False)
    t = time.perf_counter()
    dedup.add(stored, rng.normal(size=len(stored)))
    add_all_s = time.perf_counter() - t
    batches = iter([random_prompts(10, np.random.default_rng(1000 + i))
                    for i in range(args.repeats + 1)])  # fmt: skip
    n = args.size
    return {
        "embedder load (s)": (load_s, None),
        "embed throughput, wall (prompts/s)": (len(texts) / embed_wall, None),
        "embed throughput, per CPU second (prompts/s)": (len(texts) / embed_cpu, None),
        f"FAISS 1 query @ {n} (ms)": timed_ms(lambda: index.search(q1, 1), args.repeats),
        f"FAISS 10 queries @ {n} (ms)": timed_ms(lambda: index.search(q10, 1), args.repeats),
        "FAISS add 10 (ms)": timed_ms(lambda: faiss.IndexFlatIP(emb.dim).add(q10), args.repeats),
        f"dedup.add {n} prompts (s)": (add_all_s, None),
        f"dedup.check 10 prompts @ {n} (ms)": timed_ms(
            lambda: dedup.check(next(batches), record=False), args.repeats
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=10_000, help="stored vectors for (b) and (c)")
    p.add_argument("--prompts", type=int, default=2000, help="prompts embedded for (a)")
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = measure_all(args)
    table = Table(title=f"memory speed, {args.threads} thread(s)")
    for col in ("figure", "value (median)", "min"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for k, (v, lo) in rows.items():
        table.add_row(k, f"{v:,.3f}", "" if lo is None else f"{lo:,.3f}")
    console.print(table)
    out = {
        "threads": args.threads, "size": args.size, "prompts": args.prompts,
        "results": {k: {"value": v, "min": lo} for k, (v, lo) in rows.items()},
        "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "faiss": faiss.__version__, "torch": torch.__version__,
    }  # fmt: skip
    (HERE / "results").mkdir(exist_ok=True)
    path = HERE / "results" / "memory.json"
    path.write_text(json.dumps(out, indent=2))
    console.print(f"wrote {path}")
    embed = rows["embed throughput, wall (prompts/s)"][0]
    query = rows[f"FAISS 1 query @ {args.size} (ms)"][0]
    console.print(f"embed: {embed:,.0f} prompts/s  faiss@{args.size}: {query:.3f} ms/query")


if __name__ == "__main__":
    main()
