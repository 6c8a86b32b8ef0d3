"""Device and dtype decisions (tools/placement.py), the model-fit estimate, parameter counts from
weight-file headers, the weight fingerprint, and the command line's one-line refusals."""

import os
import subprocess
import sys
import time

import pytest
import torch

from neurosleuth.agents.config import RunConfig
from neurosleuth.tools.model import ModelLoadError, load_model, misplaced, model_parameters
from neurosleuth.tools.placement import (
    Placement,
    PlacementError,
    check_finite,
    check_fits,
    dtype_name,
    resolve_placement,
)
from neurosleuth.tools.reference import model_fingerprint
from tests.agent_helpers import save_tiny_model
from tests.fixtures import tiny_random_lm

NO_CUDA = not torch.cuda.is_available()


def test_auto_is_float32_on_cpu_and_spellings_are_canonical():
    if NO_CUDA:
        assert resolve_placement() == Placement("cpu", "float32")
    assert resolve_placement("cpu", "bf16") == Placement("cpu", "bfloat16")
    assert resolve_placement("CPU", "torch.float16").dtype == "float16"
    assert [dtype_name(x) for x in ("fp32", "half", "BF16", None)] == [
        "float32", "float16", "bfloat16", "auto"]
    with pytest.raises(PlacementError, match="unknown dtype 'float17'"):
        resolve_placement("cpu", "float17")
    with pytest.raises(PlacementError, match="unknown device 'gpu'"):
        resolve_placement("gpu")
    with pytest.raises(PlacementError, match="unknown device map"):
        resolve_placement("cpu", device_map="balanced")


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_refused_in_one_line():
    for dev in ("cuda", "cuda:1"):
        with pytest.raises(PlacementError, match=f"--device {dev}: CUDA is not available"):
            resolve_placement(dev)
    with pytest.raises(PlacementError, match="--device-map auto splits a model across GPUs"):
        resolve_placement("cpu", device_map="auto")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_model("smollm2-135m", device="cuda")


def test_the_config_checks_and_records_placement(monkeypatch):
    monkeypatch.setenv("NEUROSLEUTH_DTYPE", "bf16")
    from neurosleuth.agents.config import resolve_config

    cfg = resolve_config(device="cpu")
    assert (cfg.device, cfg.dtype, cfg.device_map) == ("cpu", "bfloat16", None)
    assert cfg.public_dict()["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="unknown dtype"):
        RunConfig(dtype="int4")
    with pytest.raises(ValueError, match="unknown device map"):
        RunConfig(device_map="sequential")


def test_a_model_that_cannot_fit_gets_the_estimate():
    where = Placement("cuda:0", "bfloat16")
    check_fits("small", 1_000_000, where, free=1 << 30)
    check_fits("unknown", None, where, free=0)  # nothing known: nothing refused
    with pytest.raises(PlacementError) as err:
        check_fits("llama-8b", 8_030_000_000, where, free=10 << 30)
    text = str(err.value)
    assert "8.03B parameters x 2 bytes (bfloat16)" in text and "16.5 GiB" in text
    assert "cuda:0 has 10.0 GiB free" in text and "--device-map auto" in text
    assert "\n" not in text


def test_parameters_from_weight_headers(tmp_path):
    folder = save_tiny_model(tmp_path / "tiny")
    lm = load_model(str(folder), device="cpu")
    assert model_parameters(str(folder)) == sum(p.numel() for p in lm.model.original_model
                                                .parameters())
    assert model_parameters("smollm2-135m") == 134_515_008  # from the GGUF's tensor table
    assert model_parameters("no-such-model") is None


def test_every_load_lands_on_the_requested_dtype(tmp_path):
    folder = save_tiny_model(tmp_path / "tiny")
    for dtype in ("float32", "bfloat16", "float16"):
        lm = load_model(str(folder), device="cpu", dtype=dtype)
        assert misplaced(lm) == [] and lm.dtype == getattr(torch, dtype)
        assert lm.placement == Placement("cpu", dtype)
    assert load_model(str(folder), device="cpu", dtype="bf16") is load_model(
        str(folder), device="cpu", dtype="bfloat16")  # one cache entry per placement
    lm = load_model(str(folder), device="cpu", dtype="bfloat16")
    next(lm.model.parameters()).data = next(lm.model.parameters()).data.float()
    assert misplaced(lm)  # a parameter left in another dtype is reported


def test_fingerprint_sees_any_single_weight_change():
    a, b = tiny_random_lm(0), tiny_random_lm(0)
    assert model_fingerprint(a) == model_fingerprint(b)
    c = tiny_random_lm(0)
    with torch.no_grad():
        w = c.model.blocks[1].mlp.out.weight if hasattr(c.model.blocks[1].mlp, "out") else next(
            p for n, p in c.model.named_parameters() if "down_proj" in n or "W_out" in n)
        w.view(-1)[7] = torch.nextafter(w.view(-1)[7], torch.tensor(1e9))  # one ulp
    assert model_fingerprint(c) != model_fingerprint(a)
    assert model_fingerprint(tiny_random_lm(1)) != model_fingerprint(a)


def test_non_finite_outputs_are_named():
    check_finite(torch.ones(3), torch.float16, "activations")
    with pytest.raises(ValueError, match="overflows float16; use --dtype bfloat16"):
        check_finite(torch.tensor([1.0, float("inf")]), torch.float16, "logits")
    with pytest.raises(ValueError, match="non-finite activations .* in float32"):
        check_finite(torch.tensor([float("nan")]), torch.float32, "activations")


def _cli(*args):
    env = {**os.environ, "NEUROSLEUTH_DEVICE": "", "NEUROSLEUTH_DTYPE": ""}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "neurosleuth.cli", *args], capture_output=True,
                         text=True, timeout=300, env=env)
    return out, time.perf_counter() - start


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")
def test_cli_refuses_bad_placement_in_one_line_before_loading():
    for args, message in (
        (("measure", "-n", "12:345", "--device", "cuda", "hi"), "--device cuda: CUDA is not"),
        (("measure", "-n", "12:345", "--dtype", "float17", "hi"), "unknown dtype 'float17'"),
        (("investigate", "-n", "12:345", "--device", "cuda", "--runs-dir", "/nonexistent/x"),
         "CUDA is not available"),
        (("investigate", "-n", "12:345", "--dtype", "int4"), "unknown dtype"),
    ):
        out, seconds = _cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], out.stderr
        assert "Traceback" not in out.stderr
        assert seconds < 30  # no model was loaded


