"""The atlas: every neuron of some layers explained and scored from one shared corpus scan, with
no per-neuron forward pass.

1. **scan** (``tools/exemplars.layer_scans``): one pass over the corpus windows hooks every
   requested layer at once and keeps, per neuron, its top and bottom windows with per-token
   activations, a fixed random sample of windows (the same for all neurons) with theirs, and the
   activation distribution. Cached like any scan, and checkpointed: a killed scan resumes from
   its last saved batch (``tools/scan.py``).
2. **per neuron**, from those records alone (``atlas/neuron.py``, in ``workers`` processes:
   ``atlas/workers.py``; ``tools/records_explain.py``): the tokens that fire,
   required context, the concept they share and the kind of text, learned from the odd-ranked top
   windows that fire (1st, 3rd, ...) and half the random sample; scored by simulation on the
   others (``score/records.explain_held_out``, the split ``explain --records`` makes too:
   per-token Pearson r over held-out top and random windows pooled, as OpenAI's scoring,
   bootstrap 95% interval over windows), with the token-list reading of the
   same explanation scored beside it (``list_r``, the token look-up kind of baseline).
3. **output side** from the weights (``tools/readout.output_tokens``): the tokens the neuron's
   down-projection row promotes and suppresses through the unembedding.

Density: the share of the random sample's tokens at which the neuron reaches a quarter of its top
activation (a sparse neuron fires on few tokens; a dead one never reaches a positive max).

Output: ``DIR/layers/L.parquet`` per layer as it finishes (a rerun skips finished layers: a
killed or timed-out atlas resumes), then ``DIR/atlas.parquet`` (all rows) and ``DIR/atlas.json``
(what was scanned and its composition by source, how long each stage took and with how many
workers: not a setting of the atlas, whose table is the same whatever the worker count). One row
per neuron; the top and bottom windows and the random sample's best windows are JSON strings of
``{tokens, acts}`` (``records_of`` reads them back as ``tools/records.NeuronRecords``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsInt

import numpy as np
import pandas as pd

from neurosleuth.atlas.neuron import neuron_inputs
from neurosleuth.atlas.table import PARQUET
from neurosleuth.atlas.workers import RowMaker, useful_workers
from neurosleuth.tools import concepts as C
from neurosleuth.tools.corpus import Windows, composition, resolve_corpus
from neurosleuth.tools.exemplars import layer_scans
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.pattern import Pattern
from neurosleuth.tools.readout import output_tokens
from neurosleuth.tools.records import NeuronRecords, Record
from neurosleuth.tools.scan import LayerScan
from neurosleuth.tools.scan_config import ScanConfig

ATLAS_VERSION = 1

Say = Callable[[str], None]


@dataclass(frozen=True)
class AtlasConfig:
    # the one scan of every layer; its k: top (and bottom) windows kept per neuron, half explain,
    # half score
    scan: ScanConfig = ScanConfig(max_tokens=1 << 17, k=24)
    n_boot: int = 200
    output_k: int = 8
    time_s: float | None = None  # stop after the layer in progress once this is spent
    seed: int = 0
    workers: int = 1  # processes that explain and score the neurons (``atlas/workers.py``)

    def settings(self) -> dict[str, Any]:
        """What makes an atlas, as ``atlas.json`` saves it (the keys it has always had, so that an
        atlas built before continues): all but ``time_s`` and ``workers`` (the table is the same
        whatever the number of workers)."""
        s = self.scan
        return {"tokens": s.max_tokens, "window": s.window, "keep": s.k, "corpus": s.corpus,
                "n_boot": self.n_boot, "output_k": self.output_k, "seed": self.seed}


class _Tokens:
    """Token strings of corpus windows, decoded once each."""

    def __init__(self, lm: LoadedModel, windows: Windows):
        self.lm, self.windows = lm, windows
        self.cache: dict[int, tuple[str, ...]] = {}

    def __call__(self, i: int) -> tuple[str, ...]:
        if i not in self.cache:
            self.cache[i] = tuple(self.lm.token_strs([int(x) for x in self.windows.ids[i]]))
        return self.cache[i]


def name_violations(frame: pd.DataFrame) -> list[str]:
    """Every class name in an atlas that breaks the naming rules (``concepts.name_violations``:
    a class from too few distinct words, an example outside its class, a letter or abbreviation
    sense), one line each, prefixed with the neuron."""
    out = []
    for neuron, raw in zip(frame["neuron"], frame["pattern"], strict=True):
        pattern = Pattern.from_dict(json.loads(raw))
        rows = [(p.concept, list(p.triggers)) for p in (pattern, *pattern.facets)]
        out += [f"{neuron}: {line}" for line in C.name_violations(rows)]
    return out


def layer_rows(lm: LoadedModel, scan: LayerScan, windows: Windows, cfg: AtlasConfig,
               tokens: _Tokens | None = None, progress: Callable[[int, int], None] | None = None,
               maker: RowMaker | None = None) -> list[dict]:
    """Every neuron's row of ``scan``'s layer, made by ``maker`` (default: a ``RowMaker`` of
    ``cfg.workers`` processes for this layer alone)."""
    tokens = tokens or _Tokens(lm, windows)
    up, down = output_tokens(lm, scan.layer, cfg.output_k)

    def names(ids: Iterable[SupportsInt]) -> list[str]:
        return [lm.decode([int(i)]) for i in ids]

    promotes, suppresses = [names(u) for u in up], [names(d) for d in down]
    d_mlp = scan.top_val.shape[1]
    with contextlib.ExitStack() as stack:
        if maker is None:
            maker = stack.enter_context(RowMaker(useful_workers(cfg.workers, lm.d_mlp),
                                                 cfg.seed, cfg.n_boot))
        step = maker.chunk
        chunks = (neuron_inputs(scan, tokens, promotes, suppresses, lo, min(lo + step, d_mlp))
                  for lo in range(0, d_mlp, step))
        return maker.rows(chunks, d_mlp, progress)


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """``all``, ``4``, ``4-9`` or ``1,3,5-7`` -> sorted layers, each checked."""
    if spec.strip() == "all":
        return list(range(n_layers))
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"--layers {spec!r}: use all, L, L-M or a comma list") from None
        if not 0 <= a <= b < n_layers:
            raise ValueError(f"--layers {spec!r}: the model has layers 0..{n_layers - 1}")
        out |= set(range(a, b + 1))
    return sorted(out)


def open_atlas(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Create ``out`` (and ``out/layers``), or check that the atlas it holds has ``settings``;
    returns its ``atlas.json`` so far ({} for a new one)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "layers").mkdir(exist_ok=True)
    meta_path = out / "atlas.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta and {k: meta.get(k) for k in settings} != settings:
        raise ValueError(f"{out} holds an atlas of other settings ({meta.get('model')}, "
                         f"{meta.get('config')}): choose another --out")
    return meta


def layers_done(out: Path) -> set[int]:
    """The layers whose table ``out/layers`` holds."""
    return {int(p.stem) for p in (out / "layers").glob("*.parquet") if p.stem.isdigit()}


def write_layer(out: Path, layer: int, rows: list[dict]) -> None:
    """``out/layers/L.parquet``, atomically (a temporary file renamed over it)."""
    tmp = out / "layers" / f"{layer}.tmp.parquet"
    pd.DataFrame(rows).to_parquet(tmp, index=False, **PARQUET)
    tmp.replace(out / "layers" / f"{layer}.parquet")


def finish_atlas(out: Path, settings: dict[str, Any]) -> Path:
    """``out/atlas.parquet`` from every finished layer, and their list in ``atlas.json``."""
    parts = sorted((out / "layers").glob("*.parquet"), key=lambda p: int(p.stem))
    if not parts:
        raise TimeoutError("the time budget was spent before a layer finished: the scan is "
                           "cached, run again (with more --time) to explain the neurons")
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    path = out / "atlas.parquet"
    tmp = out / "atlas.tmp.parquet"
    frame.to_parquet(tmp, index=False, **PARQUET)
    tmp.replace(path)
    meta_path = out / "atlas.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else settings
    meta |= {"layers": sorted(int(p.stem) for p in parts), "neurons": int(len(frame))}
    meta_path.write_text(json.dumps(meta, indent=1))
    return path


def record_layer(out: Path, meta: dict[str, Any], layer: int, seconds: float, workers: int
                 ) -> None:
    """A finished layer's explanation time (and the workers that took it) into ``atlas.json``."""
    timings = meta.setdefault("timings", {})
    timings.setdefault("neurons_s", {})[str(layer)] = round(seconds, 2)
    timings.setdefault("workers", {})[str(layer)] = workers
    (out / "atlas.json").write_text(json.dumps(meta, indent=1))


