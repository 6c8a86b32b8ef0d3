"""Real models in bfloat16 on the CPU, through the command line, as `--dtype bfloat16` users run
them (integration): SmolLM2 (here) and Gemma-3-270m (``test_half_precision_gemma.py``) finish an
investigation with a hypothesis and the run records its dtype (one round each: this CPU emulates
bfloat16, 6x slower than float32 here; a resume loading the same dtype is checked on a tiny model
in ``tests/tools/test_architectures.py``)."""

import json
import subprocess
import sys

import pytest

from tests.agents.test_planted_smollm2 import hypothesis_of

pytestmark = pytest.mark.integration


SMOLLM2_SHAPE = "30 layers, d_mlp 1536, cpu, bfloat16"


def test_bf16_investigation_finishes_with_a_hypothesis(tmp_path):
    """SmolLM2 investigated in bfloat16 ends with a hypothesis and records its dtype and shape.
    One round, no sweep: a round costs 10 minutes of this CPU, which emulates bfloat16. (A resume
    of a bfloat16 run loads it in bfloat16: ``tests/tools/test_architectures.py``.)"""
    cmd = [sys.executable, "-m", "neurosleuth.cli", "investigate", "--model", "smollm2-135m",
           "--neuron", "12:345", "--dtype", "bfloat16", "--planner", "heuristic", "--iterations",
           "1", "--exemplar-tokens", "4096", "--runs-dir", str(tmp_path), "--run-id", "half",
           "--sweep-words", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "half"
    md = (run / "report.md").read_text()
    hyp = hypothesis_of(md)
    assert hyp.startswith("Fires") and len(hyp.split()) <= 40, hyp
    assert SMOLLM2_SHAPE.replace("_", "\\_") in md and "dtype bfloat16" in md  # markdown escapes _
    assert json.loads((run / "config.json").read_text())["dtype"] == "bfloat16"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model_desc"].endswith(SMOLLM2_SHAPE) and summary["oom_backoffs"] == {}
