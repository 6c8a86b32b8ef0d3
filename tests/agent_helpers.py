"""Shared pieces of the agent tests: a tiny model saved as a local HF folder (so the CLI can load
it in a subprocess), a small text corpus, a scripted planner (tests only), and the agent's and the
batch's entry points with the report writers the command line gives them."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from neurosleuth.agents import session
from neurosleuth.agents.actions import ProposePrompts, StateHypothesis, TestPrompts
from neurosleuth.agents.planner import CallInfo
from neurosleuth.batch import queue
from neurosleuth.report.build import write_report
from neurosleuth.report.site import write_site
from tests.fixtures import WORDS, tiny_config, tiny_tokenizer

# As the command line runs them (cli/investigate.py, cli/batch.py): every run ends with its
# report.md and report.html, and a batch keeps its index.html.
investigate = partial(session.investigate, reporter=write_report)
resume = partial(session.resume, reporter=write_report)
run_batch = partial(queue.run_batch, writers=queue.Writers(reporter=write_report, site=write_site))

CORPUS = [
    "the cat sat on the mat and the dog ran to the park .",
    "def x ( ) : return y + x",
    "the eiffel tower is in paris , france .",
    "one two three four five , big red king and queen .",
    "hello world , print ( x ) if x else y",
    "she was happy and he was sad , they ran to the park .",
] * 6


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """The same weights as ``tiny_random_lm(seed)``, as a folder ``--model`` can load."""
    torch.manual_seed(seed)
    LlamaForCausalLM(tiny_config()).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def write_corpus(path: Path) -> Path:
    path.write_text("\n\n".join(CORPUS))
    return path


class ScriptedPlanner:
    """Returns queued actions in order (then repeats the last); records what it was shown."""

    name = "scripted"

    def __init__(self, proposals: list[list[str]], choices: list | None = None):
        self.proposals = proposals
        self.choices = list(choices or [])
        self.views: list = []
        self.hyp_views: list[str] = []

    def propose(self, view, n, temperature):
        self.views.append(view)
        i = min(len(self.views) - 1, len(self.proposals) - 1)
        return ProposePrompts(prompts=self.proposals[i][:n]), CallInfo(source="scripted", calls=1)

    def choose(self, view, suggestion, n, temperature):
        """Scripted ``choices`` first (actions, in order); then the policy's suggestion, its
        prompt search written by ``propose``."""
        if self.choices:
            return self.choices.pop(0), CallInfo(source="scripted", calls=1)
        if isinstance(suggestion, ProposePrompts) and not suggestion.prompts:
            written, info = self.propose(view, n, temperature)
            return written.model_copy(update={"reason": suggestion.reason}), info
        return suggestion, CallInfo(source="scripted", calls=1)

    def hypothesize(self, view):
        from neurosleuth.agents.prompts import render_hypothesize

        self.hyp_views.append(render_hypothesize(view))
        return StateHypothesis(text="Fires on 'cat'.", explanation="scripted"), CallInfo("scripted")

    def test_prompts(self, view, claim, n=6):
        return TestPrompts(
            positive=["the cat", "a cat sat"], negative=["the dog", "a king"]
        ), CallInfo("scripted")


def words(i: int, n: int = 4) -> str:
    """A deterministic distinct prompt made of tiny-vocabulary words."""
    vocab = WORDS[3:]
    return " ".join(vocab[(i * 7 + j * 3) % len(vocab)] for j in range(n))
