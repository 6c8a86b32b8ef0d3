"""One way to name an MLP neuron: ``NeuronId(layer, index)``, and one function from it to its hook.

The activation studied is the MLP's post-nonlinearity activation, TransformerLens'
``blocks.L.mlp.hook_post`` (for gated MLPs such as Llama's: ``act(gate(x)) * up(x)``, the input of
``down_proj``). Its output direction in the residual stream is row ``index`` of ``W_out[layer]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class NeuronError(ValueError):
    """A neuron spec that does not parse or does not exist in the model."""


@dataclass(frozen=True, order=True)
class NeuronId:
    layer: int
    index: int

    @classmethod
    def parse(cls, spec: str) -> NeuronId:
        """``"12:345"`` (or ``"L12N345"``) -> ``NeuronId(12, 345)``."""
        m = re.fullmatch(r"\s*[Ll]?(\d+)\s*[:/.Nn]\s*(\d+)\s*", spec)
        if m is None:
            raise NeuronError(f"bad neuron {spec!r}: expected LAYER:INDEX, e.g. 12:345")
        return cls(int(m.group(1)), int(m.group(2)))

    @property
    def hook_name(self) -> str:
        return hook_name(self.layer)

    def __str__(self) -> str:
        return f"{self.layer}:{self.index}"

    def validate(self, n_layers: int, d_mlp: int) -> NeuronId:
        """Return self, or raise ``NeuronError`` saying which bound was broken."""
        if not 0 <= self.layer < n_layers:
            raise NeuronError(
                f"layer {self.layer} out of range: the model has layers 0..{n_layers - 1}"
            )
        if not 0 <= self.index < d_mlp:
            raise NeuronError(
                f"neuron {self.index} out of range: layer {self.layer} has neurons 0..{d_mlp - 1}"
            )
        return self


def hook_name(layer: int) -> str:
    """The hook holding every MLP neuron activation of ``layer``, shape (batch, pos, d_mlp)."""
    from transformer_lens.utilities import get_act_name  # here: importing it imports torch

    return get_act_name("post", layer)


def parse_neurons(specs: list[str] | str) -> list[NeuronId]:
    """Parse ``"12:3 12:7"`` or ``["12:3", "12:7"]``; ``"12:0-9"`` expands to a range."""
    if isinstance(specs, str):
        specs = specs.replace(",", " ").split()
    out: list[NeuronId] = []
    for spec in specs:
        m = re.fullmatch(r"\s*(\d+):(\d+)-(\d+)\s*", spec)
        if m:
            layer, lo, hi = map(int, m.groups())
            out.extend(NeuronId(layer, i) for i in range(lo, hi + 1))
        else:
            out.append(NeuronId.parse(spec))
    return out
