"""Real models in bfloat16 on the CPU, through the command line, as `--dtype bfloat16` users run
them (integration): SmolLM2 (here) and Gemma-3-270m (``test_half_precision_gemma.py``) finish an
investigation with a hypothesis, the run records its dtype, and a resume loads the same dtype."""

import json
import subprocess
import sys

import pytest

from tests.agents.test_planted_smollm2 import hypothesis_of

pytestmark = pytest.mark.integration


def _investigate(tmp_path, model: str, neuron: str, run_id: str, *extra: str):
    cmd = [sys.executable, "-m", "neurosleuth.cli", "investigate", "--model", model,
           "--neuron", neuron, "--dtype", "bfloat16", "--planner", "heuristic", "--iterations",
           "2", "--exemplar-tokens", "4096", "--runs-dir", str(tmp_path), "--run-id", run_id,
           "--sweep-words", "1024", *extra]  # bfloat16 is emulated on this CPU: a short sweep
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp_path / run_id


SMOLLM2_SHAPE = "30 layers, d_mlp 1536, cpu, bfloat16"


def test_bf16_investigation_finishes_with_a_hypothesis(tmp_path):
    run = check_bf16_investigation(tmp_path, "smollm2-135m", "12:345", SMOLLM2_SHAPE)
    # a resume with a larger budget keeps the run's dtype
    more = subprocess.run([sys.executable, "-m", "neurosleuth.cli", "resume", "half",
                           "--runs-dir", str(tmp_path), "--iterations", "3"],
                          capture_output=True, text=True, timeout=900)
    assert more.returncode == 0, more.stderr[-2000:]
    again = json.loads((run / "summary.json").read_text())
    assert again["iterations"] == 3 and again["model_desc"].endswith(SMOLLM2_SHAPE)


def check_bf16_investigation(tmp_path, model: str, neuron: str, shape: str):
    """An investigation of ``model`` in bfloat16 ends with a hypothesis and records its dtype
    and shape; returns its run folder. (Gemma's is its own file,
    ``test_half_precision_gemma.py``: the longest test, it runs beside this one under
    pytest-xdist.)"""
    run = _investigate(tmp_path, model, neuron, "half")
    md = (run / "report.md").read_text()
    hyp = hypothesis_of(md)
    assert hyp.startswith("Fires") and len(hyp.split()) <= 40, hyp
    assert shape.replace("_", "\\_") in md and "dtype bfloat16" in md  # markdown escapes _
    assert json.loads((run / "config.json").read_text())["dtype"] == "bfloat16"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model_desc"].endswith(shape) and summary["oom_backoffs"] == {}
    return run
