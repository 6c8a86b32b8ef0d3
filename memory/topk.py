"""Bounded top-k / bottom-k memory of measured prompts, activation buckets and search statistics.

``ActivationHeaps`` keeps the k highest and k lowest ``Record``s in two ``heapq`` heaps (O(log k)
per push, O(k) memory). Ties are deterministic: among equal activations the record pushed first
ranks higher in ``top()`` and in ``bottom()`` and is the one kept when a heap is full.

Buckets: an activation is ``high`` at or above the ``high_q`` percentile (default 90th) of all
activations seen so far, ``low`` at or below the ``low_q`` percentile (default 25th), ``mid``
otherwise (and always ``mid`` until ``min_for_buckets`` values were seen, or when the two cuts
coincide). Percentiles come from a bounded uniform reservoir sample (Vitter 1985, Algorithm R)
of ``reservoir_size`` values: exact while fewer values were seen, an unbiased sample after. The
reservoir's replacement index is a SplitMix64 hash of (seed, count), so it is deterministic and
has no random-generator state to persist. ``bucket_counts`` counts each record's bucket at the
time it was pushed (relative to what was seen before it), as the earlier tool did: a rising
``high`` share means the search keeps beating its own history.

Everything serialises to JSON-safe dicts (``to_dict``/``from_dict``) that survive a JSON round
trip, where tuples come back as lists.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Bucket = Literal["high", "mid", "low"]
_MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """SplitMix64 finaliser (Steele et al. 2014): a fast, well-mixed 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def classify(value: float, low_cut: float | None, high_cut: float | None) -> Bucket:
    """Bucket of ``value`` given the two cuts (``mid`` when cuts are unknown or degenerate)."""
    if low_cut is None or high_cut is None or high_cut <= low_cut:
        return "mid"
    if value >= high_cut:
        return "high"
    if value <= low_cut:
        return "low"
    return "mid"


@dataclass(frozen=True)
class Record:
    """One measured prompt: its max activation, the token where it peaked, and provenance."""

    activation: float
    prompt: str
    max_token: str
    step: int
    source: str

    def __post_init__(self) -> None:
        act = float(self.activation)
        if not math.isfinite(act):
            raise ValueError(f"activation must be finite, got {self.activation!r}")
        object.__setattr__(self, "activation", act)
        object.__setattr__(self, "step", int(self.step))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        return cls(**d)


# A heap entry: (ordering key, insertion sequence number, record); the key is (activation, -seq)
# in the top heap and (-activation, -seq) in the bottom one, so ties go to the earlier record.
_Entry = tuple[tuple[float, int], int, Record]


