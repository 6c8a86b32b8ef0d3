"""Planted neurons in SmolLM2-135M (``tests/planted_smollm2.py``), end to end: the investigation
names what each one does, as a researcher would read it in ``report.md``'s Hypothesis section."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from neurosleuth.tools.exemplars import exemplars, random_records
from neurosleuth.tools.explain import ExplainConfig, explain
from neurosleuth.tools.model import load_model
from tests.planted_smollm2 import ANIMAL, CODE, COLOUR, WEEKDAY, build

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = build(tmp_path_factory.mktemp("planted") / "smollm2-planted")
    return folder, load_model(str(folder), device="cpu")


def hypothesis_of(report_md: str) -> str:
    """The hypothesis as a reader finds it: the quote under '## Hypothesis'."""
    body = report_md.split("## Hypothesis\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"^> \*\*(.+)\*\*$", body, re.M).group(1)


def investigate_cli(folder, neuron, runs, run_id: str, dtype: str = "float32",
                    sweep_words: int = 4096):
    """``neurosleuth investigate`` as a researcher runs it (heuristic planner, 3 steps, the
    commonest ``sweep_words`` words swept); returns report.md and hypotheses.json."""
    cmd = [sys.executable, "-m", "neurosleuth.cli", "investigate", "--model", str(folder),
           "--neuron", str(neuron), "--planner", "heuristic", "--iterations", "3",
           "--exemplar-tokens", "16384", "--sweep-words", str(sweep_words), "--runs-dir",
           str(runs), "--run-id", run_id, "--dtype", dtype]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stderr[-2000:]
    return ((runs / run_id / "report.md").read_text(),
            json.loads((runs / run_id / "hypotheses.json").read_text()))


def test_investigation_names_the_animal_neuron(planted, tmp_path):
    """Without the vocabulary sweep: this checks the concept-or-list experiment on what the
    corpus scan shows. With the sweep the common animals are seen words and the unseen members
    rarer ones, which this planting reaches less (bfloat16 measured 39% of the seen triggers:
    undecided); the naming with the sweep is checked on the colour neuron and the planted
    kinds. bfloat16 is checked below on the same neuron's explanation and experiment."""
    folder, _ = planted
    md, hyps = investigate_cli(folder, ANIMAL, tmp_path, "animal", sweep_words=0)
    hyp = hypothesis_of(md)
    assert re.search(r"animal|mammal", hyp, re.I), hyp
    assert len(hyp.split()) <= 40
    assert "## Candidates" in md and "## Explanation pattern" in md
    # the concept-or-list experiment ran: unseen animals fire in the neuron's own contexts
    assert hyps[-1]["experiment"]["verdict"] == "concept", hyps[-1]["experiment"]["summary"]
    assert "Experiment (unseen members)" in md and "Verdict: concept" in md


def test_bfloat16_reads_the_same_concept_from_the_animal_neuron(planted):
    """In bfloat16 the explainer names the same concept from the same planted neuron, and the
    concept-or-list experiment gives the same verdict. (A whole investigation in bfloat16 runs in
    ``test_half_precision.py``: bfloat16 is emulated on a CPU, 6x slower than float32 here, so
    this reads the round's two steps rather than a second three-step run.)"""
    from neurosleuth.agents.candidates import concept_experiment

    folder, _ = planted
    lm = load_model(str(folder), device="cpu", dtype="bfloat16")
    assert lm.dtype == torch.bfloat16
    ex = _explain(lm, ANIMAL, tokens=8192, config=ExplainConfig(sweep=0))
    assert re.search(r"animal|mammal", ex.sentence, re.I), ex.sentence
    found = concept_experiment(lm, ANIMAL, ex)
    assert found is not None and found["verdict"] == "concept", found


def test_investigation_names_the_colour_neuron(planted, tmp_path):
    """Colours the planting never saw fire in the neuron's own contexts: the concept wins over
    the list of the colours seen, and the report says which experiments decided (the round's
    concept-or-list experiment, the revision's class clause). The read-off may keep a facet of
    the colours' own tokens: the clause test drops it, but the held-out score puts that revision
    far lower (measured: margin 0.327 with it, 0.033 without), so the main reading is checked."""
    folder, _ = planted
    md, hyps = investigate_cli(folder, COLOUR, tmp_path, "colour")
    hyp = hypothesis_of(md)
    main = hyp.split(";")[0]
    assert re.search(r"colou?r", main, re.I) and "tokens" not in main, hyp
    assert re.search(r"class 'colou?rs' \| [^|]+ \| unseen members .* \| holds", md)
    assert hyps[-1]["experiment"]["verdict"] == "concept", hyps[-1]["experiment"]["summary"]
    assert "Experiment (unseen members)" in md and "Verdict: concept" in md


def _explain(lm, neuron, texts=None, tokens: int = 16384, config: ExplainConfig | None = None):
    """The deep dive's explainer on the neuron's scan of ``tokens`` corpus tokens; ``config``:
    the explainer's settings (by default a sweep of the commonest 4,096 words, as
    ``investigate_cli``)."""
    top = exemplars(lm, [neuron], k=20, max_tokens=tokens)[neuron].top
    windows = [(list(e.window.tokens), np.asarray(e.acts, dtype=float)) for e in top[:12]]
    texts = texts or ["".join(e.window.tokens[: e.pos + 1]) for e in top[:12]]
    others = random_records(lm, neuron, k=20, max_tokens=tokens)  # as the deep dive reads them
    return explain(lm, neuron, texts, windows, others=others,
                   config=config or ExplainConfig(sweep=4096))


def test_explainer_names_the_weekday_neuron(planted):
    _, lm = planted
    texts = ["We met again on Monday", "It happened last Friday", "See you on Tuesday",
             "The shop is closed on Thursday", "Every Wednesday"]
    ex = _explain(lm, WEEKDAY, texts)
    assert ex.pattern.kind == "token" and re.search(r"weekdays|days of the week", ex.sentence), \
        ex.sentence


def test_explainer_finds_the_context_level_code_neuron(planted):
    _, lm = planted
    ex = _explain(lm, CODE)
    assert ex.pattern.kind == "context" and "source code" in ex.sentence, ex.sentence
    on = ex.pattern.simulate(list(lm.token_strs(lm.encode("def f(x):\n    return x + 1\n"))))
    off = ex.pattern.simulate(list(lm.token_strs(lm.encode("The weather was nice today."))))
    assert on.mean() > 0.3 and off.max() == 0
