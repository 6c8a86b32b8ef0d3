"""Concept names for a set of tokens: what a neuron's trigger tokens have in common, in words a
researcher would use ("weekdays (Monday, Friday, Sunday)", "animals (sheep, rat, bull)",
"digits", "punctuation"), and membership tests that turn such a name back into a predictor.

Method, in order (the first that covers most of the weighted tokens wins; ``ConceptName.source``
says which):

1. **surface classes** (no resource needed): digits / numbers, punctuation, whitespace and line
   breaks, code syntax (Python keywords, operators, brackets, identifiers with ``_`` or
   camelCase), a non-Latin script (Unicode character names: CYRILLIC, GREEK, CJK, ARABIC ...),
   capitalised words.
2. **WordNet 3.0** (Miller 1995) through nltk's reader: every word's first noun (then verb)
   senses and their hypernym closure; an ancestor's *coverage* is the weighted share of words
   with a sense under it. Among ancestors that cover most words, the name is a *familiar* one,
   not the lowest: the lowest common hypernym of cat/dog/horse is ``placental``, a word nobody
   uses for them. Familiarity is the ancestor's tagged-sense count in SemCor (``index.sense``,
   from Debian's ``wordnet-sense-index``); ancestors too general to say anything (``entity``,
   ``object``, ``organism`` ...) are never names. When no ancestor is familiar enough, the
   words' shared lexicographer file (WordNet's supersense: ``noun.animal`` -> "animals") names
   them.
3. **closed word classes** (conjunctions, negations, prepositions, determiners, pronouns,
   auxiliaries): the grammar's names for tokens WordNet does not cover;
4. **a mixture** of two classes that together cover most tokens (a polysemantic neuron);
5. otherwise no concept: the caller lists the tokens.

WordNet comes from ``tools/wordnet.py`` (Debian's database, read by nltk). Without it, naming
uses the surface and word classes only and says so (``wordnet_status``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from neurosleuth.tools.wordnet import wordnet

SUPERSENSE_NAMES = {
    "noun.animal": "animals", "noun.body": "body parts", "noun.food": "foods and drinks",
    "noun.plant": "plants", "noun.person": "people and roles", "noun.location": "places",
    "noun.time": "time expressions", "noun.feeling": "feelings", "noun.artifact": "objects",
    "noun.substance": "substances", "noun.quantity": "quantities and units",
    "noun.communication": "words about communication", "noun.group": "groups",
    "noun.act": "actions", "noun.event": "events", "noun.cognition": "ideas and knowledge",
    "noun.attribute": "qualities", "noun.state": "states", "noun.possession": "money and property",
    "noun.shape": "shapes", "noun.object": "natural objects", "noun.phenomenon": "phenomena",
    "verb.motion": "verbs of motion", "verb.communication": "verbs of speaking",
    "verb.consumption": "verbs of eating and drinking", "verb.cognition": "verbs of thinking",
    "verb.perception": "verbs of perception", "verb.emotion": "verbs of feeling",
    "verb.creation": "verbs of making", "verb.contact": "verbs of touching and hitting",
    "verb.change": "verbs of change", "verb.possession": "verbs of having and giving",
    "verb.social": "social verbs", "verb.competition": "verbs of competing",
    "verb.body": "verbs of the body", "verb.weather": "weather verbs",
}
# Ancestors too general to name anything.
TOO_GENERAL = set("""entity physical_entity abstraction object whole living_thing organism being
causal_agent matter psychological_feature attribute relation measure group thing unit artifact
instrumentality event act state part portion person individual someone somebody mortal soul
location region device container structure communication content cognition knowledge
social_group collection people quality property abstract_entity physical_object vertebrate
chordate animal_group definite_quantity fundamental_quantity magnitude time_period
time_unit unit_of_time point message signal indication written_communication
writing language_unit word part_of_speech linguistic_unit substance solid material
natural_object geographical_area area point_in_time travel change move act_upon
cause go get make do be have""".split())
MIN_FAMILIAR = 1  # SemCor tagged senses that make an ancestor's name familiar
# Tokens that are code and not English words (Python's "and", "if", "for" are both).
CODE_TOKENS = set("()[]{}:;=<>+-*/%_#@&|^~\\`") | {
    "self", "def", "elif", "lambda", "None", "True", "False", "nonlocal", "async", "await",
    "==", "!=", "+=", "-=", "->", "**", "//", "print", "len", "str", "int", "dict", "cls", "args",
    "kwargs", "isinstance", "__init__", "__name__", "()", "):", "):\n", "[]", "{}"}


@dataclass(frozen=True)
class ConceptName:
    """What a set of tokens has in common. ``label``: a plural noun phrase ("weekdays");
    ``examples``: a few of the tokens; ``coverage``: weighted share of the tokens it fits;
    ``source``: "surface", "wordnet", "supersense", "grammar", "mixture" or "none"; ``synset``: the
    WordNet name."""

    label: str
    examples: tuple[str, ...]
    coverage: float
    source: str
    kind: str = ""  # the surface class or WordNet part of speech
    synset: str | None = None
    also: tuple[str, ...] = field(default_factory=tuple)  # other lemmas of the synset

    def phrase(self) -> str:
        ex = ", ".join(self.examples[:3])
        return f"{self.label} ({ex})" if ex else self.label


def norm(token: str) -> str:
    """A token as a word: stripped of the tokenizer's space marks and surrounding spaces."""
    return token.replace("Ġ", " ").replace("▁", " ").strip()


