import json

import numpy as np
import pytest

from neurosleuth.memory.topk import ActivationHeaps, Record, SearchStats, classify, splitmix64


def rec(act: float, i: int, source: str = "test") -> Record:
    return Record(activation=act, prompt=f"p{i}", max_token=f"t{i}", step=i, source=source)


def json_trip(d: dict) -> dict:
    return json.loads(json.dumps(d))


def test_record_validates_and_coerces():
    r = Record(np.float32(1.5), "a", "b", np.int64(3), "seed")
    assert type(r.activation) is float and type(r.step) is int
    json.dumps(r.to_dict())  # numpy scalars would fail here
    with pytest.raises(ValueError, match="finite"):
        Record(float("nan"), "a", "b", 0, "s")
    with pytest.raises(ValueError):
        ActivationHeaps(k=0)


@pytest.mark.parametrize("seed", range(25))
def test_heaps_match_sorted_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 12))
    n = int(rng.integers(0, 150))
    # Integer activations force many ties; floats exercise the general case.
    acts = rng.integers(-5, 6, n) if seed % 2 else rng.normal(0, 3, n)
    h = ActivationHeaps(k=k)
    records = [rec(float(a), i) for i, a in enumerate(acts)]
    for i, r in enumerate(records):
        prefix = records[: i + 1]
        brute_top = sorted(prefix, key=lambda x: (-x.activation, x.step))[:k]
        assert h.push(r) == (r in brute_top)
        assert len(h._top) <= k and len(h._bottom) <= k
    assert h.top() == sorted(records, key=lambda x: (-x.activation, x.step))[:k]
    assert h.bottom() == sorted(records, key=lambda x: (x.activation, x.step))[:k]
    assert h.best == (max(acts) if n else None)
    assert h.worst == (min(acts) if n else None)
    assert h.n_seen == n
    assert h.top(2) == h.top()[:2]


def test_ties_keep_first_pushed():
    h = ActivationHeaps(k=2)
    assert h.push(rec(1.0, 0)) and h.push(rec(1.0, 1))
    assert not h.push(rec(1.0, 2))  # equal to the worst of the top: the earlier ones stay
    assert [r.prompt for r in h.top()] == ["p0", "p1"]
    assert [r.prompt for r in h.bottom()] == ["p0", "p1"]


def test_replaying_a_held_prompt_changes_nothing():
    h = ActivationHeaps(k=3)
    for i in range(5):
        h.push(rec(float(i), i))
    before = h.to_dict()
    assert not h.push(rec(4.0, 4))  # p4 is held in the top heap
    assert h.to_dict() == before


def test_buckets_exact_percentiles_while_reservoir_not_full():
    h = ActivationHeaps(k=3, low_q=0.25, high_q=0.9, min_for_buckets=10)
    for i in range(9):
        h.push(rec(float(i), i))
    assert h.cutoffs() == (None, None) and h.bucket(100.0) == "mid"
    vals = np.arange(40, dtype=float)
    h = ActivationHeaps(k=3)
    for i, v in enumerate(vals):
        h.push(rec(v, i))
    lo, hi = np.quantile(vals, [0.25, 0.9])
    assert h.cutoffs() == (lo, hi)
    assert h.bucket(hi) == "high" and h.bucket(lo) == "low" and h.bucket((lo + hi) / 2) == "mid"
    assert sum(h.bucket_counts.values()) == 40
    # Increasing values: each new one is above everything before it -> "high" once buckets exist.
    assert h.bucket_counts["high"] == 40 - 10


def test_degenerate_cuts_are_mid():
    assert classify(3.0, 1.0, 1.0) == "mid"
    assert classify(3.0, None, None) == "mid"
    h = ActivationHeaps(k=2)
    for i in range(20):
        h.push(rec(1.0, i))
    assert h.bucket(1.0) == "mid" and h.bucket(5.0) == "mid"


def test_reservoir_bounded_deterministic_and_representative():
    def fill(seed):
        h = ActivationHeaps(k=2, reservoir_size=200, seed=seed)
        rng = np.random.default_rng(0)
        for i, v in enumerate(rng.uniform(0, 1, 5000)):
            h.push(rec(float(v), i))
        return h

    a, b, c = fill(0), fill(0), fill(1)
    assert len(a._reservoir) == 200
    assert a._reservoir == b._reservoir and a._reservoir != c._reservoir
    lo, hi = a.cutoffs()
    assert abs(lo - 0.25) < 0.08 and abs(hi - 0.9) < 0.05
    assert splitmix64(1) != splitmix64(2) and 0 <= splitmix64(12345) < 2**64


def test_heaps_json_round_trip_and_identical_continuation():
    rng = np.random.default_rng(7)
    h = ActivationHeaps(k=5, reservoir_size=50)
    for i, v in enumerate(rng.normal(size=120)):
        h.push(rec(float(v), i))
    g = ActivationHeaps.from_dict(json_trip(h.to_dict()))
    assert g.to_dict() == h.to_dict()
    assert g.top() == h.top() and g.bottom() == h.bottom() and g.cutoffs() == h.cutoffs()
    for i, v in enumerate(rng.normal(size=100), start=120):
        assert g.push(rec(float(v), i)) == h.push(rec(float(v), i))
    assert g.to_dict() == h.to_dict()


class _R:
    def __init__(self, reason):
        self.reason = reason


class _Result:
    def __init__(self, accepted, reasons):
        self.accepted = accepted
        self.rejected = [_R(r) for r in reasons]


def test_search_stats_counts_history_and_json_round_trip():
    s = SearchStats()
    s.record_check(_Result(["a", "b"], ["duplicate", "semantic", "semantic", "junk"]))
    assert (s.generated, s.accepted, s.rejected_duplicate, s.rejected_semantic) == (6, 2, 1, 2)
    assert s.rejected_junk == 1 and s.rejected == 4 and s.acceptance_rate == pytest.approx(1 / 3)
    s.end_iteration(0)
    s.record_measured(np.array([1.0, 3.0], dtype=np.float32))
    s.end_iteration(1)
    s.record_measured([2.0])
    s.end_iteration(2)
    s.record_measured([5.0])
    s.end_iteration(3)
    assert s.history == [(0, None), (1, 3.0), (2, 3.0), (3, 5.0)]
    assert s.improvements() == [(1, 3.0), (3, 5.0)]
    assert s.best_so_far == 5.0 and s.measured == 4
    t = SearchStats.from_dict(json_trip(s.to_dict()))
    assert t == s and isinstance(t.history[0], tuple)
    with pytest.raises(ValueError, match="unknown rejection"):
        s.record_check(_Result([], ["weird"]))
    assert SearchStats().acceptance_rate is None
