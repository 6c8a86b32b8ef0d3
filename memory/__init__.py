"""Search memory of an investigation: what was tried, what was best, when the search stalled.

- ``embedder``: all-MiniLM-L6-v2 sentence embeddings (offline), plus a hashing embedder for tests.
- ``junk``: rejects LLM chatter and unusable text before it costs a forward pass.
- ``dedup``: exact (hash) and semantic (FAISS) de-duplication with an adaptive threshold.
- ``topk``: bounded top-k / bottom-k heaps of measured prompts, buckets, search statistics.
- ``stagnation``: no-improvement detection that names the next recovery strategy.
- ``seeds``: diverse random prompts for restarts.

Submodules are imported directly (``from neurosleuth.memory.dedup import PromptDeduper``) so that
importing one does not load FAISS or sentence-transformers for the others.
"""
