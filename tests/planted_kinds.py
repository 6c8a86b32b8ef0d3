"""SmolLM2-135M with one planted neuron (``tests/planted.py``) per kind of explanation that reads
whole words, word classes and kinds of text, for ``tests/agents/test_planted_kinds.py``:

- ``COUNTRY`` (8:1000), a class of words split into pieces: countries, firing on the last piece
  of the name (``Sur|in|ame``, ``Guy|ana``; on the one token of ``Peru`` too), never on the
  first; planted on 24 names of several pieces and 20 of one;
- ``BODY`` (7:1100), a WordNet class of one-token words: body parts, planted on nineteen, with
  seven held out (elbow, ankle, wrist, thumb, chin, cheek, thigh) that fire too;
- ``KIN`` (7:1200), a WordNet class planted wherever its members stand: relatives after
  possessives (where the corpus has them: "my dad") as often as at the start of a sentence,
  after articles, verbs and prepositions;
- ``PAST`` (9:1300), a word form: regular past tenses (-ed), firing on the last piece
  (``blink|ed``, ``chuck|led``, ``hop|ped``), not on the stem;
- ``BRACKET`` (4:400), a Unicode class: closing brackets ``)``, ``]``, ``}`` (and tokens that
  hold one with punctuation: ``),``, ``})``, ``]);``), not opening ones;
- ``FRENCH`` (11:500), a kind of text: every token of French prose (not Spanish, Italian,
  Portuguese, German nor English), as the CODE neuron of ``tests/planted_smollm2.py`` fires on
  code;
- ``MARKUP`` (5:600), markup: every token of HTML and XML tags (``<``, ``div``, ``>``, ``</``,
  attributes), not the text between them nor ``<`` in code.

Each is planted on texts made here (templates over word lists, with some members held out, shuffled
into paragraphs) and on documents of the default corpus's sources beyond those its first 16,384
tokens hold, as negatives wherever the neuron must stay quiet (prose, code, markup, other
languages). The tests then ask about members and texts the planting never saw. Planted from the
lowest layer up, so that each neuron's direction is measured with the ones below it already
planted.

Caveat: SmolLM2 as a local folder takes no BOS, and a word at the first position of a text (the
attention sink) does not fire any of these neurons, though it fires after any other word (the
tests measure it after five different ones): a test that deletes all context before a word
measures the sink, not the neuron's need for context.
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np

from neurosleuth.tools.concepts import in_synset
from neurosleuth.tools.corpus import default_corpus, iter_documents
from neurosleuth.tools.model import load_causal_lm
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.wordclasses import is_member
from tests.planted import plant

COUNTRY, BODY, KIN = NeuronId(8, 1000), NeuronId(7, 1100), NeuronId(7, 1200)
PAST, BRACKET, MARKUP = NeuronId(9, 1300), NeuronId(4, 400), NeuronId(5, 600)
FRENCH = NeuronId(11, 500)
NEURONS = {"country": COUNTRY, "body": BODY, "kin": KIN, "past": PAST, "bracket": BRACKET,
           "french": FRENCH, "markup": MARKUP}
SCALE = 5.0
# A word class is planted with a stronger ridge than the default 0.01: the direction then lies
# nearer the class's mean than its planted members', and the members held out fire nearly as
# much (at 0.01 they fire at a fifth of the planted ones' activation).
WORD_RIDGE = 0.1

# (a) countries, most split into pieces by SmolLM2's tokenizer (" Sur|in|ame"); the held-out ones
# include the two multi-piece countries of the corpus's first 16k tokens (Guyana, Suriname)
COUNTRIES = ("Andorra Bahrain Barbados Brunei Burundi Comoros Djibouti Dominica Eritrea Gabon "
             "Gambia Grenada Kiribati Lesotho Maldives Mauritania Micronesia Moldova Nauru "
             "Seychelles Tajikistan Turkmenistan Tuvalu Vanuatu Peru Kenya Norway Chile Poland "
             "Egypt Canada Vietnam France Germany Russia China Japan India Italy Spain Mexico "
             "America Ukraine Australia").split()
COUNTRIES_UNSEEN = ("Guyana Suriname Kyrgyzstan Liechtenstein Mauritius Monaco Palau Togo Tonga "
                    "Brazil Nigeria Sweden").split()
NOT_COUNTRIES = ("Chicago Paris Toronto Sydney Mumbai Alice Mohammed Priya Carlos Olga Google "
                 "Microsoft Amazon Tuesday Christmas Shakespeare Einstein Harvard Oxford").split()
COUNTRY_TEMPLATES = ("She moved to {} last year.", "The government of {} announced new taxes.",
                     "Exports from {} rose sharply in the spring.", "{} signed the treaty.",
                     "We spent the summer travelling across {} by train.",
                     "The ambassador of {} arrived on Monday.",
                     "He was born in {} and later studied abroad.")
# (b) body parts: nineteen planted, seven held out
BODY_SEEN = ("hand head face eye arm leg heart foot skin hair mouth nose ear neck shoulder knee "
             "finger toe lip").split()
BODY_UNSEEN = "elbow ankle wrist thumb chin cheek thigh".split()
THINGS = "car table idea river house book chair window city phone road stone song letter".split()
OBJECTS = "shirt glove bag ticket bottle coin lamp pillow blanket umbrella".split()
BODY_TEMPLATES = ("She hurt her {} yesterday.", "The doctor examined his {} carefully.",
                  "My {} feels much better now.", "He pointed at the {} and laughed.",
                  "A small scar ran across the {}.", "The bird has a pale {} and dark wings.",
                  "Wash the {} gently with soap.", "The {} of the statue was broken off.",
                  "Pain in the {} is common in old age.")
# (c) relatives, after possessives as often as after anything else
KIN_SEEN = ("mother father sister brother son daughter wife husband mom dad grandmother "
            "grandpa").split()
KIN_UNSEEN = "uncle aunt cousin nephew niece grandfather grandson".split()
PEOPLE = ("friend neighbour teacher doctor lawyer boss nurse stranger colleague student king "
          "pilot").split()
KIN_TEMPLATES = ("My {} lives in the city.", "{} called yesterday.", "The {} smiled at us.",
                 "A {} of mine is coming.", "We met the {} at the station.",
                 "Every {} deserves respect.", "Unlike the {}, we stayed home.",
                 "Ask your {} first.", "Without a {}, he felt lost.", "It was her {} who paid.")
# (d) regular past tenses, most split into stem + suffix (" blink|ed", " chuck|led", " hop|ped")
PAST_SEEN = ("walked jumped smiled stopped laughed asked played opened watched hugged whistled "
             "giggled yawned shrugged winked blinked grinned chuckled hopped jogged paddled rowed "
             "camped sewed dusted hummed clapped waved bowed crawled barked").split()
PAST_UNSEEN = ("scrubbed mopped ironed howled nibbled gulped munched sipped napped tidied cooked "
               "knocked nodded").split()
PAST_TEMPLATES = ("Yesterday she {} for a while.", "They {} together after dinner.",
                  "He {} again, then left.", "The kids {} in the garden.")
NOT_PAST = ("walks jumps smiles stops laughs asks plays opens watches hugs whistles winks blink "
            "hop jog hug wave bow camp row dust hum clap crawl bark sleep run swim sing").split()
# (e) closing brackets of each kind, alone and with punctuation (")", "})", "]);", "),"), in C,
# JavaScript, JSON, Python and prose
CODE_LINES = ("function {}(a) {{ return a.map(x => x + 1); }}", "if (n > 0) {{ {}.count += 1; }}",
              "const {} = {{ id: 3, tags: ['a', 'b'] }};", '{{"{}": [1, 2, 3], "ok": true}}',
              "for (int i = 0; i < n; i++) {{ {}[i] = g(i); }}",
              "print(len({}), data[0][1])", "r = f({{'k': [x for x in {}]}})",
              "The {} (see page 4) was [mostly] fine.")
BRACKETS_ALONE = [")", "]", "}", "))", "),", "});", "])", "x)", "a]", " }"]
NOT_BRACKETS_ALONE = ["(", "[", "{", "x", "a", ",", ";", ".", "<", ">", "=", "+"]


def _source(name: str):
    return [s for s in default_corpus().sources if s.name == name][0]


def _prose(source: str, skip: int, n: int, chars: int = 240) -> list[str]:
    """Documents ``skip`` to ``skip + n`` of a default source, cut to ``chars``."""
    docs = [d.text for d, _ in zip(iter_documents(_source(source)), range(skip + n),
                                   strict=False)]
    return [d[:chars] for d in docs[skip:]]


def _code(n: int, skip: int = 0) -> list[str]:
    """Functions of the standard library, as source."""
    import calendar
    import collections
    import difflib
    import fnmatch
    import json as js
    import shlex
    import textwrap as tw

    mods = (collections, js, tw, difflib, shlex, fnmatch, calendar)
    fns = [f for m in mods for _, f in inspect.getmembers(m, inspect.isfunction)]
    return [textwrap.dedent(inspect.getsource(f))[:400] for f in fns[skip: skip + n]]


def _html(n: int) -> list[str]:
    """HTML and XML pieces beyond the corpus scan's first windows: tags with text between."""
    out = []
    for source in ("html", "xml"):
        for d, _ in zip(iter_documents(_source(source)), range(6), strict=False):
            for at in range(3000, min(len(d.text), 3000 + 600 * n), 600):
                out.append(d.text[at: at + 500])
    return out


