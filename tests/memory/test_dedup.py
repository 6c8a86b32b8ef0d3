import itertools
import json
from dataclasses import asdict

import faiss
import numpy as np
import pytest

from neurosleuth.memory.dedup import (
    DedupResult,
    PromptDeduper,
    RejectedPrompt,
    normalise_text,
    text_hash,
)
from neurosleuth.memory.embedder import HashingEmbedder
from neurosleuth.memory.junk import JunkFilter, unprintable_fraction
from neurosleuth.memory.seeds import random_prompts

DIM = 16


class TableEmbedder:
    """Test embedder with exact control over cosines: each text maps to a given vector."""

    name = "table"
    dim = DIM

    def __init__(self):
        self.table: dict[str, np.ndarray] = {}
        self.calls = 0

    def near(self, text: str, axis: int, cos: float, side: int) -> str:
        """Register ``text`` at cosine ``cos`` to basis vector ``axis``, using ``side`` as the
        orthogonal direction (distinct sides keep candidates apart from each other)."""
        v = np.zeros(DIM, dtype=np.float32)
        v[axis] = cos
        v[side] = np.sqrt(1 - cos**2)
        self.table[text] = v
        return text

    def embed(self, texts):
        self.calls += 1
        return np.stack([self.table[t] for t in texts]) if texts else np.zeros((0, DIM))


def make_table_deduper(**kw):
    emb = TableEmbedder()
    # Stored prompts on axes 0, 1, 2 with activations high / low / mid.
    for axis, name in enumerate(["HIGH", "LOW", "MID"]):
        emb.near(name, axis, 1.0, 15)
    d = PromptDeduper(emb, threshold=0.90, min_for_buckets=3, **kw)
    d.add(["HIGH", "LOW", "MID"], [10.0, 0.0, 5.0])
    return emb, d


def test_normalisation_keeps_case_and_collapses_whitespace():
    assert normalise_text("  a \t b\n") == "a b"
    assert text_hash("a  b") == text_hash(" a b ")
    assert text_hash("Hello") != text_hash("hello")
    assert text_hash("caf\u00e9") == text_hash("cafe\u0301")  # NFC


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("x" * 1001, "too_long"),
        ("\x00\x01\x02\x03ab", "unprintable"),
        ("Sure! Here are 5 new prompts:", "chatter"),
        ("Certainly, here is a variation:", "chatter"),
        ("Here are some prompts that might activate the neuron", "chatter"),
        ("**Explanation:** this prompt combines random words", "chatter"),
        ("As an AI language model, I cannot", "chatter"),
        ("Prompt 3:", "chatter"),
        ("2.", "chatter"),
        ("<your prompt here>", "chatter"),
        ("I hope this helps!", "chatter"),
        ("I'm sorry for your loss.", None),
        ("Here is the key to the castle.", None),
        ("Sure enough, the train was late.", None),
        ("def f(x): return x", None),
        ("!!! ??? ...", None),
        ("こんにちは世界", None),
        ("Z3rOs_c0dE_s3quEnC3s", None),
    ],
)
def test_junk_filter(text, reason):
    assert JunkFilter().reason(text) == reason


def test_junk_filter_options():
    assert unprintable_fraction("ab\ufffd\ufffd") == 0.5
    assert JunkFilter(patterns=()).reason("Sure! Here are 5 new prompts:") is None
    assert JunkFilter(max_chars=5).reason("abcdef") == "too_long"
    with pytest.raises(ValueError):
        JunkFilter(max_chars=0)


def test_exact_duplicates_against_store_and_within_batch():
    d = PromptDeduper(HashingEmbedder(), adaptive=False)
    d.add(["the cat sat"], [1.0])
    r = d.check(["the cat  sat ", "a new one", "a new one", "The cat sat"])
    assert [x.reason for x in r.rejected] == ["duplicate", "duplicate", "semantic"]
    assert r.rejected[0].nearest == "the cat sat" and r.rejected[1].nearest == "a new one"
    assert r.rejected[2].nearest == "the cat sat"  # case kept by the hash, caught semantically
    assert r.accepted == ["a new one"]
    assert r.counts() == {"accepted": 1, "duplicate": 2, "semantic": 1, "junk": 0}


def test_semantic_within_batch_and_against_store_plain_rule():
    d = PromptDeduper(HashingEmbedder(), threshold=0.9, adaptive=False)
    d.add(["red green blue"], [1.0])
    r = d.check(["blue green red", "one two three", "three two one", "four five six"])
    assert r.accepted == ["one two three", "four five six"]
    sem = {x.prompt: x for x in r.rejected}
    assert sem["blue green red"].nearest == "red green blue"
    assert sem["three two one"].nearest == "one two three"  # earlier batch mate
    assert sem["three two one"].similarity == pytest.approx(1.0)
    assert len(d) == 1  # check never changes the index


