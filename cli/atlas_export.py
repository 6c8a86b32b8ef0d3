"""``neurosleuth atlas-export``: an atlas's pages written as a static site (``DIR/site/``), for
sharing a small atlas or chosen layers; ``neurosleuth serve DIR`` renders the same pages on
request with no export (``report/atlas_serve.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurosleuth.cli import console, fail, friendly_errors

AtlasDir = Annotated[Path, typer.Argument(help="an atlas folder (atlas --out)")]


def export_site(folder: Path, runs_dir: Path, layers: str = "all") -> Path:
    """Write ``folder/site`` for ``layers`` (all, L, L-M or a comma list), linking the deep dives
    under ``runs_dir``; returns its index.html. Fails in one line on a bad folder or layer."""
    import json

    from neurosleuth.atlas.build import parse_layers
    from neurosleuth.report.atlas_site import deep_dives_in, write_site

    if not (folder / "atlas.parquet").is_file() or not (folder / "atlas.json").is_file():
        fail(f"{folder} is no atlas (no atlas.parquet and atlas.json): build one with "
             f"`neurosleuth atlas --out {folder}`")
    meta = json.loads((folder / "atlas.json").read_text())
    dives = deep_dives_in(runs_dir, str(meta.get("model", "")))
    try:
        chosen = None if layers.strip() == "all" else parse_layers(layers, 1 << 20)
        return write_site(folder, dives, chosen)
    except ValueError as err:  # a bad spec, or a layer the atlas does not have
        fail(str(err))


@friendly_errors
def atlas_export(
    folder: AtlasDir,
    layers: Annotated[str, typer.Option(help="all, L, L-M or a comma list")] = "all",
    runs_dir: Annotated[Path, typer.Option(help="where the deep dives to link live")
                        ] = Path("runs"),
) -> None:
    """Write the atlas's pages as a static site (DIR/site/index.html, one page per neuron: about
    28 KB each) that works from the file system. `neurosleuth serve DIR` shows the same pages
    with no export."""
    index = export_site(folder, runs_dir, layers)
    pages = len(list((index.parent / "n").glob("*.html")))
    console.print(f"site: {index} ({pages:,} neuron pages)", markup=False, highlight=False)
