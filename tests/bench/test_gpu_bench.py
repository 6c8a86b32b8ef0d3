"""bench/gpu.py runs end to end (here on the CPU with a tiny model and tiny budgets), so that the
script a GPU session runs works when one is lent."""

import json
import re
import sys
from pathlib import Path

import pytest

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


LINE = re.compile(
    r"^gpu: [\d,]+ tokens/s \((\d+\.\d% of bf16 bound|no bf16 bound: n/a on cpu)\) on "
    r"(llama-1b(-tiny)?-shape); (8b(-tiny)?-shape) atlas of ([\d,]+) neurons at 10M tokens: "
    r"\d+\.\d hours$")


def test_gpu_bench_shapes_tiny_on_cpu(tmp_path, monkeypatch, capsys):
    """The shapes' code path (random Llama built from a config, wrapped by ``from_hf_model``,
    every layer scanned, the finish timed, the atlas projected) on tiny shapes on the CPU: no
    bound share on a CPU, and the last line in its fixed format."""
    import gpu

    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "shapes.json"
    gpu.main(["--shapes", "llama-1b,llama-8b", "--tiny", "--device", "cpu", "--shape-tokens",
              "16384", "--scan-seconds", "0.2", "--json", str(out)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    m = LINE.match(last)
    assert m, last
    assert m.group(1) == "no bf16 bound: n/a on cpu"
    assert (m.group(2), m.group(4)) == ("llama-1b-tiny-shape", "8b-tiny-shape")
    data = json.loads(out.read_text())
    assert data["results"] == [] and len(data["shapes"]) == 2
    one, eight = data["shapes"]
    assert int(m.group(6).replace(",", "")) == eight["neurons"] == 2 * 448
    for r, hidden, d_mlp in ((one, 64, 256), (eight, 128, 448)):
        assert r["random_weights"] and r["config"]["hidden_size"] == hidden
        assert r["layers_hooked"] == 2 and r["neurons"] == 2 * d_mlp
        assert r["share_of_bound"] is None and r["bound_tflops"] is None
        assert "CPU" in r["bound_source"]
        assert r["timed_batches"] >= 2 and r["timed_tokens"] >= 2 * r["batch_tokens"] > 0
        assert r["tokens_per_s"] == pytest.approx(r["timed_tokens"] / r["timed_s"])
        assert r["seq_len"] == 65  # 64 text tokens and a BOS
        # 2 layers of q, o (h x h), k, v (h x h/2: 2 of 4 heads), gate, up, down (h x d_mlp)
        params = 2 * (2 * hidden**2 + hidden**2 + 3 * hidden * d_mlp)
        assert r["block_matrix_params"] == params
        assert r["flops_per_token"] == 2 * params + 4 * 65 * hidden * 2
        assert r["finish_one_layer_s"] > 0 and r["finish_scale"] > 1  # 256 windows < 16,384
        p10, p100 = r["projected_hours"]["10M"], r["projected_hours"]["100M"]
        assert p10["scan_h"] == pytest.approx((1e7 / r["tokens_per_s"] + r["finish_s"]) / 3600)
        assert p100["scan_h"] > 9 * p10["scan_h"]
        if r["explain_cpu_s_per_neuron"] is not None:
            assert p10["explain_h"] == pytest.approx(
                r["neurons"] * r["explain_cpu_s_per_neuron"] / r["cpu_cores"] / 3600)
    hours = float(last.rsplit(": ", 1)[1].split()[0])
    assert hours == pytest.approx(eight["projected_hours"]["10M"]["total_h"], abs=0.051)


def test_bf16_peaks_and_line_on_a_gpu():
    """The datasheet table by device name, and the line's share on a GPU record."""
    import gpu
    from gpu_atlas import bf16_peak

    assert bf16_peak("NVIDIA H200") == 989.0
    assert bf16_peak("NVIDIA H100 80GB HBM3") == 989.0
    assert bf16_peak("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak("NVIDIA A100-SXM4-80GB") == 312.0
    assert bf16_peak("NVIDIA H100 NVL") is None and bf16_peak("NVIDIA L4") is None
    rec = {"shape": "llama-1b-shape", "tokens_per_s": 123456.7, "share_of_bound": 0.1234,
           "neurons": 131_072, "projected_hours": {"10M": {"total_h": 1.0}}}
    big = dict(rec, shape="llama-8b-shape", neurons=458_752,
               projected_hours={"10M": {"total_h": 12.34}})
    line = gpu.shapes_line([{"shape": "smollm2-135m"}, rec, big])
    assert line == ("gpu: 123,457 tokens/s (12.3% of bf16 bound) on llama-1b-shape; 8b-shape "
                    "atlas of 458,752 neurons at 10M tokens: 12.3 hours")
    assert LINE.match(line)
