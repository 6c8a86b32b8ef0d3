"""``neurosleuth ablate | patch | steer-neuron | sweep | experiments``: causal interventions from
the terminal. Every result goes through the experiment store (``memory.store``): the same
experiment asked again is read back at once (``--no-store`` runs it afresh without recording)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from neurosleuth.cli import (
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    console,
    err_console,
    friendly_errors,
    load,
    precheck,
)
from neurosleuth.cli.tables import (
    print_experiments,
    print_intervention,
    print_patch,
    print_sweep,
)

Texts = Annotated[list[str], typer.Argument(help="one or more prompts")]
NeuronOpt = Annotated[
    list[str] | None,
    typer.Option("--neuron", "-n", help="LAYER:INDEX, repeatable (several: ablated together)"),
]
TargetOpt = Annotated[str | None, typer.Option(help='a single token to score, e.g. " Paris"')]
PairOpt = Annotated[
    tuple[str, str] | None,
    typer.Option(help="two tokens A B: score the logit difference A - B", show_default=False),
]
AtOpt = Annotated[str, typer.Option(help="where KL and top-1 change are scored: all | last")]
PosOpt = Annotated[
    str | None,
    typer.Option(
        help="text positions to edit, comma separated (negative from the end); default all"
    ),
]
NoStore = Annotated[bool, typer.Option("--no-store", help="do not read or write the store")]


def register(app: typer.Typer) -> None:
    app.command()(ablate)
    app.command()(patch)
    app.command("steer-neuron")(steer_neuron)
    app.command()(sweep)
    app.command()(experiments)


def _positions(spec: str | None) -> list[int] | None:
    if not spec:
        return None
    try:
        return [int(p) for p in spec.replace(" ", "").split(",") if p]
    except ValueError:
        raise ValueError(f"bad --positions {spec!r}: expected integers like 0,-1") from None


@dataclass(frozen=True)
class Named:
    """The component the flags name, parsed without the model (``build`` makes it, checked
    against the loaded model); exactly one field is set."""

    neurons: tuple = ()  # NeuronIds
    head: tuple[int, int] | None = None
    resid: int | None = None
    mlp: int | None = None

    def build(self, lm):
        from neurosleuth.tools.interventions import AttnHead, MLPLayer, NeuronSet, Resid, validate

        if self.neurons:
            comp = self.neurons[0] if len(self.neurons) == 1 else NeuronSet(self.neurons)
        elif self.head is not None:
            comp = AttnHead(*self.head)
        elif self.resid is not None:
            comp = Resid(self.resid)
        else:
            comp = MLPLayer(self.mlp)
        return validate(lm, comp)


def _named(
    neuron: list[str] | None,
    mlp: int | None = None,
    head: str | None = None,
    layer: int | None = None,
    resid: bool = False,
) -> Named:
    """The component the flags name (``--layer`` gives the layer for bare indices and heads)."""
    from neurosleuth.tools.neurons import NeuronId

    chosen = sum(bool(x) for x in (neuron, head is not None, resid)) + (mlp is not None)
    if chosen > 1:
        raise ValueError("name one component: --neuron, --mlp, --head or --resid")
    if neuron:
        return Named(
            neurons=tuple(
                NeuronId(layer, int(s))
                if s.strip().isdigit() and layer is not None
                else NeuronId.parse(s)
                for s in neuron
            )
        )
    if head is not None:
        if ":" in head or "." in head:
            lay, h = head.replace(".", ":").split(":")
            return Named(head=(int(lay), int(h)))
        if layer is not None:
            return Named(head=(layer, int(head)))
        raise ValueError("--head needs LAYER:HEAD, or --layer with a head index")
    if resid:
        if layer is None:
            raise ValueError("--resid needs --layer")
        return Named(resid=layer)
    if mlp is not None or layer is not None:
        return Named(mlp=mlp if mlp is not None else layer)
    raise ValueError("name a component: --neuron LAYER:INDEX, --mlp LAYER or --head LAYER:HEAD")


def _store(no_store: bool):
    from neurosleuth.memory.store import ExperimentStore

    return None if no_store else ExperimentStore()


def _run_cached(store, lm, tool, spec: dict, fn, load_fn):
    """Run through the store; returns (result, key or None, whether it was already stored)."""
    from neurosleuth.memory.store import cached, experiment_key, experiment_spec
    from neurosleuth.tools.reference import model_fingerprint

    if store is None:
        return fn(), None, False
    spec = {**spec, "model": {"name": lm.name, "fingerprint": model_fingerprint(lm)}}
    key = experiment_key(experiment_spec(tool, spec))
    hit = store.get(key) is not None
    return cached(store, tool, spec, fn, load_fn), key, hit


def _footer(key: str | None, hit: bool) -> None:
    if key:
        note = "read from the experiment store" if hit else "stored"
        err_console.print(f"[dim]experiment {key[:12]} ({note})[/]")


@friendly_errors
def ablate(
    texts: Texts,
    neuron: NeuronOpt = None,
    mlp: Annotated[int | None, typer.Option(help="ablate a whole MLP layer")] = None,
    head: Annotated[str | None, typer.Option(help="ablate a head, LAYER:HEAD")] = None,
    mode: Annotated[str, typer.Option(help="zero | mean | resample | scale")] = "zero",
    scale: Annotated[float, typer.Option(help="factor for --mode scale")] = 0.0,
    target: TargetOpt = None,
    pair: PairOpt = None,
    at: AtOpt = "all",
    positions: PosOpt = None,
    baseline: Annotated[int, typer.Option(help="random neurons (or heads) for the baseline")] = 20,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="reference texts for mean/resample, one per line (default: corpus windows)"
        ),
    ] = None,
    seed: int = 0,
    no_store: NoStore = False,
    model: ModelOpt = "smollm2-135m",
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Ablate a neuron (neurons, an MLP, a head) on TEXTS, next to random neurons of its layer."""
    named, where = _named(neuron, mlp, head), _positions(positions)
    precheck(model, named.neurons)  # before the model loads: bad flags fail at once
    ref = [ln for ln in reference.read_text().splitlines() if ln.strip()] if reference else None
    from neurosleuth.tools import ablate as tool
    from neurosleuth.tools.ablate import InterventionResult

    lm = load(model, device, dtype, device_map)
    comp = named.build(lm)
    kw = dict(
        scale=scale,
        reference=ref,
        seed=seed,
        target=target,
        pair=pair,
        at=at,
        positions=where,
        baseline=baseline,
    )
    spec = {"component": str(comp), "prompts": texts, "mode": mode, **kw}
    with err_console.status("ablating ..."):
        r, key, hit = _run_cached(
            _store(no_store),
            lm,
            tool.ablate,
            spec,
            lambda: tool.ablate(lm, texts, comp, mode, **kw),  # type: ignore[arg-type]
            InterventionResult.from_dict,
        )
    print_intervention(
        console, r, f"ablate {comp} ({mode}) on {lm.describe()}, {len(texts)} prompt(s)"
    )
    _footer(key, hit)


