"""Concept names for a set of words: what a neuron's trigger words have in common, in words a
researcher would use ("weekdays (Monday, Friday, Sunday)", "weapons (bow, sword, spear)",
"past tense verbs (walked, ran)", "closing brackets ()), ], })"), each with a membership test
that turns the name back into a predictor for words the neuron was never seen on.

``candidate_names`` returns every class that covers >= 60% of the words' weight, best first;
the explainers test each on held-out data. ``name_tokens`` is the first of them. Classes:

1. **word classes** (``tools/wordclasses.py``): Unicode categories, number formats, markup,
   whitespace, capitalisation, code syntax, scripts, word forms by inflection, parts of speech.
2. **WordNet 3.0** (Miller 1995) through nltk's reader: every ancestor (hypernym closure) of a
   word's first four noun or verb senses; a word is a member of an ancestor when one of those
   senses lies under it (the set picks the sense: bow the weapon, not the knot), and the
   ancestor's *salience* weighs each member by its sense's rank (1, 1/2, 1/3, 1/4). Ancestors
   too general to say anything (``entity``, ``object`` ...) are never names. WordNet's
   supersense of the words' first senses (``noun.animal`` -> "animals") is a broader name.
3. **closed word classes** (conjunctions, negations ...): the grammar's names for function
   words, one class, two, or any ("function words");
4. **a mixture** of two classes that together cover >= 60% and 25% more than any one (a
   polysemantic neuron): "digits and numbers (3, 2, 0) and conjunctions (and, or, but)".

Rules that keep names honest (``name_violations`` checks a whole atlas against them):

- a class needs ``min_distinct`` distinct member words (lower-cased): 3, or 2 when only two
  words are named (two colours name "colors"); one word names no class (never "tungstens
  (W)"); each part of a mixture needs as many;
- WordNet counts no letter or abbreviation sense, in coverage as in ``in_synset``
  (``wordclasses.wordnet_senses``): no word of <= 2 letters, no sense reached only through an
  all-caps lemma ("OK" Oklahoma, "USA"), a lemma with a dot, a shortening of a many-word name
  ("mph") or an untagged one of a word ("gal" for gallon), nor a letter of an alphabet;
- every example shown under a class is a member of it (examples are the members).

Order: a key of specificity (word classes: ``WordClass.specificity``, 1 for capitalised words
to 5.5 for years or closing brackets; WordNet ancestors ``3 + depth / 4``, 0.5 less when the
name was never tagged in SemCor, as "placentals"; a supersense 2.5; grammar 3.5-5.5; a mixture
its broader part's less 1.5) less 3 per unit of salience lost: each 10% of the weight a class
misses costs 1.2 WordNet levels. WordNet comes from ``tools/wordnet.py``; without it, naming
uses the other classes.
"""

from __future__ import annotations

import functools
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from neurosleuth.tools import wordclasses as W
from neurosleuth.tools.wordclasses import (  # noqa: F401  (the names callers import from here)
    CODE_TOKENS,
    FUNCTION_WORDS,
    function_class,
    norm,
    surface_class,
)
from neurosleuth.tools.wordnet import wordnet

_script = W.script  # tools/contexts.py reads a text's script through this name
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
MIN_SHARE = 0.6  # weight a class must cover to be a candidate
PART_SHARE = 0.2  # weight each part of a mixture must cover
COVERAGE_COST = 3.0  # specificity lost per unit of (salient) coverage lost
SUPERSENSE_SPECIFICITY = 2.5
GRAMMAR_SPECIFICITY = {1: 5.5, 2: 4.5, 0: 3.5}  # one closed class, two, any ("function words")
MIXTURE_COST = 1.5
MIXTURE_GAIN = 0.25  # coverage a mixture must add to the best single class
MIN_PART_SPEC = 2.0  # a mixture's parts: not parts of speech nor capitalisation
SENSE_WEIGHTS = (1.0, 0.5, 0.33, 0.25)  # a word's first senses, the first counting most
MIN_FAMILIAR = 1  # SemCor tagged senses that make an ancestor's name familiar


