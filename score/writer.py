"""The writing side of a hypothesis score: test prompts, judgments of held-out windows, per-token
activation simulations and paraphrases, by an LLM (``LLMWriter``) or by keywords
(``HeuristicWriter``). ``score/components.py`` turns what they write into the score. The caller
chooses: the agent passes an ``LLMWriter`` over its planner when the planner has a chat model
(``agents/scoring.py``); without one, keywords write.

LLM path: the planner's chat model (``agents/planner.py``: Ollama or the embedded SmolLM2 with
xgrammar-constrained JSON) is asked for small pydantic objects (``score/requests.py``:
``JudgeWindows``: <= 8 verdicts, ``SimulateTokens``: <= 32 values, ``Paraphrases``: <= 4 texts, and
``TestPrompts``) through its ``Asker`` interface (``LLMPlanner.ask``: retries, JSON repair). A reply
that parses but has the wrong number of items is asked once more; a simulation that covers at least
half the tokens is padded with 0s (counted as a repair). Whatever still fails falls back, item by
item, to the keyword heuristic below, and is counted (``WriterStats.failures``: failed LLM attempts;
``fallbacks``: items the heuristic wrote). A bad LLM never stops a score.

Keyword heuristic (no LLM): the hypothesis's keywords are its quoted strings ('x' or "x"), else
its content words (stop words and neuron-talk like "fires", "token" removed). A token predicts 10
when its stripped, lower-cased text equals a keyword, 5 when one starts with the other (both
>= 3 characters: 'parisian' for 'paris', not 'islands' for 'and'), else 0. The judge's window
score is its highest token prediction (>= 5: "fires"). Test prompts come from held-out corpus
windows (a pool the judge never sees): positive = the 16 tokens ending at a natural occurrence
of a keyword, negative = 16 tokens of a window without any (matched in style by construction);
when the pool has too few occurrences, minimal pairs fill up: keyword-free text + " " + keyword
vs. the same text. The heuristic paraphrase is a neutral prefix ("In other words, "): a context
change, not a rewrite. An empty hypothesis has no keywords, so it predicts nothing: the chance
level.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from neurosleuth.score.requests import (
    JUDGE,
    JUDGE_BATCH,
    PARAPHRASE,
    SIMULATE,
    Asker,
    CallCost,
    JudgeWindows,
    Paraphrases,
    SimulateTokens,
    TestPrompts,
    render_test_prompts,
    sized,
)
from neurosleuth.tools import concepts
from neurosleuth.tools.snippets import Snippet

MIN_PROMPT_CHARS = 3  # shorter LLM-written test prompts are dropped (SmolLM2 wrote 'M')
CUT = 16  # tokens of held-out text in a heuristic test prompt
STOP = set("""a an the of in on at to for from by with and or not no is are was were be been being
it its this that these those which who whom what when where while as into onto over under about
after before than then so such very more most less some any each every other another also only
just like e g i.e eg etc neuron neurons fires fire firing fired activates activate activation
activations responds respond response detects detect token tokens word words text texts context
contexts phrase phrases mention mentions mentioning appears appear appearing occurs occur
occurrence strongly mostly often usually especially particular particularly specific specifically
seems seem around near inside within end beginning start following preceding""".split())

# 'x' or "x", the quote opening after a space/start/bracket and closing before one (not don't)
QUOTED = r"(?:^|(?<=[\s(\[,:]))'(.+?)'(?=[\s,.;:)\]]|$)" + r'|"([^"]+)"'


# ---------------------------------------------------------------- keyword heuristic


def keywords(hypothesis: str) -> list[str]:
    """Quoted strings of the hypothesis, else its content words (lower-cased, de-duplicated)."""
    quoted = [a or b for a, b in re.findall(QUOTED, hypothesis or "")]
    words = quoted or [w for w in re.findall(r"[A-Za-z0-9_]+|[^\sA-Za-z0-9_]", hypothesis or "")
                       if w.lower() not in STOP and (len(w) > 1 or not w.isalnum())
                       and w not in ".,;:!?'\""]
    out: list[str] = []
    for w in words:
        w = w.strip().lower()
        if w and w not in out:
            out.append(w)
    return out


def token_score(token: str, kws: list[str], synsets: tuple[str, ...] = ()) -> float:
    """10: the token is a keyword; 8: a member of a concept the hypothesis names (WordNet:
    'Tuesday' under "weekdays"); 5: a keyword's prefix or extension; else 0."""
    t = token.strip().lower()
    if not t or not (kws or synsets):
        return 0.0
    if t in kws:
        return 10.0
    if synsets and any(concepts.in_synset(t, s) for s in synsets):
        return 8.0
    if len(t) >= 3 and any(len(k) >= 3 and (t.startswith(k) or k.startswith(t)) for k in kws):
        return 5.0
    return 0.0


