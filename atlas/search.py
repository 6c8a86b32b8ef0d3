"""Search an atlas by meaning: "colour words" finds the neurons explained as firing on colors.

Each neuron's searchable text is its explanation, its concept and kind of text, and its trigger
tokens; the texts are embedded with the project's sentence embedder (all-MiniLM-L6-v2,
``memory/embedder.py``), normalised, and put in a FAISS inner-product index (cosine), saved beside
the table (``search.faiss`` and ``search.json``: which row each vector is, and a hash of the
texts, so a changed table rebuilds it). A query is embedded the same way; results come best
first with their cosine similarity. Dead neurons (no explanation) are not indexed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from neurosleuth.memory.embedder import Embedder, TextEmbedder, load_embedder, normalise_rows

COLUMNS = ["neuron", "kind", "explanation", "concept", "context", "triggers", "r"]


def search_text(row: pd.Series) -> str:
    parts = [str(row["explanation"])]
    if row.get("concept"):
        parts.append(str(row["concept"]))
    if row.get("context"):
        parts.append(str(row["context"]))
    triggers = json.loads(row["triggers"]) if row.get("triggers") else []
    if triggers:
        parts.append("tokens: " + ", ".join(triggers[:8]))
    return ". ".join(parts)


@dataclass(frozen=True)
class Hit:
    neuron: str
    similarity: float
    explanation: str
    r: float | None


class AtlasIndex:
    def __init__(self, folder: Path, embedder: TextEmbedder):
        self.folder, self.embedder = folder, embedder
        self.frame = pd.read_parquet(folder / "atlas.parquet", columns=COLUMNS)
        live = self.frame[self.frame["kind"] != "none"]
        texts = [search_text(r) for _, r in live.iterrows()]
        digest = hashlib.sha1(json.dumps([repr(embedder), texts]).encode()).hexdigest()
        meta_path, index_path = folder / "search.json", folder / "search.faiss"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if meta.get("digest") == digest and index_path.is_file():
            self.index = faiss.read_index(str(index_path))
            self.rows = meta["rows"]
        else:
            vectors = normalise_rows(np.asarray(embedder.embed(texts), dtype=np.float32))
            self.index = faiss.IndexFlatIP(vectors.shape[1] if len(texts) else 1)
            if len(texts):
                self.index.add(vectors)
            self.rows = [int(i) for i in live.index]
            faiss.write_index(self.index, str(index_path))
            meta_path.write_text(json.dumps({"digest": digest, "rows": self.rows,
                                             "embedder": repr(embedder)}))

    def search(self, query: str, k: int = 10) -> list[Hit]:
        if not query.strip() or self.index.ntotal == 0:
            return []
        q = normalise_rows(np.asarray(self.embedder.embed([query]), dtype=np.float32))
        sims, idx = self.index.search(q, min(k, self.index.ntotal))
        out = []
        for s, i in zip(sims[0], idx[0], strict=True):
            row = self.frame.loc[self.rows[int(i)]]
            r = row.get("r")
            out.append(Hit(str(row["neuron"]), round(float(s), 4), str(row["explanation"]),
                           None if r is None or pd.isna(r) else float(r)))
        return out


def bulk_embedder(batch_size: int = 64) -> Embedder:
    """The project's MiniLM embedder, batched for indexing many texts at once."""
    one = load_embedder()
    return Embedder(one.model, one.name, batch_size=batch_size)
