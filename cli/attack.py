"""``neurosleuth attack | attribute | locate``: prompt search that drives a neuron, per-token
attribution of a neuron's activation, and the neurons that matter for a next-token behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from neurosleuth.cli import (
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    console,
    err_console,
    friendly_errors,
    load,
    neuron_checked,
    precheck,
)
from neurosleuth.cli.terminal import token_heatmap

if TYPE_CHECKING:
    from neurosleuth.tools.attribute import Method
    from neurosleuth.tools.readout import Position

NeuronOpt = Annotated[str, typer.Option("--neuron", "-n", help="LAYER:INDEX, e.g. 12:345")]
PositionOpt = Annotated[str, typer.Option(
    help="where the activation is read: 'last', 'max' (over positions) or a token index")]
# --method and --baseline of ``attribute``, as the tool spells them
_METHODS: dict[str, Method] = {"ig": "ig", "gxi": "grad_x_input", "grad_x_input": "grad_x_input"}
_BASELINES: dict[str, Literal["zero", "pad"]] = {"zero": "zero", "pad": "pad"}


def register(app: typer.Typer) -> None:
    app.command()(attack)
    app.command()(attribute)
    app.command()(locate)


def _position(spec: str) -> Position:
    if spec == "last":
        return "last"
    if spec == "max":
        return "max"
    try:
        return int(spec)
    except ValueError:
        raise ValueError(f"bad position {spec!r}: use last, max or a token index") from None


def _floats(spec: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in spec.replace(",", " ").split())
    except ValueError:
        raise ValueError(f"bad list of numbers {spec!r}: e.g. 0,0.1,0.3,1") from None


def _layers(spec: str | None) -> list[int] | None:
    """'3,5,7-9' -> [3, 5, 7, 8, 9]."""
    if not spec:
        return None
    out: list[int] = []
    try:
        for part in spec.replace(" ", "").split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"bad layers {spec!r}: e.g. 0-5,12") from None
    return out


@friendly_errors
def attack(
    neuron: NeuronOpt,
    model: ModelOpt = "smollm2-135m",
    steps: Annotated[int, typer.Option(help="search steps per restart")] = 40,
    length: Annotated[int | None, typer.Option(
        help="free tokens (default 8, or the init's)")] = None,
    down: Annotated[bool, typer.Option("--down", help="drive the activation down")] = False,
    seed: int = 0,
    position: PositionOpt = "last",
    fluency: Annotated[str, typer.Option(
        help="fluency weights (activation per nat of cross-entropy), one per population member")
    ] = "0,0.1,0.3,1",
    population: Annotated[int | None, typer.Option(
        help="members (default: one per weight)")] = None,
    candidates: Annotated[int, typer.Option(help="substitutions per member per step")] = 32,
    top_k: Annotated[int, typer.Option("--top-k", help="gradient top-k per position")] = 64,
    budget: Annotated[int | None, typer.Option(help="forward passes in all")] = None,
    restarts: int = 1,
    init: Annotated[list[str] | None, typer.Option(help="starting prompt, repeatable")] = None,
    exemplars: Annotated[int, typer.Option(
        help="also start from the top N dataset exemplars (scans the corpus once per layer)")] = 0,
    prefix: Annotated[str | None, typer.Option(help="fixed text before the free tokens")] = None,
    suffix: Annotated[str | None, typer.Option(help="fixed text after the free tokens")] = None,
    forbid: Annotated[list[str] | None, typer.Option(
        help="text whose tokens are never used, repeatable")] = None,
    edits: Annotated[bool, typer.Option(
        "--edits", help="then find the smallest token edits that kill the best prompt")] = False,
    out: Annotated[Path | None, typer.Option(help="write the prompts as CSV")] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Search prompts that drive a neuron's activation up (or --down): GCG-style gradient-guided
    token substitutions with an EPO population over fluency weights. Prints the Pareto frontier
    of activation vs fluency (cross-entropy per token: natural text is ~3-5 nats)."""
    where, weights = _position(position), _floats(fluency)  # bad values fail before the load
    precheck(model, [neuron])
    from neurosleuth.tools.attack import attack as run_attack

    lm = load(model, device, dtype, device_map)
    n = neuron_checked(lm, neuron)
    starts: list = [*(init or []), *_exemplar_starts(lm, n, exemplars, down)]
    with err_console.status(f"attacking {n} ..."):
        result = run_attack(
            lm, n, init=starts or None, prefix=prefix, suffix=suffix, forbid=forbid,
            length=length, steps=steps, direction="down" if down else "up", seed=seed,
            position=where, fluency_weights=weights, population=population,
            candidates=candidates, top_k=top_k, budget=budget, restarts=restarts)
    _print_attack(lm, result)
    _write_csv(result.to_frame(), out)
    if edits:
        where = result.config["position"]
        _print_edits(lm, n, result.best.token_ids, "max" if where == "max" else "last")


