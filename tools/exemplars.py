"""Dataset exemplars of MLP neurons: the corpus windows that drive a neuron highest and lowest,
with the neuron's activation distribution, from one cached scan per (model, corpus, layer).

``exemplars(lm, neurons)`` scans every neuron of each requested layer (``tools/scan.py``: one
batched pass, running top-k / bottom-k, quantiles) over the windows of ``tools/corpus.py``, keeps
the result for *all* neurons of the layer, and returns those asked for. Results are cached under
``cache_dir()/"scans"/<model>-<key>/`` where the key hashes the model (name, a fingerprint of its
weights, BOS policy), the corpus identity (sources, package versions, sizes), the window length,
the token budget and the per-document cap. So a later call for any neuron of a scanned layer reads
two ``.npz`` files and runs no model; a call asking for more windows than the cache keeps
(``keep``, default 32) rescans that layer. A scan of more than ``STREAM_TOKENS`` tokens keeps its
windows in a token store on disk instead (``store/``, ``tools/corpus_store.py``), memory-mapped.

Depth. A scan covers the first ``max_tokens`` tokens of the interleaved corpus, so its maximum is
the maximum of a sample unless the corpus ran out first (``ExemplarResult.whole_corpus``). For a
sample, ``corpus_windows`` estimates how many windows the whole corpus holds (from its documents'
lengths in characters and the characters per token of the scanned windows of each source) and
``expected_max`` extrapolates the neuron's maximum to that depth (method in its docstring).

In the spirit of the "max activating dataset examples" used to explain neurons, e.g. Bills et al.
2023, "Language models can explain neurons in language models" (64-token fragments, top
activations plus random held-out fragments for scoring: see ``heldout_windows``).

A scan is named by a ``ScanConfig`` (``tools/scan_config.py``: corpus, window, depth
``max_tokens``, windows read ``k``); ``scan_records`` reads a neuron's records off the scan it
names.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from neurosleuth.tools.corpus import DOC_CAP, Corpus, Windows, resolve_corpus
from neurosleuth.tools.corpus_store import scan_windows
from neurosleuth.tools.model import LoadedModel, cache_dir
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.records import NeuronRecords, Record
from neurosleuth.tools.reference import model_fingerprint
from neurosleuth.tools.scan import SCAN_VERSION, LayerScan, Progress, scan_layers
from neurosleuth.tools.scan_config import ScanConfig

DEFAULT_KEEP = 32
CHECKPOINT_EVERY_S = 60.0  # a killed scan loses at most this much work (``scan_layers``)
DEFAULT_WINDOW = 64
# 65536 tokens: ~1 min on one idle CPU thread for a middle layer of SmolLM2 (~1300 tokens/s)
DEFAULT_MAX_TOKENS = {"cpu": 1 << 16, "cuda": 1 << 20}


@dataclass(frozen=True)
class Window:
    index: int  # position in the scan's window list
    source: str
    doc: str  # name of the document holding the window's first token
    offset: int  # that token's position in the document
    token_ids: tuple[int, ...]  # text tokens, no BOS
    tokens: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Exemplar:
    window: Window
    acts: np.ndarray = field(repr=False)  # (T,) the neuron's activation per token (float16 stored)
    value: float  # the window's max (top) or min (bottom) activation
    pos: int  # where it is

    @property
    def token(self) -> str:
        return self.window.tokens[self.pos]


@dataclass(frozen=True)
class NeuronStats:
    """The neuron's activation distribution over the scanned tokens (see tools/scan.py)."""

    levels: tuple[float, ...]
    token_quantiles: np.ndarray  # (Q,)
    window_max_quantiles: np.ndarray  # (Q,)
    mean: float
    std: float
    frac_positive: float
    n_tokens: int

    @property
    def max(self) -> float:
        return float(self.token_quantiles[-1])

    @property
    def min(self) -> float:
        return float(self.token_quantiles[0])

    def quantile(self, q: float) -> float:
        """Per-token quantile, linearly interpolated between the stored levels."""
        return float(np.interp(q, self.levels, self.token_quantiles))


