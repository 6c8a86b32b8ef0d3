"""The atlas's corpus scan of whole models on a GPU: SmolLM2 and random-weight models of real
shapes (Llama-3.2-1B, Llama-3.1-8B), timed as the atlas runs it, with the hours a whole atlas
of each would take. Used by ``bench/gpu.py --shapes``.

Method, per shape:

- **model**: ``smollm2`` is the embedded SmolLM2-135M (``tools.model.load_model``); a Llama shape
  is ``transformers.LlamaForCausalLM`` built from its published config (hidden size, layers,
  heads, KV heads, MLP width, vocabulary) directly on the device in the run's dtype, weights left
  uninitialised by ``no_init_weights`` and then drawn on the device (normal, std = the config's
  ``initializer_range``; norms 1): no download, no CPU init. It is wrapped by
  ``tools.model.from_hf_model``, the project's one path from a Hugging Face model to a
  ``LoadedModel`` (TransformerLens bridge). Random weights cost the same FLOPs as trained ones.
- **tokens**: the shipped default corpus in 64-token windows, tokenised with SmolLM2's tokenizer
  (its ids fit every shape's vocabulary), a BOS first as Llama-3 models take one.
- **scan pass**: ``tools.scan.scan_layers`` with every layer hooked (what ``atlas/build.py`` runs
  through ``tools.exemplars.layer_scans``), its batch sized by the scan itself from free memory
  (``tools.measure.auto_tokens_per_batch``, halved on out-of-memory). The progress callback
  synchronises the device and stamps each batch; the first ``warmup`` batches are not timed, and
  the pass is stopped (an exception from the callback) once ``seconds`` have been timed over at
  least two batches: tokens/s = timed tokens / timed seconds.
- **finish**: the per-layer summary the scan computes at its end (quantiles of the token and
  window-maximum samples, on the CPU) does not depend on the depth past 16,384 windows; it is
  timed once, on layer 0 alone over the same windows (a one-block pass), and counted
  ``n_layers`` times, scaled to full samples when the windows were fewer.
- **FLOP bound**: FLOPs per token = 2 x the matrix parameters of all blocks (no embedding, no
  unembedding: the scan stops after the last block) + 4 x T x d_model per layer (attention
  scores and values over the T positions of a window). Share = FLOPs/token x tokens/s / the
  card's bf16 dense peak (``PEAK_TFLOPS``, by device name; the measured matmul rate where the
  name is not in the table). On a CPU no share is given: there is no bf16 tensor-core bound.
- **projection**: hours of a whole atlas at ``PROJECT_TOKENS``: tokens / tokens/s + finish, plus
  the explanation phase: neurons x CPU seconds per neuron (``bench/results/atlas.json``, measured
  on the 2-core development machine with one worker and cold word caches) / the CPU cores here.
  A projection, not a measurement of a whole atlas.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from neurosleuth.tools.corpus import Windows, build_windows, default_corpus
from neurosleuth.tools.model import EMBEDDED, LoadedModel, cache_dir, from_hf_model, load_model
from neurosleuth.tools.scan import TOKEN_SAMPLE, WINDOW_SAMPLE, scan_layers
from neurosleuth.tools.weights import embedded_gguf

HERE = Path(__file__).resolve().parent
CORPUS_MODEL = "smollm2-135m"  # whose tokenizer makes the windows of every shape
LLAMA3_VOCAB = 128_256
# name: LlamaConfig arguments, from the published config.json of each model
SHAPES: dict[str, dict[str, int]] = {
    "llama-1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, intermediate_size=8192, vocab_size=LLAMA3_VOCAB),
    "llama-8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, intermediate_size=14336, vocab_size=LLAMA3_VOCAB),
}
# --tiny: the same code path in seconds on a CPU (vocabulary: the corpus tokenizer's, 49,152)
TINY: dict[str, dict[str, int]] = {
    "llama-1b": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, intermediate_size=256),
    "llama-8b": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, intermediate_size=448),
}
# bf16 dense tensor-core peak, TFLOP/s (NVIDIA datasheets, without sparsity): first match wins
PEAK_TFLOPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H200",), 989.0), (("H100", "PCIe"), 756.0), (("H100", "NVL"), 0.0),  # NVL: not tabled
    (("H100",), 989.0), (("A100",), 312.0),
)
PROJECT_TOKENS = (10_000_000, 100_000_000)


class StopScan(Exception):
    """Raised by the timing callback to end a scan pass once it has been timed."""


def bf16_peak(device_name: str) -> float | None:
    """The card's bf16 dense peak in TFLOP/s from ``PEAK_TFLOPS``; None where not tabled."""
    for words, tflops in PEAK_TFLOPS:
        if all(w in device_name for w in words):
            return tflops or None
    return None


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def block_matrix_params(lm: LoadedModel, through: int | None = None) -> int:
    """Matrix (2-D) parameters of blocks 0..``through`` (all blocks by default): the weights
    a token multiplies on its way through them. Estimated from the bridge's config for a model
    whose blocks are not found as ``base_model.layers``."""
    hf = lm.model.original_model
    n = lm.n_layers if through is None else through + 1
    blocks = getattr(getattr(hf, "base_model", None), "layers", None)
    if blocks is None:
        return n * (4 * lm.d_model**2 + 3 * lm.d_model * lm.d_mlp)
    return sum(p.numel() for b in list(blocks)[:n] for p in b.parameters() if p.ndim == 2)


