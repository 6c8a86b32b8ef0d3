"""The vocabulary sweep (``tools/vocab_sweep.py``): every word of the vocabulary at the neuron's
peak finds the members of its class that no text showed; a class of symbols takes its unseen
members from the model's own tokens (``vocab_sweep.vocabulary_members``)."""

from __future__ import annotations

from types import SimpleNamespace

from neurosleuth.tools import explain as E
from neurosleuth.tools.concepts import ConceptName
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.vocab_sweep import sweep, vocabulary_members, word_tokens
from tests.fixtures import WORDS
from tests.tools.test_explain import colour_lm  # noqa: F401 (a fixture)


def test_the_sweep_finds_the_members_no_text_showed(colour_lm):  # noqa: F811
    n = NeuronId(0, 3)
    words = {WORDS[i] for i in word_tokens(colour_lm)}
    assert {"red", "cat", "paris", "python"} <= words and not words & {"(", "+", "a", "<bos>"}
    peak = colour_lm.encode("the cat is red")
    found = sweep(colour_lm, n, peak, fire=0.5)
    assert {w for w, _ in found.fired} == {"blue", "green"}  # the peak word itself is not swept
    assert found.word_level and found.forward_passes == len(found.fired) / found.share + 1
    assert sweep(colour_lm, n, peak, fire=0.5).forward_passes == 0  # memoised
    # the explainer, shown only 'red', learns the colours from the sweep ...
    texts = ["the cat is red", "a dog sat on red", "he ran to the red", "the king was red"]
    ex = E.explain(colour_lm, n, texts)
    assert {"red", "blue", "green"} <= set(ex.pattern.triggers), ex.pattern.triggers
    assert "Vocabulary sweep after 'the cat is'" in ex.details and "'blue'" in ex.details
    # ... and without it knows only 'red'
    alone = E.explain(colour_lm, n, texts, config=E.ExplainConfig(sweep=0))
    assert "blue" not in alone.pattern.triggers and "Vocabulary sweep" not in alone.details


def test_a_class_of_symbols_takes_unseen_members_from_the_vocabulary():
    """Once '(', '[' and '{' are seen, the class's own list goes on with CJK brackets; the
    model's tokens in the class come first, in vocabulary order."""
    vocab = ["<pad>", "(", " the", "((", " [", "a", "({", ")", "【", "[\"", " {"]

    class Vocabulary:  # what vocabulary_members reads of a model: its tokens as text
        tokenizer = vocab
        model = SimpleNamespace(cfg=SimpleNamespace(d_vocab=len(vocab)))

        def token_strs(self, ids):
            return [vocab[i] for i in ids]

    lm = Vocabulary()
    opening = ConceptName("opening brackets", ("(",), 1.0, "surface", "opening brackets", None)
    assert vocabulary_members(lm, opening) == ["(", "((", "[", "({", "【", "[\"", "{"]
    words = ConceptName("colors", ("red",), 1.0, "wordnet", "color", "color.n.01")
    assert vocabulary_members(lm, words) == []