@dataclass(frozen=True)
class ConceptName:
    """What a set of words has in common. ``label``: a plural noun phrase ("weekdays");
    ``examples``: a few of the words, all members; ``coverage``: weighted share of the words it
    fits; ``source``: "surface", "inflection", "pos" (``tools/wordclasses.py``), "wordnet",
    "supersense", "grammar", "mixture" or "none"; ``kind``: the class, part of speech, lexicographer
    file or, for a mixture, its parts ("surface:integers|wordnet:color.n.01"); ``synset``:
    the WordNet name."""

    label: str
    examples: tuple[str, ...]
    coverage: float
    source: str
    kind: str = ""
    synset: str | None = None
    also: tuple[str, ...] = field(default_factory=tuple)  # other lemmas of the synset

    def phrase(self) -> str:
        ex = ", ".join(W.show(e) for e in self.examples[:3])
        return f"{self.label} ({ex})" if ex and self.source != "mixture" else self.label


def min_distinct(n_words: int) -> int:
    """Distinct member words a class needs among ``n_words`` distinct trigger words: 3, or 2
    when only two are named (a single word names no class)."""
    return 3 if n_words >= 3 else 2


# ---- WordNet ancestors ----------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def _senses(word: str, pos: str) -> tuple:
    """``word``'s first four senses as ``pos`` without letter and abbreviation senses
    (``wordclasses.wordnet_senses``); an adjective's related noun (happy -> happiness) when
    asked for nouns and it has none."""
    out = list(W.wordnet_senses(word, pos)[: len(SENSE_WEIGHTS)])
    if not out and pos == "n":
        for adj in W.wordnet_senses(word, "a")[:2]:
            for lemma in adj.lemmas()[:1]:
                out += [r.synset() for r in lemma.derivationally_related_forms()
                        if r.synset().pos() == "n"][:1]
    return tuple(out[: len(SENSE_WEIGHTS)])


@functools.lru_cache(maxsize=65536)
def _ancestors(word: str, pos: str) -> dict:
    """Each ancestor of ``word``'s senses -> the weight of the first sense under it (read only)."""
    best: dict = {}
    for rank, s in enumerate(_senses(word, pos)):
        for path in s.hypernym_paths():
            for a in path:
                best.setdefault(a, SENSE_WEIGHTS[rank])
    return best


@functools.lru_cache(maxsize=65536)
def in_synset(word: str, synset: str) -> bool:
    """Is one of ``word``'s first four senses (no letter or abbreviation sense) a hyponym or
    instance of WordNet ``synset``?"""
    wn = wordnet()
    if wn is None:
        return False
    target = wn.synset(synset)
    return target in _ancestors(word, target.pos())


def in_supersense(word: str, lexname: str) -> bool:
    """Is ``word``'s first sense in WordNet's lexicographer file ``lexname``?"""
    senses = _senses(word, lexname[0])
    return bool(senses) and senses[0].lexname() == lexname


@functools.lru_cache(maxsize=16384)
def _depth(syn) -> int:
    return syn.min_depth()


def _label(syn) -> str:
    """The synset's first lemma, or its most used one when the first is never used ("months"
    for calendar_month); plural for nouns."""
    lemmas = syn.lemmas()
    lemma = lemmas[0] if lemmas[0].count() else max(lemmas, key=lambda lem: lem.count())
    name = lemma.name().replace("_", " ")
    return W.plural(name) if syn.pos() == "n" else name


# ---- candidates ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Candidate:
    spec: float  # specificity
    salience: float  # coverage, each member weighted by how central it is (WordNet: sense rank)
    name: ConceptName
    members: frozenset[str]  # keys of the member words

    @property
    def key(self) -> float:
        return self.spec - COVERAGE_COST * (1.0 - self.salience)


