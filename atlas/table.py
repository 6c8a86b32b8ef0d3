"""The atlas table opened once for browsing (``neurosleuth serve``): filters, sort and pages over
every neuron, and one neuron's whole row, fast on a table of an 8B model's 458,752 rows.

Method: the light columns a listing shows (``LIST_COLUMNS``: scores, density, kind, explanation;
not the JSON window columns, which are nine tenths of the bytes) are read once into numpy arrays.
A listing is a boolean mask (one vectorised comparison per filter; the text query a pyarrow
substring match over the lower-cased explanations, concepts and names) applied to a sort order
computed once per column and direction and then kept (``order[mask[order]]``: filtering a sorted
order keeps it sorted), then sliced to one page. A neuron's whole row is read from the Parquet row
group that holds it (``atlas/build.py`` writes zstd-compressed row groups of ``ROW_GROUP`` rows),
found by binary search over the (layer, index) keys; an atlas written with larger row groups
still works, each neuron page then decoding its larger group.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROW_GROUP = 512  # rows per Parquet row group of atlas.parquet: a neuron page reads one
# how atlas/build.py writes its tables: zstd level 3 (2,865 bytes a neuron of SmolLM2 against
# 6,170 with snappy), row groups small enough to read one neuron's fast
PARQUET: dict[str, Any] = {"compression": "zstd", "compression_level": 3,
                           "row_group_size": ROW_GROUP}
LIST_COLUMNS = ["layer", "index", "neuron", "explanation", "kind", "concept", "r", "r_lo",
                "r_hi", "list_r", "density", "max_act", "bare_list"]
NUMERIC = ("r", "r_lo", "r_hi", "list_r", "density", "max_act")
SORTS = ("neuron", "r", "r_lo", "list_r", "density", "max_act", "kind")
PER_PAGE = (25, 50, 100, 200)
MAX_TEXT = 200  # characters of a text query
Bare = Literal["any", "only", "none"]


@dataclass(frozen=True)
class Query:
    """What a listing shows: filters, a sort, a page. ``bare``: token lists only, or none."""

    layer: int | None = None
    kind: str = ""
    r_min: float | None = None
    r_max: float | None = None
    density_min: float | None = None
    density_max: float | None = None
    bare: Bare = "any"
    text: str = ""
    sort: str = "neuron"
    desc: bool = False
    page: int = 1
    per_page: int = 100

    def params(self, **change: Any) -> dict[str, str]:
        """This query (with ``change``) as URL parameters, defaults left out."""
        q = {**self.__dict__, **change}
        out = {k: str(v) for k, v in q.items()
               if v not in (None, "", "any", False) and Query.__dataclass_fields__[k].default != v}
        if q["desc"]:
            out["desc"] = "1"
        return out


def _number(params: Mapping[str, str], key: str, lo: float, hi: float) -> float | None:
    raw = params.get(key, "").strip()
    if not raw:
        return None
    try:
        x = float(raw)
    except ValueError:
        raise ValueError(f"{key}={raw[:20]!r} is not a number") from None
    if not math.isfinite(x) or not lo <= x <= hi:
        raise ValueError(f"{key} must lie in {lo:g}..{hi:g}")
    return x


def _integer(params: Mapping[str, str], key: str, default: int, hi: int) -> int:
    raw = params.get(key, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= hi:
        raise ValueError(f"{key} must be a whole number in 0..{hi}")
    return int(raw)


def parse_query(params: Mapping[str, str], layer: int | None = None) -> Query:
    """The listing that URL ``params`` ask for; ValueError (one line, for a 400) on a bad one."""
    known = {"layer", "kind", "r_min", "r_max", "density_min", "density_max", "bare", "q",
             "sort", "desc", "page", "per_page"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0][:20]!r}")
    if layer is None and params.get("layer", "").strip():
        layer = _integer(params, "layer", 0, 1 << 20)
    bare = params.get("bare", "any") or "any"
    sort = params.get("sort", "neuron") or "neuron"
    per_page = _integer(params, "per_page", 100, 1000)
    if bare not in ("any", "only", "none"):
        raise ValueError("bare must be any, only or none")
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}")
    if per_page not in PER_PAGE:
        raise ValueError(f"per_page must be one of {', '.join(map(str, PER_PAGE))}")
    text = params.get("q", "")
    if len(text) > MAX_TEXT:
        raise ValueError(f"q longer than {MAX_TEXT} characters")
    return Query(layer, params.get("kind", "")[:40], _number(params, "r_min", -1, 1),
                 _number(params, "r_max", -1, 1), _number(params, "density_min", 0, 1),
                 _number(params, "density_max", 0, 1), bare, text.strip(), sort,  # type: ignore[arg-type]
                 params.get("desc", "") in ("1", "true", "on"),
                 max(1, _integer(params, "page", 1, 1 << 30)), per_page)


@dataclass(frozen=True)
class Listing:
    """One page of a listing: its rows (dicts of ``LIST_COLUMNS``) and how many matched."""

    rows: list[dict[str, Any]]
    total: int
    query: Query

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


def layer_summary(layer: np.ndarray, r: np.ndarray, density: np.ndarray, kind: np.ndarray,
                  concept: np.ndarray) -> list[dict[str, Any]]:
    """Per layer (arrays of one value per neuron): neurons, mean r, median density, neurons named
    by a concept, by a kind of text, and dead ones."""
    out = []
    for x in np.unique(layer):
        m = layer == x
        rs = r[m]
        out.append({"layer": int(x), "neurons": int(m.sum()),
                    "mean_r": float(np.nanmean(rs)) if np.isfinite(rs).any() else None,
                    "median_density": float(np.nanmedian(density[m])),
                    "concepts": int(concept[m].sum()),
                    "contexts": int((kind[m] == "context").sum()),
                    "dead": int((kind[m] == "none").sum())})
    return out


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64, null -> NaN."""
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


