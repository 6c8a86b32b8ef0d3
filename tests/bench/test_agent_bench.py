"""bench/agent.py runs end to end on a tiny random Llama (one neuron, and one neuron planted in
another tiny model standing in for the planted SmolLM2), tiny budgets, so that the benchmark
code cannot rot."""

import json
import sys
from pathlib import Path

from neurosleuth.tools.model import load_model
from neurosleuth.tools.neurons import NeuronId
from tests.agent_helpers import CORPUS
from tests.architectures import save_architecture
from tests.planted import plant

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_agent_bench_prints_its_line_and_writes_json(tmp_path, monkeypatch, capsys):
    import agent

    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))
    folder = save_architecture("llama", tmp_path / "llama")

    def planted_group(args):  # a " cat" neuron planted in a tiny model (SmolLM2's takes minutes)
        where = save_architecture("llama", tmp_path / "planted", seed=1)
        lm = load_model(str(where), device="cpu")
        cat = lm.encode(" cat")[-1]
        plant(lm, 1, 5, list(CORPUS[:6]), lambda i, ids: ids[i] == cat)
        return lm, str(where), [("cat", NeuronId(1, 5))]

    monkeypatch.setattr(agent, "planted_group", planted_group)
    out = tmp_path / "agent.json"
    agent.main(["--model", str(folder), "--neuron", "1:3", "--budget", "8", "--device", "cpu",
                "--scan-tokens", "16384", "--window", "32", "--json", str(out)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    saved = json.loads(out.read_text())
    s = saved["summary"]["smollm2"]
    assert last.startswith("deep dive beats atlas on ") and "/1 neurons; mean r " in last
    assert f" {s['wins']}/1 " in last and f"{s['atlas']['mean_r']:.3f} (CI" in last
    assert f"revised on {s['revised']}/1" in last
    assert saved["complete"] and s["wins"] + s["ties"] + s["losses"] == 1
    assert saved["summary"]["planted"]["n"] == 1
    for row in saved["neurons"]:
        assert row["held_windows"] > 12  # the held-out top windows and some random ones
        deep, atlas = row["deep"], row["atlas"]
        assert "budget" in deep["stop_reason"]
        assert deep["hypothesis"] and -1 <= deep["r"] <= 1 and deep["rounds"] >= 1
        assert atlas["hypothesis"] and -1 <= atlas["r"] <= 1
        assert deep["simulator"] in ("pattern", "keywords") and atlas["simulator"] == "pattern"
        assert deep["by_node_s"]["test"] > 0 and deep["revision_rounds"] >= 1
