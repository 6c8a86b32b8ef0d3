"""A corpus at scale: peak memory and tokens/s of a streamed scan as the corpus grows.

Each corpus size is scanned in its own process (so that peaks do not mix) by
``tools/exemplars.layer_scans(..., stream=True)``, as the atlas scans: the corpus is streamed from
a Parquet file in record batches, tokenised one document at a time into a token store on disk
(``tools/corpus_store.py``), and the scan reads the store batch by batch and keeps per layer only
its running top-k / bottom-k, the fixed samples and the running sums (``tools/scan.py``).

Per size: tokens scanned; seconds to stream and tokenise the corpus into the store
(``store_s``) and to scan it (``scan_s``); the scan's tokens/s; tokens per second of the
process's CPU time (tokenising and scan: less moved by other work on a shared machine than wall
time); the process's peak resident
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and its resident memory after loading the
model, before the scan (so the scan's own share is their difference); the bytes of what the scan
keeps per layer (the ``LayerScan`` arrays) and of the token store on disk. Flat tokens/s and
flat peak memory across sizes are the claim; the store grows with the corpus (4 bytes a token
for the ids, 10 a window for where each window comes from, plus document names).

The corpus: ``--corpus`` (a Parquet file, a folder of text files, ``hf:NAME``: anything
``--corpus`` takes), else one generated here (``make_corpus``): documents of 3 to 12 paragraphs
drawn at random (fixed seed) from the paragraphs of the shipped default corpus (Wikipedia
summaries, chat, speeches, code, FAQs: ~7.6M tokens in all), written to one Parquet file in row
groups. Resampled text repeats paragraphs, which is fine for speed and memory, not for the
quality of what a neuron's top windows show.

Run: ``python bench/corpus_scale.py [--threads 2] [--sizes 250000,500000,1000000]
[--layers 0,1] [--model smollm2-135m] [--corpus PATH] [--in-memory]``; JSON to
``bench/results/corpus_scale.json``. ``--in-memory`` also scans the largest size with the windows
held in memory (today's path for budgets up to ``STREAM_TOKENS``), for comparison. The load
average (``os.getloadavg``) is recorded before and after each size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = "250000,500000,1000000"


def make_corpus(path: Path, chars: int, seed: int = 0) -> dict:
    """Write a Parquet file of about ``chars`` characters of documents resampled from the
    paragraphs of the shipped default corpus (module docstring); returns what was written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from neurosleuth.tools.corpus import default_corpus

    paragraphs = [p.strip() for s in default_corpus().sources for d in s.documents()
                  for p in d.text.split("\n\n") if len(p.strip()) >= 40]
    rng = random.Random(seed)
    written, rows = 0, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    schema = pa.schema([("text", pa.string())])
    with pq.ParquetWriter(tmp, schema) as writer:
        while written < chars:
            docs = ["\n\n".join(rng.choices(paragraphs, k=rng.randint(3, 12)))
                    for _ in range(2048)]
            writer.write_table(pa.table({"text": docs}, schema=schema))
            written += sum(len(d) for d in docs)
            rows += len(docs)
    tmp.replace(path)
    return {"path": str(path), "chars": written, "rows": rows, "paragraphs": len(paragraphs)}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(args: argparse.Namespace) -> dict:
    """One size, in this process: load the model, stream the corpus, scan; what was measured."""
    import torch

    torch.set_num_threads(args.threads)
    cache = tempfile.mkdtemp(prefix="corpus-scale-")
    os.environ["NEUROSLEUTH_CACHE"] = cache
    from neurosleuth.tools.exemplars import layer_scans
    from neurosleuth.tools.model import load_model
    from neurosleuth.tools.reference import model_fingerprint

    lm = load_model(args.model, device="cpu")
    model_fingerprint(lm)  # the cache key's hash of the weights (once per model): not timed
    layers = [int(x) for x in args.layers.split(",")]
    before, load_peak = _current_rss_mb(), _rss_mb()  # the scan's peak must be above load_peak
    t0, cpu0 = time.perf_counter(), time.process_time()
    windows, scans, folder, _ = layer_scans(lm, layers, args.corpus, args.window, args.child,
                                            keep=args.keep, stream=not args.memory)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    scan_s = scans[layers[0]].seconds
    tokens = len(windows) * windows.width
    kept = sum(getattr(scans[layers[0]], f.name).nbytes for f in fields(scans[layers[0]])
               if hasattr(getattr(scans[layers[0]], f.name), "nbytes"))
    store = folder / "store"
    store_bytes = sum(p.stat().st_size for p in store.iterdir()) if store.is_dir() else 0
    shutil.rmtree(cache, ignore_errors=True)  # the scan's cache, store included (~0.5 GB at 1M)
    return {"budget": args.child, "tokens": tokens, "windows": len(windows),
            "stream": not args.memory, "layers": layers, "d_mlp": lm.d_mlp,
            "store_s": round(wall - scan_s, 1), "scan_s": round(scan_s, 1),
            "scan_tokens_per_s": round(tokens / scan_s, 1),
            "wall_tokens_per_s": round(tokens / wall, 1),
            "cpu_s": round(cpu, 1), "tokens_per_cpu_s": round(tokens / cpu, 1),
            "rss_before_scan_mb": round(before, 1), "peak_rss_load_mb": round(load_peak, 1),
            "peak_rss_mb": round(_rss_mb(), 1),
            "kept_per_layer_mb": round(kept / 2**20, 2), "store_mb": round(store_bytes / 2**20, 2),
            "store_bytes": store_bytes}


