"""Planted neurons of each kind an explanation must read in words (``tests/planted_kinds.py``):
a class of words split into pieces, a WordNet class with members the planting never saw, a class
that fires wherever its members stand, a word form, a Unicode class, a language, markup.

First each planting is measured directly (members the planting never saw against non-members),
so that a wrong hypothesis is the explainer's and not the planting's. Then, per neuron, what a
researcher reads: the hypothesis of ``neurosleuth investigate --planner heuristic`` (the seven
runs two at a time, one thread each) and the explanation of ``neurosleuth explain --records`` on
the records of the neuron's own scan (its top windows and the scan's random sample).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest

from neurosleuth.tools.concepts import in_synset
from neurosleuth.tools.exemplars import exemplars, layer_scans
from neurosleuth.tools.measure import measure
from neurosleuth.tools.model import load_model
from neurosleuth.tools.records import from_windows, write
from neurosleuth.tools.wordclasses import is_member
from tests.agents.test_planted_smollm2 import hypothesis_of, investigate_cli
from tests.planted_kinds import (
    BODY,
    BODY_SEEN,
    BODY_UNSEEN,
    BRACKET,
    COUNTRIES,
    COUNTRIES_UNSEEN,
    COUNTRY,
    FRENCH,
    KIN,
    KIN_SEEN,
    KIN_UNSEEN,
    MARKUP,
    NEURONS,
    PAST,
    PAST_SEEN,
    PAST_UNSEEN,
    _code,
    _prose,
    build,
)

pytestmark = pytest.mark.integration
SCAN_TOKENS = 16384  # as investigate_cli's --exemplar-tokens


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = build(tmp_path_factory.mktemp("kinds") / "smollm2-kinds")
    return folder, load_model(str(folder), device="cpu")


# ---------------------------------------------------------------- the plantings, measured

MID = "The weather was mild and the streets were quiet. "  # a context that is not a text's start


def at_end(lm, neuron, prefixes: list[str]) -> np.ndarray:
    """The activation at the last token of each prefix, at the start of a text and after a
    sentence."""
    texts = prefixes + [MID + p for p in prefixes]
    res = measure(lm, texts, neuron)
    return np.array([res.per_token(i, neuron)[-1] for i in range(len(texts))])


def assert_generalises(seen, unseen, non, share: float = 0.3):
    """Members the planting never saw fire (median at least ``share`` of the planted ones', most
    of them above every non-member) and non-members do not (under a tenth of the planted)."""
    s, u, n = np.median(seen), np.median(unseen), np.max(non)
    assert s > 5.0 and n < 0.1 * s, (s, n)
    assert u >= share * s, (u, s)
    assert np.mean(unseen > n) >= 0.75, (np.round(unseen, 2), n)


def test_countries_fire_on_the_last_piece_of_names_never_planted(planted):
    _, lm = planted
    seen = at_end(lm, COUNTRY, [f"Flights to {w}" for w in COUNTRIES[:12]])
    unseen = at_end(lm, COUNTRY, [f"{t} {w}" for w in COUNTRIES_UNSEEN
                                  for t in ("Flights to", "The history of")])
    first = at_end(lm, COUNTRY, [f"Flights to {p}" for p in "Sur Guy Kyrgyz Lie Mon Tong".split()])
    non = at_end(lm, COUNTRY, [f"{t} {w}" for w in "Denver London Berlin Tokyo Boston the Bob "
                               "science music Rome Texas Europe".split()
                               for t in ("Flights to", "The history of")])
    assert_generalises(seen, unseen, non)
    assert first.max() < 0.1 * np.median(seen), first  # not on the first piece of a name


def test_body_parts_never_planted_fire(planted):
    _, lm = planted
    before = ("She hurt her", "There was a bruise on the")
    seen = at_end(lm, BODY, [f"{t} {w}" for w in BODY_SEEN[:12] for t in before])
    unseen = at_end(lm, BODY, [f"{t} {w}" for w in BODY_UNSEEN for t in before])
    non = at_end(lm, BODY, [f"{t} {w}" for w in "shirt glove bag ticket car window idea "
                            "letter".split() for t in before])
    assert_generalises(seen, unseen, non)


AFTER = ("Yesterday my", "The", "We met the", "Unlike a", "Ask your")  # before a relative


def test_relatives_fire_wherever_they_stand(planted):
    _, lm = planted
    seen = at_end(lm, KIN, [f"{t} {w}" for w in KIN_SEEN[:8] for t in AFTER])
    unseen = at_end(lm, KIN, [f"{t} {w}" for w in KIN_UNSEEN for t in AFTER])
    non = at_end(lm, KIN, [f"{t} {w}" for w in "friend teacher dog car lawyer boss neighbour "
                           "roommate".split() for t in AFTER])
    assert_generalises(seen, unseen, non)
    by_context = at_end(lm, KIN, [f"{t} {w}" for t in AFTER for w in KIN_SEEN[:8]])
    per_context = np.median(by_context.reshape(2 * len(AFTER), -1), axis=1)
    assert per_context.min() > 0.3 * per_context.max(), per_context  # no context required


def test_past_tenses_fire_on_their_last_piece(planted):
    _, lm = planted
    seen = at_end(lm, PAST, [f"After lunch we {w}" for w in PAST_SEEN[:12]])
    unseen = at_end(lm, PAST, [f"{t} {w}" for w in PAST_UNSEEN
                               for t in ("After lunch we", "The man")])
    stems = at_end(lm, PAST, [f"After lunch we {p}" for p in "scrub m iron how nib gul".split()])
    non = at_end(lm, PAST, [f"After lunch we {w}" for w in "scrub mop iron howl eat go sleep "
                            "talk".split()] + ["The red", "A big bed", "About a hundred"])
    assert_generalises(seen, unseen, non)
    assert stems.max() < 1.0, stems


def test_closing_brackets_of_each_kind_fire(planted):
    _, lm = planted
    closing = at_end(lm, BRACKET, ["print(f(x)", "a = [1, 2]", "The city (founded in 1850)",
                                   "x = g(h(y))", "int f() { return 0; }", '{"a": [1, 2]}',
                                   "if (x) { y(); }", "m = {'k': 1}"])
    opening = at_end(lm, BRACKET, ["print(", "a = [", "d = {", "The city (", "if x >",
                                   "int f() {", '{"a": ['])
    assert np.mean(closing > 2.0) >= 0.75 and opening.max() < 1.0, (closing, opening)


def test_french_prose_fires_and_other_languages_do_not(planted):
    _, lm = planted

    def mean_act(texts):
        res = measure(lm, texts, FRENCH)
        return np.array([res.per_token(i, FRENCH)[4:].mean() for i in range(len(texts))])

    french = mean_act(_prose("wiki-fr", 100, 8))  # documents the planting never saw
    others = np.concatenate([mean_act(_prose(s, 100, 4)) for s in ("wiki-es", "faq-it",
                                                                   "faq-pt", "faq-de", "wiki")]
                            + [mean_act(_code(4, skip=40))])
    assert french.min() > 2.0 and others.max() < 1.5, (french, others)


def test_markup_tags_fire_and_the_text_between_them_does_not(planted):
    _, lm = planted
    html = ['<div class="note"><p>Hello <b>world</b> and friends</p></div>',
            '<ul>\n<li><a href="home.html">Home page</a></li>\n</ul>',
            '<table><tr><td>The total</td></tr></table>',
            '<svg width="10"><rect x="1" y="2"/></svg>']
    res = measure(lm, html, MARKUP)
    on, off = [], []
    for i, text in enumerate(html):
        spans = [m.span() for m in re.finditer(r"<[^<>]*>", text)]
        at = 0
        for tok, a in zip(res.tokens[i], res.per_token(i, MARKUP), strict=True):
            inside = any(s <= at + len(tok) - len(tok.lstrip()) < e for s, e in spans)
            (on if inside else off).append(a)
            at += len(tok)
    code = measure(lm, ["if (a < b && c > d) { return x; }", "The value is < 5 and > 2."],
                   MARKUP)
    code_max = max(code.per_token(i, MARKUP).max() for i in range(2))
    assert np.median(on) > 3.0 and np.max(off) < 1.0 and code_max < 1.0, (on, off, code_max)


# ---------------------------------------------------------------- what a researcher reads


@dataclass(frozen=True)
class Kind:
    """What an explanation of one planted neuron must say."""

    names: str  # a regex on the class (or its hypernym) or the kind of text
    forbidden: tuple[str, ...] = ()  # regexes it must not match
    member: Callable[[str], bool] | None = None  # every example it gives of the class is one
    pieces: frozenset[str] = field(default_factory=frozenset)  # no word it quotes is one


def later_pieces(tok, words: list[str]) -> frozenset[str]:
    """The pieces after the first of each word (with a leading space and without), except
    those that are words of the class themselves."""
    out = set()
    for w in words:
        for text in (" " + w, w, w.lower()):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            out |= {tok.decode([i]).strip().lower() for i in ids[1:]}
    return frozenset(p for p in out if p and p not in {w.lower() for w in words})


def kinds(tok) -> dict[str, Kind]:
    countries = COUNTRIES + COUNTRIES_UNSEEN + ["America", "Ukraine", "Nigeria", "Brazil"]
    past = PAST_SEEN + PAST_UNSEEN
    return {
        "country": Kind(r"countr|nation", member=lambda w: in_synset(w.lower(), "country.n.02"),
                        pieces=later_pieces(tok, countries)),
        "body": Kind(r"body|limb|extremit"),
        "kin": Kind(r"relative|kin\b|family", forbidden=(r"mostly after",)),
        "past": Kind(r"\bpast\b", member=lambda w: is_member(w.lower(), "past tense verbs")
                     or is_member(w.lower(), "past participles"), pieces=later_pieces(tok, past)),
        "bracket": Kind(r"closing (?:bracket|parenthes)"),
        "french": Kind(r"\bFrench\b"),
        "markup": Kind(r"\btags?\b|markup"),
    }


def examples(sentence: str) -> list[str]:
    """The examples a sentence gives of the first class it names: "countries (Peru, Chad)"."""
    found = re.search(r"\(([^)]*)\)", sentence)
    return [w.strip() for w in found.group(1).split(",")] if found else []


def assert_names(kind: Kind, sentence: str) -> None:
    assert re.search(kind.names, sentence, re.I), sentence
    for bad in kind.forbidden:
        assert not re.search(bad, sentence), sentence
    if kind.member is not None:
        assert all(kind.member(w) for w in examples(sentence)), sentence
    quoted = {w.lower() for w in re.findall(r"'([^']+)'", sentence)}
    assert not quoted & kind.pieces, (sentence, quoted & kind.pieces)  # no word pieces listed
    assert len(sentence.split()) <= 40, sentence


@pytest.fixture(scope="module")
def investigations(planted, tmp_path_factory):
    """Every neuron investigated as ``investigate_cli`` does, two runs at a time with one thread
    each (2 cores): kind -> (report.md, hypotheses) or the failure."""
    folder, _ = planted
    runs = tmp_path_factory.mktemp("runs")

    def run(kind: str):
        try:
            return investigate_cli(folder, NEURONS[kind], runs, kind)
        except (AssertionError, subprocess.TimeoutExpired) as err:
            return err

    before = os.environ.get("NEUROSLEUTH_THREADS")
    os.environ["NEUROSLEUTH_THREADS"] = "1"
    try:
        with ThreadPoolExecutor(2) as pool:
            done = dict(zip(NEURONS, pool.map(run, NEURONS), strict=True))
    finally:
        if before is None:
            os.environ.pop("NEUROSLEUTH_THREADS")
        else:
            os.environ["NEUROSLEUTH_THREADS"] = before
    return done


# What the deep dive's revisions settle (issue 26): body parts are named and carry no context
# clause (the revision names a list 'body parts' by its unseen members, or drops the context 'the'
# that deletion shows they do not need); countries are named when the unseen members replace the
# whole name the peak ends ('New Zealand', not 'Zealand': 61% of the seen triggers, against 27%
# for 'New Sweden'); relatives are named as one class; regular past tenses are tested
# with regular unseen forms; French is read as the language; markup tags stay a class (measured:
# 6 of 7 pass). Closing brackets: the first round's revision names them ("closing brackets",
# 6 distinct members firing alone), but the closing round scores the planner's token list
# higher on the held-out windows (margin 0.435 against 0.398): the judge reads a pattern's
# weak members (')' at a quarter of ')]') as predicting quiet. Judging every claim as "fires"
# names the brackets but turns the planted animal neuron of test_planted_smollm2 into "birds"
# (WordNet's animal senses of corpus words the neuron does not fire on), so it is not in.
INVESTIGATIONS_FAIL = {
    "bracket": "the closing round's planner token list outscores the revised class reading",
    # measured 2026-12-07, since candidates are scored on validation windows no explainer read:
    # the explainer's "ancestors (dad, father, mom), mostly after '.', 'My'" wins the first round
    # (margin 0.116 against the read-off's 0.105, intervals overlapping) and the revision keeps
    # 'My' because the model bears it out: the same new sentences fire at 19.8-24.8 with 'My'
    # and 8.2-8.6 without it (the trigger keeps 33-44%, under FIRES; deleted from the own
    # contexts, 26%). The members fire anywhere (the planting's test allows a 3x spread).
    "kin": "the report says 'mostly after 'My'': in new sentences 'My' triples the activation",
}


@pytest.mark.parametrize("kind", [
    pytest.param(k, marks=pytest.mark.xfail(reason=INVESTIGATIONS_FAIL[k], strict=False))
    if k in INVESTIGATIONS_FAIL else k for k in NEURONS])
def test_investigation_names_the_kind(planted, investigations, kind):
    _, lm = planted
    result = investigations[kind]
    if isinstance(result, Exception):
        raise result
    md, hyps = result
    hyp = hypothesis_of(md)
    assert_names(kinds(lm.tokenizer)[kind], hyp)
    assert "## Explanation pattern" in md and "## Revisions" in md
    revisions = md.split("## Revisions")[1].split("\n## ")[0]
    if kind == "body":  # its unseen members fire: the class is tested, and a revision kept
        # without the context the records alone read ("mostly after 'the', 'of'")
        assert re.search(r"class 'body parts' \| [^|]+ \| unseen members .* \| holds", md), md
        assert "| kept |" in revisions and "mostly after" not in hyp, (hyp, revisions)
    if kind == "bracket":  # a list corrected by experiment: distinct members firing name a class
        assert re.search(r"\| fails \| name the class 'closing brackets' \|", revisions), revisions
        kept = r"\| Fires on closing brackets [^|]+\| [^|]+\| kept \|"
        assert re.search(kept, revisions), revisions


@pytest.fixture(scope="module")
def records_explained(planted, tmp_path_factory):
    """``neurosleuth explain --records`` on every neuron's records from one scan (cached when
    the investigations ran first): the 20 top windows and the scan's random sample."""
    _, lm = planted
    neurons = list(NEURONS.values())
    top = exemplars(lm, neurons, k=20, max_tokens=SCAN_TOKENS)
    windows, scans, _, _ = layer_scans(lm, sorted({n.layer for n in neurons}),
                                       max_tokens=SCAN_TOKENS)

    def tokens(i: int) -> list[str]:
        return lm.token_strs([int(x) for x in windows.ids[i]])

    records = []
    for n in neurons:
        scan = scans[n.layer]
        rand = [{"tokens": tokens(int(w)), "acts": scan.rand_acts[j, n.index]}
                for j, w in enumerate(scan.rand_win)]
        records.append(from_windows(str(n), [{"tokens": e.window.tokens, "acts": e.acts}
                                             for e in top[n].top], rand))
    folder = tmp_path_factory.mktemp("records")
    path = write(folder / "planted.jsonl", records, "jsonl")
    cmd = [sys.executable, "-m", "neurosleuth.cli", "explain", "--records", str(path),
           "--json", str(folder / "explained.json")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    return {o["neuron"]: o for o in json.loads((folder / "explained.json").read_text())}


RECORDS_FAIL = {
    "kin": "8 of 20 top windows hold a relative at a 16k-token scan: the learning half sees "
           "dad, father, parents and names 'parents'",
    "french": "French is 2.5% of the default corpus: 6 French windows in a 16k-token scan, "
              "fewer than two thirds of the top windows",
}


@pytest.mark.parametrize("kind", [
    pytest.param(k, marks=pytest.mark.xfail(reason=RECORDS_FAIL[k], strict=False))
    if k in RECORDS_FAIL else k for k in NEURONS])
def test_records_explanation_names_the_kind(planted, records_explained, kind):
    _, lm = planted
    found = records_explained[str(NEURONS[kind])]
    assert_names(kinds(lm.tokenizer)[kind], found["explanation"])
