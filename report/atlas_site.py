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
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from neurosleuth.atlas.table import layer_summary
from neurosleuth.report.atlas_pages import index_page, layer_page, neuron_page, search_page

if TYPE_CHECKING:
    from neurosleuth.atlas.search import AtlasIndex


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


_INDEXES: dict[Path, AtlasIndex] = {}
_LOCK = threading.Lock()


def search_response(folder: Path, query: str) -> str:
    """The results page of ``query`` in the atlas at ``folder`` (for ``neurosleuth serve``)."""
    from neurosleuth.atlas.search import AtlasIndex, bulk_embedder

    with _LOCK:
        if folder not in _INDEXES:
            _INDEXES[folder] = AtlasIndex(folder, bulk_embedder())
        index = _INDEXES[folder]
        hits = index.search(query, 20)
    model = json.loads((folder / "atlas.json").read_text()).get("model", "")
    return search_page(query, hits, str(model))
