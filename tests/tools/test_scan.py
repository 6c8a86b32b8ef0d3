"""The scan's checkpoint: a scan killed mid-way resumes from its last saved batch and gives what
an uninterrupted scan gives, random-window sample included."""

from __future__ import annotations

import numpy as np
import pytest

from neurosleuth.tools import scan as S
from neurosleuth.tools.corpus import build_windows, resolve_corpus
from tests.agent_helpers import write_corpus
from tests.fixtures import tiny_random_lm

FIELDS = ("top_val", "top_win", "top_acts", "bot_val", "bot_win", "rand_win", "rand_acts", "mean",
          "std", "frac_pos", "token_q", "winmax_q")


def test_a_killed_scan_resumes_where_it_stopped(tmp_path):
    lm = tiny_random_lm()
    windows = build_windows(lm, resolve_corpus(write_corpus(tmp_path / "c.txt")), 8, 4000)
    full = S.scan_layers(lm, [0, 1], windows, 6, tokens_per_batch=32)

    class Killed(Exception):
        pass

    seen: list[int] = []

    def kill_at_10(done, total):
        seen.append(done)
        if len(seen) == 10:
            raise Killed

    ck = tmp_path / "ck.npz"
    with pytest.raises(Killed):
        S.scan_layers(lm, [0, 1], windows, 6, kill_at_10, 32, checkpoint=ck, every_s=0)
    assert ck.is_file()
    again: list[int] = []
    resumed = S.scan_layers(lm, [0, 1], windows, 6, lambda d, t: again.append(d), 32,
                            checkpoint=ck, every_s=0)
    assert again[0] > seen[-1]  # the batches before the kill were not run again
    assert not ck.exists()
    for layer in (0, 1):
        assert resumed[layer].rand_acts.shape == (min(len(windows), S.RANDOM_KEEP), 32, 8)
        for f in FIELDS:
            a, b = getattr(full[layer], f), getattr(resumed[layer], f)
            assert np.allclose(a.astype(float), b.astype(float), atol=1e-5), (layer, f)
    # a checkpoint of another scan (other layers) is not used
    with pytest.raises(Killed):
        seen.clear()
        S.scan_layers(lm, [0, 1], windows, 6, kill_at_10, 32, checkpoint=ck, every_s=0)
    again.clear()
    S.scan_layers(lm, [1], windows, 6, lambda d, t: again.append(d), 32, checkpoint=ck)
    assert again[0] == seen[0]  # from the first batch