# ---- surface classes ----------------------------------------------------------------------
def _script(text: str) -> str | None:
    scripts = Counter()
    for ch in text:
        if ch.isalpha() and ord(ch) > 0x24F:
            name = unicodedata.name(ch, "")
            scripts[name.split()[0] if name else "OTHER"] += 1
    return scripts.most_common(1)[0][0] if scripts else None


SURFACE: dict[str, Callable[[str], bool]] = {
    "digits and numbers": lambda w: bool(re.fullmatch(r"[\d.,]*\d[\d.,]*", w)),
    "punctuation marks": lambda w: bool(w)
    and all(unicodedata.category(c)[0] in "PS" for c in w),
    "line breaks and whitespace": lambda w: w == "",
    "code syntax": lambda w: w in CODE_TOKENS
    or bool(re.fullmatch(r"[a-z]+_[a-z_]+|[a-z]+[A-Z]\w*", w)),
    "capitalised words": lambda w: bool(re.fullmatch(r"[A-Z][a-z]+", w)),
}


# Closed word classes of English (a grammar fact, not a list fitted to neurons): the names for
# tokens WordNet does not cover.
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


def function_class(word: str) -> str | None:
    w = word.lower()
    return next((name for name, words in FUNCTION_WORDS.items() if w in words), None)


def surface_class(token: str) -> str | None:
    """The first surface class ``token`` belongs to (or a script name: "CYRILLIC text")."""
    w = norm(token)
    script = _script(w)
    if script:
        return f"{script.title()} script"
    for name, test in SURFACE.items():
        if test(w):
            return name
    return None


SENSE_WEIGHTS = (1.0, 0.5, 0.33)  # a word's first senses, the first counting most


def _senses(wn, word: str, pos: str = "n", k: int = 3) -> list:
    """A word's first ``k`` senses as ``pos``; an adjective's related nouns (happy ->
    happiness) when asked for nouns and it has none."""
    out = wn.synsets(word, pos)[:k]
    if not out and pos == "n":
        for adj in wn.synsets(word, "a")[:2]:
            for lemma in adj.lemmas()[:1]:
                out += [r.synset() for r in lemma.derivationally_related_forms()
                        if r.synset().pos() == "n"][:1]
    return out[:k]


def _familiarity(syn) -> int:
    return sum(lemma.count() for lemma in syn.lemmas())


def _label(syn) -> str:
    """The synset's first lemma, or its most used one when the first is never used ("months"
    for calendar_month, "transport" for conveyance); plural for nouns."""
    lemmas = syn.lemmas()
    lemma = lemmas[0] if lemmas[0].count() else max(lemmas, key=lambda lem: lem.count())
    name = lemma.name().replace("_", " ")
    return plural(name) if syn.pos() == "n" else name


def plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in set("aeiou"):
        return noun[:-1] + "ies"
    return noun + "s"


