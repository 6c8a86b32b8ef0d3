"""``neurosleuth batch | summary | serve``, and ``resume`` of a batch (called by ``resume`` in
``investigate.py`` when the id names a batch folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
)

RunsDir = Annotated[Path, typer.Option("--runs-dir", help="folder holding batches and runs")]


def register(app: typer.Typer) -> None:
    app.command()(batch)
    app.command()(summary)
    app.command()(serve)


def is_batch(runs_dir: Path, batch_id: str) -> bool:
    from neurosleuth.agents.config import run_path

    try:
        return (run_path(runs_dir, batch_id) / "batch.json").is_file()
    except ValueError:
        return False


NO_NEURONS = ("no neurons: give LAYER:INDEX specs, --layer with --neurons or --auto, --csv, "
              "--from-locate or --from-atlas")


def _listed(specs, layer, neurons, csv_file, from_locate, auto, allow_empty=False) -> list:
    """The neurons the arguments name (all but --auto's picks), parsed without the model."""
    from neurosleuth.batch import select as sel

    picks = sel.from_specs(specs, layer, neurons)
    if csv_file is not None:
        picks += sel.from_csv(csv_file)
    if from_locate is not None:
        picks += sel.from_locate(from_locate)
    if auto is not None and layer is None:
        raise ValueError("--auto needs --layer")
    if not picks and auto is None and not allow_empty:
        raise ValueError(NO_NEURONS)
    return picks


def _pick(lm, listed, layer, auto, cfg):
    from neurosleuth.batch import select as sel

    picks = list(listed)
    if auto is not None:
        with err_console.status(f"ranking the neurons of layer {layer} (corpus scan) ..."):
            picks += sel.auto_pick(lm, layer, auto, cfg.corpus, cfg.window, cfg.exemplar_tokens)
    picks = sel.unique(picks)
    if not picks:
        raise ValueError(NO_NEURONS)
    for p in picks:
        p.neuron.validate(lm.n_layers, lm.d_mlp)
    return picks


@friendly_errors
def batch(
    specs: Annotated[list[str] | None, typer.Argument(help="neurons: 12:345 12:0-9 ...")] = None,
    layer: Annotated[int | None, typer.Option(help="layer for --neurons / --auto")] = None,
    neurons: Annotated[str | None, typer.Option(help="indices of --layer: 0-99, 3,7,10-12")] = None,
    csv: Annotated[Path | None, typer.Option(help="CSV with layer,index or neuron columns")] = None,
    from_locate: Annotated[Path | None, typer.Option(help="the CSV of `locate --out`")] = None,
    auto: Annotated[int | None, typer.Option(help="pick N interesting neurons of --layer")] = None,
    from_atlas: Annotated[Path | None, typer.Option(
        help="an atlas folder: deep-dive the neurons where it helps most (--pick N)")] = None,
    pick: Annotated[int, typer.Option(help="neurons to pick with --from-atlas")] = 20,
    limit: Annotated[int | None, typer.Option(help="keep only the first N neurons")] = None,
    model: ModelOpt = "smollm2-135m",
    planner: Annotated[str | None, typer.Option(help="auto, ollama, embedded, heuristic")] = None,
    policy: Annotated[str | None, typer.Option(
        help="adaptive (the planner chooses each experiment) or fixed (the schedule)")] = None,
    time: Annotated[str | None, typer.Option("--time", help="budget for the whole batch, e.g. "
                                             "8h; split across neurons")] = None,
    min_neuron_time: Annotated[str, typer.Option(help="least time per neuron")] = "30s",
    iterations: Annotated[int | None, typer.Option(help="cycles per neuron (default: 30, or "
                                                   "unlimited under --time)")] = None,
    batch_id: Annotated[str | None, typer.Option(help="name of the batch folder")] = None,
    runs_dir: RunsDir = Path("runs"),
    executor: Annotated[str, typer.Option(help="local (in this process) or ray")] = "local",
    shared_cache: Annotated[bool, typer.Option(
        help="layer-parallel: the neurons of a layer advance together and share every forward "
        "pass through one activation cache in the batch folder (--no-shared-cache: one neuron "
        "after another)")] = True,
    group_size: Annotated[int, typer.Option(help="neurons of one layer investigated together "
                                            "(one cache and search board)", min=1)] = 32,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: "
                                                    "start a local Ray)")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML/JSON run config file")] = None,
    corpus: Annotated[str | None, typer.Option(help=CORPUS_HELP)] = None,
    exemplar_tokens: Annotated[int | None, typer.Option(help="corpus tokens to scan")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Investigate many neurons in one crash-safe batch and build a report site for them."""
    from neurosleuth.agents.config import parse_duration, resolve_config
    from neurosleuth.cli import load, precheck

    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}: use local or ray")
    cfg = resolve_config(config, model=model, planner=planner, policy=policy, iterations=iterations,
                         corpus=corpus, exemplar_tokens=exemplar_tokens, seed=seed, device=device,
                         dtype=dtype, device_map=device_map)
    if from_atlas is not None:
        from neurosleuth.batch.select import from_atlas as atlas_picks

        listed = _listed(specs, layer, neurons, csv, from_locate, auto, allow_empty=True)
        listed += atlas_picks(from_atlas, pick)
        cfg = cfg.model_copy(update={"atlas": str(from_atlas.resolve())})
    else:
        listed = _listed(specs, layer, neurons, csv, from_locate, auto)
    precheck(cfg.model, [p.neuron for p in listed])  # before the model loads
    from neurosleuth.agents.planner import ollama_status
    from neurosleuth.batch.queue import BatchQueue, new_batch_id

    if cfg.planner == "ollama" and (problem := ollama_status(cfg.ollama_host, cfg.ollama_model)):
        fail(f"{problem}; start `ollama serve` or use --planner embedded")
    batch_id = batch_id or new_batch_id()
    if is_batch(runs_dir, batch_id):
        fail(f"batch {batch_id} exists in {runs_dir}: use `neurosleuth resume {batch_id} "
             f"--runs-dir {runs_dir}`")
    lm = (load(cfg.model, "cpu", cfg.dtype) if executor == "ray"
          else load(cfg.model, cfg.device, cfg.dtype, cfg.device_map))
    picks = _pick(lm, listed, layer, auto, cfg)[:limit]
    queue = BatchQueue.create(runs_dir, batch_id, picks, cfg, parse_duration(time),
                              parse_duration(min_neuron_time) or 0.0, executor, shared_cache,
                              group_size)
    err_console.print(f"batch {batch_id}: {len(picks)} neurons in {queue.folder}", markup=False)
    _run(queue.folder, lm if executor == "local" else None, executor, ray_address, None)
    if from_atlas is not None:  # the atlas pages link the deep dives
        from neurosleuth.report.atlas_site import deep_dives_in, exported_layers, write_site

        exported = exported_layers(from_atlas)
        if exported:  # a static export is written again; served pages link them as they are
            write_site(from_atlas, deep_dives_in(runs_dir, cfg.model), exported)
        console.print(f"atlas pages link the deep dives: neurosleuth serve {runs_dir}",
                      markup=False, highlight=False)


def _run(folder: Path, lm, executor: str | None, ray_address: str | None,
         time_budget_s: float | None) -> None:
    from neurosleuth.batch.progress import make_display
    from neurosleuth.batch.queue import Writers, run_batch
    from neurosleuth.report.build import write_report
    from neurosleuth.report.site import write_site

    try:  # each run writes its report, the batch its index.html
        final = run_batch(folder, lm=lm, display=make_display(console), executor=executor,
                          ray_address=ray_address, time_budget_s=time_budget_s,
                          writers=Writers(reporter=write_report, site=write_site))
    except KeyboardInterrupt:
        err_console.print(f"interrupted: continue with `neurosleuth resume {folder.name} "
                          f"--runs-dir {folder.parent}`", markup=False)
        raise typer.Exit(130) from None
    counts = ", ".join(f"{v} {k}" for k, v in final.counts().items() if v)
    console.print(f"batch {final.batch_id}: {counts}", markup=False, highlight=False)
    console.print(f"site: {folder / 'index.html'}", markup=False, highlight=False)


def resume_batch(runs_dir: Path, batch_id: str, time: str | None = None) -> None:
    """``neurosleuth resume BATCH``: finish the remaining neurons, continue the interrupted one."""
    from neurosleuth.agents.config import parse_duration, run_path

    _run(run_path(runs_dir, batch_id), None, None, None, parse_duration(time))


@friendly_errors
def summary(
    batch_id: Annotated[str, typer.Argument(help="the batch")],
    runs_dir: RunsDir = Path("runs"),
    csv: Annotated[Path | None, typer.Option(help="write the table as CSV")] = None,
    parquet: Annotated[Path | None, typer.Option(help="write the table as Parquet")] = None,
    neuron_explainer: Annotated[Path | None, typer.Option(
        help="write hypotheses as neuron-explainer style JSON")] = None,
    records: Annotated[Path | None, typer.Option(
        help="write each finished neuron's top dataset windows as activation records")] = None,
    records_format: Annotated[str, typer.Option(
        help="format of --records: openai (neuron-explainer NeuronRecord), neuronpedia, "
             "jsonl")] = "openai",
) -> None:
    """The table of a batch's neurons: hypothesis, score, best activation vs dataset max."""
    import json

    from rich.table import Table
    from rich.text import Text

    from neurosleuth.agents.config import run_path
    from neurosleuth.report.site import (
        batch_records,
        batch_rows,
        component_names,
        explainer_records,
        rows_frame,
    )
    from neurosleuth.tools.records import FORMATS
    from neurosleuth.tools.records import write as write_records

    if records_format not in FORMATS:
        fail(f"--records-format {records_format!r}: choose one of {', '.join(FORMATS)}")
    queue, rows = batch_rows(run_path(runs_dir, batch_id))
    names = component_names(rows)
    shown = names if console.width >= 90 + 10 * len(names) else []  # components when they fit
    table = Table(title=f"batch {batch_id} ({queue.batch.status})", show_lines=False)
    for col in ("neuron", "status", "hypothesis", "score", *shown, "best", "max", "best/max"):
        text = col in ("neuron", "status", "hypothesis")
        table.add_column(col, justify="left" if text else "right", overflow="fold",
                         no_wrap=col != "hypothesis")
    g = lambda x: "" if x is None else f"{x:.3g}"  # noqa: E731
    for r in rows:
        table.add_row(Text(r.neuron), Text(r.status), Text(r.hypothesis or (r.error or "")),
                      g(r.score), *(g(r.components.get(k)) for k in shown),
                      g(r.best_activation), g(r.dataset_max),
                      "" if r.best_vs_max is None else f"{r.best_vs_max:.0%}")
    console.print(table)
    frame = rows_frame(rows)
    if csv is not None:
        frame.to_csv(csv, index=False)
        console.print(f"wrote {csv}", markup=False, highlight=False)
    if parquet is not None:
        frame.to_parquet(parquet, index=False)
        console.print(f"wrote {parquet}", markup=False, highlight=False)
    if neuron_explainer is not None:
        explained = explainer_records(rows, str(queue.batch.run_config.get("model")))
        neuron_explainer.write_text(json.dumps(explained, indent=2))
        console.print(f"wrote {neuron_explainer} ({len(explained)} explanations)", markup=False,
                      highlight=False)
    if records is not None:
        found = batch_records(queue, rows)
        if not found:
            fail(f"batch {batch_id} has no finished neuron with dataset windows to export")
        write_records(records, found, records_format)
        console.print(f"wrote {records} ({len(found)} neurons, {records_format} records)",
                      markup=False, highlight=False)


@friendly_errors
def serve(
    runs_dir: Annotated[Path, typer.Argument(
        help="a runs folder, one batch folder, or an atlas folder (its pages rendered from its "
             "table)")] = Path("runs"),
    port: Annotated[int, typer.Option(help="port to listen on (0: any free port)")] = 8000,
    host: Annotated[str, typer.Option(
        help="address or name to listen on: 127.0.0.1 (this machine only); on a remote machine, "
        "the name or address you will browse to, or 0.0.0.0 for every interface")] = "127.0.0.1",
    live: Annotated[bool, typer.Option(help="load the model; reports get a box to try text")
                    ] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help="model for --live (default: "
                                              "the one the runs used)")] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Serve batch sites, run reports and atlases on 127.0.0.1, or --host (Ctrl-C stops). An
    atlas (a folder with atlas.parquet) is rendered from its table on request at ATLAS/site/."""
    from neurosleuth.cli import load
    from neurosleuth.report.atlas_serve import is_atlas
    from neurosleuth.report.serve import first_run_model, make_server
    from neurosleuth.report.serve_guard import is_loopback

    if not 0 <= port <= 65535:  # before the model loads
        fail(f"port {port} out of range: use 1..65535, or 0 for any free port")
    lm, spec = None, None
    if live:
        spec = model or first_run_model(runs_dir) or "smollm2-135m"
        lm = load(spec, device, dtype, device_map)
    from neurosleuth.report.atlas_site import INDEXES, search_response

    server = make_server(runs_dir, port, lm=lm, model_spec=spec, quiet=False,
                         atlas_search=search_response, host=host)
    if not is_loopback(host):
        err_console.print(f"warning: listening on {host}, beyond this machine: anyone who can "
                          f"reach it can read every file under {runs_dir}"
                          + (" and run the model" if live else "") + " (no password, no TLS)",
                          markup=False)
    url = server.url
    if is_atlas(server.root):  # opened now, so that the first page is as fast as the next
        with err_console.status("opening the atlas table ..."):
            server.atlas.table(server.root)
        # the search index (minutes for a whole model) is built while the pages are served
        INDEXES.start(server.root)
        url += "site/"
    err_console.print(f"serving {runs_dir} at {url}" + (f" (live: {spec})" if live else ""),
                      markup=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
