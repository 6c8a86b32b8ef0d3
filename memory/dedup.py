"""Reject proposed prompts before they cost a forward pass: junk, exact and semantic duplicates.

Order of checks for each candidate of a batch (``PromptDeduper.check``):

1. **junk** (``memory.junk.JunkFilter``): empty, too long, mostly unprintable, LLM chatter.
2. **duplicate**: SHA-1 of the normalised text (Unicode NFC, outer whitespace stripped, inner
   runs of whitespace collapsed; *case is kept*, because the model under study tokenises case)
   equals that of a stored prompt, of an earlier candidate in the same batch, or of one of the
   last ``REJECTED_MEMORY`` semantically rejected prompts (a planner repeating a rejected text
   is a repeat, not a new near-duplicate, and must not loosen the adaptive threshold).
3. **semantic**: cosine similarity in a FAISS ``IndexFlatIP`` over L2-normalised sentence
   embeddings (exact search; Johnson et al. 2019). The candidate's nearest neighbour among stored
   prompts *and* earlier accepted candidates of the batch decides: reject if
   ``similarity >= threshold_for(nearest)``.

Adaptive threshold (``adaptive=True``), two mechanisms, after the earlier tool's idea of being
stricter near mediocre prompts and looser near strong ones:

- *Per-neighbour*: ``threshold_for`` depends on the bucket of the nearest stored prompt's
  activation (percentiles of all stored activations, as in ``memory.topk``): ``high`` ->
  ``min(t + exploit_margin, exploit_cap)`` (a close variant of a top prompt is allowed:
  exploitation), ``low`` -> ``t - strict_margin`` (variants of poor prompts are rejected
  earlier), ``mid`` and not-yet-measured batch mates -> ``t``. Deciding by the single nearest
  neighbour (not "any neighbour within its threshold") keeps exploitation possible in the dense
  cloud of mediocre variants that forms around a good prompt.
- *Global*: ``t`` follows the acceptance rate of the semantic stage (accepted / (accepted +
  rejected semantic); junk and exact duplicates do not move it). Once at least ``min_window`` of
  the last ``window`` semantic decisions are in, a rate below ``target[0]`` raises ``t`` by
  ``step`` (looser), a rate above ``target[1]`` lowers it (stricter), clamped to
  ``[min_threshold, max_threshold]``; after a change the window is cleared, so each step rests
  on fresh evidence. Decisions inside one ``check`` call all use the threshold at its start.

With ``adaptive=False`` the rule is the plain one: reject if the max cosine >= ``threshold``.

``check`` never changes the index (it is safe to repeat after a crash); ``add`` records measured
prompts with their activations. Caveat: all-MiniLM-L6-v2 is uncased, so case-only variants are
semantic duplicates (cosine 1.0) unless ``exploit_cap`` > 1.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from .embedder import TextEmbedder, normalise_rows
from .junk import JunkFilter
from .topk import Bucket, classify

RejectReason = Literal["duplicate", "semantic", "junk"]
REJECTED_MEMORY = 10_000
INDEX_FILE = "dedup.faiss"
STATE_FILE = "dedup.json"
_WS = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Text as compared for exact duplicates: NFC, stripped, whitespace runs -> one space."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def text_hash(text: str) -> str:
    """SHA-1 hex digest of ``normalise_text(text)``."""
    return hashlib.sha1(normalise_text(text).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RejectedPrompt:
    """A rejected candidate. ``similarity``: cosine to ``nearest`` (1.0 for exact duplicates,
    0.0 for junk); ``detail``: the junk reason or the threshold that applied."""

    prompt: str
    reason: RejectReason
    similarity: float
    nearest: str | None
    detail: str = ""


@dataclass(frozen=True)
class DedupResult:
    """Outcome of one ``check``: accepted prompts in input order, and the rejected ones."""

    accepted: list[str]
    rejected: list[RejectedPrompt]
    threshold: float  # global threshold used for this batch
    exploit: int = 0  # accepted near-duplicates of high-activation prompts

    def counts(self) -> dict[str, int]:
        out = {"accepted": len(self.accepted), "duplicate": 0, "semantic": 0, "junk": 0}
        for r in self.rejected:
            out[r.reason] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": list(self.accepted),
            "rejected": [asdict(r) for r in self.rejected],
            "threshold": self.threshold,
            "exploit": self.exploit,
        }


@dataclass
class DedupStats:
    """Counters over the deduper's life; ``threshold_history`` holds (candidates seen, new t)."""

    checked: int = 0
    accepted: int = 0
    duplicate: int = 0
    semantic: int = 0
    junk: int = 0
    added: int = 0
    exploit_accepts: int = 0  # accepted only thanks to a high-bucket neighbour's looser threshold
    threshold_history: list[tuple[int, float]] = field(default_factory=list)


