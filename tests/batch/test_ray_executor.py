"""``--executor ray``: a 2-neuron batch of the tiny model as Ray tasks on a local Ray instance
(``ray.init(num_cpus=2)``, no dashboard); results land in the batch folder like a local run."""

import json

import pytest

from neurosleuth.agents.config import RunConfig
from neurosleuth.batch.queue import BatchQueue
from neurosleuth.batch.select import NeuronPick
from neurosleuth.tools.neurons import NeuronId
from tests.agent_helpers import run_batch, save_tiny_model, write_corpus

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'neurosleuth[ray]'")


@pytest.fixture
def local_ray(monkeypatch, tmp_path):
    # workers inherit the driver's environment: one thread each, no busy-waiting OpenMP, and
    # the tiny model's corpus scans in tmp_path
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_two_neurons_as_ray_tasks(tmp_path, local_ray):
    model = save_tiny_model(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt")
    cfg = RunConfig(model=str(model), planner="heuristic", iterations=3, prompts_per_step=4,
                    corpus=str(corpus), exemplar_tokens=2000, window=16, hypothesis_every=2, k=5)
    queue = BatchQueue.create(tmp_path / "runs", "r", [NeuronPick(NeuronId(1, 3)),
                                                       NeuronPick(NeuronId(0, 2))], cfg,
                              executor="ray")
    final = run_batch(queue.folder)
    assert final.status == "finished" and final.executor == "ray"
    assert [e.status for e in final.entries] == ["done", "done"], [e.error for e in final.entries]
    for e in final.entries:
        run = queue.folder / e.run_id
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["neuron"] == e.neuron
        assert summary["iterations"] == 3 and (run / "report.html").is_file()
    page = (queue.folder / "index.html").read_text()
    assert 'href="n1-3/report.html"' in page and 'href="n0-2/report.html"' in page