@dataclass(frozen=True)
class NeuronExemplars:
    neuron: NeuronId
    top: tuple[Exemplar, ...]  # highest window max first
    bottom: tuple[Exemplar, ...]  # lowest window min first
    stats: NeuronStats


@dataclass(frozen=True)
class ExemplarResult:
    model: str
    corpus: str
    window: int
    max_tokens: int
    n_windows: int
    source_tokens: dict[str, int]
    neurons: list[NeuronId]
    per_neuron: dict[NeuronId, NeuronExemplars] = field(repr=False)
    cache_path: Path
    scanned_layers: tuple[int, ...]  # layers computed by this call (empty: all from the cache)
    tokens_per_s: dict[int, float]  # per layer, measured when it was scanned
    seconds: float
    whole_corpus: bool = False  # the corpus ran out before max_tokens: the scan saw all of it
    corpus_windows: int = 0  # windows of the whole corpus (exact if whole_corpus, else estimated)

    def __getitem__(self, neuron: NeuronId) -> NeuronExemplars:
        return self.per_neuron[neuron]

    def to_frame(self) -> pd.DataFrame:
        """One row per (neuron, kind, rank): value, token, pos, source, doc, window, text."""
        rows = [
            {"neuron": str(n), "kind": kind, "rank": r, "value": e.value, "token": e.token,
             "pos": e.pos, "source": e.window.source, "doc": e.window.doc,
             "window": e.window.index, "text": e.window.text}
            for n in self.neurons
            for kind, exs in (("top", self[n].top), ("bottom", self[n].bottom))
            for r, e in enumerate(exs)
        ]
        return pd.DataFrame(rows)


# ---------------------------------------------------------------- cache


def scan_key(lm: LoadedModel, corpus: Corpus, window: int, max_tokens: int) -> dict:
    return {"model": lm.name, "weights": model_fingerprint(lm), "n_prefix": lm.n_prefix,
            "corpus": corpus.identity(), "window": window, "max_tokens": max_tokens,
            "doc_cap": DOC_CAP, "scan": SCAN_VERSION}


def scan_path(lm: LoadedModel, corpus: Corpus, window: int, max_tokens: int) -> Path:
    key = scan_key(lm, corpus, window, max_tokens)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", lm.name)[-40:]
    return cache_dir() / "scans" / f"{slug}-{digest}"


def _load_layer(folder: Path, layer: int, keep: int) -> LayerScan | None:
    try:
        scan = LayerScan.load(folder / f"layer_{layer}.npz")
    except (OSError, ValueError, KeyError):
        return None
    return scan if scan.keep >= keep else None


def default_max_tokens(lm: LoadedModel) -> int:
    return DEFAULT_MAX_TOKENS.get(lm.device.type, DEFAULT_MAX_TOKENS["cpu"])


def layer_scans(lm: LoadedModel, layers: Sequence[int], corpus: Corpus | str | Path | None = None,
                window: int = DEFAULT_WINDOW, max_tokens: int | None = None, *,
                keep: int = DEFAULT_KEEP, progress: Progress | None = None,
                use_cache: bool = True, stream: bool | None = None
                ) -> tuple[Windows, dict[int, LayerScan], Path, tuple[int, ...]]:
    """Windows and the scan of every neuron of ``layers``: from the cache, else one pass for all
    layers not cached. Returns (windows, scans by layer, cache folder, layers scanned now).
    ``stream``: keep the windows in a token store on disk rather than in memory (None: when
    ``max_tokens`` is over ``STREAM_TOKENS``); the scan is the same either way."""
    for layer in layers:
        if not 0 <= layer < lm.n_layers:
            raise ValueError(
                f"layer {layer} out of range: the model has layers 0..{lm.n_layers - 1}")
    if window + lm.n_prefix > int(lm.model.cfg.n_ctx):
        raise ValueError(f"window {window} is longer than the model's context {lm.model.cfg.n_ctx}")
    corpus = resolve_corpus(corpus)
    max_tokens = default_max_tokens(lm) if max_tokens is None else int(max_tokens)
    folder = scan_path(lm, corpus, window, max_tokens)
    windows = scan_windows(lm, corpus, window, max_tokens, folder,
                           scan_key(lm, corpus, window, max_tokens) if use_cache else None, stream)
    scans = {L: s for L in layers if use_cache and (s := _load_layer(folder, L, keep)) is not None}
    todo = tuple(sorted(set(layers) - set(scans)))
    if todo:
        # a killed scan resumes from its last checkpoint (``scan_layers``)
        tag = hashlib.sha1(json.dumps([todo, keep]).encode()).hexdigest()[:12]
        fresh = scan_layers(lm, todo, windows, keep, progress,
                            checkpoint=folder / f"partial-{tag}.npz" if use_cache else None,
                            every_s=CHECKPOINT_EVERY_S)
        for L, s in fresh.items():
            if use_cache:
                s.save(folder / f"layer_{L}.npz")
        scans.update(fresh)
    return windows, scans, folder, todo


