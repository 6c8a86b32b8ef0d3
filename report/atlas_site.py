"""The atlas's static export: the pages of ``report/atlas_pages.py`` written as files in
``DIR/site/`` (``neurosleuth atlas --site`` or ``neurosleuth atlas-export DIR [--layers 3,5]``),
for sharing a small atlas or chosen layers; they work from the file system and through
``neurosleuth serve``. ``neurosleuth serve`` renders the same pages from the table on request,
so an atlas needs no export to be browsed (one page per neuron is 28 KB: 1.3 GB for SmolLM2's
46,080 neurons, 13 GB for an 8B model's).

The export writes ``index.html`` (the exported layers only), ``layer-L.html`` with every row and
in-browser filters, and ``n/L-I.html`` per neuron, each file atomically (a temporary file, then a
rename), reading the table one layer at a time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from neurosleuth.atlas.table import layer_summary
from neurosleuth.report.atlas_pages import index_page, layer_page, neuron_page, search_page

if TYPE_CHECKING:
    from neurosleuth.atlas.search import AtlasIndex

log = logging.getLogger(__name__)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def exported_layers(folder: Path) -> list[int]:
    """The layers a static export in ``folder/site`` holds (none without an export)."""
    names = (p.stem.removeprefix("layer-") for p in (folder / "site").glob("layer-*.html"))
    return sorted(int(n) for n in names if n.isdigit())


def write_site(folder: Path, deep_dives: dict[str, str] | None = None,
               layers: Iterable[int] | None = None) -> Path:
    """Write ``folder/site`` from ``folder/atlas.parquet`` (``layers``: only these; default all);
    returns its ``index.html``. ``deep_dives``: neuron ("L:I") -> path of its report.html, linked
    from its page. ValueError when a chosen layer is not in the atlas."""
    path = folder / "atlas.parquet"
    meta = json.loads((folder / "atlas.json").read_text())
    light = pd.read_parquet(path, columns=["layer", "r", "density", "kind", "concept"])
    present = sorted(int(x) for x in light["layer"].unique())
    chosen = present if layers is None else sorted(set(layers))
    missing = sorted(set(chosen) - set(present))
    if missing:
        raise ValueError(f"layers {missing} are not in the atlas (it has {present})")
    site = folder / "site"
    (site / "n").mkdir(parents=True, exist_ok=True)
    model = str(meta.get("model", ""))
    deep_dives = deep_dives or {}
    best: list[dict] = []
    for layer in chosen:
        rows = pd.read_parquet(path, filters=[("layer", "==", layer)]).to_dict("records")
        for row in rows:
            report = deep_dives.get(str(row["neuron"]))
            rel = os.path.relpath(report, site / "n") if report else None
            _write(site / "n" / f"{int(row['layer'])}-{int(row['index'])}.html",
                   neuron_page(row, model, rel))
        _write(site / f"layer-{layer}.html", layer_page(rows, layer, model))
        best = sorted(best + [r for r in rows if pd.notna(r["r"])], key=lambda r: -r["r"])[:50]
    light = light[light["layer"].isin(chosen)]
    summary = layer_summary(light["layer"].to_numpy(), pd.to_numeric(
        light["r"], errors="coerce").to_numpy(float), light["density"].to_numpy(float),
        light["kind"].to_numpy(object), light["concept"].notna().to_numpy())
    _write(site / "index.html", index_page(meta, summary, best, served=False))
    return site / "index.html"


def deep_dives_in(runs_dir: Path, model: str) -> dict[str, str]:
    """Neuron -> report.html of the finished investigations of ``model`` under ``runs_dir``
    (run folders and batch folders one level down)."""
    out: dict[str, str] = {}
    if not runs_dir.is_dir():
        return out
    for config in list(runs_dir.glob("*/config.json")) + list(runs_dir.glob("*/*/config.json")):
        try:
            cfg = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        report = config.parent / "report.html"
        if cfg.get("model") == model and report.is_file() and cfg.get("neuron"):
            out[str(cfg["neuron"])] = str(report)
    return out


class SearchIndexes:
    """The search indexes of the atlases a server serves, each built once, in a background
    thread: embedding SmolLM2's 46,080 neurons takes about 4 minutes on 2 CPU cores, which no
    request should wait for. ``serve ATLAS`` starts the build as it starts; another atlas under
    the root starts its own on its first search. A search waits up to ``WAIT_S`` for a build (a
    saved index or a small atlas is ready by then); past that it is answered 503 with the
    build's age, and answered in full once the build is done. A failed build is reported (500)
    to the search that finds it, and the next search tries again."""

    WAIT_S = 30.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready: dict[Path, AtlasIndex] = {}
        self.building: dict[Path, tuple[threading.Thread, float]] = {}
        self.failed: dict[Path, str] = {}

    def start(self, folder: Path) -> threading.Thread | None:
        """Build ``folder``'s index in the background unless it is ready or being built; the
        building thread (None when nothing is to be built)."""
        with self.lock:
            if folder in self.ready:
                return None
            if folder in self.building:
                return self.building[folder][0]
            thread = threading.Thread(target=self._build, args=(folder,), daemon=True,
                                      name=f"search-index {folder.name}")
            self.building[folder] = (thread, time.monotonic())
            self.failed.pop(folder, None)
        thread.start()
        return thread

    def _build(self, folder: Path) -> None:
        from neurosleuth.atlas.search import AtlasIndex, bulk_embedder

        try:
            index = AtlasIndex(folder, bulk_embedder())
        except Exception as err:  # reported to the next search, which tries again
            log.warning("could not build the search index of %s: %s", folder, err)
            with self.lock:
                self.failed[folder] = f"{type(err).__name__}: {err}"
                del self.building[folder]
            return
        with self.lock:
            self.ready[folder] = index
            del self.building[folder]

    def get(self, folder: Path) -> AtlasIndex:
        """``folder``'s index, once built; PageError 503 while it is being built, 500 when the
        build failed (the next call builds it again)."""
        from neurosleuth.report.atlas_serve import PageError

        with self.lock:
            failed = self.failed.pop(folder, None)
        if failed is not None:
            raise PageError(500, f"could not build the search index: {failed[:200]}")
        thread = self.start(folder)
        if thread is not None:
            thread.join(self.WAIT_S)
        with self.lock:
            if folder in self.ready:
                return self.ready[folder]
            failed = self.failed.pop(folder, None)
            started = self.building[folder][1] if folder in self.building else None
        if failed is not None:
            raise PageError(500, f"could not build the search index: {failed[:200]}")
        age = time.monotonic() - (started or time.monotonic())
        raise PageError(503, f"the search index of this atlas is being built (for {age:.0f} s; "
                             "about 4 minutes for 46,080 neurons on 2 cores): try again shortly")


INDEXES = SearchIndexes()
_SEARCH = threading.Lock()


def search_response(folder: Path, query: str) -> str:
    """The results page of ``query`` in the atlas at ``folder`` (for ``neurosleuth serve``);
    PageError 503 while its index is being built (``SearchIndexes``)."""
    index = INDEXES.get(folder)
    with _SEARCH:  # one query embedded at a time
        hits = index.search(query, 20)
    model = json.loads((folder / "atlas.json").read_text()).get("model", "")
    return search_page(query, hits, str(model))
