"""The atlas on tiny models: a planted neuron is named and found by a search for its concept, a
killed scan resumes without recomputing its finished batches, a timed-out atlas continues by
layer, its records round-trip, and its site is escaped and works in a real browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import LlamaForCausalLM
from typer.testing import CliRunner

from neurosleuth.atlas import workers as W
from neurosleuth.atlas.build import (
    AtlasConfig,
    build_atlas,
    name_violations,
    parse_layers,
    records_of,
)
from neurosleuth.atlas.search import AtlasIndex, bulk_embedder
from neurosleuth.report.atlas_site import search_response, write_site
from neurosleuth.report.serve import make_server
from neurosleuth.tools import concepts as C
from neurosleuth.tools import exemplars as X
from neurosleuth.tools import scan as S
from neurosleuth.tools.pattern import Pattern
from neurosleuth.tools.records import read, write
from neurosleuth.tools.scan_config import ScanConfig
from tests.fixtures import WORDS, tiny_config, tiny_random_lm, tiny_tokenizer
from tests.planted import plant
from tests.tools.test_explain import (
    COLORS,
    _texts,
    colour_lm,  # noqa: F401  (neuron 0:3 planted on colours)
)


def _scan(corpus) -> ScanConfig:
    return ScanConfig(corpus=str(corpus), window=16, max_tokens=6000, k=12)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    vocab = list(WORDS[3:]) + ["<b>zebra</b>"] * 4  # unknown to the tiny tokenizer: '<unk>'
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join(" ".join(rng.choice(vocab, size=40)) for _ in range(200)))
    return path


@pytest.fixture(scope="module")
def atlas(colour_lm, corpus, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("atlas")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUROSLEUTH_CACHE", str(out.parent / "cache"))
        build_atlas(colour_lm, [0], out, AtlasConfig(_scan(corpus)))
    return out


def test_the_planted_neuron_is_named_and_found_by_meaning(atlas):
    frame = pd.read_parquet(atlas / "atlas.parquet")
    assert len(frame) == 32 and list(frame["neuron"])[:2] == ["0:0", "0:1"]
    row = frame.set_index("neuron").loc["0:3"]
    assert "color" in row["explanation"].lower(), row["explanation"]
    assert row["r"] > 0.8 and row["r_lo"] <= row["r"] <= row["r_hi"]
    assert {"red", "blue", "green"} <= set(json.loads(row["triggers"]))
    assert 0 < row["density"] < 0.5 and len(json.loads(row["promotes"])) == 8
    hits = AtlasIndex(atlas, bulk_embedder()).search("colour words", 3)
    assert "0:3" in [h.neuron for h in hits], hits
    assert (atlas / "search.faiss").is_file()  # kept: a second index reads it
    assert AtlasIndex(atlas, bulk_embedder()).search("colour words", 3) == hits


def test_a_neuron_is_searched_by_its_class_kind_and_words():
    from neurosleuth.atlas.search import search_text

    words = [" red", "blue", " red", "\ufffd\ufffd", "green"]
    row = pd.Series({"explanation": "Fires on colors (red, blue, green).", "concept": "colors",
                     "context": None, "triggers": json.dumps(words)})
    assert search_text(row) == "colors. red, blue, green"  # each word once, no byte pieces
    row = pd.Series({"explanation": "Fires inside German text.", "concept": np.nan,
                     "context": "German text", "triggers": json.dumps(["der"])})
    assert search_text(row) == "German text. der"  # no 'nan' for a missing class
    assert search_text(pd.Series({"explanation": "x", "concept": np.nan, "context": np.nan,
                                  "triggers": "[]"})) == "x"


def test_no_class_name_in_the_atlas_breaks_the_naming_rules(atlas):
    """Over the whole atlas: no class from one word, no example outside its class, no letter or
    abbreviation sense (``concepts.name_violations``); and the checker does see a bad name."""
    frame = pd.read_parquet(atlas / "atlas.parquet")
    assert name_violations(frame) == []
    named = frame[frame["concept"].notna()]
    assert len(named) >= 1
    bad = frame.iloc[:1].copy()
    bad["pattern"] = json.dumps(Pattern("token", {"w": 1.0}, C.ConceptName(
        "tungstens", ("w",), 1.0, "wordnet", "n", "tungsten.n.01"), {}, 1.0).to_dict())
    assert name_violations(bad), "a class named from one letter is a violation"


def test_records_of_a_row_round_trip(atlas, tmp_path):
    frame = pd.read_parquet(atlas / "atlas.parquet")
    nrs = [records_of(r, "tiny") for _, r in frame.iterrows()]
    for fmt in ("openai", "neuronpedia", "jsonl"):
        back = read(write(tmp_path / f"a.{fmt}", nrs, fmt))
        assert [b.neuron for b in back] == list(frame["neuron"])
        assert back[3].top[0].tokens == nrs[3].top[0].tokens
        assert np.allclose(back[3].random[0].acts, nrs[3].random[0].acts)


def test_a_killed_scan_resumes_without_recomputing_finished_batches(tmp_path, monkeypatch,
                                                                     corpus):
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(X, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint after every batch
    monkeypatch.setattr(S, "auto_tokens_per_batch", lambda *a, **k: 256)  # 16 windows a batch
    lm = tiny_random_lm(seed=5)
    passes = []
    real = S.forward_layers
    monkeypatch.setattr(S, "forward_layers", lambda *a: passes.append(1) or real(*a))

    class Killed(Exception):
        pass

    def kill_after_4(done, total):
        if len(passes) == 4:
            raise Killed

    cfg = AtlasConfig(_scan(corpus))
    with pytest.raises(Killed):
        build_atlas(lm, [0, 1], tmp_path / "a", cfg, scan_progress=kill_after_4)
    assert list((tmp_path / "cache").rglob("partial-*.npz"))  # the saved progress
    passes.clear()
    build_atlas(lm, [0, 1], tmp_path / "a", cfg)
    resumed = len(passes)
    assert not list((tmp_path / "cache").rglob("partial-*.npz"))
    # the same atlas as an uninterrupted scan (a fresh cache), which needs 4 more passes
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache2"))
    passes.clear()
    build_atlas(lm, [0, 1], tmp_path / "b", cfg)
    assert len(passes) == resumed + 4
    a, b = (pd.read_parquet(tmp_path / d / "atlas.parquet") for d in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)


def test_a_timed_out_atlas_continues_by_layer(tmp_path, monkeypatch, corpus):
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))
    lm = tiny_random_lm(seed=6)
    cfg = AtlasConfig(_scan(corpus))
    with pytest.raises(TimeoutError, match="run again"):
        build_atlas(lm, [0, 1], tmp_path, AtlasConfig(_scan(corpus), time_s=0.0))
    build_atlas(lm, [0], tmp_path, cfg)
    first = (tmp_path / "layers" / "0.parquet").stat().st_mtime_ns
    said = []
    build_atlas(lm, [0, 1], tmp_path, cfg, say=said.append)
    assert (tmp_path / "layers" / "0.parquet").stat().st_mtime_ns == first  # not redone
    assert said[0].startswith("scanning 1 layers")
    assert pd.read_parquet(tmp_path / "atlas.parquet")["layer"].tolist() == [0] * 32 + [1] * 32
    with pytest.raises(ValueError, match="other settings"):
        build_atlas(lm, [0], tmp_path, AtlasConfig(ScanConfig(str(corpus), 16, 999)))


def test_the_table_is_the_same_whatever_the_number_of_workers(colour_lm, corpus, tmp_path,  # noqa: F811
                                                               monkeypatch):
    """Rows made in two worker processes (chunks of 5 neurons: 7 tasks) equal rows made one after
    another in this process; the worker count is in the timings, not in the settings."""
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(W, "CHUNK", 5)
    frames, seen = {}, {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        progress: list[tuple[int, int]] = []
        build_atlas(colour_lm, [0], out, AtlasConfig(_scan(corpus), workers=workers),
                    neuron_progress=lambda L, d, t, p=progress: p.append((d, t)))
        frames[workers] = pd.read_parquet(out / "atlas.parquet")
        meta = json.loads((out / "atlas.json").read_text())
        assert meta["timings"]["workers"] == {"0": workers} and "workers" not in meta["config"]
        seen[workers] = progress
    pd.testing.assert_frame_equal(frames[1], frames[2], check_exact=True)
    assert len(frames[2]) == 32 and frames[2]["neuron"].tolist()[:2] == ["0:0", "0:1"]
    for progress in seen.values():  # one report a chunk, ending at every neuron
        assert len(progress) == 7 and progress[-1] == (32, 32)
    # an atlas begun with one worker count continues with another
    build_atlas(colour_lm, [0], tmp_path / "w1", AtlasConfig(_scan(corpus), workers=2))
    with pytest.raises(ValueError, match="workers must be at least 1"):
        W.RowMaker(0)


# ' zap' fires after ' pim', ' pom', ' pum': three words tied as its required context
TIED_CONTEXT = """
import json
import numpy as np
from neurosleuth.tools.records import Record
from neurosleuth.tools.records_explain import RecordsConfig, learn, required_context
words = ["the", " cat", " sat", " on", " mat", " and", " dog", " ran", " far"]
top = [Record(("the", " pim", " pom", " pum", " zap", w, " zap"),
              np.array([0, 0, 0, 0, 2.0 + i / 10, 0, 0.1])) for i, w in enumerate(words[:8])]
