"""Corpora that researchers bring: files on disk, a data set saved with ``datasets``, or a data set
on the Hugging Face Hub, each one source of documents (one document per file or row).

* ``.txt`` (one document), ``.jsonl`` (one per line, from its text field), ``.parquet``,
  ``.arrow`` / ``.feather`` (Arrow IPC, file or stream format; one document per row of the text
  column), or a folder of such files (read recursively, sorted by path). Parquet and Arrow are
  streamed in record batches (``pyarrow``), never loaded whole.
* a folder written by ``Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``: its ``train``
  split, or its only one), read with ``datasets.load_from_disk`` (memory-mapped).
* ``hf:NAME[:CONFIG][:SPLIT]`` (``NAME@REVISION`` pins a revision): ``datasets.load_dataset``
  with ``streaming=True``, so only the rows scanned are downloaded. It needs the network.

The text column is ``text`` unless another is named (``SPEC#COLUMN`` in ``resolve_corpus``).
Files and saved data sets are identified by their files' paths, sizes and modification times, so
the identity (and every cache keyed on it) changes when the data does; a Hub data set by its
name, config, split, column and revision (pin one for a stable identity: without it a dataset
updated on the Hub keeps its cache key). Rows come in the data set's own order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from neurosleuth.tools.corpus_records import Corpus, CorpusError, Document, Source

FILE_SUFFIXES = (".txt", ".jsonl", ".parquet", ".arrow", ".feather")
BATCH_ROWS = 1024


def user_corpus(path: str | Path, text_column: str = "text") -> Corpus:
    """Your own text on disk (module docstring): a file, a folder of files, or a saved data set."""
    root = Path(path).expanduser()
    if not root.exists():
        raise CorpusError(f"corpus path not found: {root}")
    if root.is_dir() and _is_saved_dataset(root):
        return saved_dataset_corpus(root, text_column)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.suffix in FILE_SUFFIXES and p.is_file())
    elif root.suffix in FILE_SUFFIXES:
        files = [root]
    else:
        raise CorpusError(f"corpus file must be one of {', '.join(FILE_SUFFIXES)}, or a folder "
                          f"of them: {root}")
    if not files:
        raise CorpusError(f"no {', '.join(FILE_SUFFIXES)} files in {root}")
    for f in files:
        if f.suffix in (".parquet", ".arrow", ".feather"):
            _check_table(f, text_column)
    name = root.name or str(root)

    def documents() -> Iterator[Document]:
        for f in files:
            label = str(f.relative_to(root)) if root.is_dir() else f.name
            if f.suffix == ".txt":
                yield Document(name, label, f.read_text(encoding="utf-8", errors="replace"))
            elif f.suffix == ".jsonl":
                yield from _jsonl_documents(f, name, text_column)
            else:
                yield from _rows(name, label, _table_batches(f, text_column))

    ident = f"files:{_stamp(files)}" + ("" if text_column == "text" else f"#{text_column}")
    return Corpus(name, (Source(name, "user", ident, documents, kind="user",
                                package=str(root)),))


def _stamp(files: list[Path]) -> str:
    stamp = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha1(json.dumps(stamp).encode()).hexdigest()[:16]


def _jsonl_documents(path: Path, source: str, column: str = "text") -> Iterator[Document]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)[column]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CorpusError(
                    f'{path}:{lineno}: expected a JSON object with a "{column}" field') from None
            yield Document(source, f"{path.name}:{lineno}", str(text))


def _rows(source: str, label: str, batches: Iterator[list]) -> Iterator[Document]:
    """One document per non-empty text value, named ``label:ROW`` (rows counted from 0)."""
    row = 0
    for values in batches:
        for value in values:
            if value is not None and str(value).strip():
                yield Document(source, f"{label}:{row}", str(value))
            row += 1


# ---------------------------------------------------------------- Parquet and Arrow files


def _open_table(path: Path):
    """(schema, rows or None, batch iterator factory) of a Parquet or Arrow IPC file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            pf = pq.ParquetFile(path)
            return (pf.schema_arrow, pf.metadata.num_rows,
                    lambda col: pf.iter_batches(batch_size=BATCH_ROWS, columns=[col]))
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_file(source)
            return (reader.schema, None,
                    lambda col: (reader.get_batch(i) for i in range(reader.num_record_batches)))
        except pa.ArrowInvalid:  # the stream format (as ``datasets`` writes its cache files)
            source.seek(0)
            stream = pa.ipc.open_stream(source)
            return stream.schema, None, lambda col: iter(stream)
    except (OSError, pa.ArrowException) as err:
        raise CorpusError(f"cannot read {path} as {path.suffix[1:]}: "
                          f"{str(err).splitlines()[0]}") from None