def _coverage(wn, words, weights, pos: str) -> tuple[dict, Counter, float]:
    cover: dict = {}
    lexfiles: Counter = Counter()
    known = 0.0
    for w, wt in zip(words, weights, strict=True):
        senses = _senses(wn, w.lower(), pos)
        if not senses:
            continue
        known += wt
        lexfiles[senses[0].lexname()] += wt
        best: dict = {}
        for rank, s in enumerate(senses):
            for path in s.hypernym_paths():
                for a in path:
                    best[a] = max(best.get(a, 0.0), SENSE_WEIGHTS[rank])
        for a, sw in best.items():
            cover[a] = cover.get(a, 0.0) + wt * sw
    return cover, lexfiles, known


def name_with_wordnet(words: Sequence[str], weights: Sequence[float]) -> ConceptName | None:
    """The most specific familiar WordNet ancestor that covers most of ``words`` (module
    docstring): each 12.5% of coverage lost costs one level of depth; a name used at least once
    in SemCor; never a too-general one; else the shared supersense."""
    wn = wordnet()
    if wn is None:
        return None
    total = float(sum(weights)) or 1.0
    examples = tuple(dict.fromkeys(words))[:3]
    found = []
    for pos in ("n", "v"):
        cover, lexfiles, known = _coverage(wn, words, weights, pos)
        if known / total < 0.5:
            continue
        for syn, c in cover.items():
            if (c / total >= 0.6 and _familiarity(syn) >= MIN_FAMILIAR
                    and syn.name().split(".")[0] not in TOO_GENERAL):
                key = syn.min_depth() - 12 * (1 - c / total) + (0.5 if pos == "n" else 0.0)
                found.append((key, c / total, syn))
        lex, c = lexfiles.most_common(1)[0]
        if c / total >= 0.6 and lex in SUPERSENSE_NAMES:
            found.append((-1.0 + c / total, c / total, lex))
    if not found:
        return None
    _, cov, best = max(found, key=lambda f: (f[0], f[1]))
    if isinstance(best, str):
        return ConceptName(SUPERSENSE_NAMES[best], examples, cov, "supersense", best, None)
    also = tuple(lem.name().replace("_", " ") for lem in best.lemmas()[:3])
    return ConceptName(_label(best), examples, cov, "wordnet", best.pos(), best.name(), also)


def name_tokens(tokens: Sequence[str], weights: Sequence[float] | None = None) -> ConceptName:
    """Name what ``tokens`` (a neuron's trigger tokens, strongest first) have in common; a word
    counts once whatever its case ("Sheep", "sheep"), with the weights it carries summed."""
    weights = list(weights) if weights is not None else [1.0] * len(tokens)
    merged: dict[str, tuple[str, float]] = {}  # one entry per word, whatever its case
    for t, wt in zip(tokens, weights, strict=True):
        key = norm(t).lower()
        merged[key] = (merged[key][0], merged[key][1] + wt) if key in merged else (t, wt)
    tokens, weights = [t for t, _ in merged.values()], [wt for _, wt in merged.values()]
    if not tokens:
        return ConceptName("", (), 0.0, "none")
    words = [norm(t) for t in tokens]
    total = float(sum(weights)) or 1.0
    classes: Counter = Counter()
    for t, wt in zip(tokens, weights, strict=True):
        classes[surface_class(t) or ""] += wt
    cls, c = classes.most_common(1)[0]
    examples = tuple(dict.fromkeys(w for w in words if w))[:3]
    if cls and cls != "capitalised words" and c / total >= 0.6:
        return ConceptName(cls, examples, c / total, "surface", cls)
    alpha = [(w, wt) for w, wt in zip(words, weights, strict=True) if re.fullmatch(r"[A-Za-z]+", w)]
    if alpha:
        found = name_with_wordnet([w for w, _ in alpha], [wt for _, wt in alpha])
        if found is not None:
            return ConceptName(found.label, tuple(dict.fromkeys(w for w, _ in alpha))[:3],
                               found.coverage * sum(wt for _, wt in alpha) / total, found.source,
                               found.kind, found.synset, found.also)
    grammar: Counter = Counter()
    for w, wt in zip(words, weights, strict=True):
        grammar[function_class(w) or ""] += wt
    named = {k: v for k, v in grammar.items() if k}
    if named and sum(named.values()) / total >= 0.6:
        top = sorted(named, key=lambda k: -named[k])[:2]
        top = top if named[top[0]] / total < 0.6 else top[:1]
        label = " and ".join(top)
        ex = tuple(dict.fromkeys(w for w in words if function_class(w) in top))[:3]
        return ConceptName(label, ex, sum(named[k] for k in top) / total, "grammar", label)
    if cls == "capitalised words" and c / total >= 0.6:
        return ConceptName("capitalised words (names)", examples, c / total, "surface", cls)
    return mixture(tokens, words, weights, total) or ConceptName("", examples, 0.0, "none")


