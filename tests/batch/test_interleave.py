"""Layer-parallel batches: the baton scheduler gathers the threads' measurements into shared
passes (same numbers as measuring alone), the search board, the groups, a layer-parallel batch on
the tiny model, and a SIGKILL mid-group followed by resume (the cache survives: nothing is
measured twice)."""

import json
import sqlite3
import time

import numpy as np
import pandas as pd
import pytest

from neurosleuth.batch.interleave import Board, Interleaver, group_cache_path, groups
from neurosleuth.batch.queue import BatchQueue
from neurosleuth.tools.actcache import ActivationCache
from neurosleuth.tools.measure import direct_measure_ids, measure_ids, use_source
from neurosleuth.tools.neurons import NeuronId
from tests.agent_helpers import run_batch, words, write_corpus
from tests.batch.test_batch import kill_batch_at, picks, resume_batch, template


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def test_threads_share_passes_and_get_their_own_columns(tmp_path, tiny_lm):
    neurons = [NeuronId(1, i) for i in range(4)]
    cache = ActivationCache(tmp_path / "c.sqlite", tiny_lm, neurons)
    gatherer = Interleaver(cache)
    texts = [[words(1 + j * 3 + s) for s in range(3)] for j in range(4)]
    assert len({tuple(tiny_lm.encode(t)) for row in texts for t in row}) == 12
    order = []

    def job(j):
        def go():
            got = []
            for s in range(3):
                ids = [tiny_lm.encode(texts[j][s])]
                order.append((j, s))
                got.append(measure_ids(tiny_lm, ids, [neurons[j]])[0])
            return got
        return go

    def broken():
        measure_ids(tiny_lm, [tiny_lm.encode("fine")], [neurons[0]])
        raise RuntimeError("boom")

    with use_source(tiny_lm, gatherer):
        results = gatherer.run([job(j) for j in range(4)] + [broken])
    assert isinstance(results[4], RuntimeError)  # one job's failure does not stop the others
    for j in range(4):
        for s in range(3):
            want = direct_measure_ids(tiny_lm, [tiny_lm.encode(texts[j][s])], [neurons[j]])[0]
            np.testing.assert_allclose(results[j][s], want, rtol=1e-5, atol=1e-6)
    assert gatherer.flushes == 3  # one pass per round of requests, not one per request
    assert gatherer.gathered == 13
    assert order[:4] == [(0, 0), (1, 0), (2, 0), (3, 0)]  # round-robin turns, deterministic
    # every job's texts were measured for all four neurons: another job reads them from the cache
    assert cache.get(1, tiny_lm.encode(texts[0][0])).shape[1] == 4


def test_each_worker_is_charged_its_own_time_not_the_others(tmp_path, tiny_lm):
    """``others_s``: a worker's time on the others' turns, so its own time is what it spent."""
    neurons = [NeuronId(1, i) for i in range(3)]
    gatherer = Interleaver(ActivationCache(tmp_path / "c.sqlite", tiny_lm, neurons))
    work = [0.05, 0.1, 0.15]  # seconds of own work per round, baton held

    def job(j):
        def go():
            start, before = time.perf_counter(), gatherer.others_s()
            for s in range(3):
                time.sleep(work[j])
                measure_ids(tiny_lm, [tiny_lm.encode(words(1 + 3 * j + s))], [neurons[j]])
            return time.perf_counter() - start, gatherer.others_s() - before
        return go

    assert gatherer.others_s() == 0.0  # outside a worker
    start = time.perf_counter()
    with use_source(tiny_lm, gatherer):
        results = gatherer.run([job(j) for j in range(3)])
    total = time.perf_counter() - start
    own = [wall - others for wall, others in results]
    for j in range(3):
        assert 3 * work[j] - 0.01 <= own[j] <= 3 * work[j] + 0.2, (j, own)
        assert results[j][1] >= 3 * (sum(work) - work[j]) - 0.3  # it waited for the others
    assert sum(own) == pytest.approx(total, abs=0.3)  # the group's time, each second once


def test_board_gives_each_neuron_the_others_prompts_once():
    board = Board()
    board.post("1:0", ["a", "b"])
    board.post("1:1", ["b", "c"])  # "b" was 1:0's first
    assert board.take("1:1") == [("a", "1:0"), ("b", "1:0")]
    assert board.take("1:1") == []
    assert board.take("1:0") == [("c", "1:1")]


def test_groups_are_per_layer_and_fixed_by_the_whole_batch():
    neurons = ["1:0", "2:5", "1:1", "1:2", "2:6"]
    assert groups(neurons, 2) == [[0, 2], [3], [1, 4]]
    a = group_cache_path("x", [NeuronId.parse(n) for n in ("1:0", "1:1")])
    b = group_cache_path("x", [NeuronId.parse(n) for n in ("1:1", "1:0")])
    assert a == b and a.name.startswith("L1-")


