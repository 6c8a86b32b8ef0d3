"""Diverse random prompts for restarts (``random_prompts``), from built-in word lists.

Seven generators, picked uniformly per prompt: word salad across domains, template sentences,
code snippets (Python, JavaScript, SQL, HTML, shell), numbers (dates, prices, decimals, hex,
sequences), punctuation runs, identifier mash-ups with leetspeak and mixed case (the style that
won in the earlier tool's example run), and short phrases in other languages. Output is
deterministic given the ``numpy.random.Generator``'s state and distinct within one call.
Nothing here is meant to be meaningful: the point is to land the search somewhere new.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

DOMAINS: dict[str, tuple[str, ...]] = {
    "science": ("electron", "photosynthesis", "enzyme", "galaxy", "neutron", "molecule", "genome",
                "entropy", "catalyst", "fossil", "quasar", "isotope", "mitochondria", "plasma"),
    "food": ("cinnamon", "sourdough", "espresso", "avocado", "risotto", "pepper", "butter",
             "noodles", "mango", "garlic", "chocolate", "vinegar", "omelette", "saffron"),
    "sport": ("goalkeeper", "marathon", "referee", "dribble", "touchdown", "racket", "sprint",
              "penalty", "stadium", "wrestling", "slalom", "innings", "umpire", "relay"),
    "finance": ("dividend", "mortgage", "inflation", "equity", "invoice", "ledger", "bond",
                "audit", "tariff", "liquidity", "pension", "bankruptcy", "stock", "revenue"),
    "law": ("plaintiff", "verdict", "statute", "subpoena", "jury", "appeal", "contract",
            "defendant", "testimony", "clause", "warrant", "tribunal", "custody", "bail"),
    "nature": ("river", "thunder", "glacier", "meadow", "owl", "canyon", "monsoon", "fern",
               "volcano", "coral", "tundra", "maple", "wolf", "lagoon"),
    "tech": ("compiler", "router", "firmware", "pixel", "database", "kernel", "bandwidth",
             "encryption", "server", "cache", "algorithm", "browser", "keyboard", "token"),
    "emotion": ("joy", "grief", "anxiety", "nostalgia", "anger", "relief", "envy", "hope",
                "shame", "awe", "boredom", "pride", "fear", "tenderness"),
    "place": ("Tokyo", "Nairobi", "Lisbon", "Montreal", "Kathmandu", "Oslo", "Lima", "Cairo",
              "Melbourne", "Hanoi", "Reykjavik", "Chicago", "Marrakesh", "Warsaw"),
    "people": ("Alice", "Mohammed", "Priya", "Hiroshi", "Olga", "Carlos", "Fatima", "Liam",
               "Chen", "Amara", "Dmitri", "Sofia", "Kwame", "Ingrid"),
}  # fmt: skip
ADJECTIVES = ("quiet", "broken", "golden", "ancient", "rapid", "invisible", "bitter", "hollow",
              "electric", "gentle", "furious", "tiny", "crimson", "frozen", "sudden",
              "lazy")  # fmt: skip
VERBS = ("discovered", "painted", "ignored", "calculated", "borrowed", "whispered to", "repaired",
         "forgot", "measured", "chased", "sold", "translated", "burned", "celebrated")  # fmt: skip
PREPOSITIONS = ("near", "inside", "beneath", "after", "without", "behind", "during", "across")
FOREIGN = ("la maison bleue", "der schnelle Zug", "el perro duerme", "il pleut encore",
           "ich habe keine Zeit", "buenos días, amigo", "gracias por todo", "tutto bene",
           "до свидания", "こんにちは世界", "谢谢你的帮助", "obrigado pela ajuda")  # fmt: skip
PUNCT = tuple("!?.,;:-_()[]{}<>/\\|@#$%^&*+=~`'\"")
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
CODE_TEMPLATES = (
    "def {f}({a}):\n    return {a} * {n}",
    "for {a} in range({n}):\n    print({a})",
    "if ({a} > {n}) {{ return {f}({a}); }}",
    "const {f} = ({a}) => {a}.map(x => x + {n});",
    "SELECT {a} FROM {f} WHERE id = {n};",
    "<div class=\"{f}\">{w}</div>",
    "import {f}\n{a} = {f}.load('{w}.json')",
    "$ grep -r \"{w}\" ./{f} | head -n {n}",
    "{{\"{a}\": {n}, \"{f}\": \"{w}\"}}",
    "#include <stdio.h>\nint {f}(int {a}) {{ return {a} % {n}; }}",
)  # fmt: skip


_T = TypeVar("_T")


def _pick(rng: np.random.Generator, items: tuple[_T, ...]) -> _T:
    return items[int(rng.integers(len(items)))]


def _word(rng: np.random.Generator) -> str:
    return _pick(rng, DOMAINS[_pick(rng, tuple(DOMAINS))])


def _salad(rng: np.random.Generator) -> str:
    words = [_word(rng) for _ in range(int(rng.integers(3, 9)))]
    return " ".join(words) + _pick(rng, ("", ".", "!", "?", "..."))


def _sentence(rng: np.random.Generator) -> str:
    return (f"The {_pick(rng, ADJECTIVES)} {_word(rng)} {_pick(rng, VERBS)} the {_word(rng)} "
            f"{_pick(rng, PREPOSITIONS)} {_pick(rng, DOMAINS['place'])}.")  # fmt: skip


def _code(rng: np.random.Generator) -> str:
    ident = lambda: _word(rng).lower()  # noqa: E731
    return _pick(rng, CODE_TEMPLATES).format(
        f=ident(), a=ident()[:3], n=int(rng.integers(2, 1000)), w=ident()
    )


def _numbers(rng: np.random.Generator) -> str:
    kind = int(rng.integers(6))
    if kind == 0:
        day, month, year = rng.integers(1, 29), rng.integers(1, 13), rng.integers(1900, 2100)
        return f"{day:02d}/{month:02d}/{year}"
    if kind == 1:
        return f"${rng.integers(1, 100000):,}.{int(rng.integers(100)):02d}"
    if kind == 2:
        return " ".join(f"{x:.{int(rng.integers(1, 5))}f}" for x in rng.normal(0, 100, 4))
    if kind == 3:
        return "0x" + "".join(_pick(rng, tuple("0123456789abcdef")) for _ in range(8))
    if kind == 4:
        start, step = int(rng.integers(-50, 50)), int(rng.integers(1, 13))
        return ", ".join(str(start + step * j) for j in range(int(rng.integers(4, 9))))
    return f"{rng.integers(1, 100)}% of {rng.integers(2, 10**6):,} ({rng.uniform(0, 1):.2e})"


def _punctuation(rng: np.random.Generator) -> str:
    parts = ["".join(_pick(rng, PUNCT) for _ in range(int(rng.integers(1, 5))))
             for _ in range(int(rng.integers(3, 8)))]  # fmt: skip
    if rng.random() < 0.5:
        parts.insert(int(rng.integers(len(parts))), _word(rng))
    return " ".join(parts)


def _identifier(rng: np.random.Generator) -> str:
    out = []
    for _ in range(int(rng.integers(2, 5))):
        w = _word(rng).lower()
        w = "".join(LEET.get(c, c) if rng.random() < 0.4 else c for c in w)
        w = "".join(c.upper() if rng.random() < 0.35 else c for c in w)
        out.append(w)
    return _pick(rng, ("_", "", "-", ".")).join(out)


def _foreign(rng: np.random.Generator) -> str:
    return f"{_pick(rng, FOREIGN)} {_word(rng)}"


GENERATORS: tuple[Callable[[np.random.Generator], str], ...] = (
    _salad, _sentence, _code, _numbers, _punctuation, _identifier, _foreign,
)  # fmt: skip


def random_prompts(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct random restart prompts, deterministic given ``rng``'s state."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out: dict[str, None] = {}
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 100:  # the space is huge; this only guards against a bug
            raise RuntimeError(f"could not draw {n} distinct random prompts")
        out.setdefault(_pick(rng, GENERATORS)(rng), None)
    return list(out)
