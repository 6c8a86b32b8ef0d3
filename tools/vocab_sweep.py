"""The vocabulary sweep: every word of the model's vocabulary put at the neuron's peak, in the
neuron's own context.

Records show the words a corpus happened to hold. A class whose members the scan never met (a
neuron for musical instruments, read on a corpus of summaries, chat and code that names none)
cannot be named from them: its top windows hold 'Instrument' and a few words that fire weakly.
The deep dive has the model, so it asks the vocabulary. Each word token (a space, then three or
more ASCII letters: 30,570 of SmolLM2's 49,152 tokens) replaces the peak word of the neuron's
strongest context, after that context's last ``CONTEXT`` tokens, and is measured up to the
neuron's layer in short batched sequences. The words that keep at least ``fire`` of the peak's
activation (at most ``KEEP``, strongest first) are shown in the explanation's details; those
that fire as strongly as the strongest text (``STRONG``) become records like the explainer's
other substitutions: the classes of the records explainer (WordNet concepts, word forms) then
see members that no record contained, and the unseen-members experiment tests the class.

Cost: one sequence of ``CONTEXT + 1`` tokens a word, counted as a forward pass each. Measured on
2 CPU cores at SmolLM2's layer 6 (one thread beside other work): 4,000 words in 17 s; on a GPU
the whole vocabulary is a few batches. Memoised per model and neuron (the first round's strongest
context), so the rounds of a run pay once; a run with a budget sweeps the commonest words its
budget affords (``agents/scoring.sweep_limit``), a CPU at most ``CPU_WORDS`` of them (a larger
vocabulary's commonest: a BPE or SentencePiece vocabulary holds its commonest strings first).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from neurosleuth.tools import concepts as C
from neurosleuth.tools.class_members import SYMBOL_CLASSES
from neurosleuth.tools.measure import measure_ids
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.records import Record

CONTEXT = 3  # tokens of the neuron's context before each word
KEEP = 48  # firing words kept, strongest first
MAX_SHARE = 0.1  # more of the vocabulary than this fires: the context fires, not a word
STRONG = 0.8  # a word joins the records when it fires this share of the strongest text's peak
CPU_WORDS = 16_384  # words swept on a CPU when nothing limits it (the commonest)

_VOCAB: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # lm -> every token's text
_WORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # lm -> word token ids
_DONE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # lm -> {key: Sweep}


@dataclass(frozen=True)
class Sweep:
    context: tuple[str, ...]  # the context's tokens, before each word
    text: str  # the context as text
    base: float  # the peak's own activation in that context
    reference: float  # the higher of base and the neuron's top activation in the texts
    fired: tuple[tuple[str, float], ...]  # (word token, activation), strongest first
    words: int  # words measured
    share: float  # share of the words that fire
    forward_passes: int  # passes this call ran (0 when memoised)

    @property
    def word_level(self) -> bool:
        """Do few enough words fire that the sweep says which (not: any word in this context)?"""
        return bool(self.fired) and self.share <= MAX_SHARE

    def records(self) -> list[Record]:
        """The words that fire as strongly as anything the texts showed (``STRONG`` of the
        higher of the peak and the top activation), as records of the word alone: every one
        was measured after the same context, which is no evidence that the neuron needs it (the
        explainer would read the context as required, since it precedes every firing). Words
        that fire less are shown, not learned from: measured after three tokens of one context,
        they predict corpus windows worse than the windows' own words (on SmolLM2's bench
        neurons, adding every word past ``fire`` lowered the held-out r of two of three).
        None when the sweep is not word-level."""
        if not self.word_level:
            return []
        return [Record((token,), np.array([act])) for token, act in self.fired
                if act >= STRONG * self.reference]


def vocabulary(lm: LoadedModel) -> list[str]:
    """Every token of the model's vocabulary as a reader sees it (``token_strs``), by id."""
    if lm not in _VOCAB:
        _VOCAB[lm] = lm.token_strs(list(range(min(len(lm.tokenizer),
                                                  int(lm.model.cfg.d_vocab)))))
    return _VOCAB[lm]