# ---------------------------------------------------------------- public API


def exemplars(lm: LoadedModel, neurons: Sequence[NeuronId] | NeuronId,
              corpus: Corpus | str | Path | None = None, k: int = 20,
              window: int = DEFAULT_WINDOW, max_tokens: int | None = None, *,
              keep: int = DEFAULT_KEEP, progress: Progress | None = None,
              use_cache: bool = True) -> ExemplarResult:
    """Top-k and bottom-k corpus windows of each neuron, with its activation statistics.

    ``corpus``: ``None`` (the shipped default), source names (``"wiki,code"``), a path, or a
    ``Corpus``. ``max_tokens``: token budget (default ``DEFAULT_MAX_TOKENS`` for the device).
    The scan covers every neuron of the layers involved and is cached (module docstring).
    ``progress(done_tokens, total_tokens)`` is called after each batch of a scan.
    """
    start = time.perf_counter()
    neurons = [neurons] if isinstance(neurons, NeuronId) else list(neurons)
    if not neurons:
        raise ValueError("exemplars needs at least one neuron")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    for n in neurons:
        n.validate(lm.n_layers, lm.d_mlp)
    layers = sorted({n.layer for n in neurons})
    corpus = resolve_corpus(corpus)
    windows, scans, folder, todo = layer_scans(
        lm, layers, corpus, window, max_tokens, keep=max(k, keep), progress=progress,
        use_cache=use_cache)
    per = {n: _neuron_exemplars(lm, windows, scans[n.layer], n, k) for n in neurons}
    max_tokens = default_max_tokens(lm) if max_tokens is None else int(max_tokens)
    whole = len(windows) < max_tokens // windows.width
    return ExemplarResult(
        model=lm.name, corpus=corpus.describe(), window=windows.width, max_tokens=max_tokens,
        n_windows=len(windows), source_tokens=windows.tokens_per_source(), neurons=neurons,
        per_neuron=per, cache_path=folder, scanned_layers=todo,
        tokens_per_s={L: scans[L].tokens_per_s for L in layers},
        seconds=time.perf_counter() - start, whole_corpus=whole,
        corpus_windows=len(windows) if whole else corpus_windows(lm, corpus, windows))


def _window(lm: LoadedModel, windows: Windows, i: int) -> Window:
    ids = tuple(int(x) for x in windows.ids[i])
    source, doc = windows.where(i)
    return Window(i, source, doc, int(windows.offset[i]), ids, tuple(lm.token_strs(list(ids))),
                  lm.decode(list(ids)))


def _neuron_exemplars(lm: LoadedModel, windows: Windows, scan: LayerScan, n: NeuronId, k: int
                      ) -> NeuronExemplars:
    j = n.index

    def pick(val, win, pos, acts) -> tuple[Exemplar, ...]:
        return tuple(
            Exemplar(_window(lm, windows, int(win[r, j])), acts[r, j].astype(np.float32),
                     float(val[r, j]), int(pos[r, j]))
            for r in range(min(k, val.shape[0])))

    stats = NeuronStats(
        levels=tuple(float(x) for x in scan.levels), token_quantiles=scan.token_q[:, j].copy(),
        window_max_quantiles=scan.winmax_q[:, j].copy(), mean=float(scan.mean[j]),
        std=float(scan.std[j]), frac_positive=float(scan.frac_pos[j]), n_tokens=scan.n_tokens)
    return NeuronExemplars(
        neuron=n, top=pick(scan.top_val, scan.top_win, scan.top_pos, scan.top_acts),
        bottom=pick(scan.bot_val, scan.bot_win, scan.bot_pos, scan.bot_acts), stats=stats)


