"""Where a model runs and in which precision: the one decision, made before any weights load.

``resolve_placement(device, dtype, device_map)`` turns what a user asked for (``--device``,
``--dtype``, ``--device-map``, their ``NEUROSLEUTH_*`` variables or config fields) into a
``Placement``, or raises ``PlacementError`` with one line that says what is wrong:

- ``device``: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
  ``cuda`` without a usable CUDA device, or an index past the last one, is refused.
- ``dtype``: ``auto`` (bfloat16 on a GPU that supports it, float32 everywhere else), ``float32``,
  ``bfloat16`` or ``float16`` (also ``fp32``, ``bf16``, ``fp16``). bfloat16 on a GPU without it
  (before compute capability 8.0) is refused; so is a dtype whose matrix product the device cannot
  run (probed once with a 2x2 product).
- ``device_map``: ``auto`` splits a model too large for one GPU across every visible GPU
  (accelerate's dispatcher, through the bridge); ``None`` keeps the model on ``device``.

``check_fits`` compares a model's parameter bytes with the memory free where it will live and
refuses, with the estimate, a model that cannot fit (instead of an out-of-memory traceback mid-
load). The parameter count comes from the weight files' headers (``model_config.parameter_count``).

Models run in the chosen dtype; the tools read activations as they come from the hooks and do the
arithmetic that decides a result (KL, losses, z-scores, correlations, gradient sums) in float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "bfloat16", "float16")
_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16",
            "half": "float16"}
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# What a model needs beyond its parameters to run a batch (activations, workspace): a share of the
# parameter bytes, plus a fixed floor.
HEADROOM, HEADROOM_MIN = 0.10, 256 << 20


class PlacementError(ValueError):
    """A device, dtype or device map that cannot be used here; the message is one line."""


@dataclass(frozen=True)
class Placement:
    """A resolved placement: a concrete device, a dtype name and an optional device map."""

    device: str  # "cpu", "cuda:0", "mps"
    dtype: str  # one of DTYPES
    device_map: str | None = None  # "auto": split across the visible GPUs

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

    @property
    def bytes_per_parameter(self) -> int:
        return _BYTES[self.dtype]

    def describe(self) -> str:
        where = f"{self.device} (device map {self.device_map})" if self.device_map else self.device
        return f"{where}, {self.dtype}"


def dtype_name(value: str | None) -> str:
    """Canonical dtype name (``auto`` kept) of a user's spelling; PlacementError if unknown."""
    text = (value or "auto").strip().lower().removeprefix("torch.")
    text = _ALIASES.get(text, text)
    if text != "auto" and text not in DTYPES:
        raise PlacementError(f"unknown dtype {value!r}: use auto, float32, bfloat16 or float16")
    return text


def device_name(value: str | None) -> str:
    """Canonical device spelling (``auto`` kept); PlacementError for a malformed one."""
    text = (value or "auto").strip().lower()
    if text in ("auto", "cpu", "cuda", "mps") or (
        text.startswith("cuda:") and text[5:].isdigit()
    ):
        return text
    raise PlacementError(f"unknown device {value!r}: use auto, cpu, cuda, cuda:N or mps")


def device_map_name(value: str | None) -> str | None:
    """``"auto"`` or None (unset, empty or ``none``); PlacementError for anything else."""
    if value in (None, "", "none"):
        return None
    if value != "auto":
        raise PlacementError(f"unknown device map {value!r}: use auto (or leave it unset)")
    return value


def resolve_placement(
    device: str | None = "auto", dtype: str | None = "auto", device_map: str | None = None
) -> Placement:
    """The ``Placement`` for what was asked (module docstring); raises ``PlacementError``."""
    import torch

    dev, dt, device_map = device_name(device), dtype_name(dtype), device_map_name(device_map)
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda"):
        dev = _cuda_device(dev)
    elif dev == "mps" and not torch.backends.mps.is_available():
        raise PlacementError("--device mps: no Apple GPU (MPS) is available here")
    if device_map and not dev.startswith("cuda"):
        raise PlacementError("--device-map auto splits a model across GPUs: no CUDA device here")
    if dt == "auto":
        bf16 = dev.startswith("cuda") and torch.cuda.is_bf16_supported(including_emulation=False)
        dt = "bfloat16" if bf16 else "float32"
    _check_dtype(dev, dt)
    return Placement(dev, dt, device_map)


def _cuda_device(dev: str) -> str:
    import torch

    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU or driver"
        raise PlacementError(f"--device {dev}: CUDA is not available ({why}); use --device cpu")
    index = int(dev[5:]) if ":" in dev else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise PlacementError(
            f"--device {dev}: only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return f"cuda:{index}"


def _check_dtype(dev: str, dt: str) -> None:
    import torch

    if dt == "bfloat16" and dev.startswith("cuda"):
        with torch.cuda.device(torch.device(dev)):
            if not torch.cuda.is_bf16_supported(including_emulation=False):
                major, minor = torch.cuda.get_device_capability(torch.device(dev))
                raise PlacementError(
                    f"--dtype bfloat16: {torch.cuda.get_device_name(torch.device(dev))} "
                    f"(compute capability {major}.{minor}) has no bfloat16; use float16 or float32"
                )
    if dt != "float32":
        try:
            x = torch.ones(2, 2, dtype=getattr(torch, dt), device=dev)
            (x @ x).sum().item()
        except (RuntimeError, TypeError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise PlacementError(f"--dtype {dt} is not supported on {dev}: {first}") from None


def free_bytes(placement: Placement) -> int:
    """Memory free where the model's weights will live: the GPU's free memory (all visible GPUs
    under a device map), or the OS's available RAM."""
    import torch

    if placement.device.startswith("cuda"):
        if placement.device_map:
            return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
        return int(torch.cuda.mem_get_info(torch.device(placement.device))[0])
    return available_ram()


def available_ram() -> int:
    """Bytes of RAM the OS says are available (MemAvailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def needed_bytes(parameters: int, placement: Placement) -> int:
    """Bytes to hold ``parameters`` in the placement's dtype, with room to run a batch."""
    weights = parameters * placement.bytes_per_parameter
    return int(weights + max(HEADROOM * weights, HEADROOM_MIN))


def check_fits(name: str, parameters: int | None, placement: Placement,
               free: int | None = None) -> None:
    """Raise ``PlacementError`` with the estimate when ``parameters`` cannot fit (None: unknown,
    nothing checked). ``free`` overrides the measured free memory (tests)."""
    if parameters is None:
        return
    free = free_bytes(placement) if free is None else free
    need = needed_bytes(parameters, placement)
    if need > free:
        hint = "" if placement.device_map else ", or --device-map auto across GPUs"
        raise PlacementError(
            f"{name} does not fit: {parameters / 1e9:.2f}B parameters x "
            f"{placement.bytes_per_parameter} bytes ({placement.dtype}) + room to run = "
            f"{need / 2**30:.1f} GiB, but {placement.device} has {free / 2**30:.1f} GiB free; "
            f"try a smaller --dtype{hint}"
        )


def check_finite(x: torch.Tensor, dtype: torch.dtype, what: str) -> torch.Tensor:
    """``x`` unchanged if every value is finite; else a ValueError that names the likely cause
    (a model that overflows a half dtype: Gemma's activations exceed float16's range)."""
    import torch

    if not bool(torch.isfinite(x).all()):
        name = str(dtype).removeprefix("torch.")
        hint = (f": the model overflows {name}; use --dtype bfloat16 or float32"
                if name == "float16" else f" in {name}")
        raise ValueError(f"non-finite {what} (inf or NaN){hint}")
    return x