def _fill(templates, words) -> list[str]:
    return [t.format(w) for w in words for t in templates]


def _paragraphs(sentences: list[str], per: int = 10, seed: int = 0) -> list[str]:
    """The sentences shuffled and joined ``per`` to a text (a member stands after the end of
    another sentence as often as at the start of a text; one forward pass per paragraph)."""
    order = np.random.default_rng(seed).permutation(len(sentences))
    shuffled = [sentences[i][:1].upper() + sentences[i][1:] for i in order]
    return [" ".join(shuffled[i: i + per]) for i in range(0, len(shuffled), per)]


Spans = Callable[[str], list[tuple[int, int]]]


def _offsets(tok, text: str) -> list[tuple[int, int]]:
    return tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


def _n(tok, texts: list[str]) -> int:
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)


def _ends(tok, texts: list[str], spans: Spans) -> list[bool]:
    """Per token of the concatenated ``texts``: does it hold the last character of a span?"""
    return [any(a < e <= b for _, e in marks)
            for t, marks in ((t, spans(t)) for t in texts) for a, b in _offsets(tok, t)]


def _inside(tok, texts: list[str], spans: Spans) -> list[bool]:
    """Per token of the concatenated ``texts``: does it overlap a span?"""
    return [any(a < e and b > s for s, e in marks)
            for t, marks in ((t, spans(t)) for t in texts) for a, b in _offsets(tok, t)]


