"""A corpus streamed into a token store on disk: the same windows and the same scan as in memory,
a scan state that does not grow with the corpus, and a killed streamed scan that resumes."""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neurosleuth.tools import corpus_store as CS
from neurosleuth.tools import exemplars as E
from neurosleuth.tools import scan as S
from neurosleuth.tools.corpus import Corpus, CorpusError, Document, Source, build_windows
from neurosleuth.tools.corpus import resolve_corpus as resolve
from tests.agent_helpers import CORPUS

FIELDS = ("top_val", "top_win", "top_pos", "top_acts", "bot_val", "bot_win", "bot_pos",
          "bot_acts", "rand_win", "rand_acts", "mean", "std", "frac_pos", "token_q", "winmax_q")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))


def _texts(n: int, seed: int = 0) -> list[str]:
    """``n`` documents: sentences of the tiny vocabulary, shuffled, of varied lengths."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(CORPUS) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def _folder(tmp_path, n: int):
    """A folder with text files and a Parquet file (two row groups): a user corpus."""
    folder = tmp_path / f"corpus-{n}"
    (folder / "txt").mkdir(parents=True)
    texts = _texts(n)
    for i, text in enumerate(texts[: n // 4]):
        (folder / "txt" / f"{i:03d}.txt").write_text(text)
    pq.write_table(pa.table({"text": texts[n // 4 :]}), folder / "rows.parquet",
                   row_group_size=max(1, n // 3))
    return folder


def test_the_store_holds_the_windows_build_windows_holds(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setattr(CS, "CHUNK", 7)  # many chunks, the last one short
    corpus = resolve(str(_folder(tmp_path, 40)))
    for budget in (None, 8 * 50):
        mem = build_windows(tiny_lm, corpus, 8, budget)
        disk = CS.write_store(tiny_lm, corpus, tmp_path / f"store-{budget}", 8, budget)
        assert isinstance(disk.ids, np.memmap) and len(disk) == len(mem) > CS.CHUNK
        for f in ("ids", "source", "doc", "offset"):
            assert np.array_equal(getattr(mem, f), getattr(disk, f)), f
        assert disk.source_names == mem.source_names
        assert [list(d) for d in disk.doc_names] == [list(d) for d in mem.doc_names]
        assert all(disk.where(i) == mem.where(i) for i in range(len(mem)))
        assert np.array_equal(CS.batch_ids(disk, 3, 3 + 10), mem.ids[3:13])
        assert CS.batch_ids(disk, len(mem) - 2, len(mem) + 5).shape == (2, 8)
    assert CS.open_store(tmp_path / "nowhere") is None


def test_a_streamed_scan_equals_the_scan_in_memory(tiny_lm, tmp_path):
    corpus = str(_folder(tmp_path, 60))
    mem_w, mem, _, _ = E.layer_scans(tiny_lm, [0, 1], corpus, 8, 8 * 200, keep=5,
                                     use_cache=False, stream=False)
    disk_w, disk, folder, _ = E.layer_scans(tiny_lm, [0, 1], corpus, 8, 8 * 200, keep=5,
                                            stream=True)
    assert isinstance(disk_w.ids, np.memmap) and (folder / "store" / "store.json").is_file()
    assert not (folder / "windows.npz").exists()
    for layer in (0, 1):
        for f in FIELDS:
            assert np.array_equal(getattr(mem[layer], f), getattr(disk[layer], f)), (layer, f)
    # a later call reads the store and the scans from the cache
    again_w, _, _, scanned = E.layer_scans(tiny_lm, [1], corpus, 8, 8 * 200, keep=5)
    assert scanned == () and isinstance(again_w.ids, np.memmap)
    # without the cache the store is temporary: it goes with its windows
    tmp_w, _, _, _ = E.layer_scans(tiny_lm, [1], corpus, 8, 8 * 200, keep=5, use_cache=False,
                                   stream=True)
    where = tmp_w.ids.filename
    assert where is not None and np.array_equal(tmp_w.ids, mem_w.ids)
    del tmp_w
    gc.collect()
    assert not Path(where).exists()


def _state_bytes(lm, windows, keep: int, path) -> dict[str, int]:
    """Bytes of each array of the scan's running state, from a checkpoint saved mid-scan."""

    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        if done * 2 >= total:
            raise Stop

    with pytest.raises(Stop):
        S.scan_layers(lm, [0, 1], windows, keep, stop, 64, checkpoint=path, every_s=0)
    with np.load(path) as z:
        return {k: int(z[k].nbytes) for k in z.files if k != "meta" and not k.endswith("/n")}