def _explain_layers(lm: LoadedModel, todo: list[int], out: Path, cfg: AtlasConfig,
                    meta: dict[str, Any], maker: RowMaker, start: float, say: Say,
                    scan_progress: Callable[[int, int], None] | None,
                    neuron_progress: Callable[[int, int, int], None] | None) -> None:
    """Scan ``todo`` in the same passes, then write each layer's rows as it finishes (until the
    time budget is spent)."""
    scan = cfg.scan
    say(f"scanning {len(todo)} layers in the same passes ({scan.max_tokens:,} tokens) ...")
    t0 = time.perf_counter()
    windows, scans, _, scanned = layer_scans(lm, todo, scan.corpus, scan.window,
                                             scan.max_tokens, keep=scan.k, progress=scan_progress)
    meta |= {"windows": int(len(windows)),
             "corpus": composition(resolve_corpus(scan.corpus), windows=windows)}
    timings = meta.setdefault("timings", {})
    timings["scan_s"] = timings.get("scan_s", 0.0) + time.perf_counter() - t0
    timings["scan_tokens"] = int(len(windows) * windows.width)
    if scanned:
        timings["scan_tokens_per_s"] = round(scans[scanned[0]].tokens_per_s, 1)
    tokens = _Tokens(lm, windows)
    for L in todo:
        if cfg.time_s is not None and time.perf_counter() - start > cfg.time_s:
            say(f"time budget spent: {len(todo) - todo.index(L)} layers left; run again to "
                "continue")
            break
        t0 = time.perf_counter()
        rows = layer_rows(lm, scans[L], windows, cfg, tokens,
                          None if neuron_progress is None else
                          functools.partial(neuron_progress, L), maker)
        write_layer(out, L, rows)
        record_layer(out, meta, L, time.perf_counter() - t0, maker.workers)
        say(f"layer {L}: {len(rows)} neurons explained in {timings['neurons_s'][str(L)]} s "
            f"({maker.workers} workers)")