def flops_per_token(lm: LoadedModel, seq: int, through: int | None = None) -> float:
    """Matrix FLOPs of one token through blocks 0..``through`` (attention over ``seq``
    positions): 2 x matrix parameters + 4 x seq x d_model per layer (scores and values)."""
    n = lm.n_layers if through is None else through + 1
    return 2 * block_matrix_params(lm, through) + 4 * seq * lm.d_model * n


@cache
def corpus_tokenizer():
    """SmolLM2's tokenizer, read from the GGUF its package ships (no model load)."""
    from transformers import AutoTokenizer

    gguf = embedded_gguf(CORPUS_MODEL, EMBEDDED[CORPUS_MODEL])
    if gguf is None:
        raise RuntimeError(f"{CORPUS_MODEL} ships no GGUF file to read its tokenizer from")
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _no_init() -> AbstractContextManager:
    """transformers' ``no_init_weights`` (5.x: ``transformers.initialization``, 4.x:
    ``modeling_utils``); a plain context where neither has it (the weights are then drawn
    twice, still on the device)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import (  # type: ignore[attr-defined,no-redef]
                no_init_weights,
            )
        except ImportError:
            return nullcontext()
    return no_init_weights()


def random_llama(shape: str, tiny: bool, device: str, dtype: torch.dtype) -> LoadedModel:
    """A random-weight Llama of ``shape`` built on ``device`` in ``dtype``, wrapped as the
    project wraps any Hugging Face model (module docstring)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = corpus_tokenizer()
    kw: dict[str, Any] = dict(TINY[shape], vocab_size=len(tok)) if tiny else dict(SHAPES[shape])
    cfg = LlamaConfig(**kw, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    cfg.architectures = ["LlamaForCausalLM"]
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), _no_init():
            hf = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(before)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in hf.parameters():
            if p.ndim == 2:
                p.normal_(0.0, cfg.initializer_range, generator=gen)
            else:
                p.fill_(1.0)  # RMSNorm weights
    label = f"{shape}{'-tiny' if tiny else ''}-shape"
    return from_hf_model(hf, tok, name=label, prepend_bos=True)


@dataclass(frozen=True)
class PassTiming:
    tokens: int  # tokens of the timed batches
    seconds: float
    batches: int
    batch_tokens: int  # tokens per batch the scan settled on (text tokens, last batch)