@pytest.mark.integration
def test_loads_ask_for_plain_dense_weights(tmp_path, monkeypatch):
    """No hub kernels (fetched at load time; on a GPU without the ``kernels`` package an error, as
    seen on an H200) and GGUF weights dequantised, not left packed: hooks and gradients need plain
    ``nn.Linear`` weights."""
    import transformers

    from neurosleuth.tools.weights import load_hf_dir, plain_weights

    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    load_hf_dir(save_tiny_model(tmp_path / "tiny"), Placement("cpu", "float32"))
    assert seen and seen[0]["use_kernels"] is False
    gguf = plain_weights(tmp_path / "m.gguf")
    assert gguf["use_kernels"] is False and gguf["quantization_config"].dequantize is True


def test_embedded_and_gguf_file_loads_land_in_bf16():
    """The embedded name and the same GGUF given as a file: bfloat16 weights from a bfloat16
    cache, every parameter on the CPU in bfloat16, no float32 left behind."""
    from neurosleuth.tools.weights import EMBEDDED, embedded_gguf

    for name in ("smollm2-135m", str(embedded_gguf("smollm2-135m", EMBEDDED["smollm2-135m"]))):
        lm = load_model(name, device="cpu", dtype="bfloat16")
        assert misplaced(lm) == [] and lm.dtype == torch.bfloat16, name
        assert lm.describe().endswith("cpu, bfloat16")


def test_a_transformerlens_name_loads_in_the_requested_dtype(tmp_path):
    """The TransformerLens-name path (``gpt2-small`` -> ``gpt2``), from a Hugging Face hub cache
    made here (a tiny random GPT-2), offline, in a subprocess so the cache location is read at
    import: bfloat16 weights, nothing misplaced, the shape and parameter count from the cache."""
    from tests.architectures import save_architecture

    repo = tmp_path / "hub" / "models--gpt2"
    save_architecture("gpt2", repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    code = (
        "from neurosleuth.tools.model import load_model, misplaced, model_parameters, "
        "model_shape\n"
        "lm = load_model('gpt2-small', device='cpu', dtype='bfloat16')\n"
        "print(lm.describe(), len(misplaced(lm)), model_shape('gpt2-small'), "
        "model_parameters('gpt2-small'), __import__('transformers').AutoModelForCausalLM"
        ".from_pretrained('gpt2').num_parameters())\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith(
        "gpt2-small: 2 layers, d_mlp 32, cpu, bfloat16 0 ModelShape(n_layers=2, d_mlp=32)"), line
    counted, loaded = map(int, line.split(")")[-1].split())
    assert counted == loaded, line
