"""Batch runs on the tiny model: neuron selection, the time split, the persisted queue, a failing
neuron, the report site and summary exports, and a SIGKILL mid-batch followed by resume."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from neurosleuth.agents.config import RunConfig
from neurosleuth.batch.progress import PlainDisplay, RichDisplay, make_display
from neurosleuth.batch.queue import (
    LARGE_ITERATIONS,
    BatchBusy,
    BatchQueue,
    Entry,
    batch_lock,
    neuron_budget,
    overrun_estimate,
)
from neurosleuth.batch.ray_executor import pack_run, unpack_run
from neurosleuth.batch.select import (
    NeuronPick,
    auto_pick,
    from_csv,
    from_locate,
    from_specs,
    parse_indices,
    rank_interesting,
    unique,
)
from neurosleuth.report.site import batch_rows
from neurosleuth.tools.neurons import NeuronId
from tests.agent_helpers import (
    ScriptedPlanner,
    run_batch,
    save_tiny_model,
    words,
    write_corpus,
)

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def template(corpus, **kw) -> RunConfig:
    base = dict(model="tiny", planner="heuristic", iterations=3, prompts_per_step=4,
                corpus=str(corpus), exemplar_tokens=2000, window=16, hypothesis_every=2, k=5)
    return RunConfig(**{**base, **kw})


def picks(*specs: str) -> list[NeuronPick]:
    return [NeuronPick(NeuronId.parse(s)) for s in specs]


class XssPlanner(ScriptedPlanner):
    """Scripted prompts and a hypothesis that carry a script tag (must show as text)."""

    def __init__(self, fail: bool = False):
        super().__init__([[f"the cat {XSS}", words(1), words(2), words(3)],
                          [words(4 + i) for i in range(4)]])
        self.fail = fail

    def propose(self, view, n, temperature):
        if self.fail:
            raise RuntimeError("planner exploded")
        return super().propose(view, n, temperature)

    def hypothesize(self, view):
        if self.fail:  # a deep dive starts with a round: the planner is asked here first
            raise RuntimeError("planner exploded")
        action, info = super().hypothesize(view)
        return action.model_copy(update={"text": f"Fires on {XSS} tags"}), info


def test_neuron_sources(tmp_path):
    assert [str(p.neuron) for p in from_specs(["2:1", "3:0-2"], 4, "7,9-10")] == \
        ["2:1", "3:0", "3:1", "3:2", "4:7", "4:9", "4:10"]
    with pytest.raises(ValueError, match="needs --layer"):
        from_specs(None, None, "0-3")
    with pytest.raises(ValueError, match="bad neuron range"):
        parse_indices("5-2")
    (tmp_path / "a.csv").write_text("layer,index,reason\n1,3,likes cats\n1,4,\n")
    (tmp_path / "b.csv").write_text("neuron\n1:7\n")
    (tmp_path / "bad.csv").write_text("foo\n1\n")
    assert [(str(p.neuron), p.reason) for p in from_csv(tmp_path / "a.csv")] == \
        [("1:3", "likes cats"), ("1:4", None)]
    assert [str(p.neuron) for p in from_csv(tmp_path / "b.csv")] == ["1:7"]
    with pytest.raises(ValueError, match="layer,index or neuron"):
        from_csv(tmp_path / "bad.csv")
    (tmp_path / "loc.csv").write_text(
        "rank,neuron,layer,index,attribution,verified_effect,act_last,verified_rank\n"
        "2,5:9,5,9,-0.5,-0.4,1.0,2\n1,5:3,5,3,-0.9,-1.1,2.0,1\n")
    located = from_locate(tmp_path / "loc.csv")
    assert [str(p.neuron) for p in located] == ["5:3", "5:9"]  # rank order
    assert "locate rank 1" in located[0].reason and "-1.1" in located[0].reason
    assert [str(p.neuron) for p in unique(picks("1:1", "1:2", "1:1"))] == ["1:1", "1:2"]


def test_rank_interesting_prefers_sparse_consistent_and_never_dead():
    levels = np.array([0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0])
    # neurons: 0 dead, 1 dense (q0.99 near max), 2 one outlier window, 3 sparse and consistent,
    # 4 sparse and consistent but less peaked
    maxes = np.array([0.0, 1.0, 10.0, 8.0, 4.0])
    token_q = np.zeros((8, 5))
    token_q[-1] = maxes
    token_q[5] = [0.0, 0.95, 0.5, 0.8, 0.8]  # q0.99
    token_q[3] = [0.0, 0.5, 0.0, 0.0, 0.0]  # median
    std = np.array([0.0, 0.3, 0.5, 0.5, 0.5])
    top_val = np.tile(maxes, (20, 1))
    top_val[1:, 2] = 0.5  # neuron 2: one strong window only
    ranked = rank_interesting(levels, token_q, std, top_val, 5)
    assert [j for j, _ in ranked] == [3, 4, 2, 1]  # good ones by peakiness, then fillers; no 0
    assert "sd above the median" in ranked[0][1] and "filler" not in ranked[0][1]
    assert "not consistent" in ranked[2][1] and "not sparse" in ranked[3][1]


def test_auto_pick_on_the_corpus_scan(tiny_lm, corpus):
    chosen = auto_pick(tiny_lm, 1, 3, corpus=str(corpus), window=16, max_tokens=2000)
    assert len(chosen) == 3 and len({p.neuron for p in chosen}) == 3
    assert all(p.neuron.layer == 1 and p.reason.startswith("auto: max") for p in chosen)


def test_time_split():
    assert neuron_budget(100, 40, 3, 5) == pytest.approx(20)
    assert neuron_budget(100, 99, 3, 5) == 5  # never below the minimum
    assert neuron_budget(100, 40, 3, 5, overhead_s=4) == pytest.approx(16)
    assert neuron_budget(100, 40, 4, 5, parallel=2) == pytest.approx(30)
    done = [Entry("1:1", "n1-1", "done", budget_s=10, seconds=13, attempts=1),
            Entry("1:2", "n1-2", "done", budget_s=10, seconds=11, attempts=1),
            Entry("1:3", "n1-3", "pending")]
    assert overrun_estimate(done) == pytest.approx(2)


def test_queue_is_persisted_and_locked(tmp_path, corpus):
    q = BatchQueue.create(tmp_path, "b", picks("1:1", "1:2"), template(corpus), 60.0, 5.0)
    loaded = BatchQueue.load(tmp_path / "b")
    assert [e.status for e in loaded.batch.entries] == ["pending", "pending"]
    assert loaded.batch.run_config["iterations"] == 3  # set explicitly: kept under --time
    q2 = BatchQueue.create(tmp_path, "c", picks("1:1"), RunConfig(model="tiny"), 60.0)
    assert q2.batch.run_config["iterations"] == LARGE_ITERATIONS
    assert "neuron" not in q2.batch.run_config and "run_id" not in q2.batch.run_config
    with pytest.raises(FileExistsError, match="resume"):
        BatchQueue.create(tmp_path, "b", picks("1:1"), template(corpus))
    with pytest.raises(ValueError, match="escapes|must be"):
        BatchQueue.create(tmp_path, "../x", picks("1:1"), template(corpus))
    with batch_lock(q.folder):
        with pytest.raises(BatchBusy):
            with batch_lock(q.folder):
                pass
    assert not list(q.folder.glob(".*.tmp"))


def test_batch_runs_records_a_failure_and_builds_the_site(tmp_path, tiny_lm, corpus):
    queue = BatchQueue.create(tmp_path, "b1", picks("1:3", "1:4", "0:2"), template(corpus),
                              time_budget_s=30.0, min_neuron_s=1.0)
    queue.batch.entries[1].reason = "picked <b>bold</b>"
    queue.save()
    planners = {"1:3": XssPlanner(), "1:4": XssPlanner(fail=True), "0:2": XssPlanner()}
    out = io.StringIO()
    display = make_display(Console(file=out, width=120))
    assert isinstance(display, PlainDisplay)  # not a terminal: plain lines
    final = run_batch(queue.folder, lm=tiny_lm, planner_factory=lambda c: planners[c.neuron],
                      display=display)
    assert [e.status for e in final.entries] == ["done", "failed", "done"]
    assert final.status == "finished"
    assert "RuntimeError: planner exploded" in final.entries[1].error
    assert (queue.folder / "n1-4" / "error.txt").is_file()
    for e in final.entries:
        assert e.budget_s is not None and e.budget_s >= 1.0 and e.attempts == 1
    cfg = json.loads((queue.folder / "n1-3" / "config.json").read_text())
    assert cfg["time_budget_s"] == final.entries[0].budget_s and cfg["neuron"] == "1:3"
    log = out.getvalue()
    assert "[1/3] 1:3 started" in log and "[2/3] 1:4 failed" in log and "ETA" in log

    page = (queue.folder / "index.html").read_text()
    assert XSS not in page  # the planner's <script> hypothesis is a candidate, in the report
    report = (queue.folder / "n1-3" / "report.html").read_text()
    assert XSS not in report and "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert page.count("<script>") == 1  # only the sorting script
    assert 'href="n1-3/report.html"' in page and 'href="n0-2/report.html"' in page
    assert 'href="n1-4/report.html"' not in page  # the failed neuron wrote no report

    _, rows = batch_rows(queue.folder)
    winner = json.loads((queue.folder / "n1-3" / "hypotheses.json").read_text())[-1]["text"]
    assert rows[0].hypothesis == winner and rows[0].score is not None
    assert rows[0].best_activation is not None and rows[0].dataset_max is not None

    from neurosleuth.cli import app

    paths = {k: tmp_path / f"s.{k}" for k in ("csv", "parquet", "json")}
    res = CliRunner().invoke(app, ["summary", "b1", "--runs-dir", str(tmp_path), "--csv",
                                   str(paths["csv"]), "--parquet", str(paths["parquet"]),
                                   "--neuron-explainer", str(paths["json"])])
    assert res.exit_code == 0, res.output
    assert "1:3" in res.output and "failed" in res.output
    frame = pd.read_csv(paths["csv"])
    assert list(frame["neuron"]) == ["1:3", "1:4", "0:2"] and "score_selectivity" in frame
    pd.testing.assert_frame_equal(pd.read_parquet(paths["parquet"]), frame, check_dtype=False)
    records = json.loads(paths["json"].read_text())
    assert [(r["layer"], r["neuron"]) for r in records] == [(1, 3), (0, 2)]
    assert records[0]["explanation"] == winner
    assert records[0]["score"] == pytest.approx(rows[0].components["simulation"])
    assert records[0]["aggregate"] == pytest.approx(rows[0].score)
    # the finished neurons' top windows as activation records, read back as written
    from neurosleuth.tools.records import read

    for fmt in ("openai", "neuronpedia", "jsonl"):
        out = tmp_path / f"records.{fmt}"
        res = CliRunner().invoke(app, ["summary", "b1", "--runs-dir", str(tmp_path),
                                       "--records", str(out), "--records-format", fmt])
        assert res.exit_code == 0, res.output
        back = read(out)
        assert [nr.neuron for nr in back] == ["1:3", "0:2"]
        top = json.loads((queue.folder / "n1-3" / "exemplars.json").read_text())["top"]
        assert [list(r.tokens) for r in back[0].top] == [w["tokens"] for w in top]
        assert back[0].top[0].acts == pytest.approx(top[0]["acts"], abs=1e-5)
    res = CliRunner().invoke(app, ["summary", "b1", "--runs-dir", str(tmp_path), "--records",
                                   str(tmp_path / "r.x"), "--records-format", "xml"])
    assert res.exit_code == 2 and "choose one of" in res.output


def test_rich_display_renders(tmp_path, corpus):
    queue = BatchQueue.create(tmp_path, "b", picks("1:1", "1:2"), template(corpus), 60.0)
    queue.update(queue.batch.entries[0], status="running", budget_s=30.0)
    display = make_display(Console(file=io.StringIO(), force_terminal=True, width=100))
    assert isinstance(display, RichDisplay)
    display.start(queue)
    text = Console(file=io.StringIO(), width=100)
    text.print(display.render())
    assert "neuron 1:1" in text.file.getvalue() and "ETA" in text.file.getvalue()
    display.close()


def test_a_finished_run_is_never_redone(tmp_path, tiny_lm, corpus):
    """Killed after a run finished but before the queue said so: resume marks it done."""
    queue = BatchQueue.create(tmp_path, "b", picks("1:3"), template(corpus))
    run_batch(queue.folder, lm=tiny_lm)
    run = queue.folder / "n1-3"
    events = (run / "events.jsonl").read_text()
    queue = BatchQueue.load(queue.folder)
    queue.update(queue.batch.entries[0], status="running")
    final = run_batch(queue.folder, lm=tiny_lm)
    assert final.entries[0].status == "done" and final.entries[0].attempts == 2
    assert (run / "events.jsonl").read_text() == events


def test_pack_and_unpack_a_run(tmp_path):
    run = tmp_path / "src" / "n1-2"
    run.mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    unpack_run(pack_run(run), tmp_path / "dst", "n1-2")
    assert (tmp_path / "dst" / "n1-2" / "summary.json").read_text() == "{}"
    with pytest.raises(ValueError, match="outside"):
        unpack_run(pack_run(run), tmp_path / "dst", "n9-9")


def cli(*args, cache=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if cache is not None:
        env["NEUROSLEUTH_CACHE"] = str(cache)  # the tiny model's scans stay in tmp_path
    return subprocess.Popen([sys.executable, "-m", "neurosleuth.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_batch_at(tmp_path, corpus, run: str, *flags: str, steps: int = 4) -> None:
    """``batch 1:3 1:4 1:5`` (12 iterations, the fixed schedule: prompts at every step) in
    ``tmp_path/runs/k``, SIGKILLed once ``run`` has recorded ``steps`` steps."""
    model = save_tiny_model(tmp_path / "model")
    runs = tmp_path / "runs"
    proc = cli("batch", "1:3", "1:4", "1:5", "--model", str(model), "--planner", "heuristic",
               "--policy", "fixed", "--iterations", "12", "--corpus", str(corpus),
               "--exemplar-tokens", "2000",
               "--batch-id", "k", "--runs-dir", str(runs), *flags, cache=tmp_path / "cache")
    log = runs / "k" / run / "events.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and log.read_text().count('"node": "record"') >= steps:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def resume_batch(tmp_path) -> list[int]:
    """``resume k``: must finish with all three neurons done; returns their attempts."""
    runs = tmp_path / "runs"
    resumed = cli("resume", "k", "--runs-dir", str(runs), cache=tmp_path / "cache")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "3 done" in out
    queue = json.loads((runs / "k" / "batch.json").read_text())
    assert [e["status"] for e in queue["entries"]] == ["done"] * 3
    return [e["attempts"] for e in queue["entries"]]


def test_kill_mid_batch_then_resume(tmp_path, corpus):
    """One neuron after another (``--no-shared-cache``): SIGKILL during the second of three;
    ``resume`` finishes the batch: every neuron done once, the first untouched, the second
    continued from its checkpoint. (The layer-parallel kill: ``test_interleave.py``.)"""
    runs = tmp_path / "runs"
    kill_batch_at(tmp_path, corpus, "n1-4", "--no-shared-cache")
    queue = json.loads((runs / "k" / "batch.json").read_text())
    assert [e["status"] for e in queue["entries"]] == ["done", "running", "pending"]
    first = (runs / "k" / "n1-3" / "events.jsonl").read_text()
    before = pd.read_csv(runs / "k" / "n1-4" / "prompts.csv")
    assert 0 < before["step"].max() < 12, "the kill should land mid-run"

    assert resume_batch(tmp_path) == [1, 2, 1]  # attempts
    assert (runs / "k" / "n1-3" / "events.jsonl").read_text() == first  # not redone
    after = pd.read_csv(runs / "k" / "n1-4" / "prompts.csv")
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)  # continued, not restarted
    assert sorted(set(after["step"])) == list(range(1, 13))
    per_step = after.groupby("step").size()
    assert (per_step[per_step.index <= before["step"].max()] ==
            before.groupby("step").size()).all()  # no step written twice
    for run in ("n1-3", "n1-4", "n1-5"):
        summary = json.loads((runs / "k" / run / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["iterations"] == 12
    page = (runs / "k" / "index.html").read_text()
    assert all(f'href="{r}/report.html"' in page for r in ("n1-3", "n1-4", "n1-5"))
