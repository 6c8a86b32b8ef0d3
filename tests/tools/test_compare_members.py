"""Members of every class the namer can produce (``tools/class_members.py`` through
``compare.members``) and the unseen-members experiment on them (``compare.compare_concept``): a
tiny one-layer model with a byte-level BPE tokenizer whose neuron is hand-set to fire on a class's
tokens (a concept) or on the seen words' tokens only (a list)."""

from __future__ import annotations

import tempfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from neurosleuth.tools import class_members as M
from neurosleuth.tools import compare
from neurosleuth.tools import concepts as C
from neurosleuth.tools import wordclasses as W
from neurosleuth.tools.model import from_hf_model
from neurosleuth.tools.neurons import NeuronId

SCRIPTS = ["Cyrillic script", "Greek script", "Arabic script", "Hebrew script", "Cjk script",
           "Hangul script", "Hiragana script", "Devanagari script", "Thai script", "Latin script"]


def _concept(name: str) -> C.ConceptName:
    return C.ConceptName(name, (), 1.0, W.source_of(name), name)


@pytest.mark.parametrize("name", [*W.CLASSES, *SCRIPTS])
def test_every_word_class_has_members_that_are_members(name):
    concept = _concept(name)
    found = compare.members(concept)
    test = C.member(concept)
    assert [w for w in found if not test(w)] == []
    assert len(found) == len(set(found)) >= compare.MIN_UNSEEN
    compare._members.cache_clear()
    M.class_members.cache_clear()
    assert compare.members(concept) == found  # the same list, made again


@pytest.mark.parametrize(("name", "first"), [
    ("past tense verbs", ["was", "were", "had", "said", "made"]),
    ("past participles", ["been", "had", "said", "made", "seen"]),
    ("-ing forms", ["being", "having", "saying"]),
    ("third-person -s verbs", ["has", "says", "makes"]),
    ("plural nouns", ["persons", "groups", "men"]),
    ("comparatives", ["newer", "greater"]),
    ("superlatives", ["newest", "greatest"]),
    ("nouns", ["person", "group", "man"]),
    ("verbs", ["say", "make", "see"]),
    ("adverbs", ["then", "now", "only"]),
    ("years", ["2000", "1999", "2001"]),
    ("percentages", ["10%", "20%"]),
    ("ordinal numbers", ["1st", "2nd", "3rd", "4th"]),
    ("times of day", ["1:00", "2:00"]),
    ("decimal numbers", ["0.1", "0.2"]),
    ("integers", ["1", "2", "3"]),
    ("digits and numbers", ["1", "2000", "0.1"]),
    ("opening brackets", ["(", "[", "{", "〈"]),
    ("closing brackets", [")", "]", "}", "〉"]),
    ("quotation marks", ['"', "'", "`", "«", "»"]),
    ("currency symbols", ["$", "¢", "£", "¤", "¥", "€"]),
    ("dashes", ["-", "–", "—"]),
    ("math symbols", ["+", "<", "=", ">"]),
    ("markup tags", ["<div>", "</div>", "<a>", "</a>"]),
    ("character entities", ["&quot;", "&amp;", "&lt;", "&gt;", "&nbsp;"]),
    ("indentation", ["    ", "\t", "        "]),
    ("line breaks", ["\n", "\n\n", "\r\n"]),
    ("ALL-CAPS words", ["TSH", "PERSON", "PBS"]),
    ("capitalised words", ["God", "Person"]),
    ("Cyrillic script", ["а", "б", "в"]),
    ("Greek script", ["α", "β", "γ"]),
])
def test_commonest_members_come_first(name, first):
    assert list(M.class_members(name)[: len(first)]) == first