def _merge(tokens: Sequence[str], weights: Sequence[float] | None) -> dict[str, tuple[str, float]]:
    """One entry per word whatever its case ("Sheep", "sheep"), its weights summed; keyed by the
    lower-cased word (a whitespace token by itself: "\\n" and "  " differ)."""
    weights = list(weights) if weights is not None else [1.0] * len(tokens)
    merged: dict[str, tuple[str, float]] = {}
    for t, wt in zip(tokens, weights, strict=True):
        key = norm(t).lower() or W.raw(t)
        merged[key] = (merged[key][0], merged[key][1] + wt) if key in merged else (t, wt)
    return merged


def _make(items, total, need, share, spec, member_keys, name_of, salient=None) -> list:
    """Candidates from ``member_keys`` (class -> keys of its members) that cover ``share``."""
    out = []
    for cls, keys in member_keys.items():
        cov = math.fsum(items[k][1] for k in keys) / total
        if cov < share or len(keys) < need:
            continue
        ex = tuple(norm(items[k][0]) or W.raw(items[k][0]) for k in keys)[:3]
        sal = salient[cls] / total if salient is not None else cov
        out.append(_Candidate(spec(cls), sal, name_of(cls, ex, cov), frozenset(keys)))
    return out


def _word_class_candidates(items, total, need, share) -> list[_Candidate]:
    keys: dict = defaultdict(list)
    for k, (t, _) in items.items():
        for cls in W.classes_of(t):
            keys[cls].append(k)
    return _make(items, total, need, share, W.specificity, keys,
                 lambda c, ex, cov: ConceptName(c, ex, cov, W.source_of(c), c))


def _grammar_candidates(items, total, need, share) -> list[_Candidate]:
    keys: dict = defaultdict(list)
    for k, (t, _) in items.items():
        if cls := function_class(norm(t)):
            keys[cls].append(k)
            keys["function words"].append(k)
    weight = {c: sum(items[k][1] for k in ks) for c, ks in keys.items() if c != "function words"}
    top = sorted(weight, key=lambda c: -weight[c])[:2]
    if len(top) == 2 and weight[top[1]] >= PART_SHARE * total:
        keys[f"{top[0]} and {top[1]}"] = [k for k in items if function_class(norm(items[k][0]))
                                           in top]
    return _make(items, total, need, share,
                 lambda c: GRAMMAR_SPECIFICITY[len(W.closed_classes(c))],
                 keys, lambda c, ex, cov: ConceptName(c, ex, cov, "grammar", c))


def _wordnet_specificity(a) -> float:
    """3 + depth / 4, a noun 1/8 more, a name never tagged in SemCor ("placentals") 0.5 less."""
    familiar = sum(lemma.count() for lemma in a.lemmas()) >= MIN_FAMILIAR
    return 3.0 + _depth(a) / 4 + (0.125 if a.pos() == "n" else 0.0) - (0.0 if familiar else 0.5)


def _wordnet_candidates(items, total, need, share) -> list[_Candidate]:
    if wordnet() is None:
        return []
    out = []
    clear = [W.part_of_speech(norm(t)) for t, _ in items.values()]
    for pos in ("n", "v"):
        if pos == "v" and sum(p == "v" for p in clear) < sum(p not in (None, "v") for p in clear):
            continue  # a verb class for words that are mostly not verbs ('yellow': discolor)
        # synset -> keys of its members, and their summed weight; lexicographer file -> keys
        keys: defaultdict[Any, list] = defaultdict(list)
        salient: defaultdict[Any, float] = defaultdict(float)
        lex_keys: defaultdict[str, list] = defaultdict(list)
        for k, (t, wt) in items.items():
            word = norm(t)
            for a, sense_weight in _ancestors(word, pos).items():
                keys[a].append(k)
                salient[a] += wt * sense_weight
            if senses := _senses(word, pos):
                lex_keys[senses[0].lexname()].append(k)
        specific = {a: ks for a, ks in keys.items()
                    if a.name().split(".")[0] not in TOO_GENERAL}
        out += _make(items, total, need, share, _wordnet_specificity, specific, lambda a, ex, cov:
                     ConceptName(_label(a), ex, cov, "wordnet", a.pos(), a.name(), tuple(
                         lem.name().replace("_", " ") for lem in a.lemmas()[:3])), salient)
        supersenses = {x: ks for x, ks in lex_keys.items() if x in SUPERSENSE_NAMES}
        out += _make(items, total, need, share, lambda x: SUPERSENSE_SPECIFICITY, supersenses,
                     lambda x, ex, cov: ConceptName(SUPERSENSE_NAMES[x], ex, cov, "supersense", x))
    return out


