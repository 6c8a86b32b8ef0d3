"""Activation records in and out, with no model: a neuron's top windows and a random sample of
windows, each a list of tokens with one activation per token.

Formats (``read`` tells them apart by their content; ``write`` takes the name):

- ``openai``: OpenAI neuron-explainer ``NeuronRecord`` JSON (Bills et al. 2023): an object (or a
  list of them) with ``most_positive_activation_records`` and ``random_sample`` (and, read only,
  ``random_sample_by_quantile``), each a list of ``{"tokens": [...], "activations": [...]}``;
  the neuron from ``neuron_id.layer_index`` / ``neuron_index``.
- ``neuronpedia``: a Neuronpedia feature export: an object (or a list of them) with ``modelId``,
  ``layer`` (``"6-mlp"``: the leading number is the layer), ``index`` and ``activations``, each
  ``{"tokens": [...], "values": [...]}`` (``maxValue`` and the rest are ignored on reading); or a
  bare list of activations. Neuronpedia lists top activations only: every activation is a top
  record unless it carries ``"kind": "random"`` (which ``write`` adds to the random sample so
  that a file round-trips; Neuronpedia's readers ignore unknown fields).
- ``jsonl``: one ``{"tokens": [...], "activations": [...]}`` per line, with optional ``neuron``
  (``"L:I"``) and ``kind`` (``"top"`` or ``"random"``; default top); read also as a JSON list
  of such objects.

Validation: tokens are strings, activations finite numbers, one per token, at least one token. A
file that breaks any of it raises ``RecordsError`` with one line naming the file, the record and
the field (``scan.json: record 3 (most_positive_activation_records[2]): field 'activations': 12
values for 13 tokens``); truncated JSON names the line and column where it stops.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMATS = ("openai", "neuronpedia", "jsonl")


class RecordsError(ValueError):
    """A records file that cannot be read: one line naming the file, the record and the field."""


@dataclass(frozen=True)
class Record:
    tokens: tuple[str, ...]
    acts: np.ndarray  # (len(tokens),) float

    @property
    def max(self) -> float:
        return float(self.acts.max())

    def pair(self) -> tuple[list[str], np.ndarray]:
        return list(self.tokens), self.acts


@dataclass(frozen=True)
class NeuronRecords:
    """One neuron's records: ``top`` strongest first, ``random`` a sample of ordinary windows."""

    neuron: str  # "L:I", or "" when the file does not say
    top: list[Record]
    random: list[Record] = field(default_factory=list)
    model: str = ""

    def __post_init__(self):
        self.top.sort(key=lambda r: -r.max)


def _where(path: Path, n: int, label: str) -> str:
    return f"{path.name}: record {n} ({label})"


def _record(raw, path: Path, n: int, label: str, values_key: str) -> Record:
    where = _where(path, n, label)
    if not isinstance(raw, dict):
        raise RecordsError(f"{where}: not an object with 'tokens' and '{values_key}'")
    for key in ("tokens", values_key):
        if key not in raw:
            raise RecordsError(f"{where}: field '{key}' is missing")
        if not isinstance(raw[key], list):
            raise RecordsError(f"{where}: field '{key}' is not a list")
    tokens, values = raw["tokens"], raw[values_key]
    if not tokens:
        raise RecordsError(f"{where}: field 'tokens' is empty")
    if not all(isinstance(t, str) for t in tokens):
        raise RecordsError(f"{where}: field 'tokens' holds a value that is not a string")
    if len(values) != len(tokens):
        raise RecordsError(f"{where}: field '{values_key}': {len(values)} values for "
                           f"{len(tokens)} tokens")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise RecordsError(f"{where}: field '{values_key}' holds {v!r}, not a finite number")
    return Record(tuple(tokens), np.asarray(values, dtype=float))


def _list(obj: dict, key: str, path: Path, where: str) -> list:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise RecordsError(f"{path.name}: {where}: field '{key}' is not a list")
    return value