def test_forms_are_dictionary_forms_and_unicode_classes_ascii_first():
    past = M.class_members("past tense verbs")
    assert {"went", "took", "walked"} <= set(past) and "red" not in past
    assert not any(w.endswith("er") for w in M.class_members("comparatives")
                   if w.startswith(("beautiful", "important")))
    for name in ("closing brackets", "math symbols", "punctuation marks", "dashes"):
        found = M.class_members(name)
        ascii_ = [i for i, c in enumerate(found) if c.isascii()]
        assert ascii_ == list(range(len(ascii_))), name
    assert "<br/>" in M.class_members("markup tags") and "</br>" not in M.class_members(
        "markup tags")


@pytest.mark.parametrize(("concept", "some", "n"), [
    (C.ConceptName("colors", (), 1.0, "wordnet", "n", "color.n.01"), ["blue", "red"], 20),
    (C.ConceptName("animals", (), 1.0, "supersense", "noun.animal"), ["horse", "dog"], 20),
    (C.ConceptName("x", (), 1.0, "grammar", "auxiliary and modal verbs"), ["am", "could"], 20),
    (C.ConceptName("x", (), 1.0, "grammar", "conjunctions and negations"), ["and", "never"], 15),
    (C.ConceptName("x", (), 1.0, "grammar", "function words"), ["the", "of", "and"], 100),
    (C.ConceptName("x", (), 1.0, "mixture", "surface:integers|wordnet:color.n.01"),
     ["1", "blue", "2", "red"], 100),
    (C.ConceptName("x", (), 1.0, "mixture", "digits and numbers|function words"),
     ["1", "and", "2000"], 100),
    (C.ConceptName("x", (), 1.0, "mixture", "surface:closing brackets|inflection:past tense verbs"),
     [")", "was", "]", "were"], 100),
])
def test_concepts_of_every_source_have_members(concept, some, n):
    found = compare.members(concept)
    test = C.member(concept)
    assert [w for w in found if not test(w)] == [] and len(set(found)) == len(found) >= n
    assert set(some) <= set(found)
    if concept.source == "mixture":
        assert found[: len(some)] == some  # the parts interleaved


# ---- writing a word in a context ------------------------------------------------------------
def test_the_whole_peak_word_is_replaced():
    assert compare._peak_word(["The", " finger", "tips"]) == ("The", " fingertips")
    assert compare._peak_word(["y", " =", " f", "(", "x", ")"]) == ("y = f(x", ")")
    assert compare._peak_word(["def", " f", ":", "\n", "    "]) == ("def f:\n", "    ")
    assert compare._peak_word(["a", " ", "1", "9", "9", "9"]) == ("a ", "1999")


def test_a_name_of_several_words_is_replaced_whole():
    """A member takes the place of all of 'New Zealand' (WordNet knows it as one lemma), not of
    'Zealand' alone ('New Sweden' is no country); words that are no lemma together stay apart."""
    assert compare._peak_word([",", " New", " Zealand"]) == (",", " New Zealand")
    assert compare._peak_word(["to", " Papua", " New", " Gu", "inea"]) == ("to",
                                                                          " Papua New Guinea")
    assert compare._peak_word(["the", " new", " car"]) == ("the new", " car")
    assert compare._peak_word(["New", ",", " Zealand"]) == ("New,", " Zealand")


def test_members_are_spelled_as_the_peak_word():
    caps = C.member(_concept("capitalised words"))
    colour = C.member(C.ConceptName("colors", (), 1.0, "wordnet", "n", "color.n.01"))
    assert compare._spelled("]", ")") == "]" and compare._spelled("]", " )") == " ]"
    assert compare._spelled("</div>", "<p>") == "</div>"
    assert compare._spelled("red", " Blue", colour) == " Red"
    assert compare._spelled("table", " Paris", caps) == " table"  # a control stays out
    assert compare._spelled("\t", "    ") == "\t" and compare._spelled("\n\n", " \n") == "\n\n"


# ---- the experiment on a tiny model ---------------------------------------------------------
PAST = list(M.class_members("past tense verbs")[:30])
CLOSING = list(M.class_members("closing brackets")[:12])
CONTEXTS = {"closing brackets": ["y = f(x)", "print(a[0])", "if (n > 1)"],
            "past tense verbs": ["yesterday the man walked", "then she jumped", "he played"]}