def _singles(items, share: float, need: int) -> list[_Candidate]:
    total = float(sum(wt for _, wt in items.values())) or 1.0
    return [*_word_class_candidates(items, total, need, share),
            *_grammar_candidates(items, total, need, share),
            *_wordnet_candidates(items, total, need, share)]


def _part(c: ConceptName) -> str:
    return f"{c.source}:{c.synset or c.kind}"


def _mixtures(items, singles: list[_Candidate], parts: list[_Candidate]) -> list[_Candidate]:
    """Two of ``parts`` (single classes with enough members and >= 20% of the weight; not a part
    of speech, capitalisation or two closed classes), each with >= 20% of the weight that the
    other does not cover, that together cover >= 60% and 25% more than the best single class."""
    total = float(sum(wt for _, wt in items.values())) or 1.0
    best = max((c.name.coverage for c in singles), default=0.0)
    pool = sorted((c for c in parts if c.spec >= MIN_PART_SPEC and c.name.source != "pos"
                   and not (c.name.source == "grammar" and len(W.closed_classes(c.name.kind)) > 1)),
                  key=lambda c: -c.key)[:10]
    out = []
    for i, a in enumerate(pool):
        for b in pool[i + 1:]:
            union = a.members | b.members  # sets: fsum is the same in any order of their keys
            cov = math.fsum(items[k][1] for k in union) / total
            only_a = math.fsum(items[k][1] for k in a.members - b.members) / total
            only_b = math.fsum(items[k][1] for k in b.members - a.members) / total
            if cov < max(MIN_SHARE, best + MIXTURE_GAIN) or min(only_a, only_b) < PART_SHARE:
                continue
            a, b = sorted((a, b), key=lambda c: -math.fsum(items[k][1] for k in c.members))
            label = " and ".join(c.name.phrase() for c in (a, b))
            name = ConceptName(label, (), cov, "mixture", f"{_part(a.name)}|{_part(b.name)}")
            out.append(_Candidate(min(a.spec, b.spec) - MIXTURE_COST, cov, name, union))
    return out


def candidate_names(words: Sequence[str], weights: Sequence[float] | None = None,
                    limit: int = 6) -> list[ConceptName]:
    """Every class that covers >= 60% of the weight of ``words`` (a neuron's trigger words,
    strongest first) with enough distinct members, best first (module docstring: specificity
    less the coverage lost), one per label, at most ``limit``."""
    items = _merge(words, weights)
    if len(items) < 2:
        return []
    need = min_distinct(len(items))
    pool = _singles(items, PART_SHARE, need)  # the mixtures' parts too
    found = [c for c in pool if c.name.coverage >= MIN_SHARE]
    found += _mixtures(items, found, pool)
    found.sort(key=lambda c: (-c.key, -c.name.coverage))
    out: dict[str, ConceptName] = {}
    for c in found:
        out.setdefault(c.name.label, c.name)
    return list(out.values())[:limit]