def heldout_windows(lm: LoadedModel, neuron: NeuronId, n: int,
                    corpus: Corpus | str | Path | None = None, window: int = DEFAULT_WINDOW,
                    max_tokens: int | None = None, *, seed: int = 0, keep: int = DEFAULT_KEEP,
                    progress: Progress | None = None) -> list[Window]:
    """``n`` random windows of the scanned corpus that are in neither the kept top nor bottom
    windows of ``neuron`` (for scoring an explanation on text it was not written from).
    Deterministic for a given ``seed``; fewer than ``n`` only if the corpus is that small."""
    neuron.validate(lm.n_layers, lm.d_mlp)
    windows, scans, _, _ = layer_scans(lm, [neuron.layer], corpus, window, max_tokens,
                                       keep=keep, progress=progress)
    scan = scans[neuron.layer]
    used = set(scan.top_win[:, neuron.index].tolist()) | set(scan.bot_win[:, neuron.index].tolist())
    free = np.setdiff1d(np.arange(len(windows)), np.fromiter(used, dtype=np.int64))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(free, size=min(n, len(free)), replace=False)
    return [_window(lm, windows, int(i)) for i in chosen]


def random_records(lm: LoadedModel, neuron: NeuronId, corpus: Corpus | str | Path | None = None,
                   k: int = 20, window: int = DEFAULT_WINDOW, max_tokens: int | None = None,
                   *, keep: int = DEFAULT_KEEP) -> list[tuple[list[str], np.ndarray]]:
    """The scan's fixed random sample of windows with ``neuron``'s per-token activations (where
    words do not fire, for an explainer), as (tokens, activations); the same scan (and cache) as
    ``exemplars`` with the same arguments, so no forward pass when that ran."""
    neuron.validate(lm.n_layers, lm.d_mlp)
    windows, scans, _, _ = layer_scans(lm, [neuron.layer], resolve_corpus(corpus), window,
                                       max_tokens, keep=max(k, keep))
    scan = scans[neuron.layer]
    return [(lm.token_strs([int(x) for x in windows.ids[int(w)]]),
             scan.rand_acts[j, neuron.index].astype(float)) for j, w in enumerate(scan.rand_win)]


def scan_records(lm: LoadedModel, neuron: NeuronId, scan: ScanConfig) -> NeuronRecords:
    """The neuron's top ``scan.k`` windows and the scan's random sample as activation records
    (``tools/records.py``, what an ``Explainer`` reads), from the cached scan that ``scan`` names:
    no forward pass once it ran."""
    found = exemplars(lm, [neuron], scan.corpus, scan.k, scan.window, scan.max_tokens)[neuron]
    top = [Record(e.window.tokens, e.acts.astype(float)) for e in found.top]
    rand = [Record(tuple(t), a) for t, a in random_records(lm, neuron, scan.corpus, scan.k,
                                                            scan.window, scan.max_tokens)]
    return NeuronRecords(str(neuron), top, rand, lm.name)


# ---------------------------------------------------------------- depth


