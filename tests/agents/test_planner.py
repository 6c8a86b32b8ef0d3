"""Planner backends: prompt rendering is pinned, garbage from an LLM is repaired or counted and
falls back, Ollama detection gives a clear reason. The chat model here is a scripted stand-in."""

import pytest
from langchain_core.messages import AIMessage

from neurosleuth.agents import prompts
from neurosleuth.agents.actions import ProposePrompts
from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.planner import (
    HeuristicBackend,
    LLMPlanner,
    PlannerUnavailable,
    make_planner,
    ollama_status,
)
from neurosleuth.agents.prompts import PlannerView

VIEW = PlannerView(
    neuron="12:345", model="smollm2-135m",
    top=[(2.5, " bracket", "print(x)"), (1.0, ",", "a, b")], bottom=[(-0.5, "the", "the end")],
    exemplars=[(3.0, ")", "f(x)")], hypothesis="closing brackets", steering=["code only"],
    feedback="2 exact repeats", iteration=3,
)


def test_rendered_propose_prompt_is_pinned():
    text = prompts.render_propose(VIEW, 4)
    assert text.splitlines()[0] == (
        "Neuron 12:345 of smollm2-135m. Its activation on a text is its highest value over the "
        "text's tokens.")
    assert "2.50  ' bracket'  'print(x)'" in text
    assert "-0.50  'the'  'the end'" in text
    assert "3.00  ')'  'f(x)'" in text
    assert "Current hypothesis: closing brackets" in text
    assert "Guidance from the researcher:\n- code only" in text
    assert "Feedback on your last texts: 2 exact repeats" in text
    assert text.rstrip().endswith('"rationale": "..."}')
    assert "Write 4 new short texts" in text


def test_rendered_test_prompt_is_pinned():
    """The planner's request for test prompts: the score's template (score/requests.py) with the
    researcher's guidance."""
    assert prompts.render_test(VIEW, "closing brackets", 3) == (
        'Neuron 12:345 of smollm2-135m. Hypothesis about it: "closing brackets"\n\n'
        "Guidance from the researcher:\n- code only\n\n"
        "Write 3 short texts on which the neuron should fire if the hypothesis is right "
        "(positive), and 3 similar texts on which it should not fire (negative). Answer with "
        'JSON: {"kind": "test_prompts", "positive": ["..."], "negative": ["..."]}')


