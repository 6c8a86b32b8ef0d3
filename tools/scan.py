"""One pass over corpus windows that summarises every neuron of some layers: top-k and bottom-k
windows with their per-token activations, and the activation distribution.

Method: windows (all the same length, so no padding) run through the model in batches, hooked at
``blocks.L.mlp.hook_post`` of each requested layer and stopped right after the deepest hook
(``tools/forward.py``: no unembedding). For every neuron of those layers a running top-k is merged
per batch on the model's device, as a bounded heap vectorised over all neurons
(``tools/scan_topk.py``): ``k`` slots per neuron; ``torch.topk`` over the slots and the batch's
per-window maxima says which windows enter, and only those are written, into the slots they evict
(ordered once, at the end). Once the scan is warm few windows enter, so a batch costs little
beyond its max, min and sums. Kept with each window: its index, the position of its max and its
per-token activations.

- **top-k** ranks windows by their maximum activation (what drives the neuron up);
- **bottom-k** ranks windows by their *minimum* activation, lowest first (what pushes it most
  negative: for gated MLPs such as SwiGLU the post activation is signed, and the windows whose
  max is lowest are merely dull, while the lowest minima show what suppresses the neuron).

Distribution (for scoring and for picking interesting neurons): exact mean, standard deviation,
fraction of tokens > 0, minimum and maximum over all tokens; the other per-token quantiles come
from a fixed uniform sample of ``TOKEN_SAMPLE`` token positions (the same positions for every
neuron, drawn with a fixed seed), and quantiles of the per-window maximum from a fixed sample of
``WINDOW_SAMPLE`` windows (exact when the scan has fewer). With 16k samples the 0.999 quantile
rests on ~16 tokens: treat it as approximate.

Random windows: a fixed sample of ``RANDOM_KEEP`` windows (the same for every neuron, drawn with
a fixed seed) keeps its per-token activations for every neuron: the "random sample" records that
simulation scoring needs beside the top windows (Bills et al. 2023), with no further pass.

Kept per-token activations are stored as float16 (about 3 significant digits); the ranking values
(``top_val``, ``bot_val``) are float32 as computed.

Resume: with ``checkpoint=PATH``, ``scan_layers`` saves its running state (every statistic above
and the next window) at most every ``every_s`` seconds, atomically; a scan started again with the
same path, windows, layers and ``keep`` continues from the saved window, so a killed scan loses
at most ``every_s`` of work and its result equals that of an uninterrupted scan. The file is
removed when the scan finishes.

Memory does not grow with the corpus: the windows are read one batch at a time (from memory, or
from a token store on disk, ``tools/corpus_store.py``), and what is kept per layer is fixed by
``keep``, ``d_mlp``, the window and the sample sizes: 2 x keep x d_mlp x T activations for the
top and bottom windows, TOKEN_SAMPLE + WINDOW_SAMPLE float32 values per neuron for the quantiles
(~200 MB per layer of 1,536 neurons: most of a whole-model scan's memory), RANDOM_KEEP windows'
activations, and running sums.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from neurosleuth.tools.backoff import shrink
from neurosleuth.tools.corpus import Windows
from neurosleuth.tools.corpus_store import batch_ids
from neurosleuth.tools.forward import run_to_hooks
from neurosleuth.tools.measure import auto_tokens_per_batch
from neurosleuth.tools.model import LoadedModel, cache_dir
from neurosleuth.tools.neurons import hook_name
from neurosleuth.tools.scan_topk import WindowTopK

QUANTILES = (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0)
TOKEN_SAMPLE = 16_384
WINDOW_SAMPLE = 16_384
RANDOM_KEEP = 32
SAMPLE_SEED = 0
SCAN_VERSION = 2  # bump when what a LayerScan holds or how it is computed changes (cache key)

Progress = Callable[[int, int], None]  # (tokens done, tokens total)


@dataclass(frozen=True)
class LayerScan:
    """Every neuron of one layer over one set of windows. Arrays index neurons on axis -1 (or 1)."""

    layer: int
    keep: int
    top_val: np.ndarray  # (keep, d_mlp) float32 window max, descending
    top_win: np.ndarray  # (keep, d_mlp) int32 window index
    top_pos: np.ndarray  # (keep, d_mlp) int16 position of the max in the window
    top_acts: np.ndarray  # (keep, d_mlp, T) float16 per-token activations
    bot_val: np.ndarray  # (keep, d_mlp) float32 window min, ascending
    bot_win: np.ndarray  # (keep, d_mlp) int32
    bot_pos: np.ndarray  # (keep, d_mlp) int16 position of the min
    bot_acts: np.ndarray  # (keep, d_mlp, T) float16
    levels: np.ndarray  # (Q,) quantile levels
    token_q: np.ndarray  # (Q, d_mlp) per-token activation quantiles
    winmax_q: np.ndarray  # (Q, d_mlp) quantiles of the per-window maximum
    rand_win: np.ndarray  # (R,) int32 the random sample of windows (the same for every neuron)
    rand_acts: np.ndarray  # (R, d_mlp, T) float16 their per-token activations
    mean: np.ndarray  # (d_mlp,) float64
    std: np.ndarray  # (d_mlp,) float64
    frac_pos: np.ndarray  # (d_mlp,) fraction of tokens with activation > 0
    n_tokens: int
    seconds: float  # wall time of the pass that produced it

    @property
    def tokens_per_s(self) -> float:
        return self.n_tokens / self.seconds if self.seconds > 0 else float("nan")

    def save(self, path: Path) -> None:
        """Write atomically (to a temporary file, then rename) as an uncompressed ``.npz``."""
        tmp = path.with_name(f"{path.stem}.{time.time_ns()}.tmp.npz")
        arrays = {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}
        np.savez(tmp, allow_pickle=True, **arrays)  # numpy's default, named: ** fills the rest
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LayerScan:
        with np.load(path) as z:
            kw = {f.name: z[f.name] for f in fields(cls)}
        for name in ("layer", "keep", "n_tokens"):
            kw[name] = int(kw[name])
        kw["seconds"] = float(kw["seconds"])
        return cls(**kw)


class _Running:
    """All running statistics of one layer."""

    def __init__(self, d: int, keep: int, tok_sample: np.ndarray, win_sample: np.ndarray,
                 rand_sample: np.ndarray, width: int, device: torch.device):
        self.top, self.bot = WindowTopK(keep, True), WindowTopK(keep, False)
        self.tok_sample, self.win_sample, self.rand_sample = tok_sample, win_sample, rand_sample
        self.tok_buf = np.empty((len(tok_sample), d), np.float32)
        self.win_buf = np.empty((len(win_sample), d), np.float32)
        self.rand_buf = np.zeros((len(rand_sample), d, width), np.float16)
        self.device = device
        self.sum = torch.zeros(d, dtype=torch.float64, device=device)
        self.sumsq = torch.zeros(d, dtype=torch.float64, device=device)
        self.npos = torch.zeros(d, dtype=torch.int64, device=device)
        self.winmax_min = torch.full((d,), float("inf"), device=device)
        self.n = 0

    def update(self, acts: torch.Tensor, w0: int) -> None:
        # acts: (B, T, d) text positions only
        acts = acts.float()
        B, T, d = acts.shape
        winmax = acts.amax(1)  # (B, d)
        self.top.merge(acts, winmax, w0)
        self.bot.merge(acts, acts.amin(1), w0)
        self.sum += acts.sum(1).sum(0, dtype=torch.float64)  # per-window sums in float32
        self.sumsq += acts.square().sum(1).sum(0, dtype=torch.float64)
        # 1 where > 0 (a bool sum is 4x slower); exact in float32 below 2^24 tokens a batch
        self.npos += acts.clamp(min=0).sign_().sum(1).sum(0).long()
        self.n += B * T
        self.winmax_min = torch.minimum(self.winmax_min, winmax.min(0).values)
        lo, hi = np.searchsorted(self.tok_sample, [w0 * T, (w0 + B) * T])
        if hi > lo:
            at = torch.as_tensor(self.tok_sample[lo:hi] - w0 * T, device=acts.device)
            self.tok_buf[lo:hi] = acts[at // T, at % T].cpu().numpy()  # (n, d), no reshape copy
        lo, hi = np.searchsorted(self.win_sample, [w0, w0 + B])
        if hi > lo:
            rows = torch.as_tensor(self.win_sample[lo:hi] - w0, device=acts.device)
            self.win_buf[lo:hi] = winmax.index_select(0, rows).cpu().numpy()
        lo, hi = np.searchsorted(self.rand_sample, [w0, w0 + B])
        if hi > lo:
            rows = torch.as_tensor(self.rand_sample[lo:hi] - w0, device=acts.device)
            self.rand_buf[lo:hi] = acts.index_select(0, rows).transpose(1, 2).cpu().numpy()

    SCALARS = ("sum", "sumsq", "npos", "winmax_min")
    BUFFERS = ("tok_buf", "win_buf", "rand_buf")

    def state(self) -> dict[str, np.ndarray]:
        out = {f"top.{k}": v for k, v in self.top.state().items()}
        out |= {f"bot.{k}": v for k, v in self.bot.state().items()}
        out |= {k: getattr(self, k).cpu().numpy() for k in self.SCALARS}
        out |= {k: getattr(self, k) for k in self.BUFFERS}
        return out | {"n": np.asarray(self.n)}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        for name, topk in (("top", self.top), ("bot", self.bot)):
            topk.restore({k.split(".", 1)[1]: v for k, v in state.items()
                          if k.startswith(name + ".")}, self.device)
        for k in self.SCALARS:
            setattr(self, k, torch.as_tensor(state[k], device=self.device))
        for k in self.BUFFERS:
            getattr(self, k)[...] = state[k]
        self.n = int(state["n"])

    def finish(self, layer: int, seconds: float) -> LayerScan:
        levels = np.asarray(QUANTILES)
        top, bot = self.top.ordered(), self.bot.ordered()
        token_q = _quantiles(self.tok_buf, levels)
        token_q[0], token_q[-1] = bot["val"][0], top["val"][0]  # exact extremes
        winmax_q = _quantiles(self.win_buf, levels)
        winmax_q[0], winmax_q[-1] = self.winmax_min.cpu().numpy(), top["val"][0]
        mean = (self.sum / self.n).cpu().numpy()
        var = (self.sumsq / self.n).cpu().numpy() - mean**2
        return LayerScan(
            layer=layer, keep=int(top["val"].shape[0]),
            top_val=top["val"].astype(np.float32), top_win=top["win"].astype(np.int32),
            top_pos=top["pos"].astype(np.int16), top_acts=top["acts"].astype(np.float16),
            bot_val=bot["val"].astype(np.float32), bot_win=bot["win"].astype(np.int32),
            bot_pos=bot["pos"].astype(np.int16), bot_acts=bot["acts"].astype(np.float16),
            levels=levels, token_q=token_q, winmax_q=winmax_q,
            rand_win=self.rand_sample.astype(np.int32), rand_acts=self.rand_buf, mean=mean,
            std=np.sqrt(np.maximum(var, 0.0)), frac_pos=(self.npos.cpu().numpy() / self.n),
            n_tokens=self.n, seconds=seconds,
        )


def _quantiles(samples: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(Q, d) float32 quantiles of each column of ``samples`` (n, d), taken along the rows of a
    contiguous transposed copy: 1.6x faster than down the columns."""
    return np.quantile(np.ascontiguousarray(samples.T), levels, axis=1).astype(np.float32)