def build_atlas(lm: LoadedModel, layers: Sequence[int], out: Path,
                cfg: AtlasConfig = AtlasConfig(),
                say: Say = lambda m: None,
                scan_progress: Callable[[int, int], None] | None = None,
                neuron_progress: Callable[[int, int, int], None] | None = None) -> Path:
    """Build (or continue) the atlas in ``out``; returns ``out/atlas.parquet`` (module
    docstring). ``neuron_progress(layer, done, total)``."""
    start = time.perf_counter()
    settings = {"model": lm.name, "config": cfg.settings(), "version": ATLAS_VERSION}
    meta = open_atlas(out, settings)
    todo = [L for L in layers if L not in layers_done(out)]
    if todo:
        # the workers start (and warm their caches) while the layers are scanned
        workers = useful_workers(cfg.workers, lm.d_mlp * len(todo))
        with RowMaker(workers, cfg.seed, cfg.n_boot) as maker:
            _explain_layers(lm, todo, out, cfg, meta | settings, maker, start, say,
                            scan_progress, neuron_progress)
    return finish_atlas(out, settings)


def records_of(row: dict | pd.Series, model: str = "") -> NeuronRecords:
    """A row's kept windows as activation records (top: its top windows; random: the first
    windows of the random sample)."""
    def recs(text: str) -> list[Record]:
        return [Record(tuple(w["tokens"]), np.asarray(w["acts"], float))
                for w in json.loads(text)]

    return NeuronRecords(str(row["neuron"]), recs(row["top_windows"]),
                         recs(row["random_windows"]), model)
