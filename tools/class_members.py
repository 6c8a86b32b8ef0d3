"""Members of a word class (``tools/wordclasses.py``), generated from the libraries that define
the class, commonest or most typical first: what the unseen-members experiment
(``tools/compare.py``) writes in place of a neuron's peak word. Every list is deterministic and
holds only words that pass the class's own membership test (``wordclasses.is_member``).

Where the members come from:

- **word forms** (past tense verbs ... superlatives): the lemmas of the form's part of speech
  (verbs, nouns, adjectives then adverbs) most often tagged in SemCor (WordNet 3.0's ``cntlist``),
  inflected by lemminflect's tables (``getInflection(lemma, tag, inflect_oov=False)``: no guessed
  forms such as "beautifuler"); a form the class's test rejects (an ambiguous or rare reading) is
  dropped;
- **parts of speech**: the most tagged WordNet lemmas of that part of speech that pass the test;
- **Unicode classes** (brackets, quotation marks, currency and math symbols, dashes, any
  punctuation): the single characters of the Basic Multilingual Plane that pass the test, ASCII
  first, then those of Windows-1252, then those of the other single-byte Windows code pages
  (cp1250-cp1258, cp874), then those of the East Asian encodings (GB2312, Shift JIS, EUC-KR,
  Big5), then the rest, each tier by code point: how widely a legacy encoding carries a
  character stands in for how common it is;
- **scripts** ("Cyrillic script"): the letters whose Unicode name starts with the script's name,
  in the same tiers, small letters and letters without diacritics ("WITH ...") first;
- **numbers**: generated years (nearest 2000 first), percentages (round ones first), ordinals,
  times of day (on the hour, then the half and quarter hours), decimals and integers (small
  first); "digits and numbers" interleaves integers, years and decimals;
- **markup**: HTML elements (the commonest phrasing and structure elements of the HTML standard,
  then CommonMark's HTML block names from markdown-it-py) as ``<x>`` and ``</x>`` (a void
  element: ``<x>``, ``<x/>``); character entities from ``html.entities`` by code point;
- **whitespace**: runs of spaces (multiples of four first) and tabs; line breaks alone, doubled
  or followed by indentation;
- **code syntax**: Python's keywords and names among ``wordclasses.CODE_TOKENS``, then
  snake_case and camelCase names of standard-library functions;
- **capitalisation**: WordNet's capitalised nouns (names: "American", "God", "Monday") and its
  all-caps ones ("TV", "GNP"), most tagged as so written first, interleaved with the commonest
  lemmas written capitalised or in capitals.

Caveats: SemCor (the Brown corpus, 1960s American English) sets the order of everything taken
from WordNet, so dated words and names of that time rank high among capitalised words and
"persons" before "people"; lemmas WordNet marks as slurs, disparaging, obscene or vulgar (its
usage domains) are left out. A script's members are single letters, not words (there is no word
list per script offline).
"""

from __future__ import annotations

import functools
import html.entities
import itertools
import keyword
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator

from neurosleuth.tools import wordclasses as W
from neurosleuth.tools.wordnet import wordnet

LIMIT = 120  # members a class gives at most
SS_TYPES = {"n": ("1",), "v": ("2",), "a": ("3", "5"), "r": ("4",)}  # sense-key synset types
TAG_POS = {"VB": "v", "NN": "n", "JJ": "a", "RB": "r"}
SINGLE_BYTE = ("cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257",
               "cp1258", "cp874")
EAST_ASIAN = ("gb2312", "shift_jis", "euc_kr", "big5")
OFFENSIVE = {"ethnic_slur.n.01", "disparagement.n.01", "obscenity.n.01", "vulgarism.n.01"}
# HTML elements found on most web pages (the HTML standard's phrasing and structure elements);
# void elements have no closing tag (HTML standard, "void elements").
COMMON_TAGS = """div a span p li ul img br b i em strong table tr td h1 h2 h3 code pre input
button label script style meta link""".split()
VOID_TAGS = set("area base br col embed hr img input link meta source track wbr".split())


