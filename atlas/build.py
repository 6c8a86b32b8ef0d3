"""The atlas: every neuron of some layers explained and scored from one shared corpus scan, with
no per-neuron forward pass.

1. **scan** (``tools/exemplars.layer_scans``): one pass over the corpus windows hooks every
   requested layer at once and keeps, per neuron, its top and bottom windows with per-token
   activations, a fixed random sample of windows (the same for all neurons) with theirs, and the
   activation distribution. Cached like any scan, and checkpointed: a killed scan resumes from
   its last saved batch (``tools/scan.py``).
2. **per neuron**, from those records alone (``tools/records_explain.py``): the tokens that fire,
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
(what was scanned and its composition by source, how long each stage took). One row per neuron;
the top and bottom windows and the random sample's best windows are JSON strings of ``{tokens,
acts}`` (``records_of`` reads them back as ``tools/records.NeuronRecords``).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, SupportsInt

import numpy as np
import pandas as pd

from neurosleuth.score.records import HeldOut, explain_held_out
from neurosleuth.tools import concepts as C
from neurosleuth.tools.corpus import Windows, composition, resolve_corpus
from neurosleuth.tools.exemplars import layer_scans
from neurosleuth.tools.explain import variants
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.pattern import Pattern, phrase
from neurosleuth.tools.readout import output_tokens
from neurosleuth.tools.records import NeuronRecords, Record
from neurosleuth.tools.records_explain import RecordsExplainer
from neurosleuth.tools.scan import LayerScan
from neurosleuth.tools.scan_config import ScanConfig

DENSITY_AT = 0.25  # share of the neuron's top activation that counts as firing, for density
SHOWN = 5  # top and bottom windows kept in the table (the site's heatmaps)
RANDOM_SHOWN = 4  # windows of the random sample kept in the table (a random draw of it)
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

    def settings(self) -> dict[str, Any]:
        """What makes an atlas, as ``atlas.json`` saves it (the keys it has always had, so that an
        atlas built before continues): all but ``time_s``."""
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


def _records(scan: LayerScan, n: int, tokens: _Tokens, which: str) -> list[Record]:
    win, acts = getattr(scan, f"{which}_win"), getattr(scan, f"{which}_acts")
    return [Record(tokens(int(win[j, n]) if which != "rand" else int(win[j])),
                   acts[j, n].astype(float)) for j in range(acts.shape[0])]


def _json(records: Sequence[Record]) -> str:
    return json.dumps([{"tokens": list(r.tokens), "acts": [round(float(a), 3) for a in r.acts]}
                       for r in records])


def _num(x: float | None) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), 4)


def neuron_row(scan: LayerScan, n: int, tokens: _Tokens, up: list[str], down: list[str],
               cfg: AtlasConfig) -> dict:
    """One neuron's row of the atlas (module docstring)."""
    top = _records(scan, n, tokens, "top")
    rand = _records(scan, n, tokens, "rand")
    bot = _records(scan, n, tokens, "bot")
    top_max = float(scan.top_val[0, n])
    row: dict[str, Any] = {
        "layer": scan.layer, "index": n, "neuron": f"{scan.layer}:{n}", "max_act": top_max,
        "min_act": float(scan.bot_val[0, n]), "mean": float(scan.mean[n]),
        "std": float(scan.std[n]), "frac_pos": float(scan.frac_pos[n]),
        "promotes": json.dumps(up), "suppresses": json.dumps(down)}
    rand_acts = np.concatenate([r.acts for r in rand]) if rand else np.zeros(1)
    row["density"] = (float((rand_acts >= DENSITY_AT * top_max).mean()) if top_max > 0
                      else 0.0)
    h = explain_held_out(RecordsExplainer(row["neuron"]), top, rand)
    ex = h.explanation
    row |= {"explanation": ex.sentence, "details": ex.details, "kind": ex.pattern.kind,
            "concept": ex.pattern.concept.label if ex.pattern.concept and
            ex.pattern.concept.source != "none" else None,
            "context": ex.pattern.context,
            "triggers": json.dumps(sorted(ex.pattern.triggers,
                                          key=lambda w: -ex.pattern.triggers[w])[:12]),
            "pattern": json.dumps(ex.pattern.to_dict())}
    scores: dict[str, float | str | None] = {
        "r": None, "r_lo": None, "r_hi": None, "r_top": None, "r_random": None, "list_r": None,
        "list_explanation": None}
    if h.top and ex.pattern.kind != "none":
        s = h.score(seed=cfg.seed, n_boot=cfg.n_boot)
        scores |= {"r": _num(s.r), "r_lo": _num(s.lo), "r_hi": _num(s.hi),
                   "r_top": _num(s.top_r), "r_random": _num(s.random_r)}
        row["facets"] = json.dumps(facet_scores(ex.pattern, h, cfg.seed))
        others = variants(ex)[1:2]
        if others:
            text, pattern = others[0]
            s = h.score(pattern.simulate, seed=cfg.seed, n_boot=0)
            scores |= {"list_r": _num(s.r), "list_explanation": text}
    row |= scores
    row["bare_list"] = ex.pattern.kind != "none" and ex.pattern.bare_list()
    row.setdefault("facets", "[]")
    row |= {"top_windows": _json(top[:SHOWN]), "bottom_windows": _json(bot[:SHOWN]),
            "random_windows": _json(rand[:RANDOM_SHOWN]), "held_windows": len(h.top)}
    return row


