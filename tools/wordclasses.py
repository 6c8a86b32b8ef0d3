"""Word classes of whole words, each a membership test: what a neuron's trigger words may share
besides a WordNet meaning (``tools/concepts.py`` names those). Every class is a ``WordClass``
(a plural label, a test on a whole word, a specificity that orders candidate names) and
``classes_of`` gives a word's classes (cached: the explainers test every token of a text).

Classes, from resources that ship with their packages:

- **Unicode categories** (``unicodedata``): opening brackets (Ps), closing brackets (Pe),
  quotation marks (Pi, Pf and the ASCII quotes), currency symbols (Sc), math symbols (Sm),
  dashes (Pd), and any punctuation mark (P*, S*). A token that mixes a bracket with
  separators counts as the bracket: ``)``, ``})``, ``],``, ``);`` and ``".)`` are closing
  brackets; a token with brackets of both kinds (``()``, ``)(``) is neither. Quotation marks
  likewise may carry separators (``",``).
- **number formats**: any digits (``digits and numbers``), integers (``1,000``), decimals,
  years (four digits, 1000-2100), percentages, ordinals (``1st``), times of day (``10:30``).
- **markup**: tags (``<div>``, ``</p>``, ``<br/>``) and character entities (``&amp;``).
- **whitespace**: indentation (a word of spaces or tabs only: two or more, or a tab), line
  breaks, and a token that is nothing but whitespace once stripped.
- **capitalisation**: Capitalised words (any script) and ALL-CAPS words.
- **code syntax** (Python keywords and operators, snake_case and camelCase identifiers) and
  **scripts** (the Unicode name of a word's letters: "Cyrillic script").
- **word forms by inflection** (lemminflect 0.2.3, Jascob 2019: its lemma and inflection
  tables): past tense verbs (VBD), past participles (VBN), -ing forms (VBG), third-person -s
  verbs (VBZ), plural nouns (NNS), comparatives (JJR, RBR), superlatives (JJS, RBS). A word is
  a form only when it inflects a lemma other than itself (``red``, ``bed``, ``put`` are not
  past tenses) and when that reading's lemma is not 20x rarer (SemCor counts of WordNet 3.0)
  than the word's commonest reading, as a form or as a lemma of its own: ``number`` is not
  "more numb", ``evening`` not "evening out", ``feed`` not the past of "fee", ``cats`` not a
  verb; ``saw``, ``found``, ``leaves`` and ``provisions`` are forms.
- **parts of speech** (nouns, verbs, adjectives, adverbs): a word's part of speech in WordNet
  when it is clear: >= 75% of its SemCor-tagged senses, or the only one it has.
- ``wordnet_senses``: the WordNet senses a word has *as a word* (no sense reached only through
  a letter, symbol or abbreviation lemma, none for words of <= 2 letters), which the parts of
  speech and ``tools/concepts.py``'s WordNet names count.
- **closed word classes** of English (conjunctions, negations, ...): a grammar fact.

A class of words of one natural language other than English is a kind of text
(``tools/contexts.py``), not a word class.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from neurosleuth.tools.wordnet import wordnet

SPACE_MARKS = {"Ġ": " ", "▁": " ", "Ċ": "\n", "ĉ": "\t"}


def raw(token: str) -> str:
    """A token as text: the tokenizer's space marks turned back into spaces (a token made only
    of byte-level marks, "ĊĊ", into the line breaks and tabs it stands for)."""
    t = token.replace("Ġ", " ").replace("▁", " ")
    if t and set(t) <= set(" \t\n\rĊĉ"):
        t = t.replace("Ċ", "\n").replace("ĉ", "\t")
    return t


def norm(token: str) -> str:
    """A token as a word: stripped of the tokenizer's space marks and surrounding spaces."""
    return raw(token).strip()