def test_plain_threshold_is_max_cosine_boundary():
    emb, d = make_table_deduper(adaptive=False)
    below = emb.near("mid-0.89", 2, 0.89, 4)
    at = emb.near("mid-0.91", 2, 0.91, 5)
    r = d.check([below, at])
    assert r.accepted == [below]
    assert r.rejected[0].similarity == pytest.approx(0.91, abs=1e-6)
    assert r.rejected[0].nearest == "MID"


def test_adaptive_per_neighbour_thresholds():
    emb, d = make_table_deduper(adaptive=True, exploit_margin=0.06, strict_margin=0.05)
    assert d.bucket_of_row(0) == "high" and d.bucket_of_row(1) == "low"
    assert d.bucket_of_row(2) == "mid"
    cands = [
        emb.near("high-0.93", 0, 0.93, 4),  # high neighbour: limit 0.96 -> accepted (exploit)
        emb.near("high-0.97", 0, 0.97, 5),  # above even the exploit limit -> rejected
        emb.near("low-0.88", 1, 0.88, 6),  # low neighbour: limit 0.85 -> rejected
        emb.near("low-0.84", 1, 0.84, 7),  # -> accepted
        emb.near("mid-0.88", 2, 0.88, 8),  # mid: limit 0.90 -> accepted
        emb.near("mid-0.92", 2, 0.92, 9),  # -> rejected
    ]
    r = d.check(cands, record=False)
    assert r.accepted == ["high-0.93", "low-0.84", "mid-0.88"]
    assert {x.prompt: x.detail for x in r.rejected} == {
        "high-0.97": "t=0.960", "low-0.88": "t=0.850", "mid-0.92": "t=0.900"
    }  # fmt: skip
    assert d.stats.checked == 0  # record=False leaves stats alone
    d.check(["high-0.93"])
    assert d.stats.exploit_accepts == 1
    # The same candidates under the plain rule:
    _, plain = make_table_deduper(adaptive=False)
    plain.embedder.table.update(emb.table)
    assert plain.check(cands).accepted == ["low-0.88", "low-0.84", "mid-0.88"]


def test_exploit_cap_limits_high_threshold():
    emb, d = make_table_deduper(exploit_margin=0.5, exploit_cap=0.95)
    assert d.threshold_for("high") == 0.95
    assert d.check([emb.near("h", 0, 0.96, 4)]).accepted == []


def test_adaptive_global_threshold_moves_toward_band_and_clamps():
    kw = dict(threshold=0.90, min_threshold=0.88, max_threshold=0.92, step=0.01,
              window=10, min_window=5)  # fmt: skip
    d = PromptDeduper(HashingEmbedder(), **kw)
    d.add(["alpha beta gamma delta"], [1.0])
    perms = [" ".join(p) for p in itertools.permutations(["alpha", "beta", "gamma", "delta"])]
    r = d.check(perms[1:6])  # all semantic rejects: rate 0 < 0.2 -> looser
    assert [x.reason for x in r.rejected] == ["semantic"] * 5
    assert r.threshold == 0.90 and d.threshold == 0.91
    d.check(perms[6:11])
    d.check(perms[11:16])
    assert d.threshold == 0.92  # clamped at max
    fresh = [f"word{i} other{i} thing{i}" for i in range(5)]
    d.check(fresh)  # all accepted: rate 1 > 0.8 -> stricter
    assert d.threshold == 0.91
    assert [t for _, t in d.stats.threshold_history] == [0.91, 0.92, 0.91]
    # Junk, exact duplicates and repeats of rejected prompts do not move the threshold.
    r = d.check(["", "alpha beta gamma delta"] * 3 + perms[1:5])
    assert r.counts() == {"accepted": 0, "duplicate": 7, "semantic": 0, "junk": 3}
    assert r.rejected[-1].detail == "repeat of a rejected one"
    assert r.rejected[-1].nearest == "alpha beta gamma delta"
    assert d.threshold == 0.91 and len(d._decisions) == 0
    fixed = PromptDeduper(HashingEmbedder(), adaptive=False, **kw)
    fixed.add(["alpha beta gamma delta"], [1.0])
    fixed.check(perms[1:6])
    assert fixed.threshold == 0.90


def test_check_without_record_then_observe_equals_check():
    def fresh():
        d = PromptDeduper(HashingEmbedder(), window=6, min_window=3, target=(0.6, 0.9))
        d.add(["one two three", "four five six"], [1.0, 2.0])
        return d

    batch = ["three two one", "seven eight", "", "four five six", "six five four", "nine ten"]
    a, b = fresh(), fresh()
    ra = a.check(batch)
    rb = b.check(batch, record=False)
    assert b.stats.checked == 0 and not b._rejected and b.threshold == 0.9
    replay = json.loads(json.dumps(rb.to_dict()))  # as the agent replays it from its state
    replay["rejected"] = [RejectedPrompt(**r) for r in replay["rejected"]]
    b.observe(DedupResult(**replay))
    assert ra == rb and a.stats == b.stats and a._rejected == b._rejected
    assert a.threshold == b.threshold == 0.91 and list(a._decisions) == list(b._decisions)


