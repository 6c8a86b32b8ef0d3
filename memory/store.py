"""The reproducible experiment store: every experiment and its result, keyed by a content hash.

An experiment is a JSON spec: the tool, the model (name and weight fingerprint), the component,
the inputs, the parameters, and the code version (the package version plus a hash of the tool's
source file and of the neurosleuth modules it imports directly). Its key is the sha256 of the
spec's canonical JSON (sorted keys, no whitespace), so the same experiment asked again maps to the
same row and returns the stored result at once, and any change of code, weights or inputs gives a
new key. Rows live in one SQLite file (default ``cache_dir()/"experiments.sqlite"``); ``list``
gives a pandas DataFrame (spec and result summary flattened into columns), ``export`` writes CSV
or Parquet.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from neurosleuth.tools.model import cache_dir

_SCHEMA = """CREATE TABLE IF NOT EXISTS experiments (
    key TEXT PRIMARY KEY, tool TEXT, model TEXT, component TEXT, code_version TEXT,
    created REAL, spec TEXT, result TEXT)"""


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types from dataclasses, numpy values, paths, tuples and objects with __str__."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict) and not isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in obj]
        return sorted(items, key=json.dumps) if isinstance(obj, set | frozenset) else items
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and obj != obj:
        return None
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict("records"))
    return str(obj)


def canonical_json(spec: Any) -> str:
    return json.dumps(to_jsonable(spec), sort_keys=True, separators=(",", ":"), allow_nan=False)


def experiment_key(spec: Any) -> str:
    """sha256 hex of the spec's canonical JSON."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def _module_of(tool: Callable | ModuleType | str) -> ModuleType:
    if isinstance(tool, ModuleType):
        return tool
    if isinstance(tool, str):
        return sys.modules[tool] if tool in sys.modules else __import__(tool, fromlist=["_"])
    return sys.modules[tool.__module__]


def code_version(tool: Callable | ModuleType | str) -> str:
    """``<package version>+<hash>``: the hash covers the tool's source file and the source files of
    the neurosleuth modules it imports directly (so editing the shared intervention core changes
    the version of every tool built on it)."""
    module = _module_of(tool)
    files = {inspect.getsourcefile(module)}
    for value in vars(module).values():
        owner = (
            value
            if isinstance(value, ModuleType)
            else sys.modules.get(getattr(value, "__module__", "") or "")
        )
        if owner is not None and owner.__name__.startswith("neurosleuth."):
            files.add(getattr(owner, "__file__", None))
    h = hashlib.sha256()
    for f in sorted(f for f in files if f):
        h.update(Path(f).read_bytes())
    try:
        version = metadata.version("neurosleuth")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"{version}+{h.hexdigest()[:12]}"


def tool_name(tool: Callable | ModuleType | str) -> str:
    if isinstance(tool, str):
        return tool
    if isinstance(tool, ModuleType):
        return tool.__name__
    return f"{tool.__module__}.{tool.__qualname__}"


class ExperimentStore:
    """Experiments and results in one SQLite file (see module docstring)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / "experiments.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key: str) -> dict | None:
        """The stored result of experiment ``key``, or ``None``."""
        with self._connect() as db:
            row = db.execute("SELECT result FROM experiments WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def spec(self, key: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT spec FROM experiments WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, spec: Any, result: Any) -> None:
        """Store (or replace) experiment ``key`` with its spec and JSON-able result."""
        s = to_jsonable(spec)
        model = s.get("model") if isinstance(s, dict) else None
        model = model.get("name") if isinstance(model, dict) else model
        row = (
            key,
            s.get("tool") if isinstance(s, dict) else None,
            None if model is None else str(model),
            None if not isinstance(s, dict) or s.get("component") is None else str(s["component"]),
            s.get("code_version") if isinstance(s, dict) else None,
            time.time(),
            canonical_json(s),
            json.dumps(to_jsonable(result)),
        )
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM experiments").fetchone()[0])

    def list(self, tool: str | None = None) -> pd.DataFrame:
        """One row per experiment, newest first: key, tool, model, component, code_version,
        created (UTC), the spec's other fields as ``spec.*`` and the result's ``summary`` as
        ``result.*`` columns."""
        query = (
            "SELECT key, tool, model, component, code_version, created, spec, result "
            "FROM experiments" + (" WHERE tool = ?" if tool else "") + " ORDER BY created DESC"
        )
        with self._connect() as db:
            rows = db.execute(query, (tool,) if tool else ()).fetchall()
        records = []
        for key, name, model, comp, code, created, spec, result in rows:
            rec = {
                "key": key,
                "tool": name,
                "model": model,
                "component": comp,
                "code_version": code,
                "created": pd.Timestamp(created, unit="s", tz="UTC"),
            }
            for k, v in json.loads(spec).items():
                if k not in ("tool", "model", "component", "code_version"):
                    rec[f"spec.{k}"] = (
                        v if isinstance(v, str | int | float | None) else json.dumps(v)
                    )
            summary = (json.loads(result) or {}).get("summary") if result else None
            for k, v in (summary or {}).items():
                rec[f"result.{k}"] = v
            records.append(rec)
        return pd.DataFrame(
            records,
            columns=None
            if records
            else ["key", "tool", "model", "component", "code_version", "created"],
        )

    def export(self, path: str | Path) -> Path:
        """Write ``list()`` to ``path``: ``.csv`` or ``.parquet``."""
        path = Path(path)
        frame = self.list()
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        elif path.suffix in (".parquet", ".pq"):
            frame.to_parquet(path, index=False)
        else:
            raise ValueError(f"export to .csv or .parquet, not {path.suffix or path.name!r}")
        return path


def experiment_spec(tool: Callable | ModuleType | str, spec: dict) -> dict:
    """``spec`` completed with the tool's name and code version: what ``experiment_key`` hashes."""
    return {**spec, "tool": tool_name(tool), "code_version": code_version(tool)}


def cached(
    store: ExperimentStore | None,
    tool: Callable | ModuleType | str,
    spec: dict,
    fn: Callable[[], Any],
    load: Callable[[dict], Any] | None = None,
) -> Any:
    """Run ``fn()`` once per experiment: the spec is completed with the tool's name and code
    version and hashed; a stored result is returned (through ``load`` if given) without calling
    ``fn``; otherwise ``fn``'s result is stored and returned. ``store=None`` just calls ``fn``."""
    if store is None:
        return fn()
    full = experiment_spec(tool, spec)
    key = experiment_key(full)
    hit = store.get(key)
    if hit is not None:
        return load(hit) if load else hit
    result = fn()
    store.put(key, full, result)
    return result