def interleave(*lists: Iterable[str]) -> Iterator[str]:
    """The first of each list, then the second of each, ...; each word once."""
    seen: set[str] = set()
    for row in itertools.zip_longest(*lists):
        for w in row:
            if w is not None and w not in seen:
                seen.add(w)
                yield w


# ---- WordNet lemmas by SemCor counts -------------------------------------------------------
@functools.cache
def _sense_counts() -> dict[str, int]:
    """Sense key ("person%1:03:00::") -> SemCor tags (WordNet's ``cntlist``); {} without
    WordNet."""
    wn = wordnet()
    if wn is None:
        return {}
    out: dict[str, int] = {}
    with wn.open("cntlist") as f:
        for line in f:
            count, key, _ = line.split()
            out[key] = out.get(key, 0) + int(count)
    return out


@functools.cache
def _counts() -> dict[tuple[str, str], int]:
    """(lemma, WordNet part of speech) -> SemCor tags over its senses; satellite adjectives
    count as adjectives."""
    pos_of = {t: p for p, ts in SS_TYPES.items() for t in ts}
    out: dict[tuple[str, str], int] = {}
    for key, count in _sense_counts().items():
        lemma, _, rest = key.partition("%")
        if (pos := pos_of.get(rest[:1])) is not None:
            out[(lemma, pos)] = out.get((lemma, pos), 0) + count
    return out


@functools.cache
def semcor_ranked(pos: str) -> tuple[str, ...]:
    """Single-word lemmas of part of speech ``pos`` ("n", "v", "a", "r") tagged in SemCor, most
    tagged first, then by name."""
    counts = {lem: c for (lem, p), c in _counts().items() if p == pos and re.fullmatch(
        r"[a-z]+", lem)}
    return tuple(sorted(counts, key=lambda w: (-counts[w], w)))


@functools.lru_cache(maxsize=65536)
def offensive(word: str) -> bool:
    """Does WordNet mark a sense of ``word`` as a slur, disparaging, obscene or vulgar?"""
    wn = wordnet()
    return wn is not None and word.isalpha() and any(
        d.name() in OFFENSIVE for s in wn.synsets(word) for d in s.usage_domains())


@functools.cache
def _cased_nouns() -> dict[str, tuple[int, int]]:
    """WordNet's one-word noun lemmas written with a capital ("Monday", "TV") -> (SemCor tags
    of the senses so written, number of senses), read from the noun data file (wndb(5): a
    synset's lexicographer file, then its lemmas and their lexical ids after a hex count),
    each sense's tags found under its sense key."""
    wn = wordnet()
    out: dict[str, tuple[int, int]] = {}
    if wn is None:
        return out
    counts = _sense_counts()
    with wn.open("data.noun") as f:
        for line in f:
            if line.startswith(" "):  # the licence header
                continue
            parts = line.split()
            lex_file, n = parts[1], int(parts[3], 16)
            for w, lex_id in zip(parts[4: 4 + 2 * n: 2], parts[5: 5 + 2 * n: 2], strict=True):
                if w[:1].isupper() and w.isalpha():
                    tags = counts.get(f"{w.lower()}%1:{lex_file}:{int(lex_id, 16):02d}::", 0)
                    c, senses = out.get(w, (0, 0))
                    out[w] = (c + tags, senses + 1)
    return out


def _ranked_cased(test: Callable[[str], bool]) -> list[str]:
    """WordNet's capitalised noun lemmas that pass ``test``: most tagged in SemCor as so
    written first, then those with more senses, then by name."""
    cased = _cased_nouns()
    return sorted((w for w in cased if test(w)), key=lambda w: (-cased[w][0], -cased[w][1], w))


# ---- word forms, parts of speech, capitalisation ------------------------------------------
def word_forms(name: str) -> Iterator[str]:
    """Forms of class ``name`` ("past tense verbs"): each of its Penn tags applied to the lemmas
    of that tag's part of speech, most tagged first (lemminflect's own forms only)."""
    from lemminflect import getInflection

    for tag in W.FORMS[name]:
        for lemma in semcor_ranked(TAG_POS[tag[:2]]):
            yield from getInflection(lemma, tag, inflect_oov=False)