def name_tokens(tokens: Sequence[str], weights: Sequence[float] | None = None) -> ConceptName:
    """The best name for ``tokens`` (``candidate_names``' first), or source "none" with the
    words as examples; a word counts once whatever its case, with its weights summed."""
    found = candidate_names(tokens, weights, limit=1)
    if found:
        return found[0]
    words = (norm(t) for t, _ in _merge(tokens, weights).values())
    return ConceptName("", tuple(w for w in words if w)[:3], 0.0, "none")


# ---- membership: a name back into a predictor ---------------------------------------------
def _part_test(part: str) -> Callable[[str], bool]:
    """A mixture's part: "source:kind", or a bare class name (mixtures named before parts
    carried their source)."""
    if ":" in part:
        source, kind = part.split(":", 1)
        return member(ConceptName("", (), 0.0, source, kind, kind if source == "wordnet" else None))
    if part == "function words":
        return W.grammar_test(part)
    return lambda t: W.is_member(t, part) or surface_class(t) == part


def member(concept: ConceptName) -> Callable[[str], bool]:
    """A test word -> bool: does the word (a whole word, or a raw token " cat", "Ġcat") belong
    to ``concept``?"""
    source, kind = concept.source, concept.kind
    if source in ("surface", "inflection", "pos"):
        return lambda t: W.is_member(t, kind)
    if source == "mixture":
        tests = [_part_test(p) for p in kind.split("|")]
        return lambda t: any(test(t) for test in tests)
    if source == "grammar":
        return W.grammar_test(kind)
    if source == "wordnet" and concept.synset:
        syn = concept.synset
        return lambda t: in_synset(norm(t), syn)
    if source == "supersense":
        return lambda t: in_supersense(norm(t), kind)
    words = {w.lower() for w in concept.examples}
    return lambda t: norm(t).lower() in words


# ---- a whole atlas's names, checked --------------------------------------------------------
def _shown(c: ConceptName) -> list[tuple[ConceptName, list[str]]]:
    """Each class a name shows and the examples it lists under it (a mixture: both parts)."""
    if c.source != "mixture":
        return [(c, list(c.examples))]
    out, rest = [], c.label
    for part in c.kind.split("|"):
        source, _, kind = part.rpartition(":")
        sub = ConceptName("", (), 0.0, source or "surface", kind,
                          kind if source == "wordnet" else None)
        m = re.match(r"(.+?) \((.*?)\)(?: and |$)", rest)
        if m is None:
            break
        out.append((sub, [W.unshow(e) for e in m.group(2).split(", ")]))
        rest = rest[m.end():]
    return out


def name_violations(rows: Iterable[tuple[ConceptName | dict | None, Sequence[str]]]
                    ) -> list[str]:
    """Names that break the rules (module docstring), one line each: ``rows`` of (the concept,
    as a ``ConceptName`` or its ``asdict``; the trigger words it was named from). A class named
    from fewer than ``min_distinct`` distinct words, an example that is not a member of the
    class it is shown under, a WordNet class shown with a letter or abbreviation."""
    out = []
    for concept, words in rows:
        if isinstance(concept, dict):
            concept = ConceptName(**{**concept, "examples": tuple(concept.get("examples", ())),
                                     "also": tuple(concept.get("also", ()))})
        if concept is None or concept.source == "none":
            continue
        items = _merge(words, None)
        test, need = member(concept), min_distinct(len(items))
        n = sum(1 for t, _ in items.values() if test(t))
        if n < need:
            out.append(f"{concept.phrase()}: named from {n} distinct words (needs {need})")
        for part, examples in _shown(concept):
            is_member = member(part)
            for e in examples:
                if not is_member(e):
                    out.append(f"{concept.phrase()}: example {e!r} is not a member")
                elif part.source in ("wordnet", "supersense") and W.abbreviation_only(e):
                    out.append(f"{concept.phrase()}: example {e!r} is a letter or abbreviation")
    return out


# ---- concepts a hypothesis names (the keyword simulator) ----------------------------------
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
