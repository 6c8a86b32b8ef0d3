"""The batch's activation cache: the same numbers as a direct measurement, one row per (layer,
token ids) for every cached neuron, kept on disk across processes, refused for another model or
neuron set, and bypassed under hooks."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from neurosleuth.tools.actcache import ActivationCache, ids_key
from neurosleuth.tools.measure import direct_measure_ids, measure, measure_ids, use_source
from neurosleuth.tools.neurons import NeuronId

TEXTS = ["the cat sat on the mat", "a dog ran", "numbers 1 2 3 and more", "the cat sat"]


def ids_of(lm, texts):
    return [lm.encode(t) for t in texts]


def test_cache_matches_direct_and_measures_each_text_once(tmp_path, tiny_lm):
    neurons = [NeuronId(1, 3), NeuronId(1, 7), NeuronId(0, 2)]
    cache = ActivationCache(tmp_path / "a.sqlite", tiny_lm, neurons)
    ids = ids_of(tiny_lm, TEXTS)
    want = direct_measure_ids(tiny_lm, ids, [NeuronId(1, 7)])
    got = cache.measure_ids(tiny_lm, ids, [NeuronId(1, 7)])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert cache.misses == 4 and cache.hits == 0 and cache.passes == 1
    # the pass reached layer 0 on the way: its neuron is cached too, as are the other columns
    again = cache.measure_ids(tiny_lm, ids[:2], [NeuronId(0, 2), NeuronId(1, 3)])
    assert cache.misses == 4 and cache.hits == 2 and cache.passes == 1
    direct = direct_measure_ids(tiny_lm, ids[:2], [NeuronId(0, 2), NeuronId(1, 3)])
    for a, b in zip(again, direct, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert len(cache) == 2 * 4  # (layer 0, layer 1) x 4 texts
    # a neuron outside the set is measured directly, never stored
    other = cache.measure_ids(tiny_lm, ids[:1], [NeuronId(1, 8)])
    np.testing.assert_allclose(other[0], direct_measure_ids(tiny_lm, ids[:1], [NeuronId(1, 8)])[0])
    assert len(cache) == 8 and cache.stats()["recomputed"] == 0


def test_a_reopened_cache_reads_instead_of_measuring(tmp_path, tiny_lm):
    neurons = [NeuronId(1, 3)]
    first = ActivationCache(tmp_path / "a.sqlite", tiny_lm, neurons)
    first.measure_ids(tiny_lm, ids_of(tiny_lm, TEXTS), neurons)
    first.close()
    second = ActivationCache(tmp_path / "a.sqlite", tiny_lm, neurons)
    second.measure_ids(tiny_lm, ids_of(tiny_lm, TEXTS), neurons)
    assert second.misses == 0 and second.hits == 4


def test_keys_are_the_same_in_another_process():
    ids = [1, 2, 3, 40000]
    code = ("from neurosleuth.tools.actcache import ids_key; "
            f"print(ids_key({ids!r}).hex())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ids_key(ids).hex()
    assert ids_key([1, 2]) != ids_key([2, 1])


def test_refuses_another_neuron_set_or_model(tmp_path, tiny_lm):
    ActivationCache(tmp_path / "a.sqlite", tiny_lm, [NeuronId(1, 3)]).close()
    with pytest.raises(ValueError, match="another neurons"):
        ActivationCache(tmp_path / "a.sqlite", tiny_lm, [NeuronId(1, 4)])
    import sqlite3

    db = sqlite3.connect(tmp_path / "a.sqlite")
    with db:
        db.execute("UPDATE meta SET value = 'x' WHERE key = 'fingerprint'")
    db.close()
    with pytest.raises(ValueError, match="another fingerprint"):
        ActivationCache(tmp_path / "a.sqlite", tiny_lm, [NeuronId(1, 3)])


def test_use_source_routes_measure_and_hooks_bypass_the_cache(tmp_path, tiny_lm):
    n = NeuronId(1, 3)
    cache = ActivationCache(tmp_path / "a.sqlite", tiny_lm, [n])
    with use_source(tiny_lm, cache):
        res = measure(tiny_lm, TEXTS[:2], [n])
        assert cache.misses == 2
        measure(tiny_lm, TEXTS[:2], [n])
        assert cache.hits == 2 and cache.misses == 2

        def double(act, hook):
            return act * 2.0

        with tiny_lm.model.hooks(fwd_hooks=[(n.hook_name, double)]):
            hooked = measure_ids(tiny_lm, ids_of(tiny_lm, TEXTS[:1]), [n])
        assert cache.hits == 2 and cache.misses == 2  # not served from the cache
        clean = res.acts[0][:, 0]
        np.testing.assert_allclose(hooked[0][tiny_lm.n_prefix:, 0], 2 * clean, rtol=1e-5,
                                   atol=1e-6)
    measure(tiny_lm, TEXTS[:2], [n])  # outside the block: direct again
    assert cache.hits == 2 and cache.misses == 2
    assert torch.is_grad_enabled()