def _bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the class members, the controls and the contexts, so that
    each is one token (a bracket without a space, a word with its space)."""
    corpus = [*(f"f(x{c} g{c}" for c in CLOSING), *(f"the man {w} it" for w in [
        *PAST, "walked", "jumped", "played", *compare.CONTROLS]), *sum(CONTEXTS.values(), [])]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<pad>", "<bos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<pad>")
    folder = tempfile.mkdtemp(prefix="neurosleuth-bpe-")
    fast.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def _planted(tokenizer, fires) -> object:
    """One layer, attention silenced: neuron 3 reads the token alone, and fires (about 13) on
    the tokens whose text ``fires`` accepts, not (about 0.1) elsewhere."""
    torch.manual_seed(0)
    vocab = len(tokenizer)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=8, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=0, bos_token_id=1, eos_token_id=0, tie_word_embeddings=False,
                      attn_implementation="eager")
    hf = LlamaForCausalLM(cfg).eval()
    on = torch.tensor([1.0 if fires(tokenizer.decode([i])) else -1.0 for i in range(vocab)])
    with torch.no_grad():
        hf.model.layers[0].self_attn.o_proj.weight.zero_()
        emb = hf.model.embed_tokens.weight
        emb.normal_(0, 0.1)
        emb[:, 0] = on
        mlp = hf.model.layers[0].mlp
        for w in (mlp.gate_proj.weight, mlp.up_proj.weight):
            w[3] = 0.0
            w[3, 0] = 1.0
    return from_hf_model(hf, tokenizer, name="tiny-bpe")


@pytest.fixture(scope="module")
def bpe():
    return _bpe_tokenizer()


def _pruned(lm, name):
    return [SimpleNamespace(tokens=lm.token_strs(lm.encode(t))) for t in CONTEXTS[name]]


@pytest.mark.parametrize(("name", "seen"), [
    ("closing brackets", [")", "]"]),
    ("past tense verbs", ["walked", "jumped", "played"]),
])
@pytest.mark.parametrize("concept_neuron", [True, False])
def test_the_experiment_tells_a_concept_from_a_list(bpe, name, seen, concept_neuron):
    test = C.member(_concept(name))
    if concept_neuron:
        lm = _planted(bpe, lambda t: bool(t.strip()) and test(t.strip()))
    else:
        lm = _planted(bpe, lambda t: t.strip() in seen)
    result = compare.compare_concept(lm, NeuronId(0, 3), _concept(name), seen, _pruned(lm, name))
    assert result is not None and list(result.seen) == seen
    assert len(result.unseen) == 8 and not set(result.unseen) & set(seen)
    assert all(test(w) for w in result.unseen) and not any(test(w) for w in result.controls)
    assert result.verdict == ("concept" if concept_neuron else "list"), result.summary()
    assert result.forward_passes == 3 * (len(seen) + 8 + len(result.controls))


def test_members_take_the_whole_word_and_its_spelling(bpe, monkeypatch):
    lm = _planted(bpe, lambda t: False)
    texts = []

    def fake(lm_, ids, neurons):
        texts.extend(lm_.tokenizer.decode(x) for x in ids)
        return [np.zeros((len(x), 1)) for x in ids]

    monkeypatch.setattr(compare, "measure_ids", fake)
    pruned = [SimpleNamespace(tokens=["he", " zig", "zag", "ged"]),
              SimpleNamespace(tokens=["f", "(", "x", ")"])]
    concept = C.ConceptName("x", (), 1.0, "mixture", "surface:closing brackets|"
                            "inflection:past tense verbs")
    result = compare.compare_concept(lm, NeuronId(0, 3), concept, ["zigzagged", ")"], pruned)
    assert result.contexts == ("he zigzagged", "f(x)")
    assert "he was" in texts and "he ]" in texts and "f(x]" in texts and "f(xwas" in texts
    assert [t for t in texts if t.startswith("he zig")] == ["he zigzagged"]