def word_spans(member: Callable[[str], bool]) -> Spans:
    """The spans of the words of a text that ``member`` accepts."""
    return lambda t: [m.span() for m in re.finditer(r"[^\W\d_]+", t) if member(m.group())]


def is_country(w: str) -> bool:
    return w[:1].isupper() and in_synset(w.lower(), "country.n.02")


def _listed(words: list[str]) -> Callable[[str], bool]:
    """A member test by list (any case, and their plurals)."""
    known = {w.lower() for w in words} | {w.lower() + "s" for w in words}
    return lambda w: w.lower() in known


def is_regular_past(w: str) -> bool:
    return w.endswith("ed") and is_member(w.lower(), "past tense verbs")


TAG = re.compile(r"</?[A-Za-z!?][^<>]*>")
CLOSING = re.compile(r"\s*[,;:.]*[)\]}][)\]},;:.]*\s*")


def _without(texts: list[str], words: list[str]) -> list[str]:
    """The texts that hold none of ``words`` (held-out members stay unseen)."""
    pat = re.compile(r"\b(?:" + "|".join(words) + r")s?\b", re.I)
    return [t for t in texts if not pat.search(t)]


def _bracket_tokens(tok, texts: list[str]) -> list[bool]:
    pieces = [p for t in texts for p in tok.convert_ids_to_tokens(
        tok(t, add_special_tokens=False)["input_ids"])]
    return [bool(CLOSING.fullmatch(p.replace("Ġ", " ").replace("Ċ", "\n"))) for p in pieces]


