"""bench/gpu.py runs end to end (here on the CPU with a tiny model and tiny budgets), so that the
script a GPU session runs works when one is lent."""

import json
import sys
from pathlib import Path

from tests.architectures import save_architecture

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_gpu_bench_prints_its_line_and_writes_json(tmp_path, monkeypatch, capsys):
    import gpu

    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))
    folder = save_architecture("llama", tmp_path / "llama")
    out = tmp_path / "gpu.json"
    gpu.main(["--models", str(folder), "--device", "cpu", "--dtype", "bfloat16",
              "--scan-tokens", "4096", "--iterations", "2", "--batch-neurons", "2",
              "--window", "32", "--json", str(out)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("gpu: ") and "of bf16 bound); investigation" in last
    r = json.loads(out.read_text())["results"][0]
    assert r["scan_tokens"] >= 4000 and r["scan_tokens_per_s"] > 0
    assert 0 < r["scan_share_of_bound"] < 1.5 and r["matmul_tflops"] > 0
    assert r["batch_done"] == 2 and r["investigation_by_node_s"]["seed"] >= 0
    assert r["describe"].endswith("cpu, bfloat16")
