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
    assert last.startswith("adaptive beats fixed schedule on ") and "/1 neurons; mean r " in last
    assert f" {s['wins']}/1 " in last and f"{s['fixed']['mean_r']:.3f} (CI" in last
    assert saved["complete"] and s["wins"] + s["ties"] + s["losses"] == 1
    assert saved["summary"]["planted"]["n"] == 1
    for row in saved["neurons"]:
        assert row["held_windows"] > 12  # the held-out top windows and some random ones
        for policy in ("fixed", "adaptive"):
            run = row[policy]
            assert run["stop_reason"].startswith("forward-pass budget")
            assert run["hypothesis"] and -1 <= run["r"] <= 1 and run["rounds"] >= 1
            assert run["simulator"] in ("pattern", "keywords")
            assert run["by_node_s"]["test"] > 0
