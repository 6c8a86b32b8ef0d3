"""bench/serve.py on the tiny model: a synthetic table of a few row groups, every view rendered
and answered through the server, so the benchmark code cannot rot."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import serve  # noqa: E402


def test_serve_bench_renders_every_view(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "serve.json"
    summary = serve.main(["--rows", "20000", "--repeat", "1", "--out", str(out)])
    assert json.loads(out.read_text())["rows"] == 20000 and len(summary["loadavg"]) == 3
    views = {v["view"]: v for v in summary["views"]}
    assert len(views) == 10 and all(v["bytes"] > 1000 and v["http_ms"] > 0 for v in views.values())
    assert summary["size"]["bytes_per_neuron"] > 0