def test_the_scan_state_does_not_grow_with_the_corpus(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setattr(S, "TOKEN_SAMPLE", 256)
    monkeypatch.setattr(S, "WINDOW_SAMPLE", 32)
    sizes = {}
    for n_docs in (100, 400):
        corpus = resolve(str(_folder(tmp_path, n_docs)))
        windows = CS.write_store(tiny_lm, corpus, tmp_path / f"s{n_docs}", 8)
        sizes[len(windows)] = _state_bytes(tiny_lm, windows, 6, tmp_path / f"ck{n_docs}.npz")
    (short, a), (long, b) = sorted(sizes.items())
    assert long >= 3 * short and 2 * short * 8 > 256  # both past the samples' sizes
    assert a == b  # every kept array the same size, 3x the corpus
    d, T = tiny_lm.d_mlp, 8
    assert a["0/top.acts"] == 6 * d * T * 4 and a["0/tok_buf"] == 256 * d * 4


def _stream(n: int, fail_at: int | None = None) -> Corpus:
    def documents() -> Iterator[Document]:
        for i, text in enumerate(_texts(n, seed=1)):
            if i == fail_at:
                raise KeyboardInterrupt  # the process killed while it tokenises
            yield Document("s", f"doc{i}", text)

    return Corpus("s", (Source("s", "test", f"stream-{n}", documents),))


def test_a_killed_streamed_scan_resumes_where_it_stopped(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setattr(E, "CHECKPOINT_EVERY_S", 0.0)
    monkeypatch.setattr(S, "auto_tokens_per_batch", lambda *a, **k: 64)  # many batches
    folder = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):  # killed while tokenising: no store is left
        CS.write_store(tiny_lm, _stream(300, fail_at=150), folder, 8)
    assert not folder.exists() and list(tmp_path.iterdir()) == []

    corpus = _stream(300)
    _, full, _, _ = E.layer_scans(tiny_lm, [0, 1], corpus, 8, 8 * 2000, keep=5,
                                  use_cache=False, stream=False)

    class Killed(Exception):
        pass

    seen: list[int] = []

    def kill_at_5(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 5:
            raise Killed

    with pytest.raises(Killed):  # killed while it scans
        E.layer_scans(tiny_lm, [0, 1], corpus, 8, 8 * 2000, keep=5, progress=kill_at_5,
                      stream=True)
    again: list[int] = []
    windows, resumed, folder, _ = E.layer_scans(
        tiny_lm, [0, 1], corpus, 8, 8 * 2000, keep=5, progress=lambda d, t: again.append(d),
        stream=True)
    assert isinstance(windows.ids, np.memmap)
    assert again[0] > seen[-1] and again[-1] == len(windows) * 8
    assert not list(folder.glob("partial-*"))
    for layer in (0, 1):
        for f in FIELDS:
            a, b = getattr(full[layer], f), getattr(resumed[layer], f)
            assert np.allclose(a.astype(float), b.astype(float), atol=1e-5), (layer, f)


def test_a_store_of_nothing_is_an_error(tiny_lm, tmp_path):
    with pytest.raises(CorpusError):
        CS.write_store(tiny_lm, _stream(0), tmp_path / "empty", 8)
    assert list(tmp_path.iterdir()) == []
