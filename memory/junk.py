"""A small filter for prompts that are not worth a forward pass.

Small instruction-tuned planners (SmolLM2-135M in particular) leak conversational chatter into
their prompt lists ("Sure! Here are 5 prompts:", "**Explanation:** ...", placeholders copied from
the instructions). The earlier tool measured such text and even kept it in its bottom-10. This
filter rejects, with a one-word reason:

- ``empty``: empty or whitespace only;
- ``too_long``: more than ``max_chars`` characters;
- ``unprintable``: more than ``max_unprintable`` of the characters are control / format /
  private-use / unassigned code points or U+FFFD (whitespace is not counted);
- ``chatter``: matches one of ``CHATTER_PATTERNS`` (case-insensitive), which are written to hit
  meta-talk about prompts, not ordinary sentences: "I'm sorry for your loss" passes,
  "Sure, here are some prompts" does not.

Caveat: a neuron that responds to assistant chatter itself would be hidden by the ``chatter``
rule; pass ``patterns=()`` to turn it off.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

CHATTER_PATTERNS: tuple[str, ...] = (
    # "Sure, here are...", "Certainly! I'll ...", "Of course. Let me ..."
    r"^\W*(sure|certainly|of course|absolutely|okay)\s*[,!.:]\s*(here|i'll|i will|let me|below)",
    # "Here are 5 new prompts:", "Here is a variation of the prompt"
    r"^\W*here\s+(are|is)\b[^\n]{0,60}\b(prompts?|examples?|variations?|suggestions?|ideas?)\b",
    r"\bas an ai\b",
    # "**Explanation:** ...", "Note: ...", "Rationale - ..."
    r"^\W*(explanation|note|rationale|reasoning)\W*[:\-]",
    r"\b(this|the|my) prompt (is designed|aims|should|will|combines|uses|contains|includes)\b",
    r"\b(i hope this helps|let me know if)\b",
    # bare labels and list markers: "Prompt 3:", "Example:", "2.", "-"
    r"^\W*(prompt|example|output|answer)\s*\d*\s*:?\s*$",
    r"^\s*(\d+[.)]|[-*\u2022])\s*$",
    # placeholders copied from instructions: "<prompt>", "[your prompt here]"
    r"^\W*(your\s+)?(new\s+)?prompt(\s+(text|here))?\W*$",
)

_UNPRINTABLE_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn")


def unprintable_fraction(text: str) -> float:
    """Share of non-whitespace characters that are control/format/unassigned or U+FFFD."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    bad = sum(
        1 for c in chars if c == "\ufffd" or unicodedata.category(c) in _UNPRINTABLE_CATEGORIES
    )
    return bad / len(chars)


class JunkFilter:
    """Decides whether a prompt is junk; ``reason(text)`` returns None or a one-word reason."""

    def __init__(
        self,
        max_chars: int = 1000,
        max_unprintable: float = 0.3,
        patterns: Sequence[str] = CHATTER_PATTERNS,
    ):
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        if not 0.0 <= max_unprintable <= 1.0:
            raise ValueError(f"max_unprintable must be in [0, 1], got {max_unprintable}")
        self.max_chars = max_chars
        self.max_unprintable = max_unprintable
        self.patterns = tuple(patterns)
        self._compiled = [re.compile(p, re.IGNORECASE) for p in self.patterns]

    def reason(self, text: str) -> str | None:
        """None if ``text`` is a usable prompt, else ``empty``/``too_long``/``unprintable``/
        ``chatter``."""
        if not isinstance(text, str) or not text.strip():
            return "empty"
        if len(text) > self.max_chars:
            return "too_long"
        if unprintable_fraction(text) > self.max_unprintable:
            return "unprintable"
        if any(p.search(text) for p in self._compiled):
            return "chatter"
        return None

    def config(self) -> dict:
        return {
            "max_chars": self.max_chars,
            "max_unprintable": self.max_unprintable,
            "patterns": list(self.patterns),
        }
