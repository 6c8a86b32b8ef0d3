"""Serve benchmark: how long ``neurosleuth serve`` takes to render an atlas's pages from its table
when the atlas is an 8B model's (Llama-3-8B: 32 layers of 14,336 neurons, 458,752 rows).

The table is synthetic with the real column set: the rows of a small real atlas (``--from DIR``,
e.g. one SmolLM2 layer from ``neurosleuth atlas --layers 14 --tokens 16384``; by default a
two-layer atlas built here on the tiny random test model) repeated until there are ``--rows``,
renamed neuron by neuron (layer, index, name) and written as ``atlas/build.py`` writes tables
(zstd, row groups of ``atlas/table.ROW_GROUP`` rows), streamed one row group at a time.

Timed per view, on ``report/atlas_serve.AtlasPages.answer`` (the whole render: query parsing,
filter, sort, page, HTML; not the socket): the first request (a sort order computed then kept)
and the median of ``--repeat`` more; and end to end through the HTTP server for the same views
once warm. Also: the time and memory to open the table, and, from the source table, the bytes per
neuron as written, extrapolated to SmolLM2's whole atlas folder (46,080 neurons: atlas.parquet,
layers/L.parquet, the 384-dimension float32 search index).

Caveats: a shared 2-core machine (the JSON records the load average); the synthetic explanations
repeat, so a text query matches in the same proportion as in the source.

Run: ``python bench/serve.py [--from DIR] [--rows 458752] [--repeat 5]``. Prints a table and
writes ``bench/results/serve.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from neurosleuth.atlas.table import PARQUET, ROW_GROUP  # noqa: E402
from neurosleuth.report.atlas_serve import AtlasPages, split  # noqa: E402
from neurosleuth.report.serve import make_server  # noqa: E402

WIDTH = 14_336  # neurons per layer of Llama-3-8B
SMOLLM2 = 46_080  # neurons of SmolLM2-135M (30 layers of 1,536)
EMBED_DIM = 384  # all-MiniLM-L6-v2
console = Console(width=150)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", type=Path, default=None,
                   help="a real atlas folder whose rows are repeated (default: tiny model)")
    p.add_argument("--rows", type=int, default=32 * WIDTH)
    p.add_argument("--repeat", type=int, default=5, help="timed renders per view, once warm")
    p.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    return p.parse_args(argv)


def tiny_source(folder: Path) -> Path:
    """A two-layer atlas of the tiny random test model on a random-word corpus."""
    import numpy as np

    from neurosleuth.atlas.build import AtlasConfig, build_atlas
    from neurosleuth.tools.scan_config import ScanConfig
    from tests.fixtures import WORDS, tiny_random_lm

    rng = np.random.default_rng(0)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(list(WORDS[3:]), size=40))
                                  for _ in range(200)))
    os.environ.setdefault("NEUROSLEUTH_CACHE", str(folder / "cache"))
    out = folder / "source"
    build_atlas(tiny_random_lm(seed=5), [0, 1], out,
                AtlasConfig(ScanConfig(corpus=str(corpus), window=16, max_tokens=6000, k=12)))
    return out


def synthetic(source: Path, out: Path, rows: int) -> Path:
    """``out/atlas.parquet`` (and atlas.json): ``rows`` rows cycled from ``source``'s table,
    renamed to layers of ``WIDTH`` neurons."""
    src = pq.read_table(source / "atlas.parquet")
    out.mkdir(parents=True, exist_ok=True)
    names = src.schema.names
    with pq.ParquetWriter(out / "atlas.parquet", src.schema, compression=PARQUET["compression"],
                          compression_level=PARQUET["compression_level"]) as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            take = pa.array([(start + i) % src.num_rows for i in range(n)], pa.int64())
            part = src.take(take)
            ids = range(start, start + n)
            fresh = {"layer": pa.array([i // WIDTH for i in ids], src.schema.field("layer").type),
                     "index": pa.array([i % WIDTH for i in ids], src.schema.field("index").type),
                     "neuron": pa.array([f"{i // WIDTH}:{i % WIDTH}" for i in ids])}
            part = pa.table([fresh.get(c, part[c]) for c in names], schema=src.schema)
            writer.write_table(part, row_group_size=ROW_GROUP)
    meta = json.loads((source / "atlas.json").read_text())
    meta |= {"layers": sorted({i // WIDTH for i in range(rows)}), "neurons": rows}
    (out / "atlas.json").write_text(json.dumps(meta))
    return out


def views(rows: int) -> list[tuple[str, str, str]]:
    """(name, URL path under the atlas, query) of the timed views."""
    last = (rows - 1) // WIDTH
    mid = last // 2
    return [("index", "site/index.html", ""),
            ("layer page", f"site/layer-{mid}.html", ""),
            ("layer sorted by r", f"site/layer-{mid}.html", "sort=r&desc=1"),
            ("layer, page 50", f"site/layer-{mid}.html", "page=50"),
            ("all, sorted by density", "site/neurons.html", "sort=density"),
            ("all, filtered", "site/neurons.html",
             "kind=token&r_min=0.3&r_max=0.9&density_max=0.05&bare=none"),
            ("all, text query", "site/neurons.html", "q=fires+on+the&sort=r&desc=1"),
            ("all, 200 per page, last page", "site/neurons.html",
             f"per_page=200&page={-(-rows // 200)}"),
            ("neuron", f"site/n/{mid}-{WIDTH // 2}.html", ""),
            ("neuron (last)", f"site/n/{last}-{(rows - 1) % WIDTH}.html", "")]


def time_views(pages: AtlasPages, folder: Path, rows: int, repeat: int) -> list[dict[str, Any]]:
    out = []
    for name, path, query in views(rows):
        url_folder, m = split("/" + path)  # type: ignore[misc]
        t0 = time.perf_counter()
        html = pages.answer(folder, url_folder, m, query)
        first = time.perf_counter() - t0
        warm = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            pages.answer(folder, url_folder, m, query)
            warm.append(time.perf_counter() - t0)
        out.append({"view": name, "url": f"{path}?{query}" if query else path,
                    "first_ms": round(first * 1000, 1),
                    "median_ms": round(statistics.median(warm) * 1000, 1),
                    "max_ms": round(max(warm) * 1000, 1), "bytes": len(html.encode())})
    return out


def time_http(folder: Path, results: list[dict[str, Any]], repeat: int) -> None:
    """Adds ``http_ms``: median end to end through the server (the table already open)."""
    server = make_server(folder, port=0)
    server.atlas.table(folder.resolve())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for res in results:
            times = []
            for _ in range(max(1, repeat)):
                conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
                t0 = time.perf_counter()
                conn.request("GET", "/" + res["url"])
                resp = conn.getresponse()
                resp.read()
                times.append(time.perf_counter() - t0)
                conn.close()
                assert resp.status == 200, (res["url"], resp.status)
            res["http_ms"] = round(statistics.median(times) * 1000, 1)
    finally:
        server.shutdown()
        server.server_close()


def size_estimate(source: Path) -> dict[str, Any]:
    """Bytes per neuron of ``source``'s table written as atlas/build.py writes it, and SmolLM2's
    whole atlas folder from it (table twice: atlas.parquet and layers/; the search index)."""
    table = pq.read_table(source / "atlas.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.parquet"
        pq.write_table(table, path, **PARQUET)
        per_row = path.stat().st_size / table.num_rows
    folder = SMOLLM2 * (2 * per_row + EMBED_DIM * 4 + 8)
    return {"source_rows": table.num_rows, "bytes_per_neuron": round(per_row),
            "smollm2_table_mb": round(SMOLLM2 * per_row / 1e6, 1),
            "smollm2_folder_mb": round(folder / 1e6, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or tiny_source(Path(tmp))
        t0 = time.perf_counter()
        folder = synthetic(source, Path(tmp) / "atlas", args.rows)
        write_s = time.perf_counter() - t0
        pages = AtlasPages(Path(tmp).resolve(), None)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        pages.table(folder.resolve())
        open_s = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        results = time_views(pages, folder.resolve(), args.rows, args.repeat)
        time_http(folder, results, args.repeat)
        meta = json.loads((source / "atlas.json").read_text())
        summary = {"rows": args.rows, "source": str(args.source or "tiny random model"),
                   "source_model": meta.get("model"), "source_layers": meta.get("layers"),
                   "source_config": meta.get("config"),
                   "table_mb": round((folder / "atlas.parquet").stat().st_size / 1e6, 1),
                   "write_s": round(write_s, 1), "open_s": round(open_s, 2),
                   "open_peak_rss_growth_mb": round((rss - rss0) / 1024, 1),
                   "size": size_estimate(source), "views": results,
                   "loadavg": os.getloadavg()}
    show(summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    return summary


def show(summary: dict[str, Any]) -> None:
    table = Table(title=f"serve: {summary['rows']:,} rows ({summary['table_mb']} MB), opened in "
                  f"{summary['open_s']} s; load {summary['loadavg'][0]:.1f}")
    for col in ("view", "first ms", "median ms", "max ms", "http ms", "KB"):
        table.add_column(col, justify="left" if col == "view" else "right")
    for v in summary["views"]:
        table.add_row(v["view"], f"{v['first_ms']:.1f}", f"{v['median_ms']:.1f}",
                      f"{v['max_ms']:.1f}", f"{v['http_ms']:.1f}", f"{v['bytes'] / 1024:.0f}")
    console.print(table)
    s = summary["size"]
    worst = max(max(v["first_ms"], v["max_ms"], v["http_ms"]) for v in summary["views"])
    console.print(f"slowest render {worst:.0f} ms; {s['bytes_per_neuron']:,} bytes a neuron -> "
                  f"SmolLM2 table {s['smollm2_table_mb']} MB, atlas folder "
                  f"{s['smollm2_folder_mb']} MB", markup=False, highlight=False)


if __name__ == "__main__":
    main()