def word_class(token: str) -> str | None:
    """A token's surface class, else "function words" for any closed word class (the classes
    ``mixture`` combines)."""
    return surface_class(token) or ("function words" if function_class(norm(token)) else None)


def mixture(tokens, words, weights, total: float) -> ConceptName | None:
    """Two classes that together cover >= 60% of the weight (each >= 20%): a polysemantic
    neuron described honestly ("digits and numbers (3, 2, 0) and conjunctions (and, or)")."""
    classes: Counter = Counter()
    for t, wt in zip(tokens, weights, strict=True):
        if word_class(t):
            classes[word_class(t)] += wt
    top = [(k, v) for k, v in classes.most_common(2) if v / total >= 0.2]
    if len(top) < 2 or sum(v for _, v in top) / total < 0.6:
        return None
    parts = []
    for name, _ in top:
        ex = list(dict.fromkeys(w for t, w in zip(tokens, words, strict=True)
                                if w and word_class(t) == name))[:3]
        parts.append(f"{name} ({', '.join(ex)})")
    kind = "|".join(k for k, _ in top)
    return ConceptName(" and ".join(parts), (), sum(v for _, v in top) / total, "mixture", kind)


# ---- membership: a name back into a predictor ---------------------------------------------
@functools.lru_cache(maxsize=4096)
def in_synset(word: str, synset: str) -> bool:
    """Is some sense of ``word`` a hyponym (or instance) of WordNet ``synset``?"""
    wn = wordnet()
    if wn is None or not re.fullmatch(r"[A-Za-z]+", word):
        return False
    target = wn.synset(synset)
    for s in _senses(wn, word.lower(), target.pos(), k=4):
        if s == target or any(target in path for path in s.hypernym_paths()):
            return True
    return False


def member(concept: ConceptName) -> Callable[[str], bool]:
    """A test token -> bool: does the token belong to ``concept``?"""
    if concept.source == "surface":
        cls = concept.kind
        return lambda t: surface_class(t) == cls
    if concept.source == "mixture":
        classes = set(concept.kind.split("|"))
        return lambda t: word_class(t) in classes
    if concept.source == "grammar":
        classes = set(concept.kind.split(" and "))
        return lambda t: function_class(norm(t)) in classes
    if concept.source == "wordnet" and concept.synset:
        syn = concept.synset
        return lambda t: in_synset(norm(t), syn)
    if concept.source == "supersense":
        lex = concept.kind
        wn = wordnet()
        return lambda t: bool(wn) and any(
            s.lexname() == lex for s in _senses(wn, norm(t).lower(), lex[0]))
    words = {w.lower() for w in concept.examples}
    return lambda t: norm(t).lower() in words


def _by_frequency(synsets: list, form: str) -> list:
    """WordNet's senses of ``form`` by how often the form was tagged in each, then by how often
    the sense was tagged under any of its names: 'colour' has no tagged senses of its own (the
    counts are under 'color'), and WordNet lists 'colouring material' first."""
    def own(s) -> int:
        return sum(lem.count() for lem in s.lemmas() if lem.name().lower() == form)

    return sorted(synsets, key=lambda s: (-own(s), -sum(lem.count() for lem in s.lemmas())))


@functools.lru_cache(maxsize=1024)
def concept_synsets(word: str) -> tuple[str, ...]:
    """WordNet noun synsets a word of a hypothesis may name ("weekdays" -> weekday.n.01), for
    the keyword simulator: only synsets with hyponyms (a concept, not a single thing)."""
    wn = wordnet()
    if wn is None or not re.fullmatch(r"[A-Za-z]+", word) or len(word) < 3:
        return ()
    forms = dict.fromkeys([word.lower(), *wn._morphy(word.lower(), "n")])  # colors -> color
    out = []
    for form in forms:
        for s in _by_frequency(wn.synsets(form, "n"), form)[:2]:
            if s.name().split(".")[0] in TOO_GENERAL or s.name() in out:
                continue
            if s.hyponyms() or s.instance_hyponyms():
                out.append(s.name())
    return tuple(out)
