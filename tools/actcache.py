"""An activation cache shared by the neurons of a batch: the per-token activations of a fixed set
of neurons on every token sequence any of them measured, keyed by the token ids, kept on disk.

One forward pass reads every neuron of a layer for the price of one (``bench/throughput.py``), so
a text one neuron's investigation measures is measured for all the cache's neurons at once, and
any of them that later asks for the same tokens reads the row instead of running the model. A
miss runs the pass up to the deepest layer asked for and stores every cached layer it reached
(the layers below come free).

Storage: one SQLite file (``activations.sqlite`` of a batch group); a row is (layer, key, the
float32 activations (T, C) of the layer's C cached neurons in ``columns(layer)`` order). The key
is a blake2b of the int64 token ids (BOS included), stable across processes, so a resumed batch
reads what the killed one measured. Every write is one committed transaction: a kill loses at
most the pass in flight. The file records the model fingerprint and the neuron set, and refuses
to open for another model or set (the numbers would be wrong, not just missing).

``tools.measure.use_source(lm, cache)`` routes every ``measure_ids`` call on a model through the
cache; measurements taken under hooks (ablation, patching, steering) bypass it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neurosleuth.tools.measure import active_hooks, direct_measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.reference import model_fingerprint

MEMORY_ROWS = 20_000  # recent rows also kept in memory (a flush is read back without the disk)


def ids_key(ids: Sequence[int]) -> bytes:
    return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).digest()


class ActivationCache:
    """Per-token activations of ``neurons`` on token sequences, on disk at ``path``."""

    def __init__(self, path: str | Path, lm: LoadedModel, neurons: Sequence[NeuronId]):
        if not neurons:
            raise ValueError("an activation cache needs at least one neuron")
        self.path = Path(path)
        self.lm = lm
        self.neurons = sorted(set(neurons), key=lambda n: (n.layer, n.index))
        self.by_layer: dict[int, list[int]] = {}
        for n in self.neurons:
            n.validate(lm.n_layers, lm.d_mlp)
            self.by_layer.setdefault(n.layer, []).append(n.index)
        self.col = {n: self.by_layer[n.layer].index(n.index) for n in self.neurons}
        self.hits = self.misses = self.passes = self.tokens = 0
        self._mem: OrderedDict[tuple[int, bytes], np.ndarray] = OrderedDict()
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS acts (layer INTEGER, key BLOB, tokens INTEGER,"
                        " data BLOB, computed INTEGER DEFAULT 1, PRIMARY KEY (layer, key))")
        self._check_meta()

    def _check_meta(self) -> None:
        want = {"model": self.lm.name, "fingerprint": model_fingerprint(self.lm),
                "neurons": json.dumps([str(n) for n in self.neurons])}
        have = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if not have:
            with self.db:
                self.db.executemany("INSERT INTO meta VALUES (?, ?)", want.items())
            return
        for k, v in want.items():
            if have.get(k) != v:
                raise ValueError(f"the activation cache {self.path} was written for another "
                                 f"{k} ({have.get(k, '?')[:60]!r}); delete it or use another "
                                 "batch folder")

    def close(self) -> None:
        self.db.close()

    def serves(self, neurons: Sequence[NeuronId]) -> bool:
        return all(n in self.col for n in neurons)

    def columns(self, layer: int) -> list[int]:
        return self.by_layer[layer]

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM acts").fetchone()[0])

    # ---- rows ------------------------------------------------------------------------------
    def get(self, layer: int, ids: Sequence[int]) -> np.ndarray | None:
        """The (T, C) activations of the layer's cached neurons on ``ids``, or None."""
        key = (layer, ids_key(ids))
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return self._mem[key]
            row = self.db.execute("SELECT data FROM acts WHERE layer = ? AND key = ?",
                                  key).fetchone()
            if row is None:
                return None
            arr = np.frombuffer(row[0], dtype=np.float32).reshape(len(ids), -1)
            self._remember(key, arr)
            return arr

    def _remember(self, key: tuple[int, bytes], arr: np.ndarray) -> None:
        self._mem[key] = arr
        while len(self._mem) > MEMORY_ROWS:
            self._mem.popitem(last=False)

    def missing(self, ids: Sequence[Sequence[int]], layers: set[int]) -> list[Sequence[int]]:
        """The distinct sequences of ``ids`` lacking a row for one of ``layers``."""
        out, seen = [], set()
        for seq in ids:
            k = ids_key(seq)
            if k not in seen and any(self.get(layer, seq) is None for layer in layers):
                seen.add(k)
                out.append(seq)
        return out

    def fill(self, ids: Sequence[Sequence[int]], top_layer: int,
             tokens_per_batch: int | None = None) -> None:
        """Measure ``ids`` (all missing) for every cached neuron up to ``top_layer`` and store
        the rows, in one transaction."""
        if not ids:
            return
        neurons = [n for n in self.neurons if n.layer <= top_layer]
        acts = direct_measure_ids(self.lm, ids, neurons, tokens_per_batch)
        rows = []
        with self._lock:
            for seq, a in zip(ids, acts, strict=True):
                k, start = ids_key(seq), 0
                for layer, cols in self.by_layer.items():
                    if layer > top_layer:
                        continue
                    part = np.ascontiguousarray(a[:, start : start + len(cols)], dtype=np.float32)
                    start += len(cols)
                    rows.append((layer, k, len(seq), part.tobytes()))
                    self._remember((layer, k), part)
            with self.db:
                self.db.executemany(
                    "INSERT INTO acts (layer, key, tokens, data) VALUES (?, ?, ?, ?) ON CONFLICT "
                    "(layer, key) DO UPDATE SET computed = computed + 1, data = excluded.data",
                    rows)
            self.misses += len(ids)
            self.passes += 1
            self.tokens += sum(len(s) for s in ids)

    def _present(self, layer: int, ids: Sequence[int]) -> np.ndarray:
        """``get`` for a row that must be cached."""
        arr = self.get(layer, ids)
        if arr is None:
            raise KeyError(f"no cached activations of layer {layer} on these {len(ids)} tokens")
        return arr

    def read(self, ids: Sequence[Sequence[int]], neurons: Sequence[NeuronId]) -> list[np.ndarray]:
        """(T_i, N) activations of ``neurons`` (in that order) on ``ids``; every row present."""
        out = []
        for seq in ids:
            parts = {layer: self._present(layer, seq) for layer in {n.layer for n in neurons}}
            out.append(np.stack([parts[n.layer][:, self.col[n]] for n in neurons], axis=1)
                       if neurons else np.zeros((len(seq), 0), np.float32))
        return out

    # ---- the measure_ids source ------------------------------------------------------------
    def measure_ids(self, lm: LoadedModel, ids: Sequence[Sequence[int]],
                    neurons: Sequence[NeuronId], tokens_per_batch: int | None = None
                    ) -> list[np.ndarray]:
        """``tools.measure.measure_ids`` through the cache (direct for other neurons or models,
        or under hooks)."""
        if lm is not self.lm or not self.serves(neurons) or active_hooks(lm):
            return direct_measure_ids(lm, ids, neurons, tokens_per_batch)
        layers = {n.layer for n in neurons}
        with self._lock:
            todo = self.missing(ids, layers)
            self.hits += len(ids) - len(todo)
            self.fill(todo, max(layers), tokens_per_batch)
            return self.read(ids, neurons)

    def stats(self) -> dict:
        recomputed = self.db.execute("SELECT COUNT(*) FROM acts WHERE computed > 1").fetchone()[0]
        return {"rows": len(self), "hits": self.hits, "misses": self.misses,
                "passes": self.passes, "tokens": self.tokens, "recomputed": int(recomputed)}