def pos_words(name: str) -> Iterator[str]:
    """Lemmas of the part of speech ``name`` ("nouns") by SemCor counts."""
    return iter(semcor_ranked({"nouns": "n", "verbs": "v", "adjectives": "a",
                               "adverbs": "r"}[name]))


def _common_words() -> Iterator[str]:
    """The most tagged lemmas of every part of speech, interleaved (nouns first)."""
    return interleave(*(semcor_ranked(p) for p in "nvar"))


def capitalised() -> Iterator[str]:
    names = _ranked_cased(lambda w: len(w) >= 2 and w[1:].islower())
    return interleave(names, (w.capitalize() for w in _common_words()))


def all_caps() -> Iterator[str]:
    names = _ranked_cased(lambda w: len(w) >= 2 and w.isupper())
    return interleave(names, (w.upper() for w in _common_words()))


# ---- Unicode --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def _tier(ch: str) -> int:
    """0 ASCII, 1 in Windows-1252, 2 in another single-byte Windows code page, 3 in an East
    Asian encoding, 4 other."""
    if ord(ch) < 128:
        return 0
    for tier, codecs in ((1, SINGLE_BYTE[:1]), (2, SINGLE_BYTE[1:]), (3, EAST_ASIAN)):
        for codec in codecs:
            try:
                ch.encode(codec)
                return tier
            except UnicodeEncodeError:
                pass
    return 4


@functools.cache
def _symbol_chars() -> tuple[str, ...]:
    """Punctuation and symbol characters (P*, S*) of the BMP, by tier then code point."""
    chars = [chr(i) for i in range(0x10000) if unicodedata.category(chr(i))[0] in "PS"]
    return tuple(sorted(chars, key=lambda c: (_tier(c), ord(c))))


def symbols(name: str) -> Iterator[str]:
    test = W.CLASSES[name].test
    return (c for c in _symbol_chars() if test(c))


@functools.cache
def _letters_by_script(planes: int = 1) -> dict[str, tuple[str, ...]]:
    """First word of the Unicode name ("CYRILLIC") -> the letters above U+024F (the letters
    ``wordclasses.script`` reads) in the first ``planes`` planes, by tier, diacritics, case and
    code point."""
    out: dict[str, list[str]] = {}
    for i in range(0x250, 0x10000 * planes):
        ch = chr(i)
        if ch.isalpha() and (name := unicodedata.name(ch, "")):
            out.setdefault(name.split()[0], []).append(ch)
    key = lambda c: (_tier(c), " WITH " in unicodedata.name(c), c.isupper(), ord(c))  # noqa: E731
    return {s: tuple(sorted(cs, key=key)) for s, cs in out.items()}


def script_letters(name: str) -> tuple[str, ...]:
    """Letters of the script class ``name`` ("Cyrillic script"); the supplementary planes are
    read only for a script the BMP lacks."""
    script = name.removesuffix(" script").upper()
    return _letters_by_script().get(script) or _letters_by_script(4).get(script, ())


# ---- numbers, markup, whitespace, code ------------------------------------------------------
def years() -> Iterator[str]:
    return (str(y) for y in sorted(range(1000, 2101), key=lambda y: (abs(y - 2000), y)))


def percentages() -> Iterator[str]:
    ints = sorted(range(1, 101), key=lambda n: (n % 10 != 0, n % 5 != 0, n))
    return itertools.chain((f"{n}%" for n in ints), (f"{n}.5%" for n in range(10)))


def ordinals() -> Iterator[str]:
    for n in range(1, 1000):
        suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        yield f"{n}{suffix}"


def times() -> Iterator[str]:
    minutes = sorted(range(60), key=lambda m: (m % 30 != 0, m % 15 != 0, m % 5 != 0, m))
    hours = [*range(1, 24), 0]
    return (f"{h}:{m:02d}" for m in minutes for h in hours)