class ScriptedChat:
    """Replies with the given strings in turn, the way a structured-output runnable does."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.temperature = 0.7

    def model_copy(self, update=None):
        return self

    def with_structured_output(self, schema, include_raw=False):
        chat = self

        class Runnable:
            def invoke(self, messages):
                reply = chat.replies.pop(0)
                if isinstance(reply, Exception):
                    raise reply
                raw = AIMessage(content=reply, usage_metadata={
                    "input_tokens": 10, "output_tokens": 5, "total_tokens": 15})
                try:
                    parsed = schema.model_validate_json(reply)
                except ValueError as err:
                    return {"raw": raw, "parsed": None, "parsing_error": err}
                return {"raw": raw, "parsed": parsed, "parsing_error": None}

        return Runnable()


def test_clean_reply_is_used():
    chat = ScriptedChat(['{"kind": "propose_prompts", "prompts": ["a", "b"], "rationale": "r"}'])
    action, info = LLMPlanner(chat, "scripted", "sys").propose(VIEW, 4, 0.7)
    assert action.prompts == ["a", "b"] and info.source == "scripted"
    assert (info.calls, info.failures, info.repairs, info.tokens_out) == (1, 0, 0, 5)


def test_malformed_reply_is_repaired_and_counted():
    chat = ScriptedChat(["Sure! {prompts: ['x(1)', 'y(2)',], rationale: 'brackets'"])
    action, info = LLMPlanner(chat, "scripted", "sys").propose(VIEW, 4, 0.7)
    assert action.prompts == ["x(1)", "y(2)"]
    assert info.repairs == 1 and info.failures == 0


def test_garbage_then_error_falls_back_without_crashing():
    chat = ScriptedChat(["I cannot help with that.", ConnectionError("server gone"), "{}"])
    action, info = LLMPlanner(chat, "scripted", "sys", retries=2).propose(VIEW, 3, 0.7)
    assert isinstance(action, ProposePrompts) and 1 <= len(action.prompts) <= 3
    assert info.source == "heuristic-fallback"
    assert (info.calls, info.failures) == (2, 2)  # a transport error ends the retries
    assert any("ConnectionError" in e for e in info.errors)


def test_retry_after_garbage_succeeds():
    chat = ScriptedChat(["no json", '{"kind": "hypothesis", "text": "Fires on commas.", '
                         '"explanation": "top texts peak at commas"}'])
    action, info = LLMPlanner(chat, "scripted", "sys").hypothesize(VIEW)
    assert action.text == "Fires on commas." and info.failures == 1 and info.calls == 2


def test_ollama_down_is_a_clear_error_and_auto_falls_back():
    host = "http://127.0.0.1:9"  # nothing listens on the discard port
    assert "not answering" in ollama_status(host, "llama3.1", timeout=0.5)
    with pytest.raises(PlannerUnavailable, match="start `ollama serve` or use --planner embedded"):
        make_planner(RunConfig(planner="ollama", ollama_host=host))
    planner, note = make_planner(RunConfig(planner="auto", ollama_host=host))
    assert planner.name == "embedded:smollm2-135m" and "using the embedded planner" in note


def test_menu_choice_runs_the_chosen_experiment_and_a_search_gets_its_prompts():
    from neurosleuth.agents.actions import RunAblation, RunHypothesis

    chat = ScriptedChat(['{"kind": "choose", "experiment": "ablate", "reason": "is it causal?"}'])
    action, info = LLMPlanner(chat, "scripted", "sys").choose(VIEW, RunHypothesis(), 4, 0.5)
    assert isinstance(action, RunAblation) and action.reason == "is it causal?"
    assert info.source == "scripted"
    chat = ScriptedChat(['{"kind": "choose", "experiment": "propose_prompts", "reason": "more"}',
                         '{"kind": "propose_prompts", "prompts": ["f(x)", "g(y)"]}'])
    action, info = LLMPlanner(chat, "scripted", "sys").choose(VIEW, RunHypothesis(), 4, 0.5)
    assert isinstance(action, ProposePrompts) and action.prompts == ["f(x)", "g(y)"]
    assert action.reason == "more" and info.calls == 2


def test_a_planner_that_does_not_choose_runs_the_policy_and_writes_its_prompts():
    """The embedded model's mode (it picks the first menu entry whatever the situation):
    the policy chooses, the LLM writes the prompts of a search."""
    from neurosleuth.agents.actions import RunPatch, search

    chat = ScriptedChat(['{"kind": "propose_prompts", "prompts": ["f(x)"]}'])
    planner = LLMPlanner(chat, "scripted", "sys", choice="policy")
    action, info = planner.choose(VIEW, RunPatch(reason="no causal evidence"), 4, 0.5)
    assert isinstance(action, RunPatch) and info.calls == 0 and info.source == "heuristic"
    action, info = planner.choose(VIEW, search("the top list grew"), 4, 0.5)
    assert action.prompts == ["f(x)"] and action.reason == "the top list grew"
    assert info.source == "scripted" and info.calls == 1
    assert make_planner(RunConfig(planner="embedded"))[0].choice == "policy"


def test_menu_choice_garbage_falls_back_to_the_policy_and_says_so():
    from neurosleuth.agents.actions import RunHypothesis

    chat = ScriptedChat(["pick ablate", '{"experiment": "dance"}', "{}"])
    suggestion = RunHypothesis(reason="the top list stopped growing")
    action, info = LLMPlanner(chat, "scripted", "sys").choose(VIEW, suggestion, 4, 0.5)
    assert isinstance(action, RunHypothesis) and info.source == "heuristic-fallback"
    assert action.reason.startswith("the top list stopped growing (the LLM gave no usable")


def test_the_choice_prompt_lists_every_experiment_and_the_situation():
    from neurosleuth.agents.planner import MENU

    view = PlannerView(neuron="3:7", model="m", candidates=["'a' margin +0.30 (0.22..0.38)"],
                       status="step 4 of 10; the top list grew by 2", evidence=["ablate: KL z=5"])
    text = prompts.render_choose(view, MENU)
    assert all(f"- {kind}: " in text for kind, _ in MENU)
    assert "step 4 of 10" in text and "margin +0.30" in text and "ablate: KL z=5" in text


def test_rendered_sentences_prompt_is_pinned():
    """The request for the clause tests' new sentences (agents/revise.py)."""
    assert prompts.render_sentences(["cat", "dog"], 3) == (
        "A neuron of a language model fires on words such as 'cat', 'dog'. To test whether it "
        "fires on such words in any sentence, write 3 short, plain English sentences (under 15 "
        "words each), each with the placeholder {w} exactly once where such a word could stand, "
        'and no other braces. Answer with JSON: {"sentences": ["...", "..."]}')


def test_an_llm_writes_the_new_sentences_of_the_clause_tests_or_templates_stand():
    from types import SimpleNamespace

    from neurosleuth.agents.revise import frames_for
    from neurosleuth.tools.clauses import FRAMES
    from neurosleuth.tools.pattern import Pattern

    pattern = Pattern("token", {"cat": 1.0, "dog": 0.8}, None, {}, 1.0)
    good = '{"sentences": ["I fed the {w} today.", "A {w} sat there.", "No {w} {x} here."]}'

    def ctx(reply):
        planner = LLMPlanner(ScriptedChat([reply]), "scripted", "sys", retries=0)
        return SimpleNamespace(planner=planner, cfg=SimpleNamespace(temperature=0.7))

    frames, who = frames_for(ctx(good), pattern)
    assert frames == ("I fed the {w} today.", "A {w} sat there.")  # one slot, no other braces
    assert who == "the planner (scripted)"
    frames, who = frames_for(ctx('{"sentences": ["no slot at all"]}'), pattern)
    assert frames == FRAMES and "unusable" in who
    heuristic = SimpleNamespace(planner=HeuristicBackend(0), cfg=None)
    assert frames_for(heuristic, pattern) == (FRAMES, "templates")