class _Counter:
    """Numbers records 1, 2, ... across a whole file, as a reader sees them."""

    def __init__(self):
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def _openai(obj: dict, path: Path, count: _Counter) -> NeuronRecords:
    nid = obj.get("neuron_id") or {}
    neuron = (f"{nid['layer_index']}:{nid['neuron_index']}"
              if isinstance(nid, dict) and {"layer_index", "neuron_index"} <= set(nid) else "")
    top = [_record(r, path, count(), f"most_positive_activation_records[{i}]", "activations")
           for i, r in enumerate(_list(obj, "most_positive_activation_records", path, "neuron"))]
    rand = [_record(r, path, count(), f"random_sample[{i}]", "activations")
            for i, r in enumerate(_list(obj, "random_sample", path, "neuron"))]
    for q, group in enumerate(_list(obj, "random_sample_by_quantile", path, "neuron") or []):
        if not isinstance(group, list):
            raise RecordsError(f"{path.name}: field 'random_sample_by_quantile[{q}]' is not a list")
        rand += [_record(r, path, count(), f"random_sample_by_quantile[{q}][{i}]", "activations")
                 for i, r in enumerate(group)]
    if not top:
        raise RecordsError(f"{path.name}: field 'most_positive_activation_records' is empty")
    return NeuronRecords(neuron, top, rand)


def _layer_number(layer) -> str:
    text = str(layer)
    digits = text[: len(text) - len(text.lstrip("0123456789"))]
    return digits


def _neuronpedia(obj: dict | list, path: Path, count: _Counter) -> NeuronRecords:
    acts = obj if isinstance(obj, list) else _list(obj, "activations", path, "feature")
    neuron, model = "", ""
    if isinstance(obj, dict):
        layer, index = _layer_number(obj.get("layer", "")), str(obj.get("index", ""))
        neuron = f"{layer}:{index}" if layer and index.isdigit() else ""
        model = str(obj.get("modelId", ""))
    top: list[Record] = []
    rand: list[Record] = []
    for i, raw in enumerate(acts):
        rec = _record(raw, path, count(), f"activations[{i}]", "values")
        (rand if raw.get("kind") == "random" else top).append(rec)
    if not top:
        raise RecordsError(f"{path.name}: field 'activations' has no top activation")
    return NeuronRecords(neuron, top, rand, model)


def _jsonl(path: Path, text: str) -> list[NeuronRecords]:
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((n, f"line {n}", json.loads(line)))
        except json.JSONDecodeError as err:
            raise RecordsError(f"{path.name}: record {n} (line {n}): not valid JSON "
                               f"({err.msg} at column {err.colno}); truncated?") from None
    return _plain(items, path)


def _plain(items: list[tuple[int, str, object]], path: Path) -> list[NeuronRecords]:
    """Records of ``{tokens, activations[, neuron, kind]}``: (number, label, raw) each."""
    groups: dict[str, NeuronRecords] = {}
    for n, label, raw in items:
        rec = _record(raw, path, n, label, "activations")
        assert isinstance(raw, dict)  # _record refuses anything else
        kind = raw.get("kind", "top")
        if kind not in ("top", "random"):
            raise RecordsError(f"{_where(path, n, label)}: field 'kind' is {kind!r}, "
                               "not 'top' or 'random'")
        neuron = str(raw.get("neuron", ""))
        group = groups.setdefault(neuron, NeuronRecords(neuron, [], []))
        (group.random if kind == "random" else group.top).append(rec)
    if not groups:
        raise RecordsError(f"{path.name}: no records")
    for g in groups.values():
        if not g.top:
            raise RecordsError(f"{path.name}: neuron {g.neuron or '(unnamed)'} has no top record")
        g.top.sort(key=lambda r: -r.max)
    return list(groups.values())


