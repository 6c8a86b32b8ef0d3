"""bench/search.py and its baseline (bench/seed004_loop.py) on the tiny model: 2 neurons, a tiny
budget, the heuristic planner for the agent and scripted / heuristic proposers for the baseline,
so the benchmark code cannot rot."""

import json
import sys
from pathlib import Path

import pytest

from neurosleuth.tools.neurons import NeuronId
from tests.agent_helpers import words, write_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import search  # noqa: E402
from seed004_loop import ProposerCall, run_baseline  # noqa: E402


class Scripted:
    def __init__(self):
        self.seen = []

    def __call__(self, neuron, top, bottom, n, temperature):
        self.seen.append((list(top), list(bottom)))
        i = len(self.seen)
        return ProposerCall(prompts=[words(10 * i + j) for j in range(n)], calls=1, seconds=0.0)


def test_baseline_loop_stops_at_budget_and_shows_top_lists(tiny_lm):
    proposer = Scripted()
    res = run_baseline(tiny_lm, NeuronId(1, 3), proposer, budget=13, n=4,
                       seeds=("the cat sat", "a big red king", "the cat sat"))
    assert res.forward_passes == 13  # exactly the budget, the last batch cut short
    assert res.rejected["duplicate"] == 1  # the repeated seed never costs a pass
    assert res.llm_calls == len(proposer.seen) >= 3
    top, bottom = proposer.seen[0]
    assert [r.prompt for r in top][:1] and top[0].activation >= bottom[0].activation
    assert res.best_activation == pytest.approx(max(a for a, _ in res.top))
    assert res.curve[-1] == (13, pytest.approx(res.best_activation))


def test_baseline_falls_back_to_random_prompts_on_stagnation(tiny_lm):
    stuck = lambda *a: ProposerCall(prompts=[], calls=1)  # noqa: E731 - proposes nothing
    res = run_baseline(tiny_lm, NeuronId(1, 3), stuck, budget=10, n=4, patience=2,
                       seeds=("the cat sat",))
    assert res.random_restarts >= 1 and res.forward_passes == 10


def test_search_bench_runs_both_methods(tmp_path, tiny_lm, capsys):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "search.json"
    result = search.main(["--neuron", "1:3", "--neuron", "1:5", "--budget", "10",
                          "--per-step", "4", "--planner", "heuristic", "--corpus", str(corpus),
                          "--exemplar-tokens", "2000", "--window", "16", "--out", str(out),
                          "--keep-runs", str(tmp_path / "runs")], lm=tiny_lm)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    saved = json.loads(out.read_text())
    assert saved["complete"] and len(saved["neurons"]) == 2
    wins = sum(r["agent_beats_baseline"] for r in saved["neurons"])
    assert last == f"agent beats baseline on {wins}/2 neurons"
    for row in result["neurons"]:
        agent, base = row["agent"], row["baseline"]
        assert base["forward_passes"] == 10 and agent["passes_within_budget"] <= 10
        assert agent["forward_passes"] >= 10 and agent["best"] <= agent["best_final"]
        assert row["dataset_max"] is not None and agent["wall_s"] > 0
    run = tmp_path / "runs" / "bench-1-3"
    assert (run / "summary.json").is_file()
    assert search.best_within_budget(run, 10_000)[0] == pytest.approx(
        result["neurons"][0]["agent"]["best_final"])