def test_layer_parallel_batch_shares_rows_and_writes_every_report(tmp_path, tiny_lm, corpus):
    queue = BatchQueue.create(tmp_path, "lp", picks("1:3", "1:4", "1:5", "0:2"),
                              template(corpus, iterations=4))
    final = run_batch(queue.folder, lm=tiny_lm)
    assert [e.status for e in final.entries] == ["done"] * 4
    for run in ("n1-3", "n1-4", "n1-5", "n0-2"):
        assert (queue.folder / run / "report.html").is_file()
        summary = json.loads((queue.folder / run / "summary.json").read_text())
        assert summary["status"] == "finished"  # its budget spent, or the policy decided
        assert summary["iterations"] == 4 or summary["stop_reason"].startswith("finished:")
        if run == "n0-2":  # alone in its group: all its time is its own
            assert summary["own_s"] == pytest.approx(summary["wall_s"])
        else:  # the other two neurons' turns are not its own time
            assert summary["own_s"] < 0.9 * summary["wall_s"]
            assert "own time (s)" in (queue.folder / run / "report.md").read_text()
    # a neuron takes the prompts its peers searched since its last search (the first to search
    # sees none yet): one of the group's has shared rows, each from a peer
    group = {"n1-3": NeuronId(1, 3), "n1-4": NeuronId(1, 4), "n1-5": NeuronId(1, 5)}
    frames = {r: pd.read_csv(queue.folder / r / "prompts.csv") for r in group}
    name = next(r for r, f in frames.items() if (f["status"] == "shared").any())
    rows = frames[name]
    shared = rows[rows["status"] == "shared"]
    peers = {f"neuron {n}" for r, n in group.items() if r != name}
    assert len(shared) > 0 and set(shared["source"]) <= peers
    assert not (rows[rows["status"] == "accepted"]["source"].str.startswith("neuron")).any()
    # a shared row's activation is this neuron's own, as measuring the text alone gives
    r = shared.iloc[0]
    from neurosleuth.tools.measure import measure

    alone = float(measure(tiny_lm, [r["prompt"]], [group[name]]).max_act[0, 0])
    assert r["activation"] == pytest.approx(alone, rel=1e-4, abs=1e-5)
    report = (queue.folder / name / "report.md").read_text()
    assert "came from the searches of other neurons" in report
    assert any(p in report for p in peers)
    # layer 0's neuron is its own group: it sees nothing of layer 1's search
    assert "shared" not in set(pd.read_csv(queue.folder / "n0-2" / "prompts.csv")["status"])
    files = sorted(p.name for p in (queue.folder / "activations").glob("*.sqlite"))
    assert len(files) == 2 and files[0].startswith("L0-") and files[1].startswith("L1-")
    for f in (queue.folder / "activations").glob("*.sqlite"):
        db = sqlite3.connect(f)
        assert db.execute("SELECT MAX(computed) FROM acts").fetchone()[0] == 1
        db.close()


def test_kill_mid_group_then_resume_reads_the_cache(tmp_path, corpus):
    """SIGKILL while three neurons of one layer run interleaved; ``resume`` continues each from
    its checkpoint, keeps every cache row measured before the kill and measures none twice."""
    runs = tmp_path / "runs"
    kill_batch_at(tmp_path, corpus, "n1-5")
    queue = json.loads((runs / "k" / "batch.json").read_text())
    assert [e["status"] for e in queue["entries"]] == ["running"] * 3
    [path] = (runs / "k" / "activations").glob("*.sqlite")
    db = sqlite3.connect(path)
    before = {(layer, bytes(k)) for layer, k in db.execute("SELECT layer, key FROM acts")}
    db.close()
    assert before
    steps = {r: pd.read_csv(runs / "k" / r / "prompts.csv")["step"].max()
             for r in ("n1-3", "n1-4", "n1-5")}
    assert all(0 < s < 12 for s in steps.values()), steps

    assert resume_batch(tmp_path) == [2, 2, 2]  # attempts: all three were running
    assert [p.name for p in (runs / "k" / "activations").glob("*.sqlite")] == [path.name]
    db = sqlite3.connect(path)
    after = {(layer, bytes(k)) for layer, k in db.execute("SELECT layer, key FROM acts")}
    assert before <= after and len(after) > len(before)
    assert db.execute("SELECT MAX(computed) FROM acts").fetchone()[0] == 1  # none twice
    db.close()
    for run in ("n1-3", "n1-4", "n1-5"):
        summary = json.loads((runs / "k" / run / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["iterations"] == 12
        rows = pd.read_csv(runs / "k" / run / "prompts.csv")
        assert sorted(set(rows["step"])) == list(range(1, 13))
