"""A pass run to its hooks stops after the last one: the same activations as a whole pass, no
unembedding, gradients intact, and no hook left behind."""

from __future__ import annotations

import torch

from neurosleuth.tools.forward import run_to_hooks
from neurosleuth.tools.neurons import NeuronId, hook_name
from neurosleuth.tools.readout import trace
from tests.fixtures import tiny_random_lm


def test_a_pass_stops_after_its_last_hook_with_the_same_activations():
    lm = tiny_random_lm()
    last = lm.n_layers - 1
    ids = torch.randint(0, 40, (3, 7))
    whole: dict[int, torch.Tensor] = {}

    def keep_in(store: dict[int, torch.Tensor], layer: int):
        return lambda act, hook: store.__setitem__(layer, act.clone())

    with torch.inference_mode(), lm.model.hooks(
            fwd_hooks=[(hook_name(L), keep_in(whole, L)) for L in range(lm.n_layers)]):
        assert lm.model(ids).shape[-1] > 1  # a whole pass reaches the unembedding

    got: dict[int, torch.Tensor] = {}
    unembedded: list[int] = []
    handle = lm.model.unembed.register_forward_hook(lambda *a: unembedded.append(1))
    try:
        with torch.inference_mode():
            run_to_hooks(lm, ids, [(hook_name(L), keep_in(got, L)) for L in (0, last)],
                         stop_at_layer=last + 1)
        assert not unembedded  # stopped after the deepest hook
        assert sorted(got) == [0, last]
        for layer, act in got.items():
            torch.testing.assert_close(act, whole[layer])
        with torch.inference_mode():
            lm.model(ids)
        assert unembedded  # ... and no hook of the stopped pass is left behind
    finally:
        handle.remove()


def test_gradients_flow_through_a_pass_stopped_at_the_last_layer():
    lm = tiny_random_lm()
    emb = lm.model.embed(torch.randint(0, 40, (2, 5))).detach().requires_grad_(True)
    act, logits = trace(lm, emb, NeuronId(lm.n_layers - 1, 3))
    assert logits is None
    act.sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
