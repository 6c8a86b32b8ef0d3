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


def test_a_scan_keeps_what_the_whole_activation_matrix_says(tmp_path):
    """Merged batch by batch (slots filled, then only the windows that enter written), the kept
    windows, their activations and peaks, and the statistics equal those read off all the
    windows' activations at once."""
    lm = tiny_random_lm()
    windows = build_windows(lm, resolve_corpus(write_corpus(tmp_path / "c.txt")), 8, 4000)
    keep = 6
    got = S.scan_layers(lm, [0, 1], windows, keep, tokens_per_batch=9 * 4)  # 4 windows a batch
    ids = S._batch(lm, windows, 0, len(windows))
    every = S.forward_layers(lm, ids, [0, 1])
    for layer in (0, 1):
        acts = every[layer][:, lm.n_prefix:].float().numpy()  # (W, T, d)
        scan = got[layer]
        for side, peak, pick in (("top", acts.max(1), np.argmax), ("bot", acts.min(1), np.argmin)):
            want = np.sort(peak, axis=0)[::-1][:keep] if side == "top" else \
                np.sort(peak, axis=0)[:keep]
            val, win = getattr(scan, f"{side}_val"), getattr(scan, f"{side}_win")
            np.testing.assert_allclose(val, want, rtol=1e-6)
            d = np.arange(acts.shape[2])
            for j in range(keep):
                rows = acts[win[j], :, d]  # (d, T): each neuron's kept window
                np.testing.assert_allclose(getattr(scan, f"{side}_acts")[j], rows, rtol=2e-3,
                                           atol=1e-3)
                assert (getattr(scan, f"{side}_pos")[j] == pick(rows, axis=1)).all()
                np.testing.assert_allclose(peak[win[j], d], val[j], rtol=1e-6)
        flat = acts.reshape(-1, acts.shape[2])
        np.testing.assert_allclose(scan.mean, flat.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(scan.std, flat.std(0), rtol=1e-3, atol=1e-6)
        np.testing.assert_array_equal(scan.frac_pos, (flat > 0).mean(0))
