"""``neurosleuth investigate | resume | steer``: run, continue and steer an investigation."""

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
    precheck,
)

RunsDir = Annotated[Path, typer.Option("--runs-dir", help="where runs are written")]


def register(app: typer.Typer) -> None:
    app.command()(investigate)
    app.command()(resume)
    app.command()(steer)
    app.command()(report)


@friendly_errors
def investigate(
    neuron: Annotated[str, typer.Option("--neuron", "-n", help="LAYER:INDEX, e.g. 12:345")],
    model: ModelOpt = "smollm2-135m",
    planner: Annotated[
        str | None, typer.Option(help="auto (Ollama, else embedded), ollama, embedded, heuristic")
    ] = None,
    policy: Annotated[str | None, typer.Option(
        help="adaptive (the planner chooses each experiment; default) or fixed (a prompt search "
        "every step, probes and a hypothesis round every hypothesis_every steps)")] = None,
    iterations: Annotated[int | None, typer.Option(help="plan/act/record cycles")] = None,
    time: Annotated[
        str | None, typer.Option("--time", help="wall-time budget, e.g. 8h, 20m")
    ] = None,
    max_forward_passes: Annotated[
        int | None, typer.Option(help="budget of prompts measured")
    ] = None,
    steer: Annotated[
        list[str] | None, typer.Option(help="guidance for the planner (repeatable)")
    ] = None,
    steer_file: Annotated[Path | None, typer.Option(help="file of guidance, one message")] = None,
    hypothesis: Annotated[
        str | None, typer.Option(help="your own hypothesis: scored beside the agent's candidates")
    ] = None,
    system_prompt_file: Annotated[
        Path | None, typer.Option(help="replaces the planner's system prompt")
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="name of the run folder")] = None,
    runs_dir: RunsDir = Path("runs"),
    config: Annotated[Path | None, typer.Option(help="TOML/JSON config file")] = None,
    corpus: Annotated[str | None, typer.Option(help=CORPUS_HELP)] = None,
    exemplar_tokens: Annotated[int | None, typer.Option(help="corpus tokens to scan")] = None,
    sweep_words: Annotated[int | None, typer.Option(
        help="vocabulary words the explainer puts at the neuron's peak, commonest first (default:"
        " all the budget affords, on a CPU at most 16,384; 0: no sweep)", min=0)] = None,
    ollama_model: Annotated[
        str | None, typer.Option(help="Ollama model (default llama3.1)")
    ] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Investigate one neuron autonomously and write its hypothesis report."""
    precheck(model, [neuron])  # the flags win over config and environment: the run's neuron
    from neurosleuth.agents.config import parse_duration, resolve_config
    from neurosleuth.agents.planner import PlannerUnavailable
    from neurosleuth.agents.session import investigate as run_investigation
    from neurosleuth.cli.live import LiveView
    from neurosleuth.report.build import write_report
    from neurosleuth.tools.model import placement_of

    messages = list(steer or [])
    if steer_file is not None:
        messages.append(steer_file.read_text().strip())
    system = system_prompt_file.read_text() if system_prompt_file else None
    cfg = resolve_config(
        config,
        neuron=neuron,
        model=model,
        planner=planner,
        policy=policy,
        iterations=iterations,
        time_budget_s=parse_duration(time),
        max_forward_passes=max_forward_passes,
        steer=messages or None,
        hypothesis=hypothesis,
        system_prompt=system,
        run_id=run_id,
        runs_dir=str(runs_dir),
        corpus=corpus,
        exemplar_tokens=exemplar_tokens,
        sweep_words=sweep_words,
        ollama_model=ollama_model,
        seed=seed,
        device=device,
        dtype=dtype,
        device_map=device_map,
    )
    placement_of(cfg.device, cfg.dtype, cfg.device_map)  # one line, before anything loads
    try:
        with LiveView(err_console, cfg, cfg.neuron) as view:
            path = run_investigation(cfg, observer=view, reporter=write_report)
    except PlannerUnavailable as err:
        fail(str(err))
    _print_outcome(path)


@friendly_errors
def resume(
    run_id: Annotated[str, typer.Argument(help="the run to continue")],
    runs_dir: RunsDir = Path("runs"),
    iterations: Annotated[int | None, typer.Option(help="new total iteration budget")] = None,
    time: Annotated[str | None, typer.Option("--time", help="new total time budget")] = None,
) -> None:
    """Continue a run, or a batch, from its last checkpoint (after a kill, Ctrl-C, or with a
    larger budget; for a batch --time is the new total)."""
    from neurosleuth.cli import batch as cli_batch

    if cli_batch.is_batch(runs_dir, run_id):
        return cli_batch.resume_batch(runs_dir, run_id, time)
    from neurosleuth.agents.config import RunConfig, parse_duration, run_path
    from neurosleuth.agents.session import resume as resume_run
    from neurosleuth.cli.live import LiveView
    from neurosleuth.report.build import write_report

    saved = run_path(runs_dir, run_id) / "config.json"
    cfg = RunConfig.model_validate_json(saved.read_text()) if saved.is_file() else RunConfig()
    if iterations:
        cfg = cfg.model_copy(update={"iterations": iterations})
    from neurosleuth.agents.graph import OldRunError

    try:
        with LiveView(err_console, cfg, cfg.neuron) as view:
            path = resume_run(runs_dir, run_id, iterations=iterations,
                              time_budget_s=parse_duration(time),
                              observer=view, reporter=write_report)
    except OldRunError as err:
        fail(str(err))
    _print_outcome(path)


@friendly_errors
def steer(
    run_id: Annotated[str, typer.Argument(help="a running (or paused) run")],
    message: Annotated[str | None, typer.Argument(
        help="guidance or a request, read by an LLM planner at its next step")] = None,
    runs_dir: RunsDir = Path("runs"),
    hypothesis: Annotated[
        bool, typer.Option(help="MESSAGE is a hypothesis: a candidate at the next hypothesis step")
    ] = False,
    test: Annotated[list[str] | None, typer.Option(
        "--test", help="measure this text as it is, next step (repeatable)")] = None,
    compare: Annotated[tuple[str, str] | None, typer.Option(
        "--compare", help="compare two hypotheses where they disagree, next step")] = None,
) -> None:
    """Send a run guidance, a candidate hypothesis (--hypothesis) or experiments to run as they
    are (--test, --compare), while it is going. Free-text guidance is read by an LLM planner;
    the heuristic planner records it but acts only on the structured requests."""
    from neurosleuth.agents.actions import CompareHypotheses, TestHypothesis
    from neurosleuth.agents.config import run_path
    from neurosleuth.agents.rundir import post_steering

    path = run_path(runs_dir, run_id)
    queued = []
    if test:
        request = TestHypothesis(texts=test).model_dump(exclude={"reason"})
        post_steering(path, message or "the researcher asked to measure these texts",
                      "experiment", request)
        queued.append(f"measure {len(test)} text(s)")
    if compare and all(compare):
        request = CompareHypotheses(a=compare[0], b=compare[1]).model_dump(exclude={"reason"})
        post_steering(path, message or "the researcher asked to compare these hypotheses",
                      "experiment", request)
        queued.append("a comparison")
    if not queued:
        if not message:
            fail("nothing to send: give MESSAGE, --test TEXT or --compare A B")
        post_steering(path, message, kind="hypothesis" if hypothesis else "steer")
        queued.append("a candidate for the next hypothesis step" if hypothesis
                      else "guidance the planner sees at its next step")
    err_console.print(f"queued for {run_id}: {'; '.join(queued)}")


def _print_outcome(path: Path) -> None:
    import json

    summary = json.loads((path / "summary.json").read_text())
    hyps = (
        json.loads((path / "hypotheses.json").read_text())
        if (path / "hypotheses.json").is_file()
        else []
    )
    console.print(
        f"[bold]run[/] {summary['run_id']}  ({summary['status']}: {summary['stop_reason']})"
    )
    console.print(f"planner: {summary['planner_used']}  model: {summary['model_desc']}")
    console.print(
        f"best activation {summary['best_activation']}  vs dataset max {summary['dataset_max']}"
    )
    if hyps:
        console.print("hypothesis: ", hyps[-1]["text"], markup=False)
    console.print(f"report: {path / 'report.md'}  and  {path / 'report.html'}")


@friendly_errors
def report(
    run_id: Annotated[str, typer.Argument(help="the run whose report to write again")],
    runs_dir: RunsDir = Path("runs"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Write a run's report.md and report.html again from its files (and its model)."""
    from neurosleuth.agents.config import RunConfig, run_path
    from neurosleuth.cli import load
    from neurosleuth.report.build import write_report

    path = run_path(runs_dir, run_id)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no run {run_id!r} in {runs_dir}")
    cfg = RunConfig.model_validate_json((path / "config.json").read_text())
    md, html = write_report(path, load(cfg.model, device or cfg.device, dtype or cfg.dtype,
                                       device_map or cfg.device_map))
    console.print(f"report: {md}  and  {html}")
