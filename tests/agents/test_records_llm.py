"""``score --records`` with an LLM planner: the LLM predicts each token's activation (as OpenAI's
simulator), through the Ollama protocol (the stand-in server of ``tests/ollama_server.py``, with
canned replies), and a reply that cannot be used falls back to the keyword writer, counted."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from neurosleuth.tools.records import NeuronRecords, Record, write
from tests.ollama_server import FakeOllama, Reply


def reply(values) -> Reply:
    return Reply(text=json.dumps({"kind": "simulate_tokens", "values": values}))


def test_score_records_with_an_llm_simulator(tmp_path, monkeypatch):
    from neurosleuth.cli import app

    top = [Record((" red", " car", " the", " blue"), np.array([5.0, 0.0, 0.1, 4.0])),
           Record((" green", " is", " a", " dog"), np.array([4.5, 0.0, 0.0, 0.2]))]
    rand = [Record((" the", " cat", " sat", " down"), np.array([0.1, 0.0, 0.2, 0.0]))]
    path = write(tmp_path / "r.json", [NeuronRecords("3:7", top, rand)], "openai")
    server = FakeOllama().start()
    try:
        server.script = [reply([10, 0, 0, 9]), reply([9, 0, 0, 0])] + [Reply(text="no idea")] * 8
        out = tmp_path / "s.json"
        res = CliRunner().invoke(app, ["score", "--records", str(path), "--hypothesis",
                                       "colour words", "--planner", "ollama", "--json",
                                       str(out)],
                                 env={"NEUROSLEUTH_OLLAMA_HOST": server.host},
                                 terminal_width=200)
    finally:
        server.stop()
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    assert got["r"] > 0.9 and got["records"] == 3
    # two simulations from the LLM; the third record's garbage fell back to the keywords
    assert "ollama" in res.output and "1 heuristic fallbacks" in res.output, res.output
    chats = [r for r in server.requests if r["path"] == "/api/chat"]
    assert 3 <= len(chats) <= 10  # every retry of the third was garbage: none generated
