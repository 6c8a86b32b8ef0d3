"""Out-of-memory back-off, tested by injecting the error: a pre-hook on the model raises
``torch.OutOfMemoryError`` for any batch of more than ``limit`` rows, as a small GPU would. Every
tool must halve its batch, finish with the result it gives without the error, and record it."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from neurosleuth.tools import backoff
from neurosleuth.tools.ablate import ablate
from neurosleuth.tools.attack import attack
from neurosleuth.tools.attribute import attribute, locate
from neurosleuth.tools.corpus import build_windows, resolve_corpus
from neurosleuth.tools.measure import measure
from neurosleuth.tools.neurons import NeuronId, hook_name
from neurosleuth.tools.patch import patch_neurons
from neurosleuth.tools.reference import capture
from neurosleuth.tools.scan import scan_layers
from neurosleuth.tools.steer import steer
from tests.agent_helpers import CORPUS, write_corpus

N = NeuronId(1, 3)
TEXTS = CORPUS[:6]


@contextmanager
def small_gpu(lm, limit: int):
    """Batches of more than ``limit`` rows raise OutOfMemoryError, as they would on a small GPU."""

    def check(module, args, kwargs):
        x = args[0] if args else kwargs.get("input", kwargs.get("inputs_embeds"))
        if x is not None and x.shape[0] > limit:
            raise torch.OutOfMemoryError(f"injected: {x.shape[0]} rows > {limit}")

    handle = lm.model.register_forward_pre_hook(check, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _ids(lm, texts):
    return [lm.encode(t) for t in texts]


CASES = {
    "measure": lambda lm: measure(lm, TEXTS, [N]).max_act,
    "interventions": lambda lm: ablate(lm, TEXTS, N, "mean", baseline=3).effect.kl,
    "patch": lambda lm: patch_neurons(lm, TEXTS[:2], TEXTS[:2], N).effect.kl,
    "capture": lambda lm: torch.cat(capture(lm, _ids(lm, TEXTS), [hook_name(1)])[hook_name(1)])
    .numpy(),
    "attack": lambda lm: np.array([p.activation for p in attack(
        lm, N, init=TEXTS[:2], steps=2, population=4, length=4, candidates=4, seed=0).prompts]),
    "attribute": lambda lm: attribute(lm, N, TEXTS[0], steps=8).scores,
    "locate": lambda lm: locate(lm, TEXTS[0], "park", top=5).table["verified_effect"].to_numpy(),
}


@pytest.mark.parametrize("what", list(CASES))
def test_every_tool_halves_its_batch_and_gives_the_same_result(what, tiny_lm, monkeypatch):
    monkeypatch.setattr(backoff, "_LOG", [])
    clean = CASES[what](tiny_lm)
    assert backoff.backoffs() == []
    with small_gpu(tiny_lm, limit=2 if what == "locate" else 1):  # locate: a reference row
        squeezed = CASES[what](tiny_lm)
    np.testing.assert_allclose(squeezed, clean, rtol=1e-4, atol=1e-5)
    done = backoff.backoffs()
    assert done and all(b.after < b.before for b in done), done
    assert what in backoff.summary()


def test_steering_and_the_scan_back_off_too(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setattr(backoff, "_LOG", [])
    windows = build_windows(tiny_lm, resolve_corpus(str(write_corpus(tmp_path / "c.txt"))), 8)
    clean_scan = scan_layers(tiny_lm, [1], windows, keep=5)[1]
    clean_steer = steer(tiny_lm, TEXTS, N, 4.0).effect.kl
    with small_gpu(tiny_lm, limit=2):
        scan = scan_layers(tiny_lm, [1], windows, keep=5)[1]
        steered = steer(tiny_lm, TEXTS, N, 4.0).effect.kl
    np.testing.assert_allclose(scan.top_val, clean_scan.top_val, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(steered, clean_steer, rtol=1e-4, atol=1e-6)
    assert {"scan", "interventions"} <= set(backoff.summary())


def test_a_batch_of_one_that_does_not_fit_still_fails(tiny_lm):
    with small_gpu(tiny_lm, limit=0), pytest.raises(torch.OutOfMemoryError):
        measure(tiny_lm, TEXTS[:1], [N])
