"""``atlas --executor ray`` on a local Ray instance (``ray.init(num_cpus=2)``, no dashboard): a
2-layer tiny model's atlas, one Ray task a layer, equals the local build's table; a worker killed
midway through its layer is replaced and the layer redone, with no row lost or written twice;
``neurosleuth atlas --executor ray`` builds the same table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from neurosleuth.atlas import workers as W
from neurosleuth.atlas.build import AtlasConfig, build_atlas
from neurosleuth.atlas.neuron import NeuronInput
from neurosleuth.atlas.ray_shards import build_atlas_ray, layer_shard
from neurosleuth.cli import app
from neurosleuth.tools.model import load_model
from neurosleuth.tools.scan_config import ScanConfig
from tests.agent_helpers import save_tiny_model, write_corpus

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'neurosleuth[ray]'")

DIE_AT = 5  # the neuron at which the first try of layer 1 kills its worker


def dying_shard(model: str, placement: dict, layer: int, cfg: AtlasConfig) -> dict:
    """``layer_shard``, except that the first try of layer 1 kills its worker process (os._exit)
    midway, at neuron ``DIE_AT``, after leaving a mark in ``$ATLAS_DIE_MARKS``."""
    mark = Path(os.environ["ATLAS_DIE_MARKS"]) / f"died-{layer}-{os.getpid()}"
    if layer == 1 and not list(mark.parent.glob("died-1-*")):
        real = W.neuron_row

        def neuron_row(inp: NeuronInput, seed: int, n_boot: int) -> dict:
            if inp.index == DIE_AT:
                mark.touch()
                os._exit(1)
            return real(inp, seed, n_boot)

        W.neuron_row = neuron_row  # this worker dies with it
    return layer_shard(model, placement, layer, cfg)


@pytest.fixture
def local_ray(monkeypatch, tmp_path):
    # workers inherit the driver's environment: one thread each, their own scan cache (they scan
    # their layers again, apart from the local build's cache), and where to leave marks
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "ray-cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    (tmp_path / "marks").mkdir()
    monkeypatch.setenv("ATLAS_DIE_MARKS", str(tmp_path / "marks"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_atlas_equals_the_local_one_and_survives_a_killed_worker(tmp_path, local_ray,
                                                                     monkeypatch):
    model = str(save_tiny_model(tmp_path / "model"))
    corpus = write_corpus(tmp_path / "corpus.txt")
    cfg = AtlasConfig(ScanConfig(corpus=str(corpus), window=16, max_tokens=3000, k=8))
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "local-cache"))  # the driver's only
    local = pd.read_parquet(build_atlas(load_model(model), [0, 1], tmp_path / "local", cfg))
    assert len(local) == 64 and local["neuron"].is_unique

    said: list[str] = []
    path = build_atlas_ray(model, [0, 1], tmp_path / "ray", cfg, say=said.append)
    pd.testing.assert_frame_equal(pd.read_parquet(path), local, check_exact=True)
    meta = json.loads((tmp_path / "ray" / "atlas.json").read_text())
    assert meta["layers"] == [0, 1] and meta["timings"]["workers"] == {"0": 1, "1": 1}
    assert not any("trying again" in m for m in said), said

    said.clear()
    path = build_atlas_ray(model, [0, 1], tmp_path / "killed", cfg, say=said.append,
                           shard=dying_shard)
    assert len(list((tmp_path / "marks").glob("died-1-*"))) == 1  # a worker did die midway
    assert [m for m in said if "trying again" in m and m.startswith("layer 1:")], said
    frame = pd.read_parquet(path)
    assert frame["neuron"].is_unique and len(frame) == 64
    pd.testing.assert_frame_equal(frame, local, check_exact=True)
    assert sorted(p.name for p in (tmp_path / "killed" / "layers").iterdir()) == [
        "0.parquet", "1.parquet"]  # no temporary file left behind

    # the command: `atlas --executor ray` on the Ray this process joined (the model's shape from
    # its configuration: the driver loads no weights)
    res = CliRunner().invoke(app, [
        "atlas", "--executor", "ray", "--model", model, "--layers", "0-1", "--tokens", "3000",
        "--window", "16", "--keep", "8", "--corpus", str(corpus), "--out", str(tmp_path / "cli"),
        "--runs-dir", str(tmp_path / "runs")], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "2 layers as Ray tasks" in res.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cli" / "atlas.parquet"), local,
                                  check_exact=True)

    # a worker that dies every time: the layer is given up after the retries, the other kept
    with pytest.raises(RuntimeError, match="layer 1"):
        build_atlas_ray(model, [0, 1], tmp_path / "failing", cfg, shard=always_dying_shard,
                        retries=1)
    assert [p.name for p in (tmp_path / "failing" / "layers").iterdir()] == ["0.parquet"]


def always_dying_shard(model: str, placement: dict, layer: int, cfg: AtlasConfig) -> dict:
    """``layer_shard`` whose every try of layer 1 kills its worker before any row."""
    if layer == 1:
        os._exit(1)
    return layer_shard(model, placement, layer, cfg)
