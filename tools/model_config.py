"""A model's shape (layers, MLP width) read from its configuration, without loading its weights or
importing torch, so that the command line can check a neuron before a model load of seconds.

Three sources, each read with the standard library only:

- a GGUF file's metadata (``{arch}.block_count``, ``{arch}.feed_forward_length``): the key-value
  section at the start of the file (spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md);
- a Hugging Face ``config.json`` (a local model folder, or the hub cache for a TransformerLens
  name): the common key names, for dense models only;
- TransformerLens' table of model names and aliases, read from its data files, since importing
  ``transformer_lens`` imports torch (and takes seconds).

Every reader returns ``None`` when it cannot tell (an unusual file, a mixture-of-experts config, a
changed TransformerLens layout): the caller then loads the model and reads the shape from it.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import BinaryIO

# GGUF value types: struct format of the fixed-size ones; 8 is a string, 9 an array
_GGUF_SCALAR = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_shape(path: Path) -> tuple[int, int] | None:
    """``(n_layers, d_mlp)`` from a GGUF file's metadata, or None where it does not say."""
    found: dict[str, object] = {}
    try:
        with open(path, "rb") as f:
            for key, value in _gguf_items(f):
                found[key] = value
                arch = found.get("general.architecture")
                layers, mlp = (
                    found.get(f"{arch}.block_count"),
                    found.get(f"{arch}.feed_forward_length"),
                )
                if isinstance(layers, int) and isinstance(mlp, int):
                    return layers, mlp
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return None
    return None


def _gguf_items(f: BinaryIO) -> Iterator[tuple[str, object]]:
    """(key, value) of a GGUF (v2+) header in file order; arrays are skipped (value None)."""
    magic, version = f.read(4), _read(f, "<I")
    if magic != b"GGUF" or version < 2:
        raise ValueError("not a GGUF v2+ file")
    _read(f, "<Q")  # tensor count
    for _ in range(_read(f, "<Q")):
        key = _string(f)
        kind = _read(f, "<I")
        if kind == _GGUF_ARRAY:
            item, n = _read(f, "<I"), _read(f, "<Q")
            for _ in range(n):
                _value(f, item)
            yield key, None
        else:
            yield key, _value(f, kind)


def _value(f: BinaryIO, kind: int) -> object:
    if kind == _GGUF_STRING:
        return _string(f)
    if kind not in _GGUF_SCALAR:
        raise ValueError(f"GGUF value type {kind}")
    return _read(f, "<" + _GGUF_SCALAR[kind])