class ActivationHeaps:
    """Top-k and bottom-k records (heapq, bounded), percentile buckets and running stats."""

    def __init__(
        self,
        k: int = 20,
        low_q: float = 0.25,
        high_q: float = 0.90,
        reservoir_size: int = 4096,
        min_for_buckets: int = 10,
        seed: int = 0,
    ):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not 0.0 < low_q < high_q < 1.0:
            raise ValueError(f"need 0 < low_q < high_q < 1, got {low_q}, {high_q}")
        if reservoir_size < 1:
            raise ValueError(f"reservoir_size must be >= 1, got {reservoir_size}")
        self.k, self.low_q, self.high_q = k, low_q, high_q
        self.reservoir_size, self.min_for_buckets, self.seed = reservoir_size, min_for_buckets, seed
        # Heap entries: (key, seq, record). Top: min-heap on (act, -seq) -> root is the one to
        # evict (lowest, latest). Bottom: min-heap on (-act, -seq) -> root is highest, latest.
        self._top: list[_Entry] = []
        self._bottom: list[_Entry] = []
        self._held: set[str] = set()  # prompts currently in either heap
        self._reservoir: list[float] = []
        self._seq = 0
        self.n_seen = 0
        self.total = 0.0
        self.bucket_counts: dict[str, int] = {"high": 0, "mid": 0, "low": 0}
        self._cuts_cache: tuple[float | None, float | None] | None = None

    # ---- pushing -------------------------------------------------------------------------
    def push(self, record: Record) -> bool:
        """Add a measured record; returns True if it entered the top-k.

        A prompt already held in either heap is ignored (returns False), so replaying the
        same records after a resume changes nothing."""
        if record.prompt in self._held:
            return False
        self.bucket_counts[self.bucket(record.activation)] += 1
        seq = self._seq
        self._seq += 1
        self.n_seen += 1
        self.total += record.activation
        self._sample(record.activation)
        entered = self._offer(self._top, (record.activation, -seq), seq, record)
        self._offer(self._bottom, (-record.activation, -seq), seq, record)
        return entered

    def extend(self, records: list[Record]) -> int:
        """Push several records; returns how many entered the top-k."""
        return sum(self.push(r) for r in records)

    def _offer(self, heap: list[_Entry], key: tuple[float, int], seq: int, record: Record) -> bool:
        entry = (key, seq, record)
        if len(heap) < self.k:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            evicted = heapq.heapreplace(heap, entry)[2]
            self._release(evicted.prompt)
        else:
            return False
        self._held.add(record.prompt)
        return True

    def _release(self, prompt: str) -> None:
        in_top = any(e[2].prompt == prompt for e in self._top)
        in_bottom = any(e[2].prompt == prompt for e in self._bottom)
        if not (in_top or in_bottom):
            self._held.discard(prompt)

    def _sample(self, value: float) -> None:
        self._cuts_cache = None
        if len(self._reservoir) < self.reservoir_size:
            self._reservoir.append(value)
            return
        j = splitmix64((self.seed << 40) ^ self.n_seen) % self.n_seen
        if j < self.reservoir_size:
            self._reservoir[j] = value

    # ---- reading -------------------------------------------------------------------------
    def top(self, n: int | None = None) -> list[Record]:
        """Highest records, best first (ties: earliest pushed first)."""
        out = [e[2] for e in sorted(self._top, key=lambda e: (-e[2].activation, e[1]))]
        return out[:n] if n is not None else out

    def bottom(self, n: int | None = None) -> list[Record]:
        """Lowest records, lowest first (ties: earliest pushed first)."""
        out = [e[2] for e in sorted(self._bottom, key=lambda e: (e[2].activation, e[1]))]
        return out[:n] if n is not None else out

    @property
    def best(self) -> float | None:
        """Highest activation seen, or None before any push."""
        return max(e[2].activation for e in self._top) if self._top else None

    @property
    def worst(self) -> float | None:
        """Lowest activation seen, or None before any push."""
        return min(e[2].activation for e in self._bottom) if self._bottom else None

    @property
    def mean(self) -> float | None:
        return self.total / self.n_seen if self.n_seen else None

    def cutoffs(self) -> tuple[float | None, float | None]:
        """(low_cut, high_cut): the bucket percentiles of the reservoir, or (None, None)."""
        if self._cuts_cache is None:
            if len(self._reservoir) < self.min_for_buckets:
                self._cuts_cache = (None, None)
            else:
                lo, hi = np.quantile(np.asarray(self._reservoir), [self.low_q, self.high_q])
                self._cuts_cache = (float(lo), float(hi))
        return self._cuts_cache

    def bucket(self, activation: float) -> Bucket:
        """``high`` / ``mid`` / ``low`` for ``activation`` against everything seen so far."""
        return classify(float(activation), *self.cutoffs())

    # ---- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state; ``from_dict`` restores an identical object."""
        return {
            "k": self.k, "low_q": self.low_q, "high_q": self.high_q,
            "reservoir_size": self.reservoir_size, "min_for_buckets": self.min_for_buckets,
            "seed": self.seed, "seq": self._seq, "n_seen": self.n_seen, "total": self.total,
            "bucket_counts": dict(self.bucket_counts),
            "reservoir": list(self._reservoir),
            "top": [[e[1], e[2].to_dict()] for e in self._top],
            "bottom": [[e[1], e[2].to_dict()] for e in self._bottom],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActivationHeaps:
        h = cls(
            k=d["k"], low_q=d["low_q"], high_q=d["high_q"], reservoir_size=d["reservoir_size"],
            min_for_buckets=d["min_for_buckets"], seed=d["seed"],
        )  # fmt: skip
        h._seq, h.n_seen, h.total = int(d["seq"]), int(d["n_seen"]), float(d["total"])
        h.bucket_counts = {b: int(d["bucket_counts"][b]) for b in ("high", "mid", "low")}
        h._reservoir = [float(v) for v in d["reservoir"]]
        for seq, rd in d["top"]:
            r = Record.from_dict(rd)
            h._top.append(((r.activation, -int(seq)), int(seq), r))
        for seq, rd in d["bottom"]:
            r = Record.from_dict(rd)
            h._bottom.append(((-r.activation, -int(seq)), int(seq), r))
        heapq.heapify(h._top)
        heapq.heapify(h._bottom)
        h._held = {e[2].prompt for e in h._top} | {e[2].prompt for e in h._bottom}
        return h


@dataclass
class SearchStats:
    """Counters of one search: prompts generated and what the filters did with them, the best
    activation so far, and one ``(iteration, best)`` entry per finished iteration."""

    generated: int = 0
    accepted: int = 0
    rejected_duplicate: int = 0
    rejected_semantic: int = 0
    rejected_junk: int = 0
    measured: int = 0
    best_so_far: float | None = None
    history: list[tuple[int, float | None]] = field(default_factory=list)

    def record_check(self, result: Any) -> None:
        """Count a ``DedupResult`` (anything with ``accepted`` and ``rejected[i].reason``)."""
        self.generated += len(result.accepted) + len(result.rejected)
        self.accepted += len(result.accepted)
        for rej in result.rejected:
            attr = f"rejected_{rej.reason}"
            if not hasattr(self, attr):
                raise ValueError(f"unknown rejection reason {rej.reason!r}")
            setattr(self, attr, getattr(self, attr) + 1)

    def record_measured(self, activations: list[float] | np.ndarray) -> None:
        """Count measured prompts and raise ``best_so_far`` to their maximum."""
        acts = [float(a) for a in activations]
        self.measured += len(acts)
        if acts:
            top = max(acts)
            if self.best_so_far is None or top > self.best_so_far:
                self.best_so_far = top

    def end_iteration(self, iteration: int) -> None:
        """Append ``(iteration, best_so_far)`` to the history."""
        self.history.append((int(iteration), self.best_so_far))

    @property
    def rejected(self) -> int:
        return self.rejected_duplicate + self.rejected_semantic + self.rejected_junk

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.generated if self.generated else None

    def improvements(self) -> list[tuple[int, float]]:
        """The history entries where the best activation went up (the search curve's steps)."""
        out: list[tuple[int, float]] = []
        for it, best in self.history:
            if best is not None and (not out or best > out[-1][1]):
                out.append((it, best))
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [[it, b] for it, b in self.history]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchStats:
        d = dict(d)
        d["history"] = [(int(it), None if b is None else float(b)) for it, b in d["history"]]
        return cls(**d)
