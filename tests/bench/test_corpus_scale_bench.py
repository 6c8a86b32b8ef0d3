"""bench/corpus_scale.py runs end to end on a tiny model and a tiny Parquet corpus (one process
per size), so that the benchmark code cannot rot."""

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.agent_helpers import CORPUS
from tests.architectures import save_architecture

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_corpus_scale_bench_prints_its_line_and_writes_json(tmp_path, capsys):
    import corpus_scale

    folder = save_architecture("llama", tmp_path / "llama")
    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": [" ".join(CORPUS[i:] + CORPUS[:i]) for i in range(40)]}),
                   corpus)
    out = tmp_path / "scale.json"
    corpus_scale.main(["--model", str(folder), "--sizes", "1024,4096", "--layers", "0,1",
                       "--window", "16", "--threads", "1", "--corpus", str(corpus),
                       "--out", str(out)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    rows = json.loads(out.read_text())["rows"]
    assert [r["tokens"] for r in rows] == [1024, 4096] and all(r["stream"] for r in rows)
    assert last == (f"corpus scale: 1,024 to 4,096 tokens; scan "
                    f"{min(r['scan_tokens_per_s'] for r in rows):,.0f}.."
                    f"{max(r['scan_tokens_per_s'] for r in rows):,.0f} tokens/s; peak RSS "
                    f"{min(r['peak_rss_mb'] for r in rows):,.0f}.."
                    f"{max(r['peak_rss_mb'] for r in rows):,.0f} MB")
    for r in rows:
        assert r["peak_rss_mb"] >= r["peak_rss_load_mb"] >= r["rss_before_scan_mb"] > 0
        assert r["store_bytes"] > 4 * r["tokens"] and r["tokens_per_cpu_s"] > 0
        assert len(r["load_before"]) == 3 and r["layers"] == [0, 1]