def facet_scores(pattern: Pattern, held: HeldOut, seed: int) -> list[dict]:
    """Each facet of a polysemantic neuron's pattern, scored alone on the held-out records
    ([] for a pattern of one facet)."""
    if not pattern.facets:
        return []
    parts = [replace(pattern, facets=()), *pattern.facets]
    return [{"facet": phrase(p), "r": _num(held.score(p.simulate, seed=seed, n_boot=0).r)}
            for p in parts]


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
               tokens: _Tokens | None = None, progress: Callable[[int, int], None] | None = None
               ) -> list[dict]:
    tokens = tokens or _Tokens(lm, windows)
    up, down = output_tokens(lm, scan.layer, cfg.output_k)

    def names(ids: Iterable[SupportsInt]) -> list[str]:
        return [lm.decode([int(i)]) for i in ids]

    rows = []
    for n in range(scan.top_val.shape[1]):
        rows.append(neuron_row(scan, n, tokens, names(up[n]), names(down[n]), cfg))
        if progress is not None and (n + 1) % 64 == 0:
            progress(n + 1, scan.top_val.shape[1])
    return rows


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


def build_atlas(lm: LoadedModel, layers: Sequence[int], out: Path,
                cfg: AtlasConfig = AtlasConfig(),
                say: Say = lambda m: None,
                scan_progress: Callable[[int, int], None] | None = None,
                neuron_progress: Callable[[int, int, int], None] | None = None) -> Path:
    """Build (or continue) the atlas in ``out``; returns ``out/atlas.parquet`` (module
    docstring). ``neuron_progress(layer, done, total)``."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / "layers").mkdir(exist_ok=True)
    meta_path = out / "atlas.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    settings = {"model": lm.name, "config": cfg.settings(), "version": ATLAS_VERSION}
    if meta and {k: meta.get(k) for k in settings} != settings:
        raise ValueError(f"{out} holds an atlas of other settings ({meta.get('model')}, "
                         f"{meta.get('config')}): choose another --out")
    done = {int(p.stem) for p in (out / "layers").glob("*.parquet")}
    todo = [L for L in layers if L not in done]
    timings = meta.get("timings", {})
    if todo:
        scan = cfg.scan
        say(f"scanning {len(todo)} layers in the same passes ({scan.max_tokens:,} tokens) ...")
        t0 = time.perf_counter()
        windows, scans, _, scanned = layer_scans(lm, todo, scan.corpus, scan.window,
                                                 scan.max_tokens, keep=scan.k,
                                                 progress=scan_progress)
        timings["scan_s"] = timings.get("scan_s", 0.0) + time.perf_counter() - t0
        timings["scan_tokens"] = int(len(windows) * windows.width)
        sources = composition(resolve_corpus(scan.corpus), windows=windows)  # for the index page
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
                              functools.partial(neuron_progress, L))
            frame = pd.DataFrame(rows)
            tmp = out / "layers" / f"{L}.tmp.parquet"
            frame.to_parquet(tmp, index=False)
            tmp.replace(out / "layers" / f"{L}.parquet")
            timings.setdefault("neurons_s", {})[str(L)] = round(time.perf_counter() - t0, 2)
            say(f"layer {L}: {len(rows)} neurons explained in {timings['neurons_s'][str(L)]} s")
            meta_path.write_text(json.dumps({**settings, "timings": timings,
                                             "windows": int(len(windows)), "corpus": sources},
                                            indent=1))
    parts = sorted((out / "layers").glob("*.parquet"), key=lambda p: int(p.stem))
    if not parts:
        raise TimeoutError("the time budget was spent before a layer finished: the scan is "
                           "cached, run again (with more --time) to explain the neurons")
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    path = out / "atlas.parquet"
    tmp = out / "atlas.tmp.parquet"
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else settings
    meta |= {"layers": sorted(int(p.stem) for p in parts), "neurons": int(len(frame))}
    meta_path.write_text(json.dumps(meta, indent=1))
    return path


def records_of(row: dict | pd.Series, model: str = "") -> NeuronRecords:
    """A row's kept windows as activation records (top: its top windows; random: the first
    windows of the random sample)."""
    def recs(text: str) -> list[Record]:
        return [Record(tuple(w["tokens"]), np.asarray(w["acts"], float))
                for w in json.loads(text)]

    return NeuronRecords(str(row["neuron"]), recs(row["top_windows"]),
                         recs(row["random_windows"]), model)