def time_pass(lm: LoadedModel, windows: Windows, layers: list[int], keep: int, seconds: float,
              warmup: int = 1) -> PassTiming:
    """Run ``scan_layers`` over ``windows`` and time its batches after the first ``warmup``,
    stopping once ``seconds`` are timed over at least two batches (or the windows run out)."""
    stamps: list[tuple[float, int]] = []

    def progress(done: int, total: int) -> None:
        sync(lm.device)
        stamps.append((time.perf_counter(), done))
        timed = stamps[warmup:]
        if done >= total or (len(timed) >= 3 and timed[-1][0] - timed[0][0] >= seconds):
            raise StopScan  # also at the last batch: the end-of-scan summary is timed apart

    try:
        scan_layers(lm, layers, windows, keep, progress=progress)
    except StopScan:
        pass
    if len(stamps) < warmup + 2:
        raise ValueError(f"{len(stamps)} batches: too few windows to time {warmup} warm-up and "
                         "two timed batches; give more tokens")
    (t0, d0), (t1, d1) = stamps[warmup], stamps[-1]
    return PassTiming(d1 - d0, t1 - t0, len(stamps) - warmup - 1, d1 - stamps[-2][1])


def finish_seconds(lm: LoadedModel, windows: Windows, keep: int) -> tuple[float, float]:
    """(seconds of one layer's end-of-scan summary, its scale to full samples), timed on
    layer 0 alone: the whole call less its batches (module docstring)."""
    last: list[float] = []

    def stamp(done: int, total: int) -> None:
        sync(lm.device)
        last.append(time.perf_counter())

    with kept_scan_rates():  # a one-block pass's rate is not the model's scan rate
        t0 = time.perf_counter()
        scan_layers(lm, [0], windows, keep, progress=stamp)
        end = time.perf_counter()
    rows = min(len(windows) * windows.width, TOKEN_SAMPLE) + min(len(windows), WINDOW_SAMPLE)
    return end - (last[-1] if last else t0), (TOKEN_SAMPLE + WINDOW_SAMPLE) / rows


@contextmanager
def kept_scan_rates() -> Iterator[None]:
    """Put the cache's ``scan_rates.json`` back as it was: a full scan records its rate there,
    and the scan depth a time budget affords is chosen from it."""
    path = cache_dir() / "scan_rates.json"
    before = path.read_bytes() if path.is_file() else None
    try:
        yield
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)


def explain_cost() -> tuple[float | None, str]:
    """CPU seconds per neuron of the atlas's explanation phase, and where that figure is from."""
    path = HERE / "results" / "atlas.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, "no bench/results/atlas.json"
    w = meta.get("workers") or {}
    if w.get("cpu_1_worker_s") and w.get("neurons"):
        return w["cpu_1_worker_s"][0] / w["neurons"], "atlas.json workers: 1 worker, cold CPU s"
    t = meta.get("throughput") or {}
    if t.get("explain_s_per_neuron"):
        cpus = int(meta.get("cpus") or 1)  # wall with up to all its cores busy: CPU s <= x cpus
        return t["explain_s_per_neuron"] * cpus, f"atlas.json throughput wall x {cpus} cpus"
    return None, "atlas.json has no explanation timing"


def projection(rate: float, finish_s: float, neurons: int, explain_s: float | None,
               cores: int) -> dict[str, dict[str, float | None]]:
    """Hours of a whole atlas at each of ``PROJECT_TOKENS``: scan, explanation, total."""
    explain_h = None if explain_s is None else neurons * explain_s / cores / 3600
    out: dict[str, dict[str, float | None]] = {}
    for tokens in PROJECT_TOKENS:
        scan_h = (tokens / rate + finish_s) / 3600
        out[f"{tokens // 1_000_000}M"] = {
            "scan_h": scan_h, "explain_h": explain_h,
            "total_h": scan_h + (explain_h or 0.0)}
    return out


@dataclass(frozen=True)
class ShapeOptions:
    """How each shape is run: where, in what dtype, over how many corpus tokens, for how long."""

    device: str
    dtype: torch.dtype
    tiny: bool = False
    tokens: int = 1 << 20  # corpus tokens in windows (16,384 windows of 64: full samples)
    window: int = 64
    keep: int = 20  # top and bottom windows kept per neuron (the atlas's ScanConfig.k)
    seconds: float = 20.0  # timed seconds of the scan pass, after the warm-up batch
    bound_tflops: float | None = None  # the bf16 bound (None: no share is given)
    bound_source: str = ""


