"""An atlas served, not written: ``neurosleuth serve`` renders an atlas's pages from its table on
request (``report/atlas_pages.py``, the pages the static export writes), so that an atlas folder
holds its table and no page per neuron.

Any folder under the served root that holds ``atlas.parquet`` and ``atlas.json`` is an atlas, its
pages at ``FOLDER/site/``: ``index.html`` (also ``site/``), ``layer-L.html`` and ``neurons.html``
(filters, sort and page from URL parameters, ``atlas/table.parse_query``), ``n/L-I.html`` and
``search?q=`` (search by meaning, ``atlas/search.py``, given by the command line). The table is
opened once per folder (``atlas/table.AtlasTable``: the light columns in memory, one row group
read per neuron page) and opened again when its file changes. A neuron page links the deep-dive
report of its neuron when one lies under the served root (found again every ``DIVES_TTL_S``).

A request this cannot answer raises ``PageError`` with an HTTP status and a one-line reason: a
bad or repeated parameter (400), a layer, neuron or page the atlas does not have (404).
"""

from __future__ import annotations

import posixpath
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from neurosleuth.atlas.table import AtlasTable, parse_query
from neurosleuth.report.atlas_pages import index_page, listing_page, neuron_page
from neurosleuth.report.atlas_site import deep_dives_in

PAGE = re.compile(r"^(?P<folder>/(?:.*/)?)site/(?P<page>|index\.html|neurons\.html|"
                  r"layer-(?P<layer>\d{1,7})\.html|n/(?P<nl>\d{1,7})-(?P<ni>\d{1,10})\.html|"
                  r"search)$")
DIVES_TTL_S = 30.0
MAX_FIELDS = 20
MAX_QUERY = 200  # characters of a search by meaning


class PageError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def is_atlas(folder: Path) -> bool:
    """True when ``folder`` holds an atlas table and its description."""
    return (folder / "atlas.parquet").is_file() and (folder / "atlas.json").is_file()


def split(path: str) -> tuple[str, re.Match[str]] | None:
    """(the atlas folder's URL path, the page match) for a URL path of an atlas page, or None."""
    m = PAGE.match(path)
    return (m["folder"], m) if m else None


def params_of(query: str) -> dict[str, str]:
    """URL query parameters, each given once; PageError 400 for a malformed or repeated one."""
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=MAX_FIELDS)
    except (ValueError, UnicodeDecodeError):
        raise PageError(400, "malformed query string") from None
    repeated = [k for k, v in parsed.items() if len(v) > 1]
    if repeated:
        raise PageError(400, f"parameter {repeated[0][:20]!r} given more than once")
    return {k: v[0] for k, v in parsed.items()}


class AtlasPages:
    """The atlases under ``root``, each opened on first use; ``search(folder, query)`` answers
    searches by meaning (None: 404)."""

    def __init__(self, root: Path, search: Callable[[Path, str], str] | None):
        self.root, self.search = root, search
        self.tables: dict[Path, tuple[tuple[int, int], AtlasTable]] = {}
        self.dives: dict[str, tuple[float, dict[str, str]]] = {}
        self.lock = threading.Lock()

    def table(self, folder: Path) -> AtlasTable:
        """The opened table of ``folder`` (a resolved atlas folder), opened again when changed."""
        st = (folder / "atlas.parquet").stat()
        stamp = (st.st_mtime_ns, st.st_size)
        with self.lock:
            held = self.tables.get(folder)
            if held is None or held[0] != stamp:
                held = (stamp, AtlasTable(folder))
                self.tables[folder] = held
            return held[1]

    def _deep_dive(self, model: str, neuron: str, page_dir: str) -> str | None:
        """A link from ``page_dir`` (URL path) to ``neuron``'s report under the root, if any."""
        now = time.monotonic()
        with self.lock:
            held = self.dives.get(model)
            if held is None or now - held[0] > DIVES_TTL_S:
                held = (now, deep_dives_in(self.root, model))
                self.dives[model] = held
        report = held[1].get(neuron)
        if report is None or not Path(report).resolve().is_relative_to(self.root):
            return None
        url = "/" + Path(report).relative_to(self.root).as_posix()
        return posixpath.relpath(url, page_dir)

    def answer(self, folder: Path, url_folder: str, m: re.Match[str], query: str) -> str:
        """The page ``m`` (a ``PAGE`` match) of the atlas in ``folder`` (resolved; its URL path
        ``url_folder``) for URL query ``query``; PageError when it cannot be answered."""
        params = params_of(query)
        if m["page"] == "search":
            if self.search is None:
                raise PageError(404, "search by meaning is not served here")
            q = params.get("q", "")
            if len(q) > MAX_QUERY:
                raise PageError(400, f"q longer than {MAX_QUERY} characters")
            return self.search(folder, q)
        atlas = self.table(folder)
        if m["nl"] is not None:
            return self._neuron(atlas, int(m["nl"]), int(m["ni"]), params, url_folder)
        if m["page"] in ("", "index.html"):
            if params:
                raise PageError(400, "the index takes no parameters")
            return index_page(atlas.meta, atlas.layers, atlas.best(50), served=True)
        return _listing(atlas, None if m["layer"] is None else int(m["layer"]), params)

    def _neuron(self, atlas: AtlasTable, layer: int, index: int, params: dict[str, str],
                url_folder: str) -> str:
        if params:
            raise PageError(400, "a neuron page takes no parameters")
        row = atlas.neuron(layer, index)
        if row is None:
            raise PageError(404, f"no neuron {layer}:{index} in this atlas")
        model = str(atlas.meta.get("model", ""))
        dive = self._deep_dive(model, f"{layer}:{index}", f"{url_folder}site/n/")
        return neuron_page(row, model, dive)


def _listing(atlas: AtlasTable, layer: int | None, params: dict[str, str]) -> str:
    """``layer-L.html`` (``layer``) or ``neurons.html`` (None) for URL ``params``."""
    if layer is not None and layer not in {s["layer"] for s in atlas.layers}:
        raise PageError(404, f"no layer {layer} in this atlas")
    if layer is not None and "layer" in params:
        raise PageError(400, "a layer page takes its layer from its name")
    try:
        listing = atlas.select(parse_query(params, layer))
    except ValueError as err:
        raise PageError(400, str(err)) from None
    if listing.query.page > listing.pages:
        raise PageError(404, f"page {listing.query.page} is past the last ({listing.pages})")
    layers = None if layer is not None else [s["layer"] for s in atlas.layers]
    return listing_page(listing, atlas.kinds, str(atlas.meta.get("model", "")), layers)
