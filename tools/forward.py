"""Forward passes that stop once the hooks they feed have fired.

``stop_at_layer=L`` skips the blocks after ``L - 1``, but a pass that reads the deepest block
(``L`` = the number of layers) still runs the final norm and the unembedding: for SmolLM2 that is
a (tokens x 576) @ (576 x 49,152) product, a fifth of the pass's arithmetic, whose logits nobody
reads. ``run_to_hooks`` raises a private exception from the last hook to fire, so nothing after it
runs, whatever the layer. ``stop_at_layer`` is still passed: the model's own clean-up (the
TransformerLens bridge resets its per-block stop flags and drops a partial KV cache in a
``finally``) runs as for any stopped pass, and the hooks are removed on the way out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from neurosleuth.tools.model import LoadedModel

Hook = Callable[[torch.Tensor, Any], Any]


class _Reached(Exception):
    """Every hook of the pass has fired: the rest of the forward pass is not needed."""


def run_to_hooks(lm: LoadedModel, inputs: torch.Tensor, fwd_hooks: Sequence[tuple[str, Hook]],
                 stop_at_layer: int, **kwargs: Any) -> None:
    """Run ``lm`` on ``inputs`` with ``fwd_hooks`` and stop right after every one of them has
    fired. ``stop_at_layer``: one past the deepest block a hook sits in. Gradients flow to what the
    hooks keep, as in an uninterrupted pass."""
    waiting = set(range(len(fwd_hooks)))

    def counted(i: int, fn: Hook) -> Hook:
        def hook(act: torch.Tensor, hook: Any) -> Any:
            out = fn(act, hook)
            waiting.discard(i)
            if not waiting:
                raise _Reached
            return out

        return hook

    try:
        with lm.model.hooks(fwd_hooks=[(name, counted(i, fn))
                                       for i, (name, fn) in enumerate(fwd_hooks)]):
            lm.model(inputs, stop_at_layer=stop_at_layer, **kwargs)
    except _Reached:
        pass