SHOWN = {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def show(word: str) -> str:
    """A word as a label shows it: whitespace made visible ("\\n", "␣␣")."""
    return "".join(SHOWN.get(ch, ch) for ch in word) if word and not word.strip() else word


def unshow(word: str) -> str:
    """The word ``show`` shows as ``word``."""
    if not word or re.fullmatch(r"(?:␣|\\[ntr])+", word) is None:
        return word
    return word.replace("␣", " ").replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")


# ---- closed word classes and code -----------------------------------------------------------
FUNCTION_WORDS = {
    "conjunctions": set("and or but nor yet so either neither whether".split()),
    "negations": set("not no never none nothing nobody n't cannot without".split()),
    "prepositions": set("""of in on at to for from by with about into onto over under between
        through during before after above below since until upon within without against among
        across behind beyond toward towards""".split()),
    "determiners": set("the a an this that these those each every some any all both such".split()),
    "pronouns": set("""i you he she it we they me him her us them my your his its our their mine
        yours hers ours theirs myself yourself himself herself itself ourselves themselves who
        whom whose which what""".split()),
    "auxiliary and modal verbs": set("""is are was were be been being am do does did have has
        had will would shall should can could may might must""".split()),
}
ALL_FUNCTION_WORDS = set().union(*FUNCTION_WORDS.values())
# Tokens that are code and not English words (Python's "and", "if", "for" are both).
CODE_TOKENS = set("()[]{}:;=<>+-*/%_#@&|^~\\`") | {
    "self", "def", "elif", "lambda", "None", "True", "False", "nonlocal", "async", "await",
    "==", "!=", "+=", "-=", "->", "**", "//", "print", "len", "str", "int", "dict", "cls", "args",
    "kwargs", "isinstance", "__init__", "__name__", "()", "):", "):\n", "[]", "{}"}


def function_class(word: str) -> str | None:
    """The closed word class of ``word`` ("conjunctions"), or None."""
    w = word.lower()
    return next((name for name, words in FUNCTION_WORDS.items() if w in words), None)


def closed_classes(kind: str) -> set[str]:
    """The closed word classes a grammar name is made of ("conjunctions and negations")."""
    return {name for name in FUNCTION_WORDS if name in kind}


def grammar_test(kind: str) -> Callable[[str], bool]:
    """The test of a grammar name ("conjunctions", "conjunctions and negations", "function
    words")."""
    if kind == "function words":
        return lambda t: function_class(norm(t)) is not None
    classes = closed_classes(kind)
    return lambda t: function_class(norm(t)) in classes


def script(text: str) -> str | None:
    """The Unicode script most of ``text``'s non-Latin letters belong to ("CYRILLIC"), or None."""
    scripts: Counter = Counter()
    for ch in text:
        if ch.isalpha() and ord(ch) > 0x24F:
            name = unicodedata.name(ch, "")
            scripts[name.split()[0] if name else "OTHER"] += 1
    return scripts.most_common(1)[0][0] if scripts else None


# ---- Unicode categories -------------------------------------------------------------------
SEPARATORS = set(",.;:!?")
QUOTES = set("\"'`")


def _cat(ch: str) -> str:
    return unicodedata.category(ch)


def _is_quote(ch: str) -> bool:
    return ch in QUOTES or _cat(ch) in ("Pi", "Pf") or "QUOTATION" in unicodedata.name(ch, "")


def _bracket_word(w: str, kind: str) -> bool:
    """Brackets of one kind (Ps or Pe), with nothing else but separators and quotes."""
    brackets = [c for c in w if _cat(c) in ("Ps", "Pe") and not _is_quote(c)]
    rest = [c for c in w if c not in brackets]
    return (bool(brackets) and all(_cat(c) == kind for c in brackets)
            and all(c in SEPARATORS or _is_quote(c) for c in rest))


def _quote_word(w: str) -> bool:
    return any(_is_quote(c) for c in w) and all(_is_quote(c) or c in SEPARATORS for c in w)


REPLACEMENT = "\ufffd"  # what a token that holds part of a character's bytes decodes to


def _all_cat(w: str, *cats: str) -> bool:
    """Every character of ``w`` in one of the Unicode ``cats``. A replacement character is in
    none: it stands for a piece of a character of another script (a CJK character cut into byte
    tokens), not for a symbol of the text."""
    return bool(w) and REPLACEMENT not in w and all(_cat(c) in cats for c in w)


# ---- word forms (lemminflect) and parts of speech (WordNet) -------------------------------
FORMS = {
    "past tense verbs": ("VBD",), "past participles": ("VBN",), "-ing forms": ("VBG",),
    "third-person -s verbs": ("VBZ",), "plural nouns": ("NNS",),
    "comparatives": ("JJR", "RBR"), "superlatives": ("JJS", "RBS"),
}
# Mass nouns among WordNet's names that lemminflect gives a plural ("equipments").
MASS_NOUNS = set("""equipment furniture machinery software hardware information jewelry
jewellery luggage baggage footwear headgear weaponry tableware cutlery merchandise gear""".split())
TAGS_OF = {"v": ("VBD", "VBN", "VBG", "VBZ"), "n": ("NNS",), "a": ("JJR", "JJS"),
           "r": ("RBR", "RBS")}
WN_POS = {"NOUN": "n", "VERB": "v", "AUX": "v", "ADJ": "a", "ADV": "r"}
RARER = 20  # a reading counted 20x less often than the word's commonest reading is dropped
CLEAR_POS = 0.75  # share of a word's tagged senses that makes its part of speech clear


@functools.lru_cache(maxsize=65536)
def _wn_count(lemma: str, pos: str) -> int:
    """SemCor-tagged senses of ``lemma`` as part of speech ``pos`` (0 without WordNet)."""
    wn = wordnet()
    return sum(lem.count() for lem in wn.lemmas(lemma, pos)) if wn is not None else 0


def _alpha(word: str) -> str | None:
    w = word.lower()
    return w if len(w) >= 3 and re.fullmatch(r"[a-z]+(?:['-][a-z]+)*", w) else None


@functools.lru_cache(maxsize=65536)
def inflection_tags(word: str) -> frozenset[str]:
    """The Penn tags (VBD, NNS, ...) ``word`` is a real inflection of (module docstring)."""
    w = _alpha(word)
    if w is None:
        return frozenset()
    from lemminflect import getAllLemmas, getInflection

    lemmas = getAllLemmas(w)
    own = {WN_POS.get(p, p) for p, ls in lemmas.items() if w in ls}  # the word is a base form
    readings = []
    for upos, ls in lemmas.items():
        pos = WN_POS.get(upos, upos)
        for lemma in (lem for lem in ls if lem != w):
            readings += [(tag, _wn_count(lemma, pos)) for tag in TAGS_OF.get(pos, ())
                         if w in getInflection(lemma, tag)]
    top = max([c for _, c in readings] + [_wn_count(w, p) for p in own if p in "nvar"], default=0)
    return frozenset(t for t, c in readings if not top or c * RARER >= top)


def _subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(ch in it for ch in short)


def _abbreviation(lemma, syn) -> bool:
    """A lemma that is a letter, symbol or abbreviation of its synset: "W" (tungsten), "OR"
    (Oregon), "O.K.", a short shortening of a many-word name ("mph": miles per hour) or of a
    word, the latter never tagged in SemCor ("gal" for gallon)."""
    name, main = lemma.name(), syn.lemmas()[0].name()
    if len(name) <= 2 or "." in name or name.isupper():
        return True
    short = (len(name) <= 4 and 2 * len(name) <= len(main) and name[0].lower() == main[0].lower()
             and _subsequence(name.lower(), main.lower()))
    return short and ("_" in main or not lemma.count())


def _letter(syn) -> bool:
    return "letter of the" in syn.definition() and any(len(lem.name()) == 1 for lem in syn.lemmas())


@functools.lru_cache(maxsize=65536)
def wordnet_senses(word: str, pos: str) -> tuple:
    """``word``'s WordNet senses as ``pos`` (WordNet's order: commonest first) that it has as a
    word: none reached only through a letter, symbol or abbreviation lemma ("W" tungsten, "OK"
    Oklahoma, "mph"), none of a letter of an alphabet; none for words of <= 2 letters."""
    wn = wordnet()
    w = word.lower()
    if wn is None or len(w) < 3 or not re.fullmatch(r"[a-z]+", w):
        return ()
    forms = {w, *(f.lower() for f in wn._morphy(w, pos))}
    return tuple(s for s in wn.synsets(w, pos) if not _letter(s) and any(
        not _abbreviation(lem, s) for lem in s.lemmas() if lem.name().lower() in forms))


def plural(noun: str) -> str:
    """The plural of ``noun`` (of its last word), by lemminflect; a mass noun stays as it is."""
    from lemminflect import getInflection

    head, of, tail = noun.partition(" of ")  # "day of the week" -> "days of the week"
    first, _, last = head.rpartition(" ")
    forms = getInflection(last, "NNS") if last.isalpha() and last not in MASS_NOUNS else ()
    return (first + " " if first else "") + (forms[0] if forms else last) + of + tail


@functools.lru_cache(maxsize=65536)
def part_of_speech(word: str) -> str | None:
    """"n", "v", "a" or "r" where ``word``'s part of speech is clear (module docstring)."""
    wn = wordnet()
    w = _alpha(word)
    if wn is None or w is None or w in ALL_FUNCTION_WORDS:
        return None
    counts: dict[str, int] = {}
    present: set[str] = set()
    for p in "nvar":
        forms = {w, *(f.lower() for f in wn._morphy(w, p))}
        senses = wordnet_senses(w, p)
        counts[p] = sum(lem.count() for s in senses for lem in s.lemmas()
                        if lem.name().lower() in forms)
        if senses:
            present.add(p)
    total = sum(counts.values())
    if total:
        p = max(counts, key=lambda q: counts[q])
        return p if counts[p] >= CLEAR_POS * total else None
    return next(iter(present)) if len(present) == 1 else None


# ---- the classes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WordClass:
    """A class of whole words: ``name`` the label (plural), ``test`` on the word as text (space
    marks turned back, ``raw``), ``specificity`` orders candidate names (0 broad .. 6 narrow),
    ``source`` the ``ConceptName.source`` it is named under."""

    name: str
    test: Callable[[str], bool]
    specificity: float
    source: str = "surface"


def _s(f: Callable[[str], bool]) -> Callable[[str], bool]:
    """A test on the stripped word."""
    return lambda t: f(t.strip())


def _tagged(tags: frozenset[str]) -> Callable[[str], bool]:
    """A test that a word can carry one of the Penn tags ``tags`` (``inflection_tags``)."""
    return lambda w: bool(inflection_tags(w) & tags)


YEAR = re.compile(r"1\d{3}|20\d{2}|2100")
INTEGER = re.compile(r"[+\-−]?(?:\d{1,3}(?:,\d{3})+|\d+)")
DECIMAL = re.compile(r"[+\-−]?(?:\d{1,3}(?:,\d{3})+|\d+)?\.\d+")
TAG = re.compile(r"</?[A-Za-z][\w:.-]*(?:\s[^<>]*)?/?>|<![^<>]*>|<!--|-->")
ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#\d+|#[xX][0-9A-Fa-f]+);")

def _ordinal(w: str) -> bool:
    """1st, 2nd, 3rd, 4th, 11th, 21st (the suffix the number takes)."""
    m = re.fullmatch(r"(\d+)(st|nd|rd|th)", w, re.I)
    if m is None:
        return False
    n = int(m.group(1))
    right = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return m.group(2).lower() == right


CLASSES: dict[str, WordClass] = {c.name: c for c in [
    # numbers, most specific first
    WordClass("years", _s(lambda w: bool(YEAR.fullmatch(w))), 5.5),
    WordClass("percentages", _s(lambda w: bool(re.fullmatch(r"[+\-−]?\d+(?:[.,]\d+)?%", w))), 5.5),
    WordClass("ordinal numbers", _s(_ordinal), 5.5),
    WordClass("times of day", _s(lambda w: bool(re.fullmatch(
        r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:\s?[AaPp]\.?[Mm]\.?)?", w))), 5.5),
    WordClass("decimal numbers", _s(lambda w: bool(DECIMAL.fullmatch(w))), 5.0),
    WordClass("integers", _s(lambda w: bool(INTEGER.fullmatch(w))), 4.5),
    WordClass("digits and numbers", _s(lambda w: bool(re.fullmatch(r"[\d.,]*\d[\d.,]*", w))), 4.0),
    # punctuation by Unicode category
    WordClass("opening brackets", _s(lambda w: _bracket_word(w, "Ps")), 5.5),
    WordClass("closing brackets", _s(lambda w: _bracket_word(w, "Pe")), 5.5),
    WordClass("quotation marks", _s(_quote_word), 5.5),
    WordClass("currency symbols", _s(lambda w: _all_cat(w, "Sc")), 5.5),
    WordClass("dashes", _s(lambda w: _all_cat(w, "Pd")), 5.5),
    WordClass("math symbols", _s(lambda w: _all_cat(w, "Sm")), 5.0),
    WordClass("punctuation marks", _s(lambda w: _all_cat(w, "Pc", "Pd", "Ps", "Pe", "Pi", "Pf",
                                                        "Po", "Sm", "Sc", "Sk", "So")), 2.0),
    # markup and whitespace
    WordClass("markup tags", _s(lambda w: bool(TAG.fullmatch(w))), 5.5),
    WordClass("character entities", _s(lambda w: bool(ENTITY.fullmatch(w))), 5.5),
    WordClass("indentation", lambda t: bool(re.fullmatch(r"[ \t]{2,}|[ \t]*\t[ \t]*", t)), 5.5),
    WordClass("line breaks", lambda t: bool(re.fullmatch(r"\s*[\n\r]\s*", t)), 5.0),
    WordClass("line breaks and whitespace", lambda t: t.strip() == "", 4.0),
    # code, case
    WordClass("code syntax", _s(lambda w: w in CODE_TOKENS or bool(
        re.fullmatch(r"[a-z]+_[a-z_]+|[a-z]+[A-Z]\w*", w))), 4.0),
    WordClass("ALL-CAPS words", _s(lambda w: len(w) >= 2 and w.isalpha() and w.isupper()), 1.5),
    WordClass("capitalised words", _s(lambda w: len(w) >= 2 and w.isalpha() and w[0].isupper()
                                      and w[1:].islower()), 1.0),
    # word forms and parts of speech
    *(WordClass(name, _s(_tagged(frozenset(tags))),
                3.0 if name == "plural nouns" else 4.0 if name.endswith("tives") else 3.5,
                "inflection") for name, tags in FORMS.items()),
    WordClass("nouns", _s(lambda w: part_of_speech(w) == "n"), 1.0, "pos"),
    WordClass("verbs", _s(lambda w: part_of_speech(w) == "v"), 1.5, "pos"),
    WordClass("adjectives", _s(lambda w: part_of_speech(w) == "a"), 2.0, "pos"),
    WordClass("adverbs", _s(lambda w: part_of_speech(w) == "r"), 2.5, "pos"),
]}
SCRIPT_SPECIFICITY = 5.0


@functools.lru_cache(maxsize=65536)
def classes_of(token: str) -> tuple[str, ...]:
    """Every class of ``token`` (a whole word or a raw token: " cat", "Ġcat", "ĊĊ"), in
    ``CLASSES`` order; a script class ("Cyrillic script") first where it has one."""
    t = raw(token)
    s = script(t)
    found = [f"{s.title()} script"] if s else []
    return (*found, *(name for name, c in CLASSES.items() if c.test(t)))


@functools.lru_cache(maxsize=262144)
def is_member(token: str, name: str) -> bool:
    """Does ``token`` belong to the class called ``name`` (a ``CLASSES`` name or a script)?
    Only that class's test runs (a simulator asks of every token of a text)."""
    t = raw(token)
    if name in CLASSES:
        return CLASSES[name].test(t)
    s = script(t)
    return s is not None and f"{s.title()} script" == name


def specificity(name: str) -> float:
    return CLASSES[name].specificity if name in CLASSES else SCRIPT_SPECIFICITY


def source_of(name: str) -> str:
    return CLASSES[name].source if name in CLASSES else "surface"


SURFACE_ORDER = ("digits and numbers", "punctuation marks", "line breaks and whitespace",
                 "code syntax", "capitalised words")


def surface_class(token: str) -> str | None:
    """The first broad surface class ``token`` belongs to (a script: "Cyrillic script"); the
    classes a mixture of old was made of."""
    found = classes_of(token)
    if found and found[0].endswith(" script"):
        return found[0]
    return next((name for name in SURFACE_ORDER if name in found), None)


def abbreviation_only(word: str) -> bool:
    """A word WordNet knows only as a letter or abbreviation ("W", "OK"), or of <= 2 letters."""
    wn = wordnet()
    w = norm(word)
    if not w.isalpha() or wn is None:
        return False
    return len(w) <= 2 or (bool(wn.synsets(w.lower())) and not any(
        wordnet_senses(w, p) for p in "nvar"))
