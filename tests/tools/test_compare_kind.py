"""The kind-of-text experiment (``tools/text_kind.py``): parallel texts from the shipped wiki
summaries (the same articles in Spanish and English) and renderings of the same content in a
format, and the verdict read off which side of each pair fires more."""

from __future__ import annotations

import numpy as np
import pytest

from neurosleuth.tools import text_kind as compare
from neurosleuth.tools.contexts import context_of
from neurosleuth.tools.neurons import NeuronId


def test_parallel_texts_are_the_same_articles_in_the_named_kind():
    other, pairs = compare.parallel_texts("Spanish text", 6)
    assert other == "the same articles in English" and len(pairs) == 6
    assert all(context_of(list(es)) == "Spanish text" and context_of(list(en)) != "Spanish text"
               for es, en in pairs)
    other, pairs = compare.parallel_texts("JSON document", 4)
    assert other == "the same content as plain prose" and len(pairs) == 4
    assert all(context_of(list(a)) == "JSON document" for a, _ in pairs)
    assert compare.parallel_texts("Klingon text", 4) == ("", [])


@pytest.mark.parametrize("fires_on_kind,verdict", [(True, "kind"), (False, "not kind")])
def test_the_verdict_follows_which_side_fires(tiny_lm, monkeypatch, fires_on_kind, verdict):
    def fake(lm, ids, neurons):  # the first half are the kind's texts
        half = len(ids) // 2
        hot = [fires_on_kind] * half + [not fires_on_kind] * half
        return [np.full((len(x), 1), 3.0 if h else 0.2) for x, h in zip(ids, hot, strict=True)]

    monkeypatch.setattr(compare, "measure_ids", fake)
    result = compare.compare_kind(tiny_lm, NeuronId(1, 3), "Spanish text", n=8)
    assert result.verdict == verdict and result.pairs == 8 and result.forward_passes == 16
    assert result.wins == (8 if fires_on_kind else 0) and result.p < 0.01
    assert result.summary().startswith("the same content as Spanish text vs the same articles")


def test_sign_test():
    assert compare.sign_test(0, 0) == 1.0
    assert compare.sign_test(8, 8) == pytest.approx(2 / 256)
    assert compare.sign_test(4, 8) == 1.0
