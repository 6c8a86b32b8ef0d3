"""The adaptive investigation on a tiny random model: the planner chooses each experiment, the
choice and its reason are logged, findings reach the state, a researcher's structured requests
run as they are, and ``finish`` ends a run only once there is a hypothesis."""

from __future__ import annotations

import json

import pytest

from neurosleuth.agents.actions import Finish, RunAblation
from neurosleuth.agents.planner import HeuristicBackend
from neurosleuth.agents.rundir import post_steering
from tests.agent_helpers import ScriptedPlanner, investigate, words, write_corpus
from tests.agents.test_agent import config, events


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def chosen(run) -> list[tuple[str, str, str]]:
    return [(e["action"], e.get("source", ""), e.get("reason", "")) for e in events(run)
            if e["node"] == "act"]


def test_the_policy_chooses_experiments_with_reasons_and_they_differ_by_neuron(
        tmp_path, tiny_lm, corpus):
    runs = {}
    for neuron in ("1:3", "0:5"):
        cfg = config(tmp_path, corpus, run_id=f"n{neuron.replace(':', '-')}", neuron=neuron,
                     iterations=9, hypothesis_every=3)
        runs[neuron] = investigate(cfg, lm=tiny_lm, planner=HeuristicBackend(0))
    for run in runs.values():
        acts = chosen(run)
        assert all(reason for _, _, reason in acts), acts  # every choice says why
        kinds = {k for k, _, _ in acts}
        assert "propose_prompts" in kinds and kinds - {"propose_prompts"}, kinds
        exps = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
        assert any(e["node"] == "hypothesize" for e in exps)
        report = (run / "report.md").read_text()
        assert "Experiment log" in report and "the experiment-design policy" in report
    a, b = ([k for k, _, _ in chosen(r)] for r in runs.values())
    assert a != b  # different evidence, different experiments


def test_chosen_findings_reach_the_state_and_skip_the_rounds_probe(tmp_path, tiny_lm, corpus):
    planner = ScriptedPlanner([[words(i * 4 + j) for j in range(4)] for i in range(10)],
                              choices=[RunAblation(mode="mean", prompts=2, reason="causal?")])
    cfg = config(tmp_path, corpus, iterations=3, hypothesis_every=3)
    run = investigate(cfg, lm=tiny_lm, planner=planner)
    evidence = json.loads((run / "evidence.json").read_text())
    ablations = [e for e in evidence if e["kind"] == "ablate"]
    # the first round's probe (the run starts from the read-off), then the planner's choice
    assert ablations[1]["mode"] == "mean" and ablations[1]["prompts"] == 2
    assert chosen(run)[1] == ("ablate", "scripted", "causal?")  # after the exemplar seeds
    # the closing round's probe ran attribution and steering, not a third ablation
    assert len(ablations) == 2 and {e["kind"] for e in evidence} >= {"attribute", "steer"}


def test_the_run_starts_with_a_round_and_finish_ends_it(tmp_path, tiny_lm, corpus):
    prompts = [[words(i * 4 + j) for j in range(4)] for i in range(10)]
    planner = ScriptedPlanner(prompts, choices=[Finish(reason="enough")])
    cfg = config(tmp_path, corpus, run_id="early", iterations=8, hypothesis_every=3)
    run = investigate(cfg, lm=tiny_lm, planner=planner)
    plans = [e for e in events(run) if e["node"] == "plan"]
    assert plans[1]["action"] == "round" and "no hypothesis yet" in plans[1]["reason"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "finished: enough"
    assert summary["iterations"] < 8
    assert json.loads((run / "hypotheses.json").read_text())


def test_structured_steering_requests_run_as_they_are(tmp_path, tiny_lm, corpus):
    planner = ScriptedPlanner([[words(i * 4 + j) for j in range(4)] for i in range(10)])
    cfg = config(tmp_path, corpus, iterations=4, hypothesis_every=2)

    def requests(node, event, state, update, ctx):  # posted while it runs, after the seeds
        if node != "seed":
            return
        post_steering(ctx.files.path, "does it fire on these?", "experiment",
                      {"kind": "test_hypothesis", "texts": [words(90), words(91)]})
        post_steering(ctx.files.path, "which one?", "experiment",
                      {"kind": "compare", "a": "Fires on the token 'cat'.",
                       "b": "Fires on the token 'dog'."})

    run = investigate(cfg, lm=tiny_lm, planner=planner, observer=requests)
    acts = chosen(run)
    assert ("test_hypothesis", "steer", "does it fire on these?") in acts
    assert ("compare", "steer", "which one?") in acts
    evidence = json.loads((run / "evidence.json").read_text())
    test = next(e for e in evidence if e["kind"] == "test")
    assert [t for t, _ in test["texts"]] == [words(90), words(91)]
    compare = next(e for e in evidence if e["kind"] == "compare")
    assert compare["a"] == "Fires on the token 'cat'." and compare["prompts"] > 0
    assert "the researcher (steer)" in (run / "report.md").read_text()


def test_a_run_from_before_the_policy_resumes_on_its_schedule(tmp_path, tiny_lm, corpus):
    """A config.json without ``policy`` (written before the planner chose experiments) resumes
    under the fixed schedule it was started with: prompts at every new step."""
    import pandas as pd

    from tests.agent_helpers import resume

    cfg = config(tmp_path, corpus, run_id="old", iterations=2, policy="fixed")
    run = investigate(cfg, lm=tiny_lm, planner=HeuristicBackend(0))
    saved = json.loads((run / "config.json").read_text())
    del saved["policy"]
    (run / "config.json").write_text(json.dumps(saved))
    resume(tmp_path, "old", lm=tiny_lm, planner=HeuristicBackend(0), iterations=5)
    assert json.loads((run / "config.json").read_text())["policy"] == "fixed"
    assert sorted(set(pd.read_csv(run / "prompts.csv")["step"])) == [1, 2, 3, 4, 5]
