"""The agent's side of the score: a run's score settings are those of its exemplar scan; an LLM
planner's chat model writes the score, any other planner leaves it to keywords; the planner writes
the other-neuron control."""

from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.planner import HeuristicBackend, LLMPlanner
from neurosleuth.agents.scoring import planner_control, planner_writer, score_config
from neurosleuth.score.run import ScoreConfig
from neurosleuth.score.writer import HeuristicWriter, LLMWriter
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.scan_config import ScanConfig


def test_score_config_reads_the_runs_scan():
    # a plain score and a run without a time budget share one cached scan
    assert ScoreConfig().scan.max_tokens == RunConfig().exemplar_tokens
    cfg = RunConfig(corpus="wiki", window=32, exemplar_tokens=4000, k=5, prompts_per_step=4, seed=3)
    c = score_config(cfg, baseline=8)
    assert c.scan == cfg.scan() == ScanConfig("wiki", 32, 4000, 8) and c.seed == 3
    # a saved config.json names the depth exemplar_tokens: it loads, and gives the same scan
    assert RunConfig.model_validate_json(cfg.model_dump_json()).scan() == cfg.scan()
    assert c.baseline == 8 and c.n_boot == ScoreConfig().n_boot


def test_only_an_llm_planner_writes_the_score():
    n = NeuronId(1, 2)
    llm = planner_writer(LLMPlanner(chat=None, name="chat", system_prompt="s"), n, "m")
    assert isinstance(llm, LLMWriter) and llm.name == "chat" and llm.neuron == "1:2"
    keywords = planner_writer(HeuristicBackend(0), n, "m")
    assert type(keywords) is HeuristicWriter and keywords.name == "heuristic"


def test_the_planner_writes_the_control():
    text, info = planner_control(HeuristicBackend(0))("1:2", "m", [(1.0, " and", "cats and")])
    assert text == "Fires on the token 'and' in context." and info.calls == 0


def test_a_neuron_picked_from_an_atlas_starts_from_its_atlas_entry(tmp_path):
    """``batch --from-atlas`` sets ``cfg.atlas``: the deep dive's first candidate is the
    neuron's atlas explanation (its pattern), read once and saved as readoff.json."""
    import json
    from types import SimpleNamespace

    import pandas as pd

    from neurosleuth.agents.rundir import RunFiles
    from neurosleuth.agents.scoring import read_off
    from neurosleuth.tools.pattern import Pattern

    pattern = Pattern("token", {"cat": 1.0, "dog": 0.7}, None, {}, 1.0)
    atlas = tmp_path / "atlas"
    atlas.mkdir()
    pd.DataFrame({"neuron": ["1:2", "1:3"], "explanation": ["Fires on 'cat'.", "other"],
                  "pattern": [json.dumps(pattern.to_dict()), ""]}).to_parquet(
        atlas / "atlas.parquet")
    files = RunFiles(tmp_path / "run")
    ctx = SimpleNamespace(cfg=RunConfig(atlas=str(atlas)), neuron=NeuronId(1, 2), files=files)
    entry = read_off(ctx)
    assert entry["source"] == "atlas" and entry["text"] == "Fires on 'cat'."
    assert Pattern.from_dict(entry["pattern"]) == pattern
    assert files.read_json("readoff.json") == entry  # later rounds read it back


def test_the_vocabulary_sweep_fits_the_runs_budget():
    """All words without a budget; a quarter of the forward passes left; a quarter of the time
    left at the assumed CPU scan rate, halved, a 4-token sequence a word; the researcher's cap."""
    from types import SimpleNamespace

    from neurosleuth.agents.config import SCAN_RATE
    from neurosleuth.agents.scoring import sweep_limit

    def limit(state=None, **kw):
        cfg = RunConfig(model="an-uncached-model", device="cpu", **kw)
        return sweep_limit(SimpleNamespace(cfg=cfg), state or {})

    assert limit() is None
    assert limit(max_forward_passes=2000) == 500
    assert limit({"forward_passes": 1500}, max_forward_passes=2000) == 125
    assert limit({"forward_passes": 2500}, max_forward_passes=2000) == 0
    assert limit({"elapsed_s": 40}, time_budget_s=120) == int(0.25 * 80 * SCAN_RATE["cpu"] / 8)
    assert limit(sweep_words=500, max_forward_passes=4000) == 500
    assert limit(sweep_words=0) == 0
