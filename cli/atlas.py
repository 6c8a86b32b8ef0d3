"""``neurosleuth atlas``: every neuron of some layers explained and scored from one shared scan
(``atlas/build.py``), a Parquet table that ``neurosleuth serve`` browses (and, with ``--site``, a
static site: ``cli/atlas_export.py``); ``neurosleuth atlas-search``: search it by meaning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from neurosleuth.cli import (
    CORPUS_HELP,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    console,
    err_console,
    fail,
    friendly_errors,
    load,
    precheck,
)
from neurosleuth.cli.atlas_export import atlas_export, export_site

if TYPE_CHECKING:
    from neurosleuth.atlas.build import AtlasConfig

AtlasDir = Annotated[Path, typer.Argument(help="an atlas folder (atlas --out)")]


def register(app: typer.Typer) -> None:
    app.command()(atlas)
    app.command("atlas-search")(atlas_search)
    app.command("atlas-export")(atlas_export)


def default_out(runs_dir: Path, model: str) -> Path:
    from neurosleuth.agents.config import run_path

    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).name)[-60:]
    return run_path(runs_dir, f"atlas-{slug}")


@friendly_errors
def atlas(
    model: ModelOpt = "smollm2-135m",
    layers: Annotated[str, typer.Option(help="all, L, L-M or a comma list")] = "all",
    tokens: Annotated[int, typer.Option(help="corpus tokens to scan")] = 1 << 17,
    time: Annotated[str | None, typer.Option(
        help="stop after the layer in progress once spent (8h, 90m); run again to go on")] = None,
    out: Annotated[Path | None, typer.Option(
        help="atlas folder (default: RUNS_DIR/atlas-MODEL)")] = None,
    runs_dir: Annotated[Path, typer.Option(help="where runs (and deep dives) live")] = Path("runs"),
    corpus: Annotated[str | None, typer.Option(help=CORPUS_HELP)] = None,
    window: Annotated[int, typer.Option(help="tokens per corpus window")] = 64,
    keep: Annotated[int, typer.Option(
        help="top windows kept per neuron: half explain it, half score it")] = 24,
    records: Annotated[Path | None, typer.Option(
        help="also write every neuron's kept windows as activation records")] = None,
    records_format: Annotated[str, typer.Option(
        help="format of --records: openai, neuronpedia, jsonl")] = "openai",
    site: Annotated[bool, typer.Option(
        help="also write a static site, one page per neuron (28 KB each; see atlas-export)")
                    ] = False,
    workers: Annotated[int | None, typer.Option(
        help="processes that explain and score the neurons (default: one per CPU core); the "
             "table is the same whatever the count; with --executor ray: a layer's task, default "
             "the cluster's CPUs per GPU, else 1)")] = None,
    executor: Annotated[str, typer.Option(
        help="local (this machine) or ray (one Ray task a layer, across a cluster's GPUs and "
             "machines)")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="with --executor ray: the cluster to join (auto, HOST:6379, ray://HOST:10001; "
             "default: start a local Ray)")] = None,
    index: Annotated[bool, typer.Option(
        help="index the explanations for search by meaning now (SmolLM2: about 4 minutes on 2 "
             "cores); --no-index leaves it to the first search")] = True,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Explain and score every neuron of the chosen layers from one scan, with no per-neuron
    forward pass: a Parquet table (atlas.parquet) that `neurosleuth serve DIR` browses. A killed
    or timed-out atlas continues where it stopped when run again with the same options."""
    from neurosleuth.agents.config import parse_duration
    from neurosleuth.atlas.build import AtlasConfig, build_atlas, parse_layers
    from neurosleuth.atlas.workers import default_workers
    from neurosleuth.tools.records import FORMATS
    from neurosleuth.tools.scan_config import ScanConfig

    if records_format not in FORMATS:
        fail(f"--records-format {records_format!r}: choose one of {', '.join(FORMATS)}")
    shape = precheck(model)
    if shape is not None:
        parse_layers(layers, shape.n_layers)  # a bad spec fails before the model loads
    if keep < 2:
        fail("--keep must be at least 2 (half the windows explain, half score)")
    if workers is not None and workers < 1:
        fail("--workers must be at least 1")
    if executor not in ("local", "ray"):
        fail(f"--executor {executor!r}: use local or ray")
    cfg = AtlasConfig(ScanConfig(corpus=corpus, window=window, max_tokens=tokens, k=keep),
                      time_s=parse_duration(time),
                      workers=workers if workers is not None else default_workers())
    if executor == "local" or shape is None:  # a Ray driver needs the model's shape alone
        lm = load(model, device, dtype, device_map)
        n_layers = lm.n_layers
    else:
        lm, n_layers = None, shape.n_layers
    chosen = parse_layers(layers, n_layers)
    folder = out if out is not None else default_out(runs_dir, model)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as bar:
        scan = bar.add_task(f"scan ({len(chosen)} layers, tokens)", total=None)
        neurons = bar.add_task("neurons", total=None, visible=False)

        def on_neurons(layer: int, done: int, total: int) -> None:
            bar.update(neurons, description=f"layer {layer}: neurons", completed=done,
                       total=total, visible=True)

        def say(m: str) -> None:
            err_console.print(m, markup=False, highlight=False)

        try:
            if executor == "ray":
                path = _build_ray(model, chosen, folder, cfg, workers, ray_address,
                                  {"device": device, "dtype": dtype, "device_map": device_map},
                                  say)
            else:
                assert lm is not None
                path = build_atlas(
                    lm, chosen, folder, cfg, say=say,
                    scan_progress=lambda d, t: bar.update(scan, completed=d, total=t),
                    neuron_progress=on_neurons)
        except TimeoutError as err:
            fail(str(err), code=3)
    site_index = export_site(folder, runs_dir) if site else None
    if index:
        _index(folder)
    if records is not None:
        import pandas as pd

        from neurosleuth.atlas.build import records_of
        from neurosleuth.tools.records import write

        frame = pd.read_parquet(path)
        write(records, [records_of(r, model) for _, r in frame.iterrows()], records_format)
        console.print(f"wrote {records} ({len(frame)} neurons, {records_format} records)",
                      markup=False, highlight=False)
    _summary(path)
    console.print(f"table: {path}\nbrowse: neurosleuth serve {folder}"
                  + (f"\nsite:  {site_index}" if site_index else ""), markup=False,
                  highlight=False)