def _exemplar_starts(lm, n, k: int, down: bool) -> list[list[int]]:
    """The top-k exemplar windows, each cut right after its max (or min) token."""
    if k <= 0:
        return []
    from neurosleuth.tools.exemplars import exemplars as run_exemplars

    with err_console.status("finding dataset exemplars (first time per layer: a corpus scan) ..."):
        ex = run_exemplars(lm, n, k=k)[n]
    chosen = ex.bottom if down else ex.top
    return [list(e.window.token_ids[max(0, e.pos - 15) : e.pos + 1]) for e in chosen[:k]]


def _print_attack(lm, result) -> None:
    console.rule(f"attack on neuron {result.neuron} ({result.direction})  {lm.describe()}")
    table = Table(show_header=True, header_style="bold")
    table.add_column("activation", justify="right")
    table.add_column("CE/token", justify="right")
    table.add_column("at", justify="right")
    table.add_column("prompt")
    for p in result.prompts:
        table.add_row(f"{p.activation:.3f}", f"{p.cross_entropy:.2f}", str(p.position),
                      repr(p.text))
    console.print(table)
    ini = result.initial
    console.print(f"initial best: {ini.activation:.3f} (CE {ini.cross_entropy:.2f}) {ini.text!r}",
                  markup=False, highlight=False)
    console.print(f"best: {result.best.activation:.3f} after {result.n_forward} forward passes",
                  markup=False, highlight=False)


def _print_edits(lm, n, ids, position: Literal["last", "max"]) -> None:
    from neurosleuth.tools.attack import minimal_edits

    with err_console.status("searching minimal edits ..."):
        res = minimal_edits(lm, n, list(ids), position=position)
    if not res.killers:
        closest = "none" if res.closest is None else f"{res.closest.activation:.3f}"
        console.print(f"no edit set of up to 3 edits brings it below {res.threshold:.0%} "
                      f"(closest: {closest})", markup=False)
        return
    console.print(f"smallest edits that bring it below {res.threshold:.0%} of "
                  f"{res.activation:.3f} ({res.n_edits} edit(s)):", markup=False)
    for k in res.killers:
        console.print(f"  {k.activation:8.3f}  {'; '.join(map(str, k.edits))}", markup=False,
                      highlight=False)