def _read(f: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    if n > 1 << 24:
        raise ValueError("implausible GGUF string length")
    return f.read(n).decode("utf-8")


# models whose config leaves the MLP width out: it is 4 x the model width
_MLP_4X = {"gpt2", "gptj", "gpt_neo", "bloom", "codegen"}


def hf_config_shape(config: dict) -> tuple[int, int] | None:
    """``(n_layers, d_mlp)`` from a Hugging Face config dict; None for configs it cannot read
    with confidence (mixture of experts, unknown key names)."""
    config = config.get("text_config") or config  # multimodal configs nest the language model
    if any(k in config for k in ("num_experts", "num_local_experts", "n_routed_experts")):
        return None
    layers = _first(config, ("num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    mlp = _first(config, ("intermediate_size", "n_inner", "ffn_dim", "d_ff"))
    if mlp is None and config.get("model_type") in _MLP_4X:
        width = _first(config, ("n_embd", "hidden_size"))
        mlp = 4 * width if width is not None else None
    if layers is None or mlp is None:
        return None
    return layers, mlp


def _first(config: dict, keys: tuple[str, ...]) -> int | None:
    for k in keys:
        v = config.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def hub_cached_folder(repo: str) -> Path | None:
    """The snapshot folder of ``repo``'s main revision in the local Hugging Face hub cache."""
    home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    root = Path(
        os.environ.get("HF_HUB_CACHE")
        or os.environ.get("HUGGINGFACE_HUB_CACHE")
        or Path(home) / "hub"
    )
    folder = root / f"models--{repo.replace('/', '--')}"
    try:
        revision = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = folder / "snapshots" / revision
    return snapshot if snapshot.is_dir() else None


def hub_cached_config(repo: str) -> dict | None:
    """The ``config.json`` of ``repo`` in the local Hugging Face hub cache, if it is there."""
    folder = hub_cached_folder(repo)
    try:
        return None if folder is None else json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None


def transformerlens_name(name: str) -> str | None:
    """The official name TransformerLens gives ``name`` (case-insensitive alias lookup), or None
    where it knows no such model. Raises ``LookupError`` where its tables cannot be read."""
    table = _transformerlens_names()
    if table is None:
        raise LookupError("TransformerLens' model table could not be read")
    return table.get(name.lower())


@cache
def _transformerlens_names() -> dict[str, str] | None:
    """alias or official name (lower case) -> official name, as
    ``transformer_lens.supported_models.get_official_model_name`` resolves them."""
    try:
        spec = importlib.util.find_spec("transformer_lens")
        if spec is None or spec.submodule_search_locations is None:
            return None
        root = Path(list(spec.submodule_search_locations)[0])
        tree = ast.parse((root / "supported_models.py").read_text())
        official = next(
            ast.literal_eval(node.value)
            for node in tree.body
            if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None
            and "OFFICIAL_MODEL_NAMES" in [getattr(t, "id", None) for t in _targets(node)]
        )
        data = root / "tools" / "model_registry" / "data" / "model_aliases.json"
        aliases = json.loads(data.read_text())["aliases"]
    except (AttributeError, OSError, ValueError, KeyError, StopIteration, TypeError, SyntaxError):
        return None
    table: dict[str, str] = {}
    for name in official:
        for alias in aliases.get(name, []):
            table[alias.lower()] = name
        table[name.lower()] = name
    return table


def _targets(node: ast.AnnAssign | ast.Assign) -> list[ast.expr]:
    return [node.target] if isinstance(node, ast.AnnAssign) else list(node.targets)


def parameter_count(path: Path) -> int | None:
    """Parameters of the weights at ``path`` (a ``.gguf`` file, or a folder of ``.safetensors``
    files) from their headers alone; None where that cannot be read (``.bin`` weights, an unusual
    file). Used to tell a model that cannot fit before it loads."""
    try:
        if path.suffix == ".gguf":
            with open(path, "rb") as f:
                return _gguf_parameters(f)
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
        return sum(_safetensors_parameters(p) for p in files) if files else None
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return None


def _safetensors_parameters(path: Path) -> int:
    with open(path, "rb") as f:
        size = _read(f, "<Q")
        if size > 1 << 28:
            raise ValueError("implausible safetensors header")
        header = json.loads(f.read(size))
    total = 0
    for name, info in header.items():
        if name != "__metadata__":
            n = 1
            for d in info["shape"]:
                n *= int(d)
            total += n
    return total


def _gguf_parameters(f: BinaryIO) -> int:
    """Sum of the element counts in a GGUF file's tensor infos (after its key-value section)."""
    magic, version = f.read(4), _read(f, "<I")
    if magic != b"GGUF" or version < 2:
        raise ValueError("not a GGUF v2+ file")
    n_tensors, n_kv = _read(f, "<Q"), _read(f, "<Q")
    for _ in range(n_kv):
        _string(f)
        kind = _read(f, "<I")
        if kind == _GGUF_ARRAY:
            item, n = _read(f, "<I"), _read(f, "<Q")
            for _ in range(n):
                _value(f, item)
        else:
            _value(f, kind)
    total = 0
    for _ in range(n_tensors):
        _string(f)
        n = 1
        for _ in range(_read(f, "<I")):
            n *= _read(f, "<Q")
        _read(f, "<I")  # type
        _read(f, "<Q")  # offset
        total += n
    return total
