"""A short real investigation of SmolLM2 with the embedded SmolLM2 planner, through the CLI."""

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from neurosleuth.report.build import SECTION_TITLES


@pytest.mark.integration
def test_embedded_investigation_writes_a_full_report(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "neurosleuth.cli",
        "investigate",
        "--model",
        "smollm2-135m",
        "--neuron",
        "12:345",
        "--planner",
        "auto",
        "--iterations",
        "3",
        "--exemplar-tokens",
        "4096",
        "--sweep-words",
        "2048",
        "--run-id",
        "smol",
        "--runs-dir",
        str(tmp_path),
        "--steer",
        "prefer short English sentences",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "smol"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["planner_used"] == "embedded:smollm2-135m"  # no Ollama server here
    assert "Ollama is not answering" in summary["planner_note"]
    assert summary["status"] == "finished" and summary["iterations"] == 3
    assert summary["llm_calls"] >= 2 and summary["best_activation"] is not None
    prompts = pd.read_csv(run / "prompts.csv")
    assert "exemplar" in set(prompts["source"])
    # the run starts with a round from its read-off: SmolLM2 writes its hypothesis candidate
    # there (and the prompts of any search the policy chooses after)
    written = {c["source"] for h in json.loads((run / "hypotheses.json").read_text())
               for c in h["candidates"]} | set(prompts["source"])
    assert {"embedded:smollm2-135m", "heuristic-fallback"} & written, written
    report = (run / "report.md").read_text()
    for title in SECTION_TITLES:
        assert re.search(rf"^#+ {re.escape(title)}", report, re.M), title
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "prefer short English sentences" in html