rand = [Record((w, " zap", " the", " zap"), np.array([0, 0.1, 0, 0.1])) for w in words[:8]]
learned = learn(top, rand, RecordsConfig())
print(json.dumps(list(required_context(learned, ["zap"], RecordsConfig())[0])))
"""


def test_rows_do_not_depend_on_the_string_hash_of_their_process():
    """Each worker process has its own string-hash seed, so the order of a set of words differs
    between processes: ties (three context words, each before every firing) are ordered the same
    under four seeds (a frozenset's order gave one of six orders at random)."""
    procs = [subprocess.Popen([sys.executable, "-c", TIED_CONTEXT], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONHASHSEED": str(seed)})
             for seed in range(4)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert [json.loads(o) for o in outs] == [["pim", "pom", "pum"]] * 4


def test_a_neuron_input_reaches_a_worker_whole_and_compact():
    """A worker's input pickles each group's activations as one float16 array where that is
    exact (as the scan keeps them), and unpickles to the same records and dtypes; values float16
    cannot hold are sent as they are."""
    import pickle

    from neurosleuth.atlas.neuron import NeuronInput
    from neurosleuth.tools.records import Record

    toks = tuple(f" w{i}" for i in range(64))
    half = [Record(toks, np.arange(64, dtype=np.float16).astype(float) / 8) for _ in range(60)]
    exact = [Record(toks[:3], np.array([0.1, 0.2, 1 / 3]))]  # no float16 holds these
    inp = NeuronInput(3, 7, half[:20], half[20:], exact, 7.9, -0.1, 0.2, 0.5, 0.4, [" a"], [])
    wire = pickle.dumps(inp)
    assert len(wire) < 0.5 * len(pickle.dumps([r.acts for r in half]))
    back = pickle.loads(wire)
    assert (back.layer, back.index, back.promotes, back.suppresses) == (3, 7, [" a"], [])
    for a, b in zip((inp.top, inp.rand, inp.bot), (back.top, back.rand, back.bot), strict=True):
        assert [r.tokens for r in a] == [r.tokens for r in b]
        assert all(x.acts.dtype == y.acts.dtype and np.array_equal(x.acts, y.acts)
                   for x, y in zip(a, b, strict=True))


def test_parse_layers():
    assert parse_layers("all", 3) == [0, 1, 2]
    assert parse_layers("1,3-4", 6) == [1, 3, 4]
    for bad in ("7", "2-1", "x"):
        with pytest.raises(ValueError, match="--layers"):
            parse_layers(bad, 6)


def test_site_pages_are_escaped_and_search_is_served(atlas):
    index = write_site(atlas, {"0:3": str(atlas / "deep" / "report.html")})
    site = index.parent
    page = (site / "n" / "0-3.html").read_text()
    assert "color" in page.lower() and "../deep/report.html" in page
    layer = (site / "layer-0.html").read_text()
    assert layer.count("<tr data-i=") == 32
    corpus = json.loads((atlas / "atlas.json").read_text())["corpus"]  # what the scan read
    assert len(corpus) == 1 and corpus[0]["share"] == 1.0 and corpus[0]["documents"] > 0
    assert "<h2>Corpus</h2>" in (site / "index.html").read_text()
    # corpus text the tiny tokenizer does not know is '<unk>': escaped everywhere
    assert "&lt;unk&gt;" in page and "<unk>" not in page.replace("&lt;unk&gt;", "")
    assert "0:3" in search_response(atlas, "colour words")
    server = make_server(atlas.parent, port=0, atlas_search=search_response)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"{server.url}{atlas.name}/site/search?q=colour+words"
        body = urllib.request.urlopen(url, timeout=60).read().decode()
        assert "0-3.html" in body and "<script" not in body
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_layer_page_filters_and_sorts_in_a_browser(atlas):
    from playwright.sync_api import sync_playwright

    from tests.report.test_site_browser import CHROMIUM, FLAGS, Watch

    write_site(atlas)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page()
        watch = Watch(page)
        page.goto((atlas / "site" / "layer-0.html").as_uri())
        assert page.text_content("#f-shown") == "32 shown"
        page.fill("#f-words", "color")
        shown = page.eval_on_selector_all("#neurons tbody tr:not([hidden])",
                                          "rows => rows.map(r => r.cells[0].textContent)")
        assert "0:3" in shown and len(shown) < 32
        page.fill("#f-words", "")
        page.fill("#f-r", "0.99")
        assert int(page.text_content("#f-shown").split()[0]) < 32
        page.click("#neurons thead th:nth-child(3)")  # sort by r
        assert watch.errors == [] and watch.dialogs == []
        page.goto((atlas / "site" / "n" / "0-3.html").as_uri())
        assert page.locator("code.heat").count() >= 3 and watch.errors == []
        browser.close()


def save_colour_model(folder):
    """The planted colour model of ``colour_lm``, planted the same way on the HF model and saved
    as a folder ``--model`` loads."""
    torch.manual_seed(3)
    hf = LlamaForCausalLM(tiny_config(n_layers=1, d_model=64)).eval()
    hf.model.layers[0].self_attn.o_proj.weight.data.zero_()
    rng = np.random.default_rng(0)
    texts = _texts(rng) + [f"the {c} {w}" for c in ("red", "blue", "green")
                           for w in ("cat", "park", "dog", "mat", "king", "tower")]
    plant((hf, tiny_tokenizer()), 0, 3, texts, lambda i, ids: ids[i] in COLORS)
    hf.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def test_cli_atlas_and_search(corpus, tmp_path, monkeypatch):
    from neurosleuth.cli import app

    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))
    model = save_colour_model(tmp_path / "model")
    out = tmp_path / "runs" / "atlas"
    res = CliRunner().invoke(app, ["atlas", "--model", str(model), "--layers", "0",
                                   "--tokens", "6000", "--window", "16", "--keep", "12",
                                   "--corpus", str(corpus), "--out", str(out),
                                   "--runs-dir", str(tmp_path / "runs"),
                                   "--records", str(tmp_path / "r.jsonl"),
                                   "--records-format", "jsonl", "--no-index"],
                            terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "32 neurons" in res.output and "browse: neurosleuth serve" in res.output
    assert "search index" not in res.output and not (out / "search.faiss").exists()
    assert not (out / "site").exists()  # no page per neuron: the server renders them
    assert len(read(tmp_path / "r.jsonl")) == 32
    res = CliRunner().invoke(app, ["atlas-search", str(out), "colour words", "-k", "3"],
                             terminal_width=200)
    assert res.exit_code == 0 and "0:3" in res.output, res.output  # indexed at the first search
    assert (out / "search.faiss").exists()
    res = CliRunner().invoke(app, ["atlas", "--model", str(model), "--layers", "5"])
    assert res.exit_code == 2 and "layers 0..0" in res.output


def test_batch_deep_dives_the_atlas_picks_and_the_pages_link_each_other(corpus, tmp_path,
                                                                        monkeypatch):
    from neurosleuth.batch.select import from_atlas
    from neurosleuth.cli import app

    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))
    model = save_colour_model(tmp_path / "model")
    runs, out = tmp_path / "runs", tmp_path / "runs" / "atlas"
    res = CliRunner().invoke(app, ["atlas", "--model", str(model), "--tokens", "6000",
                                   "--window", "16", "--keep", "12", "--corpus", str(corpus),
                                   "--out", str(out), "--runs-dir", str(runs)])
    assert res.exit_code == 0, res.output
    assert "search index" in res.output and (out / "search.faiss").exists()  # built by default
    picks = from_atlas(out, 2)
    assert len(picks) == 2 and all(p.reason.startswith("atlas: explained with r") for p in picks)
    frame = pd.read_parquet(out / "atlas.parquet").set_index("neuron")
    r = [frame.loc[str(p.neuron), "r"] for p in picks]
    assert r[0] <= frame["r"].max()  # poorly explained first among those that qualify
    res = CliRunner().invoke(app, ["batch", "--from-atlas", str(out), "--pick", "2", "--model",
                                   str(model), "--planner", "heuristic", "--iterations", "2",
                                   "--corpus", str(corpus), "--exemplar-tokens", "2000",
                                   "--batch-id", "deep", "--runs-dir", str(runs)],
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    first = str(picks[0].neuron)
    run = runs / "deep" / f"n{first.replace(':', '-')}"
    assert json.loads((run / "config.json").read_text())["atlas"] == str(out.resolve())
    report = (run / "report.html").read_text()
    assert f"site/n/{first.replace(':', '-')}.html" in report  # the report links the atlas
    from neurosleuth.report.atlas_serve import AtlasPages, split

    url = f"/atlas/site/n/{first.replace(':', '-')}.html"  # as `neurosleuth serve runs` renders it
    page = AtlasPages(runs.resolve(), None).answer(out.resolve(), *split(url), "")
    assert "Deep-dive report" in page and "deep/" in page  # and the atlas links the report
    assert "picked because" in (runs / "deep" / "index.html").read_text()
