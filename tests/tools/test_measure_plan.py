"""plan_batches(): padding-aware batch cuts are valid, optimal, and leave activations unchanged."""

import itertools
import random

import numpy as np
import pytest

from neurosleuth.tools import measure as measure_mod
from neurosleuth.tools.measure import measure, plan_batches
from neurosleuth.tools.neurons import NeuronId


def plan_cost(lengths, batches, overhead):
    return sum(overhead + (hi - lo) * lengths[lo] for lo, hi in batches)


def check_valid(lengths, batches, budget):
    assert batches[0][0] == 0 and batches[-1][1] == len(lengths)
    for (_, hi), (lo, _) in itertools.pairwise(batches):
        assert hi == lo  # contiguous, in order, no row twice or missing
    for lo, hi in batches:
        assert hi > lo
        assert hi - lo == 1 or (hi - lo) * lengths[lo] <= budget


def brute_force(lengths, overhead):
    """Best cost over every split into contiguous batches, each padded to its first row."""
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=len(lengths) - 1):
        edges = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [len(lengths)]
        best = min(best, plan_cost(lengths, list(itertools.pairwise(edges)), overhead))
    return best


def test_plan_is_valid_on_random_cases():
    rng = random.Random(0)
    for _ in range(300):
        lengths = sorted((rng.randint(1, 12) for _ in range(rng.randint(1, 30))), reverse=True)
        budget, overhead = rng.choice([1, 8, 20, 64, 10_000]), rng.choice([0, 3, 16, 1000])
        check_valid(lengths, plan_batches(lengths, budget, overhead), budget)


def test_plan_is_optimal_when_the_budget_does_not_bind():
    rng = random.Random(1)
    for _ in range(100):
        lengths = sorted((rng.randint(1, 12) for _ in range(rng.randint(1, 11))), reverse=True)
        overhead = rng.choice([0, 1, 3, 7, 16, 1000])
        batches = plan_batches(lengths, 10_000, overhead)
        assert plan_cost(lengths, batches, overhead) == brute_force(lengths, overhead)


def test_overhead_trades_passes_for_padding():
    lengths = [20] * 6 + [17] * 10 + [12] * 8
    assert plan_batches(lengths, 4096, 0) == [(0, 6), (6, 16), (16, 24)]  # no padding at all
    assert plan_batches(lengths, 4096, 10_000) == [(0, 24)]  # one pass, padded to 20
    tight = plan_batches(lengths, 100, 10_000)  # at most 5 rows of 20 a pass: 5 passes needed
    check_valid(lengths, tight, 100)
    assert len(tight) == 5
    assert plan_batches([], 4096, 32) == []


def test_unsorted_lengths_rejected():
    with pytest.raises(ValueError, match="sorted"):
        plan_batches([3, 5, 2], 100, 0)


@pytest.mark.parametrize("overhead", [0, 4, 10_000])
def test_activations_do_not_depend_on_the_plan(tiny_lm, monkeypatch, overhead):
    prompts = ["the cat sat on the mat and the dog ran to the park .", "hello", "a big red dog",
               "one two three four five", "king", "the dog ran", "a cat"]
    neurons = [NeuronId(0, 5), NeuronId(1, 3)]
    alone = [measure(tiny_lm, [p], neurons).acts[0] for p in prompts]
    monkeypatch.setitem(measure_mod.BATCH_OVERHEAD_TOKENS, tiny_lm.device.type, overhead)
    batched = measure(tiny_lm, prompts, neurons)
    for got, want in zip(batched.acts, alone, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