class PromptDeduper:
    """Junk + exact + semantic de-duplication with a persistent FAISS index (see module doc)."""

    vec_cache_size = 4096  # embeddings of recent candidates kept so ``add`` need not re-embed

    def __init__(
        self,
        embedder: TextEmbedder,
        threshold: float = 0.90,
        adaptive: bool = True,
        *,
        min_threshold: float = 0.80,
        max_threshold: float = 0.97,
        step: float = 0.01,
        target: tuple[float, float] = (0.2, 0.8),
        window: int = 50,
        min_window: int = 20,
        exploit_margin: float = 0.06,
        exploit_cap: float = 0.995,
        strict_margin: float = 0.05,
        low_q: float = 0.25,
        high_q: float = 0.90,
        min_for_buckets: int = 10,
        junk: JunkFilter | None = None,
    ):
        if not min_threshold <= threshold <= max_threshold:
            raise ValueError(f"need min_threshold <= threshold <= max_threshold, got "
                             f"{min_threshold} <= {threshold} <= {max_threshold}")  # fmt: skip
        if not 0.0 <= target[0] < target[1] <= 1.0:
            raise ValueError(f"target must be (low, high) with 0 <= low < high <= 1, got {target}")
        if not 1 <= min_window <= window:
            raise ValueError(f"need 1 <= min_window <= window, got {min_window}, {window}")
        self.embedder = embedder
        self.threshold = float(threshold)
        self.adaptive = adaptive
        self.min_threshold, self.max_threshold, self.step = min_threshold, max_threshold, step
        self.target = (float(target[0]), float(target[1]))
        self.window, self.min_window = window, min_window
        self.exploit_margin, self.exploit_cap = exploit_margin, exploit_cap
        self.strict_margin = strict_margin
        self.low_q, self.high_q, self.min_for_buckets = low_q, high_q, min_for_buckets
        self.junk = junk or JunkFilter()
        self.index: faiss.Index = faiss.IndexFlatIP(embedder.dim)
        self.texts: list[str] = []
        self.hashes: list[str] = []
        self.activations: list[float] = []
        self._row_of: dict[str, int] = {}  # hash -> row
        self._decisions: deque[bool] = deque(maxlen=window)
        self._cuts: tuple[float | None, float | None] | None = None
        self._vec_cache: OrderedDict[str, np.ndarray] = OrderedDict()  # text -> (D,)
        self._rejected: OrderedDict[str, tuple[str, float]] = OrderedDict()  # hash -> (near, sim)
        self.stats = DedupStats()

    def __len__(self) -> int:
        return len(self.texts)

    def __contains__(self, prompt: str) -> bool:
        return text_hash(prompt) in self._row_of

    # ---- thresholds ----------------------------------------------------------------------
    def cutoffs(self) -> tuple[float | None, float | None]:
        """(low_cut, high_cut) percentiles of stored activations, or (None, None)."""
        if self._cuts is None:
            if len(self.activations) < self.min_for_buckets:
                self._cuts = (None, None)
            else:
                lo, hi = np.quantile(np.asarray(self.activations), [self.low_q, self.high_q])
                self._cuts = (float(lo), float(hi))
        return self._cuts

    def bucket_of_row(self, row: int) -> Bucket:
        return classify(self.activations[row], *self.cutoffs())

    def threshold_for(self, bucket: Bucket) -> float:
        """Similarity at or above which a candidate whose nearest neighbour is in ``bucket``
        is rejected."""
        t = self.threshold
        if not self.adaptive or bucket == "mid":
            return t
        if bucket == "high":
            return max(t, min(t + self.exploit_margin, self.exploit_cap))
        return t - self.strict_margin

    # ---- checking ------------------------------------------------------------------------
    def check(self, prompts: Sequence[str], record: bool = True) -> DedupResult:
        """Filter a batch of proposed prompts (see the module doc for the rules). The index is
        not changed; with ``record`` the stats and the adaptive threshold are updated."""
        t0 = self.threshold
        rejected: dict[int, RejectedPrompt] = {}
        survivors: list[int] = []
        seen: dict[str, int] = {}  # hash -> batch position of first occurrence
        for i, p in enumerate(prompts):
            why = self.junk.reason(p)
            if why is not None:
                rejected[i] = RejectedPrompt(str(p), "junk", 0.0, None, why)
                continue
            h = text_hash(p)
            if h in self._row_of or h in seen:
                near = self.texts[self._row_of[h]] if h in self._row_of else prompts[seen[h]]
                rejected[i] = RejectedPrompt(p, "duplicate", 1.0, near, "same normalised text")
                continue
            if h in self._rejected:
                near, sim = self._rejected[h]
                rejected[i] = RejectedPrompt(p, "duplicate", sim, near, "repeat of a rejected one")
                continue
            seen[h] = i
            survivors.append(i)
        accepted_pos, n_exploit = self._semantic(prompts, survivors, rejected)
        result = DedupResult(
            accepted=[prompts[i] for i in accepted_pos],
            rejected=[rejected[i] for i in sorted(rejected)],
            threshold=t0,
            exploit=n_exploit,
        )
        if record:
            self.observe(result)
        return result

    def _semantic(
        self, prompts: Sequence[str], survivors: list[int], rejected: dict[int, RejectedPrompt]
    ) -> tuple[list[int], int]:
        """Semantic stage over ``survivors`` (batch positions); fills ``rejected`` and returns
        (accepted positions, how many were accepted thanks to the exploit margin)."""
        if not survivors:
            return [], 0
        q = self._embed([prompts[i] for i in survivors])  # (S, D)
        if self.index.ntotal:
            sims, rows = self.index.search(q, 1)  # (S, 1), (S, 1)
        else:
            sims = np.full((len(survivors), 1), -np.inf, dtype=np.float32)
            rows = np.full((len(survivors), 1), -1, dtype=np.int64)
        batch_sims = q @ q.T  # (S, S)
        accepted: list[int] = []  # indices into survivors
        n_exploit = 0
        for s, i in enumerate(survivors):
            sim, near, limit = float(sims[s, 0]), None, self.threshold
            if rows[s, 0] >= 0:
                near = self.texts[rows[s, 0]]
                limit = self.threshold_for(self.bucket_of_row(int(rows[s, 0])))
            for a in accepted:  # earlier accepted batch mates: unmeasured, bucket "mid"
                if batch_sims[s, a] > sim:
                    sim, near = float(batch_sims[s, a]), prompts[survivors[a]]
                    limit = self.threshold
            if near is not None and sim >= limit:
                sim = min(sim, 1.0)  # float rounding can give 1.0000001
                rejected[i] = RejectedPrompt(prompts[i], "semantic", sim, near, f"t={limit:.3f}")
                continue
            accepted.append(s)
            n_exploit += near is not None and limit > self.threshold and sim >= self.threshold
        return [survivors[a] for a in accepted], n_exploit

    def observe(self, result: DedupResult) -> None:
        """Apply a ``check`` result: count it, remember its semantic rejections, adapt the
        threshold. ``check(record=True)`` does this itself; a caller that checkpoints between
        checking and recording (the agent) calls ``check(record=False)`` and later this, once."""
        st = self.stats
        st.checked += len(result.accepted) + len(result.rejected)
        st.accepted += len(result.accepted)
        st.exploit_accepts += result.exploit
        for r in result.rejected:
            setattr(st, r.reason, getattr(st, r.reason) + 1)
            if r.reason == "semantic":
                self._rejected[text_hash(r.prompt)] = (r.nearest or "", r.similarity)
        while len(self._rejected) > REJECTED_MEMORY:
            self._rejected.popitem(last=False)
        self._adapt(len(result.accepted), sum(r.reason == "semantic" for r in result.rejected))

    def _adapt(self, n_accepted: int, n_rejected: int) -> None:
        """Move the global threshold toward the target acceptance band (see module doc)."""
        if not self.adaptive:
            return
        self._decisions.extend([True] * n_accepted + [False] * n_rejected)
        if len(self._decisions) < self.min_window:
            return
        rate = sum(self._decisions) / len(self._decisions)
        new = self.threshold
        if rate < self.target[0]:
            new = min(self.threshold + self.step, self.max_threshold)
        elif rate > self.target[1]:
            new = max(self.threshold - self.step, self.min_threshold)
        else:
            return
        self._decisions.clear()
        if new != self.threshold:
            self.threshold = round(new, 6)
            self.stats.threshold_history.append((self.stats.checked, self.threshold))

    # ---- recording -----------------------------------------------------------------------
    def add(self, prompts: Sequence[str], activations: Sequence[float] | np.ndarray) -> int:
        """Record measured prompts and their (max) activations in the index; prompts already
        stored (same normalised text) are skipped. Returns how many were added."""
        acts = [float(a) for a in np.asarray(activations, dtype=np.float64).reshape(-1)]
        if len(acts) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(acts)} activations")
        if not all(math.isfinite(a) for a in acts):
            raise ValueError("activations must be finite")
        new: list[tuple[str, str, float]] = []
        batch: set[str] = set()
        for p, a in zip(prompts, acts, strict=True):
            h = text_hash(p)
            if h not in self._row_of and h not in batch:
                batch.add(h)
                new.append((p, h, a))
        if not new:
            return 0
        vecs = self._embed([p for p, _, _ in new])  # (M, D)
        self.index.add(vecs)
        for p, h, a in new:
            self._row_of[h] = len(self.texts)
            self.texts.append(p)
            self.hashes.append(h)
            self.activations.append(a)
        self._cuts = None
        self.stats.added += len(new)
        return len(new)

    def neighbours(self, prompt: str, k: int = 5) -> list[tuple[str, float, float]]:
        """The ``k`` stored prompts nearest to ``prompt``: (text, cosine, activation)."""
        if not self.index.ntotal:
            return []
        sims, rows = self.index.search(self._embed([prompt]), min(k, self.index.ntotal))
        return [(self.texts[r], float(s), self.activations[r])
                for s, r in zip(sims[0], rows[0], strict=True) if r >= 0]  # fmt: skip

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` (reusing those computed by recent checks); (N, D) float32."""
        out = np.empty((len(texts), self.embedder.dim), dtype=np.float32)  # (N, D)
        missing: dict[str, list[int]] = {}
        for j, t in enumerate(texts):
            v = self._vec_cache.get(t)
            if v is None:
                missing.setdefault(t, []).append(j)
            else:
                out[j] = v
        if missing:
            vecs = normalise_rows(self.embedder.embed(list(missing)))  # (M, D)
            if vecs.shape != (len(missing), self.embedder.dim):
                raise ValueError(f"embedder returned shape {vecs.shape}, expected "
                                 f"({len(missing)}, {self.embedder.dim})")  # fmt: skip
            for (t, rows), v in zip(missing.items(), vecs, strict=True):
                out[rows] = v
                self._remember(t, v)
        return out

    def _remember(self, text: str, vec: np.ndarray) -> None:
        self._vec_cache[text] = vec
        self._vec_cache.move_to_end(text)
        while len(self._vec_cache) > self.vec_cache_size:
            self._vec_cache.popitem(last=False)

    # ---- persistence ---------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "adaptive": self.adaptive, "min_threshold": self.min_threshold,
            "max_threshold": self.max_threshold, "step": self.step, "target": list(self.target),
            "window": self.window, "min_window": self.min_window,
            "exploit_margin": self.exploit_margin, "exploit_cap": self.exploit_cap,
            "strict_margin": self.strict_margin, "low_q": self.low_q, "high_q": self.high_q,
            "min_for_buckets": self.min_for_buckets, "junk": self.junk.config(),
        }  # fmt: skip

    def save(self, directory: str | Path) -> Path:
        """Write ``dedup.faiss`` and ``dedup.json`` into ``directory`` (atomically, each file
        replaced only once fully written). Returns the directory."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {
            "embedder": _embedder_name(self.embedder), "dim": self.embedder.dim,
            "threshold": self.threshold, "config": self.config(),
            "texts": self.texts, "hashes": self.hashes, "activations": self.activations,
            "decisions": list(self._decisions), "stats": asdict(self.stats),
            "rejected": [[h, near, sim] for h, (near, sim) in self._rejected.items()],
        }  # fmt: skip
        tmp_index = d / (INDEX_FILE + ".tmp")
        faiss.write_index(self.index, str(tmp_index))
        os.replace(tmp_index, d / INDEX_FILE)
        tmp_state = d / (STATE_FILE + ".tmp")
        tmp_state.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp_state, d / STATE_FILE)
        return d

    @classmethod
    def load(cls, directory: str | Path, embedder: TextEmbedder) -> PromptDeduper:
        """Restore a deduper saved by ``save``; ``embedder`` must be the one it was built with."""
        d = Path(directory)
        if not (d / INDEX_FILE).exists() or not (d / STATE_FILE).exists():
            raise FileNotFoundError(f"no saved deduper in {d} (need {INDEX_FILE}, {STATE_FILE})")
        state = json.loads((d / STATE_FILE).read_text(encoding="utf-8"))
        name = _embedder_name(embedder)
        if state["dim"] != embedder.dim or state["embedder"] != name:
            raise ValueError(f"deduper in {d} was built with {state['embedder']} "
                             f"(dim {state['dim']}), not {name} (dim {embedder.dim})")  # fmt: skip
        cfg = dict(state["config"])
        junk = JunkFilter(**cfg.pop("junk"))
        cfg["target"] = tuple(cfg["target"])
        self = cls(embedder, threshold=state["threshold"], junk=junk, **cfg)
        index = faiss.read_index(str(d / INDEX_FILE))
        if index.ntotal != len(state["texts"]) or index.d != embedder.dim:
            raise ValueError(f"{d / INDEX_FILE} holds {index.ntotal} vectors of dim {index.d}, "
                             f"state has {len(state['texts'])} texts")  # fmt: skip
        self.index = index
        self.texts, self.hashes = list(state["texts"]), list(state["hashes"])
        self.activations = [float(a) for a in state["activations"]]
        self._row_of = {h: i for i, h in enumerate(self.hashes)}
        self._decisions.extend(bool(x) for x in state["decisions"])
        self._rejected.update((h, (near, float(sim))) for h, near, sim in state["rejected"])
        st = dict(state["stats"])
        st["threshold_history"] = [(int(n), float(t)) for n, t in st["threshold_history"]]
        self.stats = DedupStats(**st)
        return self


def _embedder_name(embedder: TextEmbedder) -> str:
    return str(getattr(embedder, "name", type(embedder).__name__))