def run_size(size: int, args: argparse.Namespace, memory: bool = False) -> dict:
    """Scan one size in a fresh process (its own peak memory); its measurements."""
    cmd = [sys.executable, __file__, "--child", str(size), "--threads", str(args.threads),
           "--layers", args.layers, "--model", args.model, "--corpus", args.corpus,
           "--window", str(args.window), "--keep", str(args.keep)] + (["--memory"] if memory
                                                                       else [])
    load_before = os.getloadavg()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    return row | {"load_before": [round(x, 2) for x in load_before],
                  "load_after": [round(x, 2) for x in os.getloadavg()]}


def _table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = ("tokens", "stream", "store_s", "scan_s", "scan_tokens_per_s", "tokens_per_cpu_s",
            "rss_before_scan_mb", "peak_rss_mb", "kept_per_layer_mb", "store_mb", "load_before")
    table = Table(title="streamed corpus scan: one process per size")
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*(f"{r[c]:,}" if isinstance(r[c], int) and not isinstance(r[c], bool)
                        else str(r[c]) for c in cols))
    Console(width=180).print(table)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="token budgets, comma-separated")
    ap.add_argument("--layers", default="0,1", help="layers scanned in the same pass")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--keep", type=int, default=24)
    ap.add_argument("--corpus", default=None, help="default: a resampled Parquet corpus")
    ap.add_argument("--corpus-chars", type=int, default=None,
                    help="characters of the generated corpus (default: 6 per token of the largest"
                         " size)")
    ap.add_argument("--in-memory", action="store_true", help="also the largest size in memory")
    ap.add_argument("--out", default=str(HERE / "results" / "corpus_scale.json"))
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args)), flush=True)
        return {}
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    out: dict = {"machine": platform.machine(), "cpus": os.cpu_count(), "threads": args.threads,
                 "model": args.model, "layers": args.layers, "window": args.window,
                 "keep": args.keep, "load_start": os.getloadavg()}
    if args.corpus is None:
        chars = args.corpus_chars or 6 * max(sizes)
        path = Path(tempfile.gettempdir()) / f"neurosleuth-resampled-{chars}.parquet"
        out["corpus_made"] = make_corpus(path, chars) if not path.is_file() else \
            {"path": str(path), "chars": chars, "reused": True}
        args.corpus = str(path)
    out["corpus"] = args.corpus
    rows = [run_size(size, args) for size in sizes]
    if args.in_memory:
        rows.append(run_size(max(sizes), args, memory=True))
    out["rows"] = rows
    out["load_end"] = os.getloadavg()
    _table(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    streamed = [r for r in rows if r["stream"]]
    rates = [r["scan_tokens_per_s"] for r in streamed]
    peaks = [r["peak_rss_mb"] for r in streamed]
    print(f"corpus scale: {streamed[0]['tokens']:,} to {streamed[-1]['tokens']:,} tokens; scan "
          f"{min(rates):,.0f}..{max(rates):,.0f} tokens/s; peak RSS {min(peaks):,.0f}.."
          f"{max(peaks):,.0f} MB", flush=True)
    return out


if __name__ == "__main__":
    main()
