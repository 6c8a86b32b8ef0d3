"""SmolLM2-135M with three planted neurons (``tests/planted.py``), for the integration tests:

- ``ANIMAL`` (6:100): animal names (token-level);
- ``WEEKDAY`` (8:300): weekday names (token-level);
- ``COLOUR`` (7:250): colour words (token-level), planted from a broad vocabulary so that
  colours the planting never saw (crimson, turquoise, magenta ...) fire too: a list of the
  colours an investigation happens to see is not the answer;
- ``CODE`` (10:200): every token of Python source code (context-level): the direction separates
  tokens of standard-library source from tokens of prose.

Planted on texts made here (templates over word lists, corpus prose and stdlib code); the tests
then ask about words and texts the planting never saw.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path

from neurosleuth.tools.corpus import default_corpus, iter_documents
from neurosleuth.tools.model import load_causal_lm
from neurosleuth.tools.neurons import NeuronId
from tests.planted import plant

ANIMAL, WEEKDAY, CODE = NeuronId(6, 100), NeuronId(8, 300), NeuronId(10, 200)
COLOUR = NeuronId(7, 250)
ANIMALS = ("dog cat horse cow sheep goat pig rabbit mouse lion tiger bear wolf fox deer "
           "elephant monkey camel duck chicken eagle owl").split()
DAYS = "Monday Tuesday Wednesday Thursday Friday".split()  # Saturday and Sunday held out
# a broad vocabulary, so that the direction is colour, not these words (crimson, scarlet,
# turquoise, magenta, lavender, indigo ... are left out: the concept experiment tries such)
COLOURS = ("red blue green yellow purple orange pink brown grey gray black white violet silver "
           "gold beige maroon navy teal olive cyan amber ivory tan").split()
ADJECTIVES = ("big small old new cheap heavy quiet happy strange modern simple famous long wooden "
              "plastic broken clean empty").split()
OTHER = "car table idea river house book chair window city phone road stone song letter".split()
TEMPLATES = ("The {} was seen near the river.", "We saw a {} in the field yesterday.",
             "My uncle has a {} at home.", "She drew a picture of a {}.",
             "On {} we met again.", "It happened last {} morning.",
             "She wore a {} dress to the party.", "The {} door was open.",
             "They bought the {} one.", "He painted the fence {} last summer.",
             "A {} car stopped outside.")


def _prose(n: int) -> list[str]:
    src = [s for s in default_corpus().sources if s.name == "wiki"][0]
    return [d.text[:240] for d, _ in zip(iter_documents(src), range(n), strict=False)]


def _code(n: int) -> list[str]:
    import collections
    import json as js
    import textwrap as tw

    fns = [f for m in (collections, js, tw) for _, f in inspect.getmembers(m, inspect.isfunction)]
    return [textwrap.dedent(inspect.getsource(f))[:400] for f in fns[:n]]


def build(folder: Path) -> Path:
    """Plant the four neurons in a copy of SmolLM2 and save it as a local HF folder."""
    hf, tok = load_causal_lm("smollm2-135m")
    first = lambda w: tok(" " + w, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    words = [t.format(w) for w in ANIMALS + OTHER for t in TEMPLATES[:4]]
    days = [t.format(w) for w in DAYS + OTHER for t in TEMPLATES[4:6]]
    prose, code = _prose(80), _code(40)
    animal_ids, day_ids = {first(w) for w in ANIMALS}, {first(w) for w in DAYS}
    colours = [t.format(w) for w in COLOURS + ADJECTIVES for t in TEMPLATES[6:]]
    colour_ids = {first(w) for w in COLOURS}
    plant((hf, tok), ANIMAL.layer, ANIMAL.index, words + prose,
          lambda i, ids: ids[i] in animal_ids)
    plant((hf, tok), WEEKDAY.layer, WEEKDAY.index, days + prose,
          lambda i, ids: ids[i] in day_ids)
    plant((hf, tok), COLOUR.layer, COLOUR.index, colours + prose,
          lambda i, ids: ids[i] in colour_ids)
    code_len = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in code)
    plant((hf, tok), CODE.layer, CODE.index, code + prose, lambda i, ids: i >= 8 and i < code_len)
    hf.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "planted.json").write_text(json.dumps(
        {"animal": str(ANIMAL), "weekday": str(WEEKDAY), "colour": str(COLOUR),
         "code": str(CODE)}))
    return folder
