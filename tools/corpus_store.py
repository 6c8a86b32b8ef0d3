"""A token store on disk: the corpus windows of a large scan, written in chunks as the corpus is
streamed and tokenised, and read back memory-mapped, so that neither the tokenising pass nor the
scan nor the atlas holds all windows in memory.

Method: the same windowing as ``tools/corpus.build_windows`` (``iter_windows``: each source's
documents streamed in its order, Parquet and Arrow files in record batches, Hub data sets with
``streaming=True``, tokenised one document at a time and interleaved), so the store holds exactly
the windows that ``build_windows`` would hold in memory. Every ``CHUNK`` windows the ids, sources,
documents and offsets are appended to flat binary files; each document's name is appended to a
names file of JSON lines beside an index of byte offsets. Memory while writing: one chunk and one
document per source, whatever the corpus size.

Layout of a store folder::

    ids.i32       (W, T) int32 token ids, row-major
    source.i16    (W,) int16     doc.i32 (W,) int32     offset.i32 (W,) int32
    names-S.jsonl one JSON string per document of source S; names-S.i64 their byte offsets
    store.json    window count, width, source names, document counts (written last: a store
                  without it is incomplete)

A store is written into a temporary folder and renamed when complete: a tokenising pass that is
killed leaves no store, and the next one starts again (tokenising is ~100 times faster than the
scan on a CPU; the scan itself resumes from its checkpoint, ``tools/scan.py``). Reading
(``open_store``): the arrays are ``np.memmap`` (read-only) and the document names are looked up
one at a time, so a ``Windows`` from a store costs a few file handles and no memory per window.

``scan_windows`` is the cache of a scan's windows (``tools/exemplars.layer_scans``): a scan of
up to ``STREAM_TOKENS`` keeps its windows in memory and caches them as ``windows.npz``, a longer
one writes a store (``store/`` in the scan's cache folder) and reads it memory-mapped.

Caveat: the order of a Hub data set is its own (``tools/corpus_user.py``); a store of one is
cached under the data set's identity, pin a revision for a stable one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, overload

import numpy as np

from neurosleuth.tools.corpus import (
    DOC_CAP,
    Corpus,
    CorpusError,
    Windows,
    build_windows,
    iter_windows,
)
from neurosleuth.tools.model import LoadedModel

CHUNK = 4096  # windows buffered before they are appended to the store
STREAM_TOKENS = 1 << 22  # scans of more tokens keep their windows in a store (``scan_windows``)
STORE_VERSION = 1
_ARRAYS = (("source", np.int16), ("doc", np.int32), ("offset", np.int32))


def _file(name: str, dtype: type) -> str:
    return f"{name}.i{np.dtype(dtype).itemsize * 8}"  # source.i16, doc.i32, offset.i32


class _NameWriter:
    """A source's document names, appended to ``names-S.jsonl`` with their byte offsets."""

    def __init__(self, folder: Path, s: int):
        self.text = (folder / f"names-{s}.jsonl").open("wb")
        self.index = (folder / f"names-{s}.i64").open("wb")
        self.n = self.at = 0

    def __len__(self) -> int:
        return self.n

    def append(self, name: str, /) -> None:
        line = (json.dumps(name) + "\n").encode()
        self.index.write(np.int64(self.at).tobytes())
        self.text.write(line)
        self.at += len(line)
        self.n += 1

    def close(self) -> None:
        self.text.close()
        self.index.close()


class DocNames(Sequence[str]):
    """The document names of one source in a store, read one at a time from its names file."""

    def __init__(self, folder: Path, s: int, n: int):
        self.path, self.n = folder / f"names-{s}.jsonl", n
        self.starts = _memmap(folder / f"names-{s}.i64", np.int64, (n,))

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...

    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(f"document {i} of {self.n}")
        with self.path.open("rb") as fh:
            fh.seek(int(self.starts[i % self.n]))
            return str(json.loads(fh.readline()))


