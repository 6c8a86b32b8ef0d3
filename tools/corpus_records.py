"""The records every corpus is made of (``Document``, ``Source``, ``Corpus``), its errors, and the
helpers the default sources share: where an installed package or a Debian package put its files,
its version, and the fixed hash order that makes any prefix of a source a fair sample of it."""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FORMAT_VERSION = 2  # bump when document text or windowing changes: it is part of every identity
MAX_FILE_BYTES = 200_000  # files read as documents are at most this large (data tables, bundles)


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
    """One stream of documents in a fixed order. ``identity`` changes when its data changes.

    ``kind`` is what the text is (prose, code, markup, math, table), ``language`` the natural or
    programming language(s), ``package`` where it comes from, ``weight`` its share of the
    interleaved windows relative to the corpus's other sources."""

    name: str
    licence: str
    identity: str
    documents: Callable[[], Iterator[Document]] = field(repr=False, compare=False)
    kind: str = "text"
    language: str = ""
    package: str = ""
    weight: float = 1.0


@dataclass(frozen=True)
class Corpus:
    name: str
    sources: tuple[Source, ...]

    def identity(self) -> dict:
        """What the corpus is, for cache keys: format version, each source's identity and (when
        they are not all equal) the weights that interleave them."""
        ident: dict = {"format": FORMAT_VERSION,
                       "sources": {s.name: s.identity for s in self.sources}}
        if len({s.weight for s in self.sources}) > 1:
            ident["weights"] = {s.name: s.weight for s in self.sources}
        return ident

    def describe(self) -> str:
        return f"{self.name} ({', '.join(s.name for s in self.sources)})"


# ---------------------------------------------------------------- helpers for default sources


def package_dir(module: str, dist: str) -> Path:
    """The folder of an installed package (never imported); ``FileNotFoundError`` with the
    ``pip install`` that brings it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"pip install {dist}")
    return Path(list(spec.submodule_search_locations)[0])


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def debian_version(package: str) -> str:
    """The installed version of a Debian package (from dpkg's status file), or "unknown"."""
    try:
        status = Path("/var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown"
    for block in status.split("\n\n"):
        if f"Package: {package}\n" in block + "\n" and "Version: " in block:
            return block.split("Version: ", 1)[1].split("\n", 1)[0]
    return "unknown"


def hash_order(names: Sequence[str]) -> list[str]:
    """A fixed pseudo-random order: a prefix of it is a fair sample of the whole."""
    return sorted(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())


def files_under(root: Path, suffixes: tuple[str, ...], skip: frozenset[str] = frozenset(),
                max_bytes: int = MAX_FILE_BYTES) -> list[Path]:
    """Files under ``root`` ending in one of ``suffixes``, at most ``max_bytes`` and not empty,
    outside folders named in ``skip``; sorted by path. Empty when ``root`` is missing."""
    if not root.is_dir():
        return []
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]  # pruned, not walked
        for name in names:
            path = Path(folder) / name
            if name.endswith(suffixes) and path.is_file():  # is_file: no broken links
                if 0 < path.stat().st_size <= max_bytes:
                    out.append(path)
    return sorted(out)


def files_identity(label: str, files: Sequence[Path]) -> str:
    """``label`` with a digest of the files' paths and sizes (changes when the data does)."""
    stamp = [(str(f), f.stat().st_size) for f in files]
    return f"{label}:{len(files)}:{hashlib.sha1(json.dumps(stamp).encode()).hexdigest()[:12]}"


def read_text(path: Path) -> str:
    """A text file's content, gunzipped if it ends in ``.gz``, with bad bytes replaced."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return raw.decode("utf-8", errors="replace")


def file_documents(source: str, files: Sequence[Path], root: Path | Sequence[Path]
                   ) -> Callable[[], Iterator[Document]]:
    """Documents of whole files in hash order of their names (paths relative to ``root``, or to
    the first of several roots that holds them); identical contents are kept once."""
    roots = [root] if isinstance(root, Path) else list(root)

    def name_of(f: Path) -> str:
        for r in roots:
            if f.is_relative_to(r):
                return f"{r.name}/{f.relative_to(r)}" if len(roots) > 1 else str(f.relative_to(r))
        return f.name

    def documents() -> Iterator[Document]:
        by_name = {name_of(f): f for f in files}
        seen: set[str] = set()
        for name in hash_order(list(by_name)):
            text = read_text(by_name[name]).strip()
            digest = hashlib.sha1(text.encode()).hexdigest()
            if text and digest not in seen:
                seen.add(digest)
                yield Document(source, name, text)

    return documents