def forward_layers(lm: LoadedModel, tokens: torch.Tensor, layers: Sequence[int]
                   ) -> dict[int, torch.Tensor]:
    """``blocks.L.mlp.hook_post`` of each layer, (B, T, d_mlp), for a (B, T) batch of equal-length
    token ids; the pass stops after the deepest layer's hook. Hooks are removed on exit."""
    got: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        def hook(act, hook):  # act: (B, T, d_mlp)
            got[layer] = act

        return hook

    hooks = [(hook_name(layer), keep(layer)) for layer in layers]
    with torch.inference_mode():
        run_to_hooks(lm, tokens, hooks, stop_at_layer=max(layers) + 1)
    return got


def _batch(lm: LoadedModel, windows: Windows, w0: int, rows: int) -> torch.Tensor:
    """Windows ``w0 : w0 + rows`` as model input, a BOS first where the model wants one; read
    batch by batch, so a scan of a token store on disk holds one batch of ids at a time."""
    ids = torch.from_numpy(batch_ids(windows, w0, w0 + rows).astype(np.int64))  # (B, T)
    if lm.n_prefix:
        bos = torch.full((ids.shape[0], 1), int(lm.tokenizer.bos_token_id), dtype=torch.long)
        ids = torch.cat([bos, ids], dim=1)  # (B, 1 + T)
    return ids.to(lm.device)