def _memmap(path: Path, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """A read-only map of ``path`` (an empty array for an empty file, which cannot be mapped)."""
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def _flush(files: dict[str, BinaryIO], chunk: dict[str, list]) -> None:
    files["ids"].write(np.asarray(chunk["ids"], dtype=np.int32).tobytes())
    for name, dtype in _ARRAYS:
        files[name].write(np.asarray(chunk[name], dtype=dtype).tobytes())
    for values in chunk.values():
        values.clear()


def _write(lm: LoadedModel, corpus: Corpus, window: int, max_tokens: int | None, doc_cap: int,
           tmp: Path) -> int:
    """Stream the corpus's windows into the store folder ``tmp``; returns how many there are."""
    names = [_NameWriter(tmp, s) for s in range(len(corpus.sources))]
    files: dict[str, BinaryIO] = {"ids": (tmp / "ids.i32").open("wb")}
    files |= {name: (tmp / _file(name, t)).open("wb") for name, t in _ARRAYS}
    chunk: dict[str, list] = {"ids": [], "source": [], "doc": [], "offset": []}
    n = 0
    try:
        for s, ids, doc, off in iter_windows(lm, corpus, window, max_tokens, doc_cap, names):
            chunk["ids"].append(ids)
            chunk["source"].append(s)
            chunk["doc"].append(doc)
            chunk["offset"].append(off)
            n += 1
            if len(chunk["ids"]) == CHUNK:
                _flush(files, chunk)
        if chunk["ids"]:
            _flush(files, chunk)
    finally:
        for f in files.values():
            f.close()
        for w in names:
            w.close()
    meta = {"version": STORE_VERSION, "windows": n, "width": window,
            "source_names": [s.name for s in corpus.sources], "docs": [len(w) for w in names]}
    (tmp / "store.json").write_text(json.dumps(meta))
    return n


def write_store(lm: LoadedModel, corpus: Corpus, folder: Path, window: int = 64,
                max_tokens: int | None = None, doc_cap: int = DOC_CAP) -> Windows:
    """Write the windows ``build_windows`` would give into a store at ``folder`` (module
    docstring) and return them memory-mapped from it. ``folder`` is replaced only when the store
    is complete. Raises ``CorpusError`` when not even one window fits."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.{time.time_ns()}.tmp")
    tmp.mkdir()
    try:
        if _write(lm, corpus, window, max_tokens, doc_cap, tmp) == 0:
            raise CorpusError(f"corpus {corpus.describe()} has fewer than {window} tokens")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.replace(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    windows = open_store(folder)
    assert windows is not None  # just written
    return windows


def open_store(folder: Path) -> Windows | None:
    """The windows of a complete store at ``folder``, memory-mapped; None if there is none."""
    try:
        meta = json.loads((folder / "store.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != STORE_VERSION:
        return None
    W, T = int(meta["windows"]), int(meta["width"])
    arrays = {name: _memmap(folder / _file(name, t), t, (W,))
              for name, t in _ARRAYS}
    return Windows(ids=_memmap(folder / "ids.i32", np.int32, (W, T)), **arrays,
                   source_names=tuple(meta["source_names"]),
                   doc_names=tuple(DocNames(folder, s, int(n))
                                   for s, n in enumerate(meta["docs"])))


def batch_ids(windows: Windows, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``windows.ids`` as a fresh (B, T) array. A memory-mapped store is
    read with a plain file read, so the pages a long scan passes over are not kept mapped in the
    process (its resident memory stays that of one batch)."""
    ids = windows.ids
    if isinstance(ids, np.memmap) and ids.filename is not None:
        stop = min(stop, len(windows))
        T = windows.width
        return np.fromfile(ids.filename, dtype=ids.dtype, count=max(stop - start, 0) * T,
                           offset=int(ids.offset) + start * T * ids.itemsize).reshape(-1, T)
    return np.array(ids[start:stop])



# ---------------------------------------------------------------- a scan's windows, cached


def save_windows(folder: Path, win: Windows, key: dict) -> None:
    """Windows held in memory, cached as ``windows.npz`` and ``meta.json`` (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.time_ns()
    tmp = folder / f"windows.{stamp}.tmp.npz"
    np.savez(tmp, ids=win.ids, source=win.source, doc=win.doc, offset=win.offset)
    meta = {"key": key, "source_names": win.source_names,
            "doc_names": [list(d) for d in win.doc_names]}
    tmp_meta = folder / f"meta.{stamp}.tmp.json"
    tmp_meta.write_text(json.dumps(meta))
    tmp.replace(folder / "windows.npz")
    tmp_meta.replace(folder / "meta.json")


def load_windows(folder: Path) -> Windows | None:
    """The windows ``save_windows`` cached in ``folder``, or None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "windows.npz") as z:
            arrays = {k: z[k] for k in ("ids", "source", "doc", "offset")}
    except (OSError, ValueError, KeyError):
        return None
    return Windows(**arrays, source_names=tuple(meta["source_names"]),
                   doc_names=tuple(tuple(d) for d in meta["doc_names"]))


def scan_windows(lm: LoadedModel, corpus: Corpus, window: int, max_tokens: int, folder: Path,
                 key: dict | None, stream: bool | None = None) -> Windows:
    """A scan's windows: those cached in ``folder`` (``windows.npz``, or a store ``store/``),
    else tokenised now, in memory or, with ``stream`` (None: for budgets over
    ``STREAM_TOKENS``), into a store on disk. ``key``: what the cache records (None: no cache;
    a store then goes to a temporary folder removed with the windows)."""
    if key is not None:
        found = load_windows(folder)
        found = found if found is not None else open_store(folder / "store")
        if found is not None:
            return found
    if stream or (stream is None and max_tokens > STREAM_TOKENS):
        where = folder / "store" if key is not None else \
            Path(tempfile.mkdtemp(prefix="neurosleuth-store-")) / "store"
        windows = write_store(lm, corpus, where, window, max_tokens)
        if key is None:
            weakref.finalize(windows, shutil.rmtree, where.parent, True)
        return windows
    windows = build_windows(lm, corpus, window, max_tokens)
    if key is not None:
        save_windows(folder, windows, key)
    return windows
