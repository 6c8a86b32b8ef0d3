"""The agent's side of the score: a run's score settings are those of its exemplar scan."""

from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.scoring import score_config
from neurosleuth.score.run import ScoreConfig


def test_score_config_reads_the_runs_scan():
    # a plain score and a run without a time budget share one cached scan
    assert ScoreConfig().max_tokens == RunConfig().exemplar_tokens
    cfg = RunConfig(corpus="wiki", window=32, exemplar_tokens=4000, k=5, prompts_per_step=4, seed=3)
    c = score_config(cfg, baseline=8)
    assert (c.corpus, c.window, c.max_tokens, c.k, c.seed) == ("wiki", 32, 4000, 8, 3)
    assert c.baseline == 8 and c.n_boot == ScoreConfig().n_boot