@friendly_errors
def steer_neuron(
    texts: Texts,
    neuron: Annotated[str, typer.Option("--neuron", "-n", help="LAYER:INDEX")],
    alpha: Annotated[float, typer.Option(help="amount added to the neuron's activation")] = 8.0,
    target: TargetOpt = None,
    at: AtOpt = "all",
    positions: PosOpt = None,
    baseline: Annotated[int, typer.Option(help="random neurons steered the same way")] = 20,
    seed: int = 0,
    no_store: NoStore = False,
    model: ModelOpt = "smollm2-135m",
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Add ALPHA x a neuron's output direction to the residual stream: the next-token shift."""
    named, where = _named([neuron]), _positions(positions)
    precheck(model, named.neurons)
    from neurosleuth.tools import steer as tool
    from neurosleuth.tools.ablate import InterventionResult

    lm = load(model, device, dtype, device_map)
    comp = named.build(lm)
    kw = dict(target=target, at=at, positions=where, baseline=baseline, seed=seed)
    spec = {"component": str(comp), "prompts": texts, "alpha": alpha, **kw}
    with err_console.status("steering ..."):
        r, key, hit = _run_cached(
            _store(no_store),
            lm,
            tool.steer,
            spec,
            lambda: tool.steer(lm, texts, comp, alpha, **kw),  # type: ignore[arg-type]
            InterventionResult.from_dict,
        )
    print_intervention(console, r, f"steer {comp} by {alpha:g} on {lm.describe()}")
    _footer(key, hit)


@friendly_errors
def patch(
    clean: Annotated[list[str], typer.Option(help="clean prompt (repeatable, paired in order)")],
    corrupt: Annotated[list[str], typer.Option(help="corrupted prompt, same token count")],
    layer: Annotated[int | None, typer.Option(help="layer (alone: its whole MLP)")] = None,
    neuron: NeuronOpt = None,
    head: Annotated[
        str | None, typer.Option(help="head index (with --layer) or LAYER:HEAD")
    ] = None,
    resid: Annotated[bool, typer.Option(help="patch the residual stream after --layer")] = False,
    target: TargetOpt = None,
    pair: PairOpt = None,
    at: AtOpt = "all",
    positions: PosOpt = None,
    no_store: NoStore = False,
    model: ModelOpt = "smollm2-135m",
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Patch a component's activation from the clean run into the corrupted run."""
    named, where = _named(neuron, None, head, layer, resid), _positions(positions)
    precheck(model, named.neurons)
    from neurosleuth.tools import patch as tool
    from neurosleuth.tools.patch import PatchResult

    lm = load(model, device, dtype, device_map)
    comp = named.build(lm)
    kw = dict(target=target, pair=pair, at=at, positions=where)
    spec = {"component": str(comp), "clean": clean, "corrupt": corrupt, **kw}
    with err_console.status("patching ..."):
        r, key, hit = _run_cached(
            _store(no_store),
            lm,
            tool.patch,
            spec,
            lambda: tool.patch(lm, clean, corrupt, comp, **kw),
            PatchResult.from_dict,
        )
    print_patch(console, r, f"patch {comp}: clean -> corrupted on {lm.describe()}")
    _footer(key, hit)


@friendly_errors
def sweep(
    texts: Annotated[list[str] | None, typer.Argument(help="prompts to ablate on")] = None,
    mode: Annotated[str, typer.Option(help="zero | mean | resample | scale")] = "zero",
    scale: float = 0.0,
    target: TargetOpt = None,
    pair: PairOpt = None,
    at: AtOpt = "all",
    clean: Annotated[list[str] | None, typer.Option(help="patch sweep: clean prompts")] = None,
    corrupt: Annotated[
        list[str] | None, typer.Option(help="patch sweep: corrupted prompts")
    ] = None,
    heads: Annotated[bool, typer.Option(help="include every attention head")] = True,
    metric: Annotated[str | None, typer.Option(help="metric to show (default: by task)")] = None,
    out: Annotated[
        Path | None, typer.Option(help="heatmap PNG (default: ./sweep-<id>.png)")
    ] = None,
    seed: int = 0,
    no_store: NoStore = False,
    model: ModelOpt = "smollm2-135m",
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
) -> None:
    """Ablate every MLP layer and head in turn (or patch them: --clean/--corrupt); table + PNG."""
    if not (clean or corrupt or texts):
        raise ValueError("give prompts to ablate on, or --clean and --corrupt to patch")
    from neurosleuth.tools import sweep as tool
    from neurosleuth.tools.sweep import SweepResult, default_metric, plot_heatmap

    lm = load(model, device, dtype, device_map)
    common = {"target": target, "pair": pair, "heads": heads}
    spec: dict[str, object]  # the experiment store's key (with the tool and the model)
    tool_fn: Callable[..., SweepResult]
    if clean or corrupt:
        spec = {"kind": "patch", "clean": clean, "corrupt": corrupt, **common}
        tool_fn = tool.patch_sweep

        def run():
            return tool.patch_sweep(lm, clean or [], corrupt or [], **common)

    else:
        spec = {"kind": mode, "prompts": texts, "scale": scale, "at": at, "seed": seed, **common}
        tool_fn = tool.sweep

        def run():
            return tool.sweep(lm, texts, mode, scale=scale, at=at, seed=seed, **common)

    with err_console.status(f"sweeping {lm.n_layers} layers ..."):
        r, key, hit = _run_cached(_store(no_store), lm, tool_fn, spec, run, SweepResult.from_dict)
    metric = metric or default_metric(r)
    if metric not in r.frame:
        raise ValueError(f"unknown metric {metric!r}: choose from {', '.join(r.frame.columns[4:])}")
    print_sweep(console, r.pivot(metric), f"sweep ({r.kind}) on {lm.name}: {metric}")
    path = out or Path(f"sweep-{(key or 'unsaved')[:12]}.png")
    console.print(f"heatmap: {plot_heatmap(r, path, metric)}", markup=False)
    _footer(key, hit)


@friendly_errors
def experiments(
    export: Annotated[
        Path | None, typer.Option(help="write all experiments to .csv or .parquet")
    ] = None,
    tool: Annotated[str | None, typer.Option(help="only this tool (full name)")] = None,
    limit: Annotated[int, typer.Option(help="rows to print")] = 20,
) -> None:
    """List stored experiments (newest first); --export writes them for pandas."""
    from neurosleuth.memory.store import ExperimentStore

    store = ExperimentStore()
    frame = store.list(tool)
    if export is not None:
        console.print(f"wrote {len(store)} experiments to {store.export(export)}", markup=False)
    if frame.empty:
        console.print(f"no experiments in {store.path}", markup=False)
        return
    print_experiments(console, frame, f"{len(frame)} experiments in {store.path}", limit)
