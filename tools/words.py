"""Words rebuilt from token pieces: the unit every explainer reasons about.

A tokenizer splits "fingertips" into 'fing', 'ert', 'ips' and "1999" into '1', '9', '9', '9'; a
researcher reads one word each. ``words_of`` rebuilds the words of a token sequence (the tokens as
decoded one by one, or a record's token strings: both carry their leading spaces) and says, for
every token, which word it belongs to and where in it (``WHOLE``, ``FIRST``, ``MIDDLE``,
``LAST``).

Method: the tokens are joined into the text, each keeping its character span, and the text is cut
into words by one regular expression, in order of precedence:

- markup: an HTML/XML tag (``<div class="a">``, ``</p>``, ``<br/>``) or a character entity
  (``&amp;``);
- a number with its separators and suffix (``3.14``, ``1,000``, ``12:30``, ``3rd``, ``50%``);
- a word: letters, digits and underscores of any script, with inner apostrophes or hyphens
  (``don't``, ``well-known``, ``get_name``);
- a run of indentation at the start of a line;
- any other run of non-space characters (``)``, ``})``, ``==``, ``...``), each a word.

A token belongs to the word holding its first non-space character (a token of spaces only, such
as a line break, is its own word: the empty word). A token that spans two words (``'."'``) belongs
to the first. Offsets come from the token strings themselves, so this works with any tokenizer
whose pieces concatenate to the text (byte-level BPE, SentencePiece after decoding, records).

Tokens with no spacing at all (a word-level tokenizer, records written without spaces: more
than two tokens and no whitespace anywhere) are read one word a token.

Caveat: a word split across a tokenizer's byte fallback (one character in several tokens) is
rebuilt only when the decoded pieces concatenate to the character.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

WHOLE, FIRST, MIDDLE, LAST = "whole", "first", "middle", "last"

WORD_RE = re.compile(
    r"</?[A-Za-z][\w:.-]*(?:\s+[^<>\n]*?)?/?>"  # markup tag
    r"|&#?\w+;"  # character entity
    r"|\d+(?:[.,:]\d+)*(?:st|nd|rd|th|%)?(?![^\W\d_])"  # number
    r"|\w+(?:['’-]\w+)*"  # word
    r"|(?<=\n)[ \t]+|^[ \t]+"  # indentation
    r"|[^\w\s]+"  # symbols
)


@dataclass(frozen=True)
class Word:
    text: str  # the word as written, without surrounding space
    start: int  # first token
    end: int  # one past the last token


@dataclass(frozen=True)
class Words:
    """The words of a token sequence: ``words``, and per token its word's index and position."""

    words: tuple[Word, ...]
    index: tuple[int, ...]  # per token: its word (-1 for a token of spaces only)
    position: tuple[str, ...]  # per token: WHOLE, FIRST, MIDDLE or LAST

    def word_of(self, i: int) -> str:
        """The word token ``i`` belongs to ('' for a token of spaces only)."""
        j = self.index[i]
        return self.words[j].text if j >= 0 else ""

    def previous(self, i: int, n: int = 3) -> list[str]:
        """The ``n`` words before the word of token ``i`` (not pieces of the same word)."""
        j = self.index[i]
        if j < 0:  # a space token: the words that end before it
            j = next((self.index[k] + 1 for k in range(i - 1, -1, -1) if self.index[k] >= 0), 0)
        return [w.text for w in self.words[max(0, j - n): j]]


def _spans(tokens: Sequence[str]) -> list[tuple[int, int]]:
    spans, at = [], 0
    for t in tokens:
        spans.append((at, at + len(t)))
        at += len(t)
    return spans


def _cut_at(cuts: list[tuple[int, int, str]], starts: list[int], p: int) -> int:
    """The cut holding character ``p``, or -1."""
    j = bisect.bisect_right(starts, p) - 1
    return j if j >= 0 and cuts[j][0] <= p < cuts[j][1] else -1


def _each(tokens: tuple[str, ...]) -> Words:
    """Every token its own word (no spacing to rebuild words from)."""
    words = tuple(Word(t.strip(), i, i + 1) for i, t in enumerate(tokens))
    return Words(words, tuple(range(len(tokens))), (WHOLE,) * len(tokens))


@functools.lru_cache(maxsize=65536)
def _words(tokens: tuple[str, ...]) -> Words:
    if len(tokens) > 2 and not any(ch.isspace() for t in tokens for ch in t):
        return _each(tokens)  # a word-level tokenizer, or records written without spaces
    text = "".join(tokens)
    cuts = [(m.start(), m.end(), m.group()) for m in WORD_RE.finditer(text)]
    starts = [c[0] for c in cuts]
    index: list[int] = []
    for a, b in _spans(tokens):
        piece = text[a:b]
        lead = a + len(piece) - len(piece.lstrip())
        # the word of the first non-space character; a token of spaces only belongs to an
        # indentation word that holds it, else to none
        index.append(_cut_at(cuts, starts, lead if lead < b else a) if b > a else -1)
    used = sorted({j for j in index if j >= 0})
    remap = {j: n for n, j in enumerate(used)}
    index = [remap.get(j, -1) for j in index]
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, x in enumerate(index):
        if x >= 0:
            first.setdefault(x, i)
            last[x] = i
    words = [Word(cuts[j][2].strip(" \t") or cuts[j][2], first[n], last[n] + 1)
             for n, j in enumerate(used)]
    position = []
    for i, j in enumerate(index):
        w = words[j] if j >= 0 else None
        position.append(WHOLE if w is None or w.end - w.start == 1 else FIRST if i == w.start
                        else LAST if i == w.end - 1 else MIDDLE)
    return Words(tuple(words), tuple(index), tuple(position))


def words_of(tokens: Sequence[str]) -> Words:
    """The words of ``tokens`` (module docstring); memoised on the token tuple."""
    return _words(tuple(tokens))


def at_end(position: str) -> bool:
    """Is a token at this position the last piece of its word?"""
    return position in (WHOLE, LAST)
