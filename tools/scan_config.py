"""What a corpus scan is, in one frozen record: ``ScanConfig``. The agent's run gives it
(``RunConfig.scan()``), the score holds it (``ScoreConfig.scan``), the atlas holds it
(``AtlasConfig.scan``), and a neuron's records are read off it (``tools/exemplars.scan_records``),
so all of them name the same cached scan (``tools/exemplars.py``: one per model, corpus, window
and depth) in the same way.

The depth is ``max_tokens`` everywhere in code: the corpus tokens scanned. The command line keeps
its names for it, each mapped to ``max_tokens`` where the scan config is built: a run's
``--exemplar-tokens`` (saved as ``exemplar_tokens`` in its ``config.json``: ``RunConfig.scan``),
the atlas's ``--tokens`` (``cli/atlas.py``), the benches' ``--scan-tokens``.

No seed: a scan is deterministic (its random sample and its quantile sample are drawn with a fixed
seed, ``tools/scan.py``); a draw from it (held-out windows) takes its caller's seed.

Light on purpose (no torch): the run config imports it when the command line starts.
"""

from __future__ import annotations

from dataclasses import dataclass

# The short scan: a run without a time budget (agents/config.py SCAN_TIERS[0]) and a plain score
# share it, so they read one cached scan.
SHORT_SCAN = 50_000


@dataclass(frozen=True)
class ScanConfig:
    corpus: str | None = None  # None: the shipped default corpus (``tools/corpus.py``)
    window: int = 64  # tokens per corpus window
    max_tokens: int = SHORT_SCAN  # the depth: corpus tokens scanned
    k: int = 20  # top (and bottom) windows read per neuron