_WINDOWS: dict[tuple[int, int], Windows] = {}


def shape_windows(lm: LoadedModel, opts: ShapeOptions) -> Windows:
    """The default corpus in windows, built once per run: every shape reads SmolLM2's ids."""
    key = (opts.window, opts.tokens)
    if key not in _WINDOWS:
        _WINDOWS[key] = build_windows(lm, default_corpus(), opts.window, opts.tokens)
    return _WINDOWS[key]


def load_shape(shape: str, opts: ShapeOptions) -> LoadedModel:
    """``smollm2``: the embedded model; a ``SHAPES`` name: a random-weight model of that shape."""
    if shape == "smollm2":
        return load_model(CORPUS_MODEL, device=opts.device, dtype=opts.dtype)
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: use smollm2, {', '.join(SHAPES)}")
    return random_llama(shape, opts.tiny, opts.device, opts.dtype)


def bench_shape(shape: str, opts: ShapeOptions, say: Callable[[str], None]) -> dict:
    """Every figure of one shape (module docstring) as a JSON-ready record."""
    on_gpu = torch.device(opts.device).type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    lm = load_shape(shape, opts)
    sync(lm.device)
    build_s = time.perf_counter() - t0
    say(f"{lm.describe()}: built in {build_s:.1f} s; scanning all layers ...")
    windows = shape_windows(lm, opts)
    timing = time_pass(lm, windows, list(range(lm.n_layers)), opts.keep, opts.seconds)
    rate = timing.tokens / timing.seconds
    fpt = flops_per_token(lm, opts.window + lm.n_prefix)
    share = rate * fpt / (opts.bound_tflops * 1e12) if on_gpu and opts.bound_tflops else None
    finish_one, scale = finish_seconds(lm, windows, opts.keep)
    finish_s = finish_one * scale * lm.n_layers
    neurons = lm.n_layers * lm.d_mlp
    explain_s, explain_from = explain_cost()
    cores = os.cpu_count() or 1
    cfg = lm.model.original_model.config
    return {
        "shape": lm.name, "random_weights": shape != "smollm2", "describe": lm.describe(),
        "config": {k: getattr(cfg, k, None) for k in (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "vocab_size")},
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
        "block_matrix_params": block_matrix_params(lm), "build_s": build_s,
        "layers_hooked": lm.n_layers, "neurons": neurons, "seq_len": opts.window + lm.n_prefix,
        "batch_tokens": timing.batch_tokens, "timed_batches": timing.batches,
        "timed_tokens": timing.tokens, "timed_s": timing.seconds, "tokens_per_s": rate,
        "flops_per_token": fpt, "bound_tflops": opts.bound_tflops if on_gpu else None,
        "bound_source": opts.bound_source if on_gpu else "none: no bf16 bound on a CPU",
        "share_of_bound": share, "finish_one_layer_s": finish_one, "finish_scale": scale,
        "finish_s": finish_s, "explain_cpu_s_per_neuron": explain_s,
        "explain_from": explain_from, "cpu_cores": cores,
        "projected_hours": projection(rate, finish_s, neurons, explain_s, cores),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
    }


def bound_for(device: str, matmul_tflops: float | None) -> tuple[float | None, str]:
    """The bf16 bound of ``device`` and where it is from: the datasheet peak by name, else the
    measured matmul rate; (None, why) on a CPU."""
    if torch.device(device).type != "cuda":
        return None, "none: no bf16 bound on a CPU"
    name = torch.cuda.get_device_name(torch.device(device))
    peak = bf16_peak(name)
    if peak is not None:
        return peak, f"{name} bf16 dense datasheet peak"
    return matmul_tflops, f"{name} not tabled: measured bf16 matmul rate"