@friendly_errors
def attribute(
    text: Annotated[str, typer.Argument(help="the text to explain")],
    neuron: NeuronOpt,
    model: ModelOpt = "smollm2-135m",
    method: Annotated[str, typer.Option(help="ig (integrated gradients) or gxi")] = "ig",
    position: PositionOpt = "max",
    steps: Annotated[int, typer.Option(help="integration steps (ig)")] = 64,
    baseline: Annotated[str, typer.Option(
        help="ig baseline: pad (the pad token everywhere) or zero (embedding)")] = "pad",
    png: Annotated[Path | None, typer.Option(help="also save a PNG heatmap here")] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Which tokens of TEXT drive the neuron's activation at a position: integrated gradients
    (default) or gradient x input, shown as a heatmap (green raises, red lowers)."""
    where = _position(position)
    precheck(model, [neuron])
    from neurosleuth.tools.attribute import attribute as run_attribute

    lm = load(model, device, dtype, device_map)
    n = neuron_checked(lm, neuron)
    kind = _METHODS.get(method)
    if kind is None:  # the tool's own message
        raise ValueError(f"unknown attribution method {method!r}: use 'ig' or 'grad_x_input'")
    if kind == "ig" and baseline not in _BASELINES:  # only IG reads the baseline
        raise ValueError(f"unknown baseline {baseline!r}: use 'zero' or 'pad'")
    a = run_attribute(lm, n, text, method=kind, position=where, steps=steps,
                      baseline=_BASELINES.get(baseline, "pad"))
    console.rule(f"neuron {n}: {a.method} attribution  {lm.describe()}")
    vmax = float(abs(a.scores).max()) or 1.0
    console.print(token_heatmap(list(a.tokens), a.scores, vmax, mark=a.position))
    console.print("  ".join(f"{t!r}:{s:+.3f}" for t, s in zip(a.tokens, a.scores, strict=True)),
                  markup=False, highlight=False, soft_wrap=True)
    line = f"activation {a.activation:.3f} at token {a.position} ({a.tokens[a.position]!r})"
    if a.baseline_activation is not None:
        line += (f"; baseline ({a.baseline}) {a.baseline_activation:.3f}; {a.steps} steps; "
                 f"completeness gap {a.completeness_gap:+.4f}")
    console.print(line, markup=False, highlight=False)
    if (a.completeness_gap is not None and a.baseline_activation is not None
            and abs(a.completeness_gap) > 0.05 * max(
                abs(a.activation - a.baseline_activation), 1e-6)):
        err_console.print("warning: the scores do not add up to f(x) - f(baseline) within 5%: "
                          "use more --steps, or the pad baseline", markup=False)
    if png is not None:
        from neurosleuth.report.token_png import save_token_heatmap

        save_token_heatmap(png, a.tokens, a.scores.tolist(), f"neuron {n}: {a.method}",
                           a.position)
        console.print(f"wrote {png}", markup=False)


@friendly_errors
def locate(
    prompt: Annotated[str, typer.Argument(help="the prompt, e.g. 'The Eiffel Tower is in'")],
    target: Annotated[str, typer.Option(help="the next token whose log-probability is studied")],
    model: ModelOpt = "smollm2-135m",
    layers: Annotated[str | None, typer.Option(help="layers to search, e.g. 0-5,12")] = None,
    top: Annotated[int, typer.Option(help="candidates to verify by ablation")] = 20,
    verify: Annotated[bool, typer.Option(help="verify by real zero-ablation")] = True,
    out: Annotated[Path | None, typer.Option(help="write the table as CSV")] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """The MLP neurons that matter for the next token TARGET after PROMPT: attribution patching
    over every neuron in one backward pass, the top ones verified by zero-ablation."""
    chosen = _layers(layers)
    from neurosleuth.tools.attribute import locate as run_locate

    lm = load(model, device, dtype, device_map)
    res = run_locate(lm, prompt, target, chosen, top=top, verify=verify)
    console.rule(f"neurons for {res.target!r} after {prompt!r}  {lm.describe()}")
    console.print(f"log p({res.target!r}) = {res.clean_metric:.3f}", markup=False)
    table = Table(show_header=True, header_style="bold")
    for col in ("rank", "neuron", "attribution", "verified", "act (last)"):
        table.add_column(col, justify="right")
    for r in res.table.itertuples(index=False):
        table.add_row(str(r.rank), r.neuron, f"{r.attribution:+.4f}",
                      f"{r.verified_effect:+.4f}", f"{r.act_last:.3f}")
    console.print(table)
    _write_csv(res.table, out)


def _write_csv(frame, out: Path | None) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        console.print(f"wrote {out}", markup=False)