def word_tokens(lm: LoadedModel) -> list[int]:
    """Ids of the vocabulary's word tokens: a space, then three or more ASCII letters (of a
    word-level tokenizer, whose tokens carry no spaces: three or more letters)."""
    if lm not in _WORDS:
        vocab = vocabulary(lm)
        spaced = any(s[:1] == " " for s in vocab)
        _WORDS[lm] = [i for i, s in enumerate(vocab)
                      if (core := s[1:] if spaced and s[:1] == " " else s if not spaced else "")
                      and len(core) >= 3 and core.isascii() and core.isalpha()]
    return _WORDS[lm]


def sweep(lm: LoadedModel, neuron: NeuronId, peak_ids: Sequence[int], fire: float,
          limit: int | None = None, top: float = 0.0) -> Sweep:
    """Every word token (the first ``limit`` when given) in place of the last token of
    ``peak_ids`` (a text cut at the neuron's peak), after its ``CONTEXT`` tokens before it; the
    words that reach ``fire`` of the peak's activation there, or of ``top`` (the neuron's top
    activation) where that is higher: a short context may keep little of a peak, and then every
    word would pass a share of what is left."""
    context = list(peak_ids[-CONTEXT - 1 : -1])
    if limit is None and lm.device.type == "cpu":
        limit = CPU_WORDS
    words = [w for w in word_tokens(lm)[:limit] if w != peak_ids[-1]]
    key = (neuron.layer, neuron.index, fire)
    done = _DONE.setdefault(lm, {})
    if key in done and done[key].words >= len(words):  # a sweep as wide or wider was made
        return done[key]  # in the context of an earlier round: the words do not change
    prefix = list(lm.encode("")[: lm.n_prefix])
    seqs = [prefix + context + [peak_ids[-1]]] + [prefix + context + [w] for w in words]
    acts = np.array([float(a[-1, 0]) for a in measure_ids(lm, seqs, [neuron])])
    base, rest = float(acts[0]), acts[1:]
    fired: list[tuple[str, float]] = []
    share = 0.0
    on = fire * max(base, top)
    if on > 0 and len(words):
        share = float(np.mean(rest >= on))
        order = np.argsort(-rest)[:KEEP]
        text = vocabulary(lm)  # with a SentencePiece word's leading space, as records are
        fired = [(text[words[i]], round(float(rest[i]), 4)) for i in order if rest[i] >= on]
    result = Sweep(tuple(lm.token_strs(context)), lm.decode(context), base, max(base, top),
                   tuple(fired), len(words), share, len(seqs))
    done[key] = replace(result, forward_passes=0)
    return result


def peak_word(lm: LoadedModel, peaks: Sequence[tuple[str, list[int], float]]
              ) -> list[int] | None:
    """The ids of the strongest of ``peaks`` (text, ids up to the peak, activation) that peaks
    on a word token with enough context before it; None when none does."""
    words = set(word_tokens(lm))
    found = [(a, ids) for _, ids, a in peaks if len(ids) > CONTEXT and ids[-1] in words]
    return list(max(found, key=lambda f: f[0])[1]) if found else None


def vocabulary_members(lm: LoadedModel, concept: C.ConceptName, limit: int = 64) -> list[str]:
    """For a class of symbols, members as the model writes them: its own tokens in the class,
    stripped, in vocabulary order (a BPE tokenizer merges its commonest strings first), up to
    ``limit``. The class's own list runs by Unicode tier, so once a neuron's ASCII members are
    all seen its unseen ones would be CJK brackets a model of English code rarely reads; its
    tokens ('((', ' [', '({') are the members it does read. [] for other classes."""
    if concept.source != "surface" or concept.kind not in SYMBOL_CLASSES:
        return []
    test = C.member(concept)
    found = (t.strip() for t in vocabulary(lm))
    return list(itertools.islice(dict.fromkeys(t for t in found if t and test(t)), limit))