def _doc_chars(corpus: Corpus) -> dict[str, list[int]]:
    """Characters of every document, per source (cached by the corpus identity: reading the
    shipped corpus takes ~2 s, tokenising it ~1 min)."""
    digest = hashlib.sha1(json.dumps(corpus.identity(), sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "scans" / f"corpus-{digest}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    chars = {s.name: [len(d.text) for d in s.documents()] for s in corpus.sources}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{time.time_ns()}.tmp")
    tmp.write_text(json.dumps(chars))
    tmp.replace(path)
    return chars


def corpus_windows(lm: LoadedModel, corpus: Corpus, windows: Windows, doc_cap: int = DOC_CAP,
                   sample: int = 64) -> int:
    """Estimated windows of ``windows.width`` tokens in the whole corpus (``windows`` being a
    prefix of it). Per source: each document's characters over the characters per token of
    (up to ``sample``) scanned windows of that source, capped at ``doc_cap`` tokens, plus the
    blank-line separator, packed into windows as ``build_windows`` does. Never below
    ``len(windows)``; within a few percent for the shipped corpus."""
    sep = len(lm.encode("\n\n")) - lm.n_prefix
    chars = _doc_chars(corpus)
    ratios = {}
    for si, name in enumerate(windows.source_names):
        idx = np.flatnonzero(windows.source == si)[:sample]
        text = sum(len(lm.decode([int(t) for t in windows.ids[i]])) for i in idx)
        ratios[name] = text / (len(idx) * windows.width) if len(idx) else None
    known = [r for r in ratios.values() if r]
    default = float(np.mean(known)) if known else 4.0
    total = 0
    for name, lengths in chars.items():
        cpt = ratios.get(name) or default
        tokens = sum(min(math.ceil(n / cpt), doc_cap) + sep for n in lengths if n)
        total += tokens // windows.width
    return max(total, len(windows))


EULER_GAMMA = 0.5772156649


@dataclass(frozen=True)
class MaxEstimate:
    """The expected maximum over ``n_full`` windows, from the top window maxima of ``n_scanned``."""

    value: float  # the mean of the fitted Gumbel
    lo: float  # 10% quantile of the maximum, the scale's uncertainty included
    hi: float  # 90% quantile
    k: int  # window maxima fitted
    scale: float  # the fitted exponential tail's scale
    n_scanned: int
    n_full: int


def expected_max(top: Sequence[float], n_scanned: int, n_full: int) -> MaxEstimate | None:
    """Extrapolate the maximum of ``n_scanned`` windows to ``n_full`` windows (peaks over a
    threshold). With the ``k`` largest window maxima v_1 >= ... >= v_k and threshold u = v_k, the
    tail above u is taken as exponential, P(V > u + x) = (k / n_scanned) exp(-x / s), with s the
    maximum-likelihood mean excess of v_1..v_{k-1} over u. The maximum of ``n_full`` such windows
    is then Gumbel with location u + s ln(n_full k / n_scanned) and scale s: the estimate is its
    mean (location + 0.5772 s). The range is the 10% and 90% quantiles of that maximum with the
    uncertainty of s folded in (s drawn as s (k - 1) / Gamma(k - 1), 4000 fixed-seed draws).
    Checked on SmolLM2-135M layer 12 (all 1,536 neurons, from 781 windows of the default corpus
    to 3,906): mean error -1%, median |error| 13% (the sample max: -18%), the 80% range held the
    real max for 75% of the neurons (17% above it, 8% below). Caveats: windows are not
    independent draws (neighbours share documents); a scan of a prefix is balanced across sources
    while the whole corpus need not be; a tail that saturates makes this an overestimate, a tail
    heavier than exponential an underestimate. None with fewer than 3 maxima or when nothing is
    extrapolated (``n_full <= n_scanned``)."""
    v = np.sort(np.asarray([x for x in top if np.isfinite(x)], float))[::-1]
    if len(v) < 3 or n_full <= n_scanned or n_scanned < len(v):
        return None
    k, u, top1 = len(v), float(v[-1]), float(v[0])
    s = max(float(np.mean(v[:-1] - u)), 0.0)
    shift = math.log(n_full * k / n_scanned)
    rng = np.random.default_rng(0)
    draws = s * (k - 1) / rng.gamma(k - 1, size=4000)  # plausible scales given the k - 1 excesses
    maxima = u + draws * (shift + rng.gumbel(size=4000))
    lo, hi = np.quantile(maxima, [0.1, 0.9])
    return MaxEstimate(value=max(u + s * (shift + EULER_GAMMA), top1), lo=max(float(lo), top1),
                       hi=max(float(hi), top1), k=k, scale=s, n_scanned=n_scanned, n_full=n_full)
