import json

import numpy as np
import pytest

from neurosleuth.memory import seeds
from neurosleuth.memory.seeds import random_prompts
from neurosleuth.memory.stagnation import DEFAULT_STRATEGIES, StagnationMonitor, Trigger


def run(monitor: StagnationMonitor, bests: list[float | None]) -> list[str | None]:
    return [monitor.update(i, b) for i, b in enumerate(bests)]


def test_trigger_after_patience_flat_iterations_then_window_resets():
    m = StagnationMonitor(patience=3, min_delta=0.01)
    out = run(m, [1.0] * 8)
    # iteration 0 sets the reference; 1, 2, 3 are flat -> trigger at 3; 4, 5, 6 -> trigger at 6
    assert out == [None, None, None, "exemplar_restart", None, None, "random_prompts", None]
    assert [(t.iteration, t.strategy, t.best) for t in m.history] == [
        (3, "exemplar_restart", 1.0), (6, "random_prompts", 1.0)
    ]  # fmt: skip


def test_strategies_rotate_round_robin():
    m = StagnationMonitor(patience=1, strategies=("a", "b", "c"))
    assert run(m, [0.0] * 8)[1:] == ["a", "b", "c", "a", "b", "c", "a"]
    assert m.next_strategy == "b"
    assert StagnationMonitor().strategies == DEFAULT_STRATEGIES


def test_improvement_resets_count_and_marks_recovery():
    m = StagnationMonitor(patience=2, min_delta=0.01)
    out = run(m, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    assert out == [None, None, "exemplar_restart", None, None, "random_prompts", None]
    assert m.history[0].recovered_at == 3 and m.history[1].recovered_at is None


def test_relative_and_absolute_min_delta():
    # Relative: at |best| = 10 an improvement needs +0.1; +0.05 steps do not count.
    rel = StagnationMonitor(patience=3, min_delta=0.01, mode="relative")
    assert run(rel, [10.0, 10.05, 10.08, 10.09]) == [None, None, None, "exemplar_restart"]
    # Below magnitude 1 the same min_delta is absolute: +0.011 counts at 0.2.
    rel = StagnationMonitor(patience=2, min_delta=0.01)
    assert rel.required_gain(0.2) == 0.01 and rel.required_gain(-30.0) == pytest.approx(0.3)
    assert run(rel, [0.2, 0.211, 0.222, 0.233]) == [None] * 4
    ab = StagnationMonitor(patience=3, min_delta=0.01, mode="absolute")
    assert run(ab, [10.0, 10.05, 10.08, 10.09]) == [None] * 4


def test_none_best_is_ignored_and_validation():
    m = StagnationMonitor(patience=1)
    assert run(m, [None, None, 1.0, 1.0]) == [None, None, None, "exemplar_restart"]
    for kw in ({"patience": 0}, {"min_delta": -1}, {"strategies": ()}, {"mode": "x"}):
        with pytest.raises(ValueError):
            StagnationMonitor(**kw)


def test_json_round_trip_continues_identically():
    m = StagnationMonitor(patience=2, strategies=("x", "y"))
    run(m, [1.0, 1.0, 1.0, 3.0, 3.0])
    d = json.loads(json.dumps(m.to_dict()))
    n = StagnationMonitor.from_dict(d)
    assert n == m and isinstance(n.strategies, tuple) and isinstance(n.history[0], Trigger)
    tail = [3.0, 3.0, 3.0, 5.0, 5.0, 5.0]
    assert [n.update(i, b) for i, b in enumerate(tail, 5)] == [
        m.update(i, b) for i, b in enumerate(tail, 5)
    ]
    assert n.to_dict() == m.to_dict()


def test_random_prompts_deterministic_distinct_and_diverse():
    a = random_prompts(200, np.random.default_rng(3))
    assert a == random_prompts(200, np.random.default_rng(3))
    assert a != random_prompts(200, np.random.default_rng(4))
    assert len(a) == len(set(a)) == 200 and all(isinstance(p, str) and p.strip() for p in a)
    assert random_prompts(0, np.random.default_rng(0)) == []
    with pytest.raises(ValueError):
        random_prompts(-1, np.random.default_rng(0))
    # Every generator family shows up: code, digits, non-ASCII text, punctuation-heavy strings.
    assert any("(" in p and ")" in p for p in a)
    assert sum(any(c.isdigit() for c in p) for p in a) > 20
    assert any(any(ord(c) > 127 for c in p) for p in a)
    assert any(sum(not c.isalnum() and not c.isspace() for c in p) > len(p) / 2 for p in a)
    words = {w for p in a for w in p.split()}
    domains_hit = {d for d, ws in seeds.DOMAINS.items() if words & set(ws)}
    assert len(domains_hit) == len(seeds.DOMAINS)