def test_rejected_prompts_are_remembered_only_when_recording():
    d = PromptDeduper(HashingEmbedder(), adaptive=False)
    d.add(["one two"], [1.0])
    assert d.check(["two one"], record=False).rejected[0].reason == "semantic"
    assert d.check(["two one"]).rejected[0].reason == "semantic"
    again = d.check(["two  one "]).rejected[0]
    assert (again.reason, again.nearest) == ("duplicate", "one two")
    d.add(["two one"], [2.0])  # measured anyway (e.g. by another tool): now a stored duplicate
    assert d.check(["two one"]).rejected[0].detail == "same normalised text"


def test_add_skips_stored_and_repeated_prompts_and_validates():
    d = PromptDeduper(HashingEmbedder())
    assert d.add(["a b", "c d", "a  b"], [1.0, 2.0, 3.0]) == 2
    assert d.add(["c d", "e f"], np.array([[9.0], [4.0]])) == 1
    assert d.texts == ["a b", "c d", "e f"] and d.activations == [1.0, 2.0, 4.0]
    assert d.index.ntotal == 3 and "a b" in d and "zz" not in d
    with pytest.raises(ValueError, match="activations"):
        d.add(["x"], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        d.add(["x"], [float("inf")])
    assert d.neighbours("a b", k=2)[0] == ("a b", pytest.approx(1.0), 1.0)


def test_check_reuses_embeddings_for_add():
    emb, d = make_table_deduper()
    c = emb.near("new", 3, 1.0, 15)
    calls = emb.calls
    d.check([c])
    d.add([c], [1.0])
    assert emb.calls == calls + 1


def test_batches_larger_than_the_embedding_cache():
    d = PromptDeduper(HashingEmbedder())
    d.vec_cache_size = 3
    prompts = [f"w{i} x{i} y{i}" for i in range(10)]
    assert d.check(prompts + prompts[:2]).accepted == prompts
    assert d.add(prompts, np.arange(10.0)) == 10 and len(d._vec_cache) == 3
    assert np.allclose(d.index.reconstruct_n(0, 10), HashingEmbedder().embed(prompts))


def test_persistence_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    emb = HashingEmbedder(dim=64, bigrams=True)
    d = PromptDeduper(emb, window=20, min_window=10)
    prompts = random_prompts(120, rng)
    d.add(prompts[:80], rng.normal(size=80))
    for chunk in range(80, 120, 10):
        d.check(prompts[chunk : chunk + 10] + prompts[:2])
    d.save(tmp_path / "mem")
    e = PromptDeduper.load(tmp_path / "mem", emb)
    assert e.texts == d.texts and e.hashes == d.hashes and e.activations == d.activations
    assert e.threshold == d.threshold and e.config() == d.config()
    assert list(e._decisions) == list(d._decisions) and e.stats == d.stats
    assert e._rejected == d._rejected and len(d._rejected) > 0
    n = d.index.ntotal
    assert np.array_equal(e.index.reconstruct_n(0, n), d.index.reconstruct_n(0, n))
    later = random_prompts(30, np.random.default_rng(1)) + prompts[5:10]
    assert asdict(e.check(later)) == asdict(d.check(later))
    assert e.threshold == d.threshold and e.stats == d.stats
    json.loads((tmp_path / "mem" / "dedup.json").read_text())  # plain JSON on disk
    assert not list((tmp_path / "mem").glob("*.tmp"))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved deduper"):
        PromptDeduper.load(tmp_path, HashingEmbedder())
    d = PromptDeduper(HashingEmbedder(dim=32))
    d.add(["a"], [1.0])
    d.save(tmp_path)
    with pytest.raises(ValueError, match="built with hashing-32"):
        PromptDeduper.load(tmp_path, HashingEmbedder(dim=64))
    faiss.write_index(faiss.IndexFlatIP(32), str(tmp_path / "dedup.faiss"))
    with pytest.raises(ValueError, match="holds 0 vectors"):
        PromptDeduper.load(tmp_path, HashingEmbedder(dim=32))


def test_constructor_validation():
    with pytest.raises(ValueError, match="min_threshold"):
        PromptDeduper(HashingEmbedder(), threshold=0.99)
    with pytest.raises(ValueError, match="target"):
        PromptDeduper(HashingEmbedder(), target=(0.9, 0.1))
    with pytest.raises(ValueError, match="min_window"):
        PromptDeduper(HashingEmbedder(), window=5, min_window=10)


def test_empty_batch_and_empty_index():
    d = PromptDeduper(HashingEmbedder())
    r = d.check([])
    assert r.accepted == [] and r.rejected == []
    assert d.check(["first ever"]).accepted == ["first ever"]
    assert d.neighbours("x") == []