def _save_checkpoint(path: Path, meta: dict, running: dict[int, _Running]) -> None:
    arrays = {f"{L}/{k}": v for L, run in running.items() for k, v in run.state().items()}
    tmp = path.with_name(f"{path.stem}.{time.time_ns()}.tmp.npz")
    np.savez(tmp, allow_pickle=True, meta=np.asarray(json.dumps(meta)), **arrays)  # (see save)
    tmp.replace(path)


def _load_checkpoint(path: Path, meta: dict, running: dict[int, _Running]) -> dict | None:
    """The saved progress (``w0``, ``seconds``) when ``path`` holds this very scan, else None."""
    try:
        with np.load(path) as z:
            saved = json.loads(str(z["meta"]))
            if {k: saved.get(k) for k in meta} != meta:
                return None
            for L, run in running.items():
                prefix = f"{L}/"
                run.restore({k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)})
    except (OSError, ValueError, KeyError):
        return None
    return saved


def scan_layers(lm: LoadedModel, layers: Sequence[int], windows: Windows, keep: int,
                progress: Progress | None = None, tokens_per_batch: int | None = None, *,
                checkpoint: Path | None = None, every_s: float = 60.0
                ) -> dict[int, LayerScan]:
    """Scan ``windows`` once and summarise every neuron of each of ``layers`` (module docstring).
    ``checkpoint``: where to save progress, and to resume from."""
    layers = sorted(set(layers))
    if not layers:
        raise ValueError("scan_layers needs at least one layer")
    W, T = len(windows), windows.width
    rng = np.random.default_rng(SAMPLE_SEED)
    tok_sample = np.sort(rng.choice(W * T, size=min(W * T, TOKEN_SAMPLE), replace=False))
    win_sample = np.sort(rng.choice(W, size=min(W, WINDOW_SAMPLE), replace=False))
    rand_sample = np.sort(rng.choice(W, size=min(W, RANDOM_KEEP), replace=False))
    running = {L: _Running(lm.d_mlp, keep, tok_sample, win_sample, rand_sample, T, lm.device)
               for L in layers}
    meta = {"layers": layers, "windows": W, "width": T, "keep": keep, "d_mlp": lm.d_mlp,
            "version": SCAN_VERSION}
    saved = _load_checkpoint(checkpoint, meta, running) if checkpoint and checkpoint.is_file() \
        else None
    w0 = int(saved["w0"]) if saved else 0
    before = float(saved["seconds"]) if saved else 0.0
    seq_len = lm.n_prefix + T
    budget = tokens_per_batch or auto_tokens_per_batch(lm, layers[-1], seq_len=seq_len)
    rows = max(1, budget // seq_len)
    start = saved_at = time.perf_counter()
    while w0 < W:
        batch = _batch(lm, windows, w0, rows)  # (B, n_prefix + T) on the model's device
        try:
            acts = forward_layers(lm, batch, layers)
        except torch.OutOfMemoryError:
            if rows == 1:
                raise
            rows = shrink(rows, "scan")
            continue
        for L, run in running.items():
            run.update(acts[L][:, lm.n_prefix :], w0)
        w0 += batch.shape[0]
        if checkpoint is not None and w0 < W and time.perf_counter() - saved_at >= every_s:
            elapsed = before + time.perf_counter() - start
            _save_checkpoint(checkpoint, {**meta, "w0": w0, "seconds": elapsed}, running)
            saved_at = time.perf_counter()
        if progress is not None:
            progress(w0 * T, W * T)
    now = time.perf_counter() - start
    seconds = before + now
    if W * T >= RATE_MIN_TOKENS and not saved:
        record_scan_rate(lm.name, lm.device.type, W * T / seconds)
    # numpy's quantiles release the GIL: the layers are finished on every thread torch uses
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        out = dict(zip(running, pool.map(lambda L: running[L].finish(L, seconds), running),
                       strict=True))
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return out


RATE_MIN_TOKENS = 20_000  # a shorter scan is too short to time


def record_scan_rate(model: str, device_kind: str, tokens_per_s: float) -> None:
    """Keep the last measured scan rate of ``model`` on this kind of device (``scan_rates.json``
    in the cache): the scan depth a time budget affords is then chosen from it."""
    path = cache_dir() / "scan_rates.json"
    try:
        rates = json.loads(path.read_text()) if path.is_file() else {}
        rates[f"{model}|{device_kind}"] = round(tokens_per_s, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(rates, indent=1, sort_keys=True))
        tmp.replace(path)
    except (OSError, ValueError):
        pass  # a cache: never stops a run