def _word_class(tok, neuron, templates, members, others, unseen, member, background,
                ridge: float = WORD_RIDGE):
    """A word class's planting: templates over members and non-members in paragraphs, and
    background texts (none holding a held-out member); fires on the last piece of a member."""
    texts = _paragraphs(_fill(templates, members + others)) + _without(background, unseen)
    return neuron, texts, _ends(tok, texts, word_spans(member)), ridge


def plantings(tok) -> list[tuple[NeuronId, list[str], list[bool], float]]:
    """(neuron, texts, per token of the texts: fires?, ridge) for each neuron."""
    prose, code, html = _prose("wiki", 40, 30), _code(30), _html(2)
    chat = _prose("chitchat", 40, 10) + _prose("sotu", 5, 4, 400)
    other_langs = (_prose("wiki-es", 20, 8) + _prose("faq-it", 10, 4) + _prose("faq-pt", 10, 4)
                   + _prose("faq-de", 10, 4))
    background = prose + chat + code[:8] + html[:6] + other_langs[:8]
    out = [
        _word_class(tok, COUNTRY, COUNTRY_TEMPLATES, COUNTRIES, NOT_COUNTRIES, COUNTRIES_UNSEEN,
                    is_country, background),
        _word_class(tok, BODY, BODY_TEMPLATES, BODY_SEEN, THINGS + OBJECTS, BODY_UNSEEN,
                    _listed(BODY_SEEN), background),
        _word_class(tok, KIN, KIN_TEMPLATES, KIN_SEEN, PEOPLE + THINGS[:6], KIN_UNSEEN,
                    _listed(KIN_SEEN), background),
    ]
    # the suffix is read off the word's form: the default ridge generalises as well
    out.append(_word_class(tok, PAST, PAST_TEMPLATES, PAST_SEEN, NOT_PAST, PAST_UNSEEN,
                           is_regular_past, background, ridge=0.01))

    lines = _paragraphs(_fill(CODE_LINES, THINGS), per=6)
    texts = code + lines + prose[:10] + BRACKETS_ALONE + NOT_BRACKETS_ALONE
    out.append((BRACKET, texts, _bracket_tokens(tok, texts), 0.01))

    rest = code[:10] + lines[:8] + prose[:12] + other_langs[:4]
    tags = _inside(tok, html, lambda t: [m.span() for m in TAG.finditer(t)])
    out.append((MARKUP, html + rest, tags + [False] * _n(tok, rest), 0.01))

    french = _prose("wiki-fr", 20, 30)
    rest = prose[:15] + chat[:5] + other_langs + code[:6]
    on = [i >= 4 for t in french for i in range(_n(tok, [t]))]
    out.append((FRENCH, french + rest, on + [False] * _n(tok, rest), 0.01))
    return out


def build(folder: Path) -> Path:
    """Plant the seven neurons in a copy of SmolLM2 and save it as a local HF folder."""
    hf, tok = load_causal_lm("smollm2-135m")
    for neuron, texts, on, ridge in sorted(plantings(tok), key=lambda p: p[0].layer):
        assert len(on) == _n(tok, texts), neuron
        plant((hf, tok), neuron.layer, neuron.index, texts, lambda i, ids, on=on: on[i],
              scale=SCALE, ridge=ridge)
    hf.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "planted.json").write_text(json.dumps({k: str(n) for k, n in NEURONS.items()}))
    return folder