@functools.lru_cache(maxsize=256)
def named_concepts(hypothesis: str) -> tuple[str, ...]:
    """WordNet concepts the hypothesis names outside quotes ("weekdays", "animals"): a token
    that belongs to one is predicted to fire (``token_score``)."""
    bare = re.sub(QUOTED, " ", hypothesis or "")
    words = [w for w in re.findall(r"[A-Za-z]+", bare) if w.lower() not in STOP]
    return tuple(dict.fromkeys(s for w in words for s in concepts.concept_synsets(w)))


def render(tokens: list[str]) -> str:
    """Token strings as text: concatenated when they carry their spaces (BPE), else spaced."""
    if len(tokens) > 1 and not any(t[:1].isspace() for t in tokens):
        return " ".join(tokens)
    return "".join(tokens)


def peak_token_hypothesis(top: list[Snippet], exemplars: list[Snippet]) -> tuple[str, str]:
    """(hypothesis, explanation) read off snippets: the tokens where the neuron peaks most often
    among the first 10 of ``top`` and of ``exemplars``. The agent's heuristic planner states it;
    the score writes its other-neuron control so when no planner writes one."""
    peaks = Counter(tok.strip() or repr(tok) for _, tok, _ in top[:10] + exemplars[:10])
    if not peaks:
        return "No evidence yet.", "Nothing was measured."
    common = peaks.most_common(3)
    total = sum(peaks.values())
    tokens = ", ".join(f"'{t}'" for t, _ in common)
    best = top[0] if top else exemplars[0]
    text = f"Fires on the token{'s' if len(common) > 1 else ''} {tokens} in context."
    explanation = (
        f"The peak token is one of {tokens} in {sum(c for _, c in common)} of {total} "
        "top texts "
        f"and dataset exemplars; the strongest text so far ({best[0]:.2f}) peaks at "
        f"{best[1]!r}: {best[2]!r}."
    )
    return text, explanation


@dataclass
class WriterStats:
    backend: str
    calls: int = 0
    failures: int = 0
    fallbacks: int = 0
    repairs: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # the first few, for the record

    def add(self, info: CallCost) -> None:
        self.errors += list(info.errors)[: max(0, 5 - len(self.errors))]
        self.calls += info.calls
        self.failures += info.failures
        self.repairs += info.repairs
        self.tokens_in += info.tokens_in
        self.tokens_out += info.tokens_out
        self.seconds += info.seconds

    def to_dict(self) -> dict:
        return asdict(self)