def decimals() -> Iterator[str]:
    tenths = (f"{n / 10:.1f}" for n in range(1, 1000) if n % 10)
    return itertools.chain(tenths, (f"{n / 100:.2f}" for n in range(1, 1000) if n % 10))


def integers() -> Iterator[str]:
    return itertools.chain((str(n) for n in range(1, 101)), ["0"],
                           (f"{n:,}" for n in (*range(200, 1000, 100), *range(1000, 10001, 1000),
                                               100000, 1000000)))


def tags() -> Iterator[str]:
    from markdown_it.common.html_blocks import block_names

    for t in dict.fromkeys([*COMMON_TAGS, *block_names]):
        yield f"<{t}>"
        yield f"<{t}/>" if t in VOID_TAGS else f"</{t}>"


def entities() -> Iterator[str]:
    named = sorted(html.entities.name2codepoint.items(), key=lambda x: (x[1], x[0]))
    punct = [i for i in range(33, 127) if not chr(i).isalnum()]
    return itertools.chain((f"&{n};" for n, _ in named), (f"&#{i};" for i in punct),
                           (f"&#x{i:X};" for i in punct))


def indentation() -> Iterator[str]:
    spaces = sorted(range(2, 33), key=lambda n: (n % 4 != 0, n % 2 != 0, n))
    return interleave((" " * n for n in spaces), ("\t" * n for n in range(1, 9)))


def line_breaks() -> Iterator[str]:
    runs = ["\n", "\n\n", "\r\n", "\n\n\n", "\r\n\r\n", "\n\n\n\n"]
    return itertools.chain(runs, ("\n" + w for w in indentation()))


def code_syntax() -> Iterator[str]:
    import logging
    import shutil
    import string
    import typing
    import unittest

    words = sorted(W.CODE_TOKENS, key=lambda t: (not t.isidentifier(), len(t), t))
    snake = sorted({n for m in (functools, string, typing, shutil) for n in dir(m)
                    if "_" in n.strip("_")})
    camel = sorted({n for m in (unittest.TestCase, logging, logging.Logger) for n in dir(m)})
    return itertools.chain(keyword.kwlist, words, interleave(snake, camel))


SYMBOL_CLASSES = ("opening brackets", "closing brackets", "quotation marks", "currency symbols",
                  "dashes", "math symbols", "punctuation marks")  # classes of Unicode symbols
GENERATORS: dict[str, Callable[[], Iterable[str]]] = {
    "years": years, "percentages": percentages, "ordinal numbers": ordinals,
    "times of day": times, "decimal numbers": decimals, "integers": integers,
    "digits and numbers": lambda: interleave(integers(), years(), decimals()),
    **{n: functools.partial(symbols, n) for n in SYMBOL_CLASSES},
    "markup tags": tags, "character entities": entities, "indentation": indentation,
    "line breaks": line_breaks,
    "line breaks and whitespace": lambda: interleave(line_breaks(), [" ", *indentation()]),
    "code syntax": code_syntax, "ALL-CAPS words": all_caps, "capitalised words": capitalised,
    **{n: functools.partial(word_forms, n) for n in W.FORMS},
    **{n: functools.partial(pos_words, n) for n in ("nouns", "verbs", "adjectives", "adverbs")},
}


@functools.lru_cache(maxsize=256)
def class_members(name: str, limit: int = LIMIT) -> tuple[str, ...]:
    """Up to ``limit`` members of the word class ``name`` (a ``wordclasses.CLASSES`` name or a
    script, "Cyrillic script"), commonest first (module docstring), each passing
    ``wordclasses.is_member``; () for a name with no generator."""
    if name in GENERATORS:
        found: Iterable[str] = GENERATORS[name]()
    elif name.endswith(" script"):
        found = script_letters(name)
    else:
        return ()
    ok = (w for w in _unique(found) if w and W.is_member(w, name) and not offensive(w.lower()))
    return tuple(itertools.islice(ok, limit))


def _unique(words: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for w in words:
        if w not in seen:
            seen.add(w)
            yield w