def _index(folder: Path) -> None:
    """Build the search index once, now (the first search is then instant), and keep its time
    beside the scan's and the explanations' in ``atlas.json``."""
    import json
    import time

    from neurosleuth.atlas.search import AtlasIndex, bulk_embedder

    start = time.perf_counter()
    with err_console.status("indexing the explanations for search by meaning ..."):
        AtlasIndex(folder, bulk_embedder())
    meta_path = folder / "atlas.json"
    meta = json.loads(meta_path.read_text())
    meta.setdefault("timings", {})["index_s"] = round(time.perf_counter() - start, 1)
    meta_path.write_text(json.dumps(meta, indent=1))


def _build_ray(model: str, layers: list[int], folder: Path, cfg: AtlasConfig, workers: int | None,
               address: str | None, placement: dict[str, str | None], say: Callable[[str], None]
               ) -> Path:
    """``--executor ray``: join the cluster at ``address`` (else start a local Ray) and build the
    atlas one Ray task a layer (``atlas/ray_shards.py``); placement flags left unset take the
    ``NEUROSLEUTH_*`` environment here, so that every node loads the model alike."""
    import os

    from neurosleuth.atlas.ray_shards import build_atlas_ray
    from neurosleuth.batch.ray_executor import init_ray

    try:
        import ray
    except ImportError:
        fail("--executor ray needs Ray: pip install 'neurosleuth[ray]'")
    env = {"device": "NEUROSLEUTH_DEVICE", "dtype": "NEUROSLEUTH_DTYPE",
           "device_map": "NEUROSLEUTH_DEVICE_MAP"}
    placement = {k: v or os.environ.get(env[k]) for k, v in placement.items()}
    started = init_ray(address)
    try:
        return build_atlas_ray(model, layers, folder, cfg, placement, say, workers=workers)
    finally:
        if started:
            ray.shutdown()


def _summary(path: Path) -> None:
    import json

    import pandas as pd

    frame = pd.read_parquet(path)
    meta = json.loads((path.parent / "atlas.json").read_text())
    r = pd.to_numeric(frame["r"], errors="coerce")
    lr = pd.to_numeric(frame["list_r"], errors="coerce")
    t = meta.get("timings", {})
    neuron_s = sum(t.get("neurons_s", {}).values())
    console.print(
        f"{len(frame):,} neurons in layers {meta.get('layers')}; mean simulation r "
        f"{r.mean():+.3f} (token-list reading {lr.mean():+.3f}); concepts "
        f"{int(frame['concept'].notna().sum())}, kinds of text "
        f"{int((frame['kind'] == 'context').sum())}, dead {int((frame['kind'] == 'none').sum())};"
        f" scan {t.get('scan_s', 0):.0f} s, explanations {neuron_s:.0f} s"
        + (f", search index {t['index_s']:.0f} s" if "index_s" in t else ""),
        markup=False, highlight=False)


@friendly_errors
def atlas_search(
    folder: AtlasDir,
    query: Annotated[str, typer.Argument(help="what to look for, in words")],
    k: Annotated[int, typer.Option("-k", help="results")] = 10,
) -> None:
    """Search an atlas by meaning ("colour words", "Python code"): explanations embedded with
    all-MiniLM-L6-v2 in a FAISS index (built once, kept beside the table)."""
    from neurosleuth.atlas.search import AtlasIndex, bulk_embedder

    if not (folder / "atlas.parquet").is_file():
        fail(f"{folder} has no atlas.parquet: build one with `neurosleuth atlas --out {folder}`")
    hits = AtlasIndex(folder, bulk_embedder()).search(query, k)
    table = Table(title=f"{query!r} in {folder.name}", show_header=True, header_style="bold")
    for col in ("neuron", "similarity", "explanation", "r"):
        table.add_column(col, overflow="fold")
    for h in hits:
        table.add_row(h.neuron, f"{h.similarity:.3f}", h.explanation,
                      "" if h.r is None else f"{h.r:+.3f}")
    console.print(table)
