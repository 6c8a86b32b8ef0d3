"""The investigation graph on a tiny model: routing, memory, budgets, steering, stagnation,
resume after a kill, and the report files. Planners here are scripted or heuristic."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from neurosleuth.agents.config import RunConfig, parse_duration, resolve_config, run_path
from neurosleuth.agents.planner import HeuristicBackend
from neurosleuth.agents.rundir import post_steering
from tests.agent_helpers import (
    ScriptedPlanner,
    investigate,
    resume,
    save_tiny_model,
    words,
    write_corpus,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def config(tmp_path, corpus, **kw) -> RunConfig:
    base = dict(
        run_id="r1",
        runs_dir=str(tmp_path),
        model="tiny",
        neuron="1:3",
        iterations=4,
        prompts_per_step=4,
        corpus=str(corpus),
        exemplar_tokens=2000,
        window=16,
        hypothesis_every=2,
        k=5,
    )
    return RunConfig(**{**base, **kw})


def events(run):
    return [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]


def test_graph_routes_and_writes_every_file(tmp_path, tiny_lm, corpus):
    planner = ScriptedPlanner([[words(i * 4 + j) for j in range(4)] for i in range(10)])
    run = investigate(config(tmp_path, corpus, policy="fixed"), lm=tiny_lm, planner=planner)
    nodes = [e["node"] for e in events(run)]
    assert nodes[:5] == ["seed", "plan", "act", "record", "plan"]
    assert nodes.count("record") == 4 and nodes[-1] == "report"
    rounds = nodes.count("probe")
    assert rounds == nodes.count("hypothesize") == nodes.count("test") == nodes.count("revise") == 2
    evidence = json.loads((run / "evidence.json").read_text())
    assert [e["kind"] for e in evidence if e["kind"] != "revise"] == [
        "ablate", "attribute", "steer"] * 2
    assert evidence[2]["promoted"] and evidence[2]["kl"] > 0
    assert evidence[0]["kl"] >= 0 and evidence[0]["kl_z"] is not None
    assert "Causal evidence" in (run / "report.md").read_text()
    assert "Causal checks:" in planner.hyp_views[-1]
    for name in (
        "config.json",
        "summary.json",
        "prompts.csv",
        "curve.csv",
        "heaps.json",
        "hypotheses.json",
        "exemplars.json",
        "report.md",
        "report.html",
        "checkpoints.sqlite",
    ):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["iterations"] == 4
    prompts = pd.read_csv(run / "prompts.csv")
    assert summary["forward_passes"] >= (prompts["status"] == "accepted").sum()
    assert summary["best_activation"] == pytest.approx(prompts["activation"].max())
    hyps = json.loads((run / "hypotheses.json").read_text())
    # best of candidates: the explainer's, the planner's ("Fires on 'cat'.") and the previous best
    cands = hyps[-1]["candidates"]
    # (the previous best is folded into an equal text of an earlier source)
    assert {c["source"] for c in cands} >= {"atlas", "explainer", "scripted"}
    scored = [c for c in cands if c["summary"]]
    assert any(c["text"] == "Fires on 'cat'." for c in scored)
    # the leader is a scored candidate, or the revision of one that its experiments kept
    final = hyps[-1]
    assert (final["text"] in {c["text"] for c in scored} if final["source"] != "revised"
            else final["revised_from"] in {c["text"] for c in scored} | {h["text"] for h in hyps})
    assert (run / "explanation.json").is_file()
    assert "explainer's findings" in planner.hyp_views[-1]
    score = hyps[-1]["score"]
    assert score["aggregate"] is not None
    assert {"selectivity", "simulation", "causality", "robustness"} <= set(score["components"])
    # each value is stored rounded to 6 decimals
    assert score["margin"] == pytest.approx(score["aggregate"] - score["floor"], abs=1.01e-6)
    # the planner saw the evidence: top prompts after the first step
    assert planner.views[-1].top and planner.views[-1].exemplars


def test_duplicates_rejected_before_measuring(tmp_path, tiny_lm, corpus):
    same = ["the cat sat on the mat", "the cat sat on the mat", "THE CAT SAT ON THE MAT"]
    run = investigate(
        config(tmp_path, corpus, iterations=2, policy="fixed"), lm=tiny_lm,
        planner=ScriptedPlanner([same])
    )
    prompts = pd.read_csv(run / "prompts.csv")
    planner_rows = prompts[prompts["source"] == "scripted"]
    assert (planner_rows["prompt"].str.lower() == "the cat sat on the mat").all()
    assert (planner_rows["status"] == "accepted").sum() == 1
    assert set(planner_rows["status"]) <= {"accepted", "duplicate", "semantic"}
    assert planner_rows["activation"].isna().sum() == len(planner_rows) - 1
    # a planner that repeats itself is topped up with mutations of the best prompts
    topped = prompts[prompts["source"] == "mutation"]
    assert len(topped) > 0 and set(topped["step"]) <= {2}  # filtered like any proposal


def test_stagnation_triggers_recovery(tmp_path, tiny_lm, corpus):
    planner = ScriptedPlanner([["a cat"], ["a dog"], ["a king"], ["the red"], ["one two"]] * 3)
    cfg = config(tmp_path, corpus, iterations=9, patience=2, prompts_per_step=1)
    run = investigate(cfg, lm=tiny_lm, planner=planner)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["recoveries"], "no recovery in 9 iterations with patience 2"
    assert summary["recoveries"][0]["strategy"] == "exemplar_restart"
    prompts = pd.read_csv(run / "prompts.csv")
    assert "exemplar" in set(prompts["source"])


def test_budgets(tmp_path, tiny_lm, corpus):
    run = investigate(
        config(tmp_path, corpus, iterations=50, max_forward_passes=10),
        lm=tiny_lm,
        planner=HeuristicBackend(0),
    )
    summary = json.loads((run / "summary.json").read_text())
    assert "forward-pass budget" in summary["stop_reason"]
    assert summary["iterations"] < 50
    assert parse_duration("1h30m") == 5400 and parse_duration("45s") == 45
    with pytest.raises(ValueError):
        parse_duration("8 hours")


def test_live_steering_reaches_the_planner(tmp_path, tiny_lm, corpus):
    cfg = config(tmp_path, corpus, iterations=3, steer=["look at animals"], policy="fixed")
    run_dir = run_path(tmp_path, "r1")
    planner = ScriptedPlanner([[words(i)] for i in range(5)])
    original = planner.propose

    def propose(view, n, t):  # a researcher steers while the planner plans step 2
        if len(planner.views) == 0:
            post_steering(run_dir, "try code <b>now</b>")
        return original(view, n, t)

    planner.propose = propose
    investigate(cfg, lm=tiny_lm, planner=planner)
    assert planner.views[0].steering == ["look at animals"]
    assert planner.views[-1].steering == ["look at animals", "try code <b>now</b>"]
    summary = json.loads((run_dir / "summary.json").read_text())
    applied = {m["message"]: m["applied_step"] for m in summary["steering"]}
    assert applied == {"look at animals": 0, "try code <b>now</b>": 3}  # posted during step 2
    assert "try code &lt;b&gt;now&lt;/b&gt;" in (run_dir / "report.html").read_text()


def test_run_ids_cannot_escape(tmp_path):
    for bad in ("../x", "a/b", "..", "/etc", ""):
        with pytest.raises(ValueError):
            run_path(tmp_path, bad)
    with pytest.raises(ValueError):
        RunConfig(run_id="../../etc")


def test_config_override_order(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('iterations = 7\nplanner = "embedded"\nseed = 3\n')
    env = {"NEUROSLEUTH_PLANNER": "heuristic", "NEUROSLEUTH_SEED": "5", "OLLAMA_HOST": "h:1"}
    cfg = resolve_config(f, env=env, seed=9, iterations=None)
    assert (cfg.iterations, cfg.planner, cfg.seed) == (7, "heuristic", 9)
    assert cfg.ollama_host == "http://h:1"


def test_resume_finished_run_with_more_iterations(tmp_path, tiny_lm, corpus):
    investigate(config(tmp_path, corpus, iterations=2, policy="fixed"), lm=tiny_lm,
                planner=HeuristicBackend(0))
    run = resume(tmp_path, "r1", lm=tiny_lm, planner=HeuristicBackend(0), iterations=4)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 4
    steps = pd.read_csv(run / "prompts.csv")["step"]
    assert sorted(set(steps)) == [1, 2, 3, 4]


def cli(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "neurosleuth.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_kill_and_resume_loses_nothing(tmp_path, corpus):
    """SIGKILL a heuristic run mid-way, resume it: nothing recorded is lost or rewritten, every
    step is recorded once, and the run ends like an uninterrupted one."""
    model = save_tiny_model(tmp_path / "model")
    common = [
        "--model",
        str(model),
        "--neuron",
        "1:3",
        "--planner",
        "heuristic",
        "--iterations",
        "14",
        "--corpus",
        str(corpus),
        "--exemplar-tokens",
        "2000",
    ]
    straight = cli("investigate", *common, "--run-id", "straight", "--runs-dir", str(tmp_path))
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    proc = cli("investigate", *common, "--run-id", "killed", "--runs-dir", str(tmp_path))
    log = tmp_path / "killed" / "events.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if log.is_file() and log.read_text().count('"node": "record"') >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = pd.read_csv(tmp_path / "killed" / "prompts.csv")
    assert 0 < before["step"].max() < 14, "the kill should land mid-run"

    resumed = cli("resume", "killed", "--runs-dir", str(tmp_path))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    after = pd.read_csv(tmp_path / "killed" / "prompts.csv")
    reference = pd.read_csv(tmp_path / "straight" / "prompts.csv")
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)  # nothing lost or rewritten
    # the adaptive policy measures prompts at most steps (not at an ablation's, say)
    assert sorted(set(after["step"])) == sorted(set(reference["step"]))
    assert len(set(reference["step"])) >= 7
    per_step = after.groupby("step").size()
    assert (
        per_step[per_step.index <= before["step"].max()] == before.groupby("step").size()
    ).all()  # no step written twice
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["iterations"] == 14


def test_attack_action_runs_through_the_registry(tmp_path, tiny_lm, corpus):
    """Stagnation rotates to the attack; its prompts are filtered, measured and recorded."""
    cfg = config(tmp_path, corpus, iterations=12, patience=1, prompts_per_step=2)
    planner = ScriptedPlanner([["a cat"], ["a dog"]])
    run = investigate(cfg, lm=tiny_lm, planner=planner)
    summary = json.loads((run / "summary.json").read_text())
    assert "attack" in [r["strategy"] for r in summary["recoveries"]]
    prompts = pd.read_csv(run / "prompts.csv")
    attacked = prompts[prompts["source"] == "attack"]
    assert len(attacked) and attacked["activation"].notna().any()
    assert any(e["action"] == "attack" for e in events(run) if e["node"] == "act")
