"""Out-of-memory back-off: the one rule every tool follows when a batch meets the model.

A tool sizes its batches from the free memory (``measure.auto_tokens_per_batch``), but an estimate
can be wrong: another process takes memory, a long prompt, a large vocabulary's logits. On
``torch.OutOfMemoryError`` the batch size is halved, the cache emptied, and the step retried, down
to ``floor`` (then the error propagates: the model itself does not fit). Every back-off is
recorded (``backoffs()``) so that a run's summary can say that it happened and where.

- ``halving(run, size, what)``: ``run(size)``, retried with half the size until it fits; for tools
  whose work is cheap to redo from the start (ablation, steering, patching, attribution, mean
  capture, the attack's steps).
- ``shrink(size, what)``: one halving step for loops that keep what they finished (measure, the
  corpus scan) and re-plan the rest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """One halving: which tool, from which batch size to which."""

    what: str
    before: int
    after: int


_LOG: list[Backoff] = []
_LOCK = threading.Lock()


def shrink(size: int, what: str, floor: int = 1) -> int:
    """The next batch size after an out-of-memory error at ``size`` (half, at least ``floor``);
    records it and frees the allocator's cached blocks. Call it in an ``except`` block and
    re-raise when ``size <= floor``."""
    smaller = max(floor, size // 2)
    with _LOCK:
        _LOG.append(Backoff(what, size, smaller))
    log.warning("%s: out of memory at batch %d, retrying with %d", what, size, smaller)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return smaller


def halving(run: Callable[[int], T], size: int, what: str, floor: int = 1) -> T:
    """``run(size)``; on out-of-memory, ``run`` again with half the size (down to ``floor``)."""
    while True:
        try:
            return run(size)
        except torch.OutOfMemoryError:
            if size <= floor:
                raise
            size = shrink(size, what, floor)


def backoffs() -> list[Backoff]:
    """Every back-off of this process so far, oldest first."""
    with _LOCK:
        return list(_LOG)


def summary(since: int = 0) -> dict[str, int]:
    """``{tool: number of halvings}`` of the back-offs after the first ``since``."""
    out: dict[str, int] = {}
    for b in backoffs()[since:]:
        out[b.what] = out.get(b.what, 0) + 1
    return out
