"""The experiment store: content keys, round trips, caching, listing, export, and the CLI paths."""

from __future__ import annotations

import importlib
import math
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neurosleuth.memory.store import (
    ExperimentStore,
    cached,
    code_version,
    experiment_key,
    experiment_spec,
)
from neurosleuth.tools.ablate import InterventionResult, ablate
from neurosleuth.tools.neurons import NeuronId


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))


def test_key_is_canonical_and_content_addressed():
    a = {"tool": "t", "model": {"name": "m", "fingerprint": "f"}, "prompts": ["x", "y"], "k": 1.0}
    b = {"k": 1.0, "prompts": ["x", "y"], "model": {"fingerprint": "f", "name": "m"}, "tool": "t"}
    assert experiment_key(a) == experiment_key(b) and len(experiment_key(a)) == 64
    assert experiment_key({**a, "k": 2.0}) != experiment_key(a)
    assert experiment_key({**a, "prompts": ["y", "x"]}) != experiment_key(a)
    as_dict = {**a, "neuron": {"index": 2, "layer": 1}}
    assert experiment_key({**a, "neuron": NeuronId(1, 2)}) == experiment_key(as_dict)


def test_put_get_list_and_export(tmp_path):
    store = ExperimentStore(tmp_path / "e.sqlite")
    assert store.get("nope") is None and len(store) == 0 and store.list().empty
    spec = {"tool": "demo", "model": {"name": "tiny"}, "component": "0:1", "x": [1, 2]}
    store.put("k1", spec, {"summary": {"kl": 0.5, "d_prob": math.nan}, "arr": np.arange(3)})
    assert store.get("k1") == {"summary": {"kl": 0.5, "d_prob": None}, "arr": [0, 1, 2]}
    assert store.spec("k1")["x"] == [1, 2]
    frame = store.list()
    assert frame.loc[0, "tool"] == "demo" and frame.loc[0, "model"] == "tiny"
    assert frame.loc[0, "component"] == "0:1" and frame.loc[0, "result.kl"] == 0.5
    csv = store.export(tmp_path / "e.csv")
    assert pd.read_csv(csv)["key"].tolist() == ["k1"]
    pq = store.export(tmp_path / "e.parquet")
    assert pd.read_parquet(pq)["result.kl"].tolist() == [0.5]
    with pytest.raises(ValueError, match="csv"):
        store.export(tmp_path / "e.xlsx")
    assert ExperimentStore(tmp_path / "e.sqlite").get("k1") is not None  # persisted


def test_cached_runs_once_and_returns_the_stored_result(tmp_path, tiny_lm):
    store = ExperimentStore(tmp_path / "e.sqlite")
    calls = []
    prompts = ["the cat sat on the mat", "king and queen"]

    def run():
        calls.append(1)
        return ablate(tiny_lm, prompts, NeuronId(1, 3), "zero", target="paris", baseline=4)

    spec = {"model": tiny_lm.name, "component": "1:3", "prompts": prompts, "mode": "zero"}
    first = cached(store, ablate, spec, run, InterventionResult.from_dict)
    second = cached(store, ablate, spec, run, InterventionResult.from_dict)
    assert len(calls) == 1 and isinstance(second, InterventionResult)
    np.testing.assert_allclose(second.effect.kl, first.effect.kl)
    assert second.headline() == first.headline()
    assert second.baseline is not None and second.baseline.components == first.baseline.components
    cached(store, ablate, {**spec, "mode": "mean"}, run)
    assert len(calls) == 2 and len(store) == 2
    full = experiment_spec(ablate, spec)
    assert full["tool"] == "neurosleuth.tools.ablate.ablate"
    assert full["code_version"].startswith("0.") and "+" in full["code_version"]
    assert cached(None, ablate, spec, lambda: "fresh") == "fresh"


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    (tmp_path / "nstool_demo.py").write_text("def f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("nstool_demo")
    before = code_version(mod.f)
    (tmp_path / "nstool_demo.py").write_text("def f():\n    return 2\n")
    assert code_version(mod.f) != before
    sys.modules.pop("nstool_demo", None)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """The tiny random model saved as a Hugging Face folder, so the CLI can load it by path."""
    import torch
    from transformers import LlamaForCausalLM

    from tests.fixtures import tiny_config, tiny_tokenizer

    torch.manual_seed(5)
    folder = tmp_path_factory.mktemp("tiny-hf")
    LlamaForCausalLM(tiny_config()).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)


def test_cli_ablate_uses_the_store_and_experiments_lists_it(tiny_folder, tmp_path):
    from neurosleuth.cli import app

    runner = CliRunner()
    args = [
        "ablate",
        "--model",
        tiny_folder,
        "--device",
        "cpu",
        "--neuron",
        "1:3",
        "--target",
        "paris",
        "--baseline",
        "5",
        "the cat sat on the mat",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert (
        "random neurons (5)" in first.output and "KL" in first.output and "stored" in first.output
    )
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "read from the experiment store" in again.output
    listed = runner.invoke(app, ["experiments", "--export", str(tmp_path / "x.csv")])
    assert listed.exit_code == 0 and "1:3" in listed.output
    assert len(pd.read_csv(tmp_path / "x.csv")) == 1
    bad = runner.invoke(app, ["ablate", "--model", tiny_folder, "--neuron", "9:0", "x"])
    assert bad.exit_code == 2 and "layer 9" in bad.output


def test_cli_patch_steer_and_sweep(tiny_folder, tmp_path):
    from neurosleuth.cli import app

    runner = CliRunner()
    common = ["--model", tiny_folder, "--device", "cpu"]
    patched = runner.invoke(
        app,
        [
            "patch",
            *common,
            "--clean",
            "the cat sat",
            "--corrupt",
            "the dog ran",
            "--layer",
            "1",
            "--resid",
            "--target",
            "paris",
        ],
    )
    assert patched.exit_code == 0, patched.output
    assert "recovered (kl)" in patched.output
    steered = runner.invoke(
        app,
        [
            "steer-neuron",
            *common,
            "--neuron",
            "1:3",
            "--alpha",
            "4",
            "--baseline",
            "3",
            "the cat sat",
        ],
    )
    assert steered.exit_code == 0, steered.output
    assert "promoted" in steered.output
    png = tmp_path / "s.png"
    swept = runner.invoke(
        app, ["sweep", *common, "--target", "paris", "--out", str(png), "the cat sat on the mat"]
    )
    assert swept.exit_code == 0, swept.output
    assert png.is_file() and "heatmap:" in swept.output
    unequal = runner.invoke(
        app, ["patch", *common, "--clean", "the cat", "--corrupt", "dog", "--layer", "0"]
    )
    assert unequal.exit_code == 2 and "equal lengths" in unequal.output