def _check_table(path: Path, column: str) -> None:
    import pyarrow as pa

    schema, rows, _ = _open_table(path)
    if column not in schema.names:
        raise CorpusError(f"{path.name} has no column {column!r} (columns: "
                          f"{', '.join(schema.names)}); name one with --corpus PATH#COLUMN")
    kind = schema.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)):
        raise CorpusError(f"{path.name}: column {column!r} holds {kind}, not text")
    if rows == 0:
        raise CorpusError(f"{path.name} has no rows")


def _table_batches(path: Path, column: str) -> Iterator[list]:
    _, _, batches = _open_table(path)
    for batch in batches(column):
        yield batch.column(batch.schema.get_field_index(column)).to_pylist()


# ---------------------------------------------------------------- the datasets library


def _is_saved_dataset(folder: Path) -> bool:
    return ((folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()) or \
        (folder / "dataset_dict.json").is_file()


def saved_dataset_corpus(folder: Path, text_column: str = "text") -> Corpus:
    """A data set written by ``save_to_disk``, read with ``datasets.load_from_disk``."""
    from datasets import DatasetDict, load_from_disk

    state = folder / "state.json"
    if state.is_file() and not json.loads(state.read_text()).get("_data_files"):
        raise CorpusError(f"data set {folder} has no rows")  # load_from_disk fails on it
    try:
        ds = load_from_disk(str(folder))
    except Exception as err:  # datasets raises many kinds; one line for the user
        raise CorpusError(f"cannot read the saved data set {folder}: "
                          f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                          ) from None
    split = ""
    if isinstance(ds, DatasetDict):
        split = "train" if "train" in ds else next(iter(ds)) if len(ds) == 1 else ""
        if not split:
            raise CorpusError(f"{folder} holds splits {', '.join(ds)} and none is 'train'; "
                              "pass the folder of one split")
        ds = ds[split]
    _check_columns(folder.name, list(ds.column_names), text_column)
    if len(ds) == 0:
        raise CorpusError(f"data set {folder} has no rows")
    name = folder.name
    files = sorted(p for p in folder.rglob("*") if p.is_file())

    def documents() -> Iterator[Document]:
        batches = (b[text_column] for b in ds.select_columns([text_column]).iter(BATCH_ROWS))
        yield from _rows(name, split or name, batches)

    ident = f"saved:{_stamp(files)}:{split}#{text_column}"
    return Corpus(name, (Source(name, "user", ident, documents, kind="user",
                                package=f"datasets.load_from_disk({folder})"),))


def _check_columns(name: str, columns: list[str], text_column: str) -> None:
    if text_column not in columns:
        raise CorpusError(f"data set {name} has no column {text_column!r} (columns: "
                          f"{', '.join(columns)}); name one with --corpus SPEC#COLUMN")


def parse_hf_spec(spec: str) -> tuple[str, str | None, str, str | None]:
    """``hf:NAME[@REVISION][:CONFIG][:SPLIT]`` as (name, config, split, revision); an empty
    CONFIG (``hf:NAME::test``) is the default config, SPLIT defaults to ``train``."""
    parts = spec.removeprefix("hf:").split(":")
    if not parts[0] or len(parts) > 3:
        raise CorpusError(f"bad data set spec {spec!r}: expected hf:NAME[:CONFIG][:SPLIT]")
    name, _, revision = parts[0].partition("@")
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    return name, config, split, revision or None


def hf_corpus(spec: str, text_column: str = "text") -> Corpus:
    """A Hub data set (``hf:NAME[@REVISION][:CONFIG][:SPLIT]``), streamed with ``datasets``."""
    name, config, split, revision = parse_hf_spec(spec)
    label = name.rsplit("/", 1)[-1]

    def documents() -> Iterator[Document]:
        from datasets import load_dataset

        try:
            ds = load_dataset(name, config, split=split, streaming=True, revision=revision)
        except Exception as err:  # the Hub's errors are many kinds; one line for the user
            raise CorpusError(f"cannot load data set {spec}: "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                              ) from None
        if ds.column_names is not None:
            _check_columns(name, list(ds.column_names), text_column)

        def batches() -> Iterator[list]:
            for batch in ds.iter(batch_size=BATCH_ROWS):
                if text_column not in batch:
                    _check_columns(name, list(batch), text_column)
                yield batch[text_column]

        n = 0
        for doc in _rows(label, split, batches()):
            n += 1
            yield doc
        if n == 0:
            raise CorpusError(f"data set {spec} has no text rows")

    ident = f"hf:{name}:{config or ''}:{split}@{revision or 'latest'}#{text_column}"
    return Corpus(label, (Source(label, "see the data set's card", ident, documents, kind="user",
                                 package=f"hf:{name}"),))