class AtlasTable:
    """``folder/atlas.parquet`` (and ``atlas.json``) opened for browsing (module docstring)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta: dict[str, Any] = json.loads((folder / "atlas.json").read_text())
        self.file = pq.ParquetFile(folder / "atlas.parquet")
        table = self.file.read(columns=LIST_COLUMNS)
        self.list = table  # (N,) light columns, in file order
        self.layer = table["layer"].to_numpy().astype(np.int64)
        self.index = table["index"].to_numpy().astype(np.int64)
        self.num = {c: _floats(table[c]) for c in NUMERIC}
        self.kind = np.asarray(table["kind"].to_numpy(zero_copy_only=False), dtype=object)
        self.kinds = sorted(str(k) for k in set(self.kind.tolist()))
        self.kind_code = np.searchsorted(np.asarray(self.kinds, dtype=object), self.kind)
        self.bare = np.asarray(table["bare_list"].fill_null(False).to_numpy(
            zero_copy_only=False), dtype=bool)
        text = pc.binary_join_element_wise(*(
            pc.cast(table[c], pa.large_string()).fill_null("")
            for c in ("explanation", "concept", "neuron")), pa.scalar(" ", pa.large_string()))
        self.text = pc.utf8_lower(text)  # what a text query matches
        self.key = (self.layer << 32) + self.index
        self.by_key = np.argsort(self.key, kind="stable")
        groups = [self.file.metadata.row_group(g).num_rows
                  for g in range(self.file.metadata.num_row_groups)]
        self.group_start = np.concatenate([[0], np.cumsum(groups)]).astype(np.int64)
        self._orders: dict[tuple[str, bool], np.ndarray] = {}
        self._lock, self._order_lock = threading.Lock(), threading.Lock()
        concept = table["concept"].is_valid().to_numpy(zero_copy_only=False)
        self.layers = layer_summary(self.layer, self.num["r"], self.num["density"], self.kind,
                                    concept)

    def __len__(self) -> int:
        return len(self.layer)

    def order(self, sort: str, desc: bool) -> np.ndarray:
        """Row numbers in the order of ``sort`` (missing values last), computed once."""
        with self._order_lock:
            if (sort, desc) not in self._orders:
                if sort == "neuron":
                    o = self.by_key[::-1] if desc else self.by_key
                else:
                    x = self.kind_code.astype(np.float64) if sort == "kind" else self.num[sort]
                    o = np.argsort(-x if desc else x, kind="stable")  # NaN sorts last
                self._orders[(sort, desc)] = np.ascontiguousarray(o)
            return self._orders[(sort, desc)]

    def mask(self, q: Query) -> np.ndarray | None:
        """The rows ``q``'s filters keep (None: every row)."""
        m: np.ndarray | None = None

        def keep(x: np.ndarray) -> None:
            nonlocal m
            m = x if m is None else m & x

        if q.layer is not None:
            keep(self.layer == q.layer)
        if q.kind:
            keep(self.kind == q.kind)
        for name, col, ge in (("r_min", "r", True), ("r_max", "r", False),
                              ("density_min", "density", True),
                              ("density_max", "density", False)):
            bound = getattr(q, name)
            if bound is not None:
                x = self.num[col]
                with np.errstate(invalid="ignore"):
                    keep(x >= bound if ge else x <= bound)
        if q.bare != "any":
            keep(self.bare if q.bare == "only" else ~self.bare)
        if q.text:
            hit = pc.match_substring(self.text, q.text.lower())
            keep(np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool))
        return m

    def select(self, q: Query) -> Listing:
        """The page of rows ``q`` asks for, in its order, and how many rows matched."""
        order = self.order(q.sort, q.desc)
        m = self.mask(q)
        chosen = order if m is None else order[m[order]]
        start = (q.page - 1) * q.per_page
        return Listing(self.rows(chosen[start:start + q.per_page]), int(len(chosen)), q)

    def rows(self, which: np.ndarray) -> list[dict[str, Any]]:
        """Light columns of rows ``which`` (row numbers), as dicts."""
        return self.list.take(pa.array(which, type=pa.int64())).to_pylist()

    def best(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` best explained neurons (highest r)."""
        return self.rows(self.order("r", True)[:n])

    def find(self, layer: int, index: int) -> int | None:
        """The row number of neuron ``layer:index``, or None."""
        key = (layer << 32) + index
        i = int(np.searchsorted(self.key, key, sorter=self.by_key))
        if i < len(self.key) and self.key[self.by_key[i]] == key:
            return int(self.by_key[i])
        return None

    def neuron(self, layer: int, index: int) -> dict[str, Any] | None:
        """Every column of neuron ``layer:index`` (read from its row group), or None."""
        if not (0 <= layer < 1 << 20 and 0 <= index < 1 << 31):
            return None
        row = self.find(layer, index)
        if row is None:
            return None
        g = int(np.searchsorted(self.group_start, row, side="right")) - 1
        with self._lock:  # one reader of the file at a time
            group = self.file.read_row_group(g)
        return group.slice(row - int(self.group_start[g]), 1).to_pylist()[0]