def read(path: Path | str) -> list[NeuronRecords]:
    """Every neuron's records in ``path`` (format from the content; module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise RecordsError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecordsError(f"{path.name}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" or path.suffix == ".jsonl":
            return _jsonl(path, text)
        raise RecordsError(f"{path.name}: not valid JSON ({err.msg} at line {err.lineno} "
                           f"column {err.colno}); truncated?") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise RecordsError(f"{path.name}: no records")
    first = items[0]
    if isinstance(first, dict) and "most_positive_activation_records" in first:
        count = _Counter()
        return [_openai(_object(o, path, i), path, count) for i, o in enumerate(items)]
    if isinstance(first, dict) and "activations" in first and "tokens" not in first:
        count = _Counter()
        return [_neuronpedia(_object(o, path, i), path, count) for i, o in enumerate(items)]
    if isinstance(first, dict) and "values" in first:
        return [_neuronpedia(items, path, _Counter())]
    if isinstance(first, dict) and "activations" in first:  # plain records, as a JSON list
        return _plain([(i + 1, f"item {i}", o) for i, o in enumerate(items)], path)
    raise RecordsError(f"{path.name}: not a records file: expected OpenAI neuron records "
                       "('most_positive_activation_records'), a Neuronpedia export "
                       "('activations' of 'tokens' and 'values') or JSONL of 'tokens' and "
                       "'activations'")


def _object(o, path: Path, i: int) -> dict:
    if not isinstance(o, dict):
        raise RecordsError(f"{path.name}: item {i} is not an object")
    return o


def from_windows(neuron: str, top: Sequence[dict], random: Sequence[dict] = (), model: str = ""
                 ) -> NeuronRecords:
    """Records from windows as the scan keeps them (``exemplars.json``: ``tokens`` and
    ``acts``)."""
    def rec(w: dict) -> Record:
        return Record(tuple(w["tokens"]), np.asarray(w["acts"], dtype=float))

    return NeuronRecords(neuron, [rec(w) for w in top], [rec(w) for w in random], model)


def _pairs(rec: Record, values_key: str = "activations") -> dict:
    return {"tokens": list(rec.tokens), values_key: [round(float(a), 6) for a in rec.acts]}


def _split(neuron: str) -> tuple[int, int] | None:
    parts = neuron.split(":")
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(
        p.isdigit() for p in parts) else None


def to_openai(nr: NeuronRecords) -> dict:
    ids = _split(nr.neuron)
    out = {"dataclass_name": "NeuronRecord",
           "neuron_id": ({"dataclass_name": "NeuronId", "layer_index": ids[0],
                          "neuron_index": ids[1]} if ids else None),
           "random_sample": [{"dataclass_name": "ActivationRecord", **_pairs(r)}
                             for r in nr.random],
           "most_positive_activation_records": [{"dataclass_name": "ActivationRecord",
                                                 **_pairs(r)} for r in nr.top]}
    return out


def to_neuronpedia(nr: NeuronRecords) -> dict:
    ids = _split(nr.neuron)

    def act(r: Record, kind: str) -> dict:
        d = {**_pairs(r, "values"), "maxValue": round(r.max, 6),
             "maxValueTokenIndex": int(np.argmax(r.acts))}
        return {**d, "kind": kind} if kind == "random" else d

    return {"modelId": nr.model, "layer": f"{ids[0]}-mlp" if ids else "",
            "index": str(ids[1]) if ids else "",
            "activations": [act(r, "top") for r in nr.top] + [act(r, "random")
                                                                 for r in nr.random]}


def write(path: Path | str, neurons: Sequence[NeuronRecords], fmt: str) -> Path:
    """Write ``neurons`` to ``path`` in ``fmt`` (one of ``FORMATS``); returns the path."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown records format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "jsonl":
        lines = [json.dumps({"neuron": nr.neuron, "kind": kind, **_pairs(r)})
                 for nr in neurons for kind, recs in (("top", nr.top), ("random", nr.random))
                 for r in recs]
        text = "\n".join(lines) + "\n"
    else:
        convert = to_openai if fmt == "openai" else to_neuronpedia
        items = [convert(nr) for nr in neurons]
        text = json.dumps(items[0] if len(items) == 1 else items)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