class HeuristicWriter:
    """Keyword-based writing (module docstring): deterministic, no LLM."""

    def __init__(self, neuron: str = "", model: str = "", patterns: dict | None = None):
        self.neuron, self.model = neuron, model
        self.stats = WriterStats("heuristic")
        # hypothesis text -> the explainer's Pattern that wrote it: its own simulator
        self.patterns: dict[str, Any] = dict(patterns or {})

    def _scorer(self, hypothesis: str):
        """token strings -> 0-10 predictions for ``hypothesis``: its pattern when the explainer
        wrote it, else keywords and the concepts it names."""
        pattern = self.patterns.get(hypothesis)
        if pattern is not None:
            return lambda toks: 10.0 * pattern.simulate(toks)
        kws, syn = keywords(hypothesis), named_concepts(hypothesis)
        return lambda toks: np.array([token_score(t, kws, syn) for t in toks], dtype=float)

    @property
    def name(self) -> str:
        return self.stats.backend

    def test_prompts(self, hypothesis: str, n: int, pool: list[list[str]]
                     ) -> tuple[list[str], list[str]]:
        """Natural occurrences of the keywords in held-out text, cut after the keyword
        (positive), and keyword-free text of the same length (negative); topped up with minimal
        pairs (keyword-free text + " " + keyword vs. the same text) when the pool runs short."""
        kws = keywords(hypothesis)
        score = self._scorer(hypothesis)
        if hypothesis in self.patterns:  # its triggers stand in for keywords in minimal pairs
            kws = list(self.patterns[hypothesis].triggers)[:8]
        hits, plain = [], []
        for toks in pool:
            at = [i for i, s in enumerate(score(toks)) if s >= 5]
            late = [i for i in at if i >= CUT // 2]  # with some context before it
            if late:
                end = late[0] + 1
                hits.append(render(toks[max(0, end - CUT): end]).strip())
            elif not at:
                plain.append(render(toks[:CUT]).strip())
        pos = hits[:n]
        neg = plain[:n]
        for i, base in enumerate(plain[n: n + n - len(pos)] if kws else []):
            pos.append(f"{base} {kws[i % len(kws)]}")
            neg.append(base)
        if not kws:
            pos = list(neg)
        return [p for p in pos if p], [t for t in neg if t]

    def judge(self, hypothesis: str, windows: list[list[str]]) -> np.ndarray:
        score = self._scorer(hypothesis)
        return np.array([float(np.max(score(w), initial=0.0)) for w in windows])

    def simulate(self, hypothesis: str, tokens: list[str]) -> np.ndarray:
        return np.asarray(self._scorer(hypothesis)(tokens), dtype=float)

    def paraphrase(self, texts: list[str]) -> list[str]:
        return [f"In other words, {t.strip()}" for t in texts]


class LLMWriter(HeuristicWriter):
    """Asks an LLM (the agent's planner); falls back to the heuristic per failed request."""

    def __init__(self, asker: Asker, neuron: str = "", model: str = ""):
        super().__init__(neuron, model)
        self.asker = asker
        self.stats = WriterStats(asker.name)

    def _ask(self, schema: type[BaseModel], user: str, temperature: float, fits) -> Any:
        """``fits(parsed)`` -> usable value or None; one re-ask on a misfit, then None."""
        for _ in range(2):
            action, info = self.asker.ask(schema, user, temperature)
            self.stats.add(info)
            if action is None:  # the asker already retried; more would only cost time
                return None
            value = fits(action)
            if value is not None:
                return value
            self.stats.failures += 1
            if len(self.stats.errors) < 5:
                self.stats.errors.append(f"{schema.__name__}: reply of the wrong size")
        return None

    def _head(self, hypothesis: str) -> dict[str, str]:
        return {"neuron": self.neuron, "model": self.model,
                "hypothesis": hypothesis.strip() or "(no hypothesis)"}

    def test_prompts(self, hypothesis, n, pool):
        def fits(a: TestPrompts):
            pos = [p for p in a.positive[:n] if len(p) >= MIN_PROMPT_CHARS]
            neg = [p for p in a.negative[:n] if len(p) >= MIN_PROMPT_CHARS]
            return (pos, neg) if len(pos) >= 2 and len(neg) >= 2 else None

        user = render_test_prompts(self.neuron, self.model, hypothesis or "(none)", n)
        out = self._ask(TestPrompts, user, 0.5, fits)
        if out is None:
            self.stats.fallbacks += 1
            return super().test_prompts(hypothesis, n, pool)
        return out

    def judge(self, hypothesis: str, windows: list[list[str]]) -> np.ndarray:
        scores: list[float] = []
        for lo in range(0, len(windows), JUDGE_BATCH):
            batch = windows[lo: lo + JUDGE_BATCH]
            texts = "\n".join(f"{i + 1}. {render(w)!r}" for i, w in enumerate(batch))
            user = JUDGE.format(**self._head(hypothesis), texts=texts, n=len(batch))
            k = len(batch)
            got = self._ask(sized(JudgeWindows, "applies", k), user, 0.0,
                            lambda a, k=k: a.applies if len(a.applies) == k else None)
            if got is None:
                self.stats.fallbacks += 1
                scores += list(super().judge(hypothesis, batch))
            else:
                scores += [10.0 if v else 0.0 for v in got]
        return np.array(scores)

    def simulate(self, hypothesis, tokens):
        numbered = "\n".join(f"{i} {t!r}" for i, t in enumerate(tokens))
        user = SIMULATE.format(**self._head(hypothesis), tokens=numbered, n=len(tokens))

        def fits(a: SimulateTokens):
            v = list(a.values)[: len(tokens)]
            if len(v) * 2 < len(tokens):
                return None
            if len(v) < len(tokens):
                self.stats.repairs += 1
            return np.array(v + [0] * (len(tokens) - len(v)), dtype=float)

        got = self._ask(sized(SimulateTokens, "values", len(tokens)), user, 0.0, fits)
        if got is None:
            self.stats.fallbacks += 1
            return super().simulate(hypothesis, tokens)
        return got

    def paraphrase(self, texts):
        if not texts:
            return []
        texts = texts[:4]
        numbered = "\n".join(f"{i + 1}. {t!r}" for i, t in enumerate(texts))
        got = self._ask(sized(Paraphrases, "texts", len(texts)),
                        PARAPHRASE.format(texts=numbered, n=len(texts)), 0.7,
                        lambda a: list(a.texts) if len(a.texts) == len(texts) else None)
        if got is None:
            self.stats.fallbacks += 1
            return super().paraphrase(texts)
        return got

