"""The Ollama planner against a server: the real ``langchain-ollama`` / ``ollama`` clients talk
HTTP to a stand-in Ollama on 127.0.0.1 (``tests/ollama_server.py``) that answers ``/api/chat``
from the embedded SmolLM2 under the request's JSON schema. Covered: the ``auto`` probe
(``/api/tags``, a missing model, a wedged server), structured chat with ``stream`` true and false,
a reply that is not JSON, a reply slower than the timeout, and a whole investigation through the
CLI with ``OLLAMA_HOST`` during which the server dies.

One investigation costs ~3 min of model work on 2 CPU cores whatever the planner does (probes,
explainer, scoring), so the live part and the death share one run."""

import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from neurosleuth.agents.actions import ProposePrompts, StateHypothesis
from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.planner import make_planner, ollama_status
from neurosleuth.agents.prompts import PlannerView
from tests.ollama_server import FakeOllama, Reply

pytestmark = pytest.mark.integration

VIEW = PlannerView(
    neuron="12:345",
    model="smollm2-135m",
    top=[(2.5, ")", "print(x)"), (1.0, ",", "a, b")],
    bottom=[(-0.5, "the", "the end")],
    exemplars=[(3.0, ")", "f(x)")],
    iteration=3,
)
PROPOSAL = json.dumps(
    {
        "kind": "propose_prompts",
        "rationale": "closing brackets",
        "prompts": [
            "print(len(items))",
            "if (a and (b or c)):",
            "The results (see Table 2) were clear.",
            "x = f(g(h(1)))",
        ],
    }
)


@pytest.fixture
def server():
    s = FakeOllama().start()
    yield s
    s.stop()


def ollama_cfg(server: FakeOllama, **changes) -> RunConfig:
    return RunConfig(planner="ollama", ollama_host=server.host, **changes)


def test_auto_probe_finds_the_server_and_its_model(server):
    assert ollama_status(server.host, "llama3.1") is None
    assert ollama_status(server.host, "llama3.1:latest") is None
    missing = ollama_status(server.host, "qwen2.5")
    assert "has no model 'qwen2.5'" in missing and "ollama pull qwen2.5" in missing
    planner, note = make_planner(RunConfig(planner="auto", ollama_host=server.host))
    assert (planner.name, note) == ("ollama:llama3.1", "ollama answered")
    assert planner.chat.base_url == server.host
    assert [r["path"] for r in server.requests] == ["/api/tags"] * 4

    planner, note = make_planner(
        RunConfig(planner="auto", ollama_host=server.host, ollama_model="qwen2.5")
    )
    assert planner.name == "embedded:smollm2-135m" and "has no model" in note
    server.tags_delay_s = 30  # accepts the connection, never answers: the probe gives up at 2 s
    start = time.perf_counter()
    planner, note = make_planner(RunConfig(planner="auto", ollama_host=server.host))
    assert time.perf_counter() - start < 6
    assert planner.name == "embedded:smollm2-135m" and "not answering" in note


def test_structured_chat_from_the_embedded_model_streamed_and_not(server):
    planner, _ = make_planner(ollama_cfg(server, temperature=0.5, seed=3))
    action, info = planner.propose(VIEW, 4, 0.7)
    assert info.source == "ollama:llama3.1" and info.failures == 0, info.errors
    assert isinstance(action, ProposePrompts) and 1 <= len(action.prompts) <= 4
    assert info.tokens_in > 100 and info.tokens_out > 0  # from the final streamed chunk
    body = server.chats()[-1]
    assert body["model"] == "llama3.1" and body["stream"] is True
    assert body["format"] == ProposePrompts.model_json_schema()  # a JSON schema, not "json"
    assert body["options"] == {"temperature": 0.7, "seed": 3}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]

    schema = StateHypothesis.model_json_schema()
    messages = [SystemMessage("You explain neurons."), HumanMessage("State a hypothesis.")]
    reply = planner.chat.invoke(messages, stream=False, format=schema)
    assert server.chats()[-1]["stream"] is False and server.chats()[-1]["format"] == schema
    assert StateHypothesis.model_validate_json(reply.content).text
    assert reply.usage_metadata["output_tokens"] > 0


def test_reply_that_is_not_json_is_retried_then_falls_back(server):
    planner, _ = make_planner(ollama_cfg(server))
    server.script = [Reply(text="I'm sorry, I can't help with that.")] * 3
    action, info = planner.propose(VIEW, 4, 0.7)
    assert info.source == "heuristic-fallback" and action.prompts
    assert (info.calls, info.failures, len(server.chats())) == (3, 3, 3)
    assert "unparsable reply" in planner.last_errors[-1]

    server.script = [Reply(text="Sure! {prompts: ['x(1)', 'y(2)',], rationale: 'brackets'")]
    action, info = planner.propose(VIEW, 4, 0.7)
    assert action.prompts == ["x(1)", "y(2)"] and info.source == "ollama:llama3.1"
    assert (info.repairs, info.failures) == (1, 0)


def test_slow_reply_past_the_timeout_fails_once_and_the_next_request_recovers(server):
    planner, _ = make_planner(ollama_cfg(server, ollama_timeout_s=1.0))
    server.script = [Reply(text=PROPOSAL, delay_s=8)]
    start = time.perf_counter()
    action, info = planner.propose(VIEW, 4, 0.7)
    assert time.perf_counter() - start < 2.5  # one timeout, not one per retry
    assert info.source == "heuristic-fallback" and action.prompts
    assert (info.calls, info.failures) == (1, 1) and "ReadTimeout" in info.errors[0]
    server.script = [Reply(text=PROPOSAL)]
    action, info = planner.propose(VIEW, 4, 0.7)
    assert info.source == "ollama:llama3.1" and action.prompts[0] == "print(len(items))"


def test_experiment_choice_is_a_tool_call(server):
    """``bind_tools`` over the experiments: the server is sent every experiment as a tool (its
    docstring the description); a tool call comes back as the experiment, with its arguments."""
    from neurosleuth.agents.actions import EXPERIMENTS, RunAblation, RunHypothesis

    server.script = [Reply(tool_call={"name": "RunAblation", "arguments": {
        "mode": "mean", "prompts": 2, "reason": "is its effect causal?"}})]
    planner, _ = make_planner(ollama_cfg(server))
    action, info = planner.choose(VIEW, RunHypothesis(reason="policy"), 4, 0.2)
    assert isinstance(action, RunAblation) and action.mode == "mean" and action.prompts == 2
    assert action.reason == "is its effect causal?" and info.source.startswith("ollama")
    tools = {t["function"]["name"]: t["function"] for t in server.chats()[-1]["tools"]}
    assert set(tools) == {cls.__name__ for cls in EXPERIMENTS}
    assert tools["CompareHypotheses"]["description"].startswith("Test two rival hypotheses")


def test_no_tool_call_is_retried_then_the_policy_decides(server):
    from neurosleuth.agents.actions import RunHypothesis

    server.script = [Reply(text="I would ablate it."),
                     Reply(tool_call={"name": "Dance", "arguments": {}}),
                     Reply(tool_call={"name": "RunAblation", "arguments": {"mode": "sideways"}})]
    planner, _ = make_planner(ollama_cfg(server))
    action, info = planner.choose(VIEW, RunHypothesis(reason="policy"), 4, 0.2)
    assert isinstance(action, RunHypothesis) and info.source == "heuristic-fallback"
    assert info.failures == 3 and any("unknown tool 'Dance'" in e for e in info.errors)


def test_a_model_without_tool_calling_is_asked_for_a_menu_word(server):
    from neurosleuth.agents.actions import RunHypothesis, RunPatch

    server.script = [Reply(error='registry.ollama.ai/library/gemma:2b does not support tools'),
                     Reply(text='{"kind": "choose", "experiment": "patch", "reason": "causal?"}')]
    planner, _ = make_planner(ollama_cfg(server))
    action, info = planner.choose(VIEW, RunHypothesis(reason="policy"), 4, 0.2)
    assert isinstance(action, RunPatch) and action.reason == "causal?"
    assert planner.choice == "menu" and not server.chats()[-1].get("tools")


def test_generated_tool_call_from_the_embedded_model(server):
    """No script: the stand-in generates the call under the tools' grammar (what a local model
    behind Ollama does); whatever it picks is a valid experiment or a counted fallback."""
    from neurosleuth.agents.actions import EXPERIMENTS, RunHypothesis

    planner, _ = make_planner(ollama_cfg(server))
    action, info = planner.choose(VIEW, RunHypothesis(reason="policy"), 4, 0.2)
    assert isinstance(action, EXPERIMENTS) and info.calls >= 1
    assert server.chats()[0].get("tools")
    if info.source != "heuristic-fallback":
        assert info.failures < info.calls


def test_investigation_through_the_server_that_dies_mid_run(tmp_path):
    """``--planner auto`` finds the server through ``OLLAMA_HOST`` (host:port, as Ollama users
    write it). Step 1 measures the dataset seeds; SmolLM2 answers step 2 through the server; the
    reply of step 3 is cut off halfway and the server is gone: step 4, the hypothesis and the
    score's requests fail at once, the heuristic answers them, and the run finishes."""
    server = FakeOllama().start()
    server.script = [Reply(), Reply(text=PROPOSAL, die=True)]  # SmolLM2's; cut off halfway
    try:
        env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{server.port}"}
        args = "investigate --neuron 12:345 --planner auto --ollama-model llama3.1"
        # the schedule's prompt search at every step (the adaptive tool calls: the tests above)
        args += " --policy fixed --iterations 4 --exemplar-tokens 4096 --run-id ol"
        cmd = [
            sys.executable,
            "-m",
            "neurosleuth.cli",
            *args.split(),
            "--runs-dir",
            str(tmp_path),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    chats = server.chats()
    assert server.dead.is_set() and len(chats) == 2
    assert all(c["model"] == "llama3.1" and c["stream"] is True for c in chats)
    assert [c["format"]["title"] for c in chats] == ["ProposePrompts"] * 2
    assert [r["path"] for r in server.requests][0] == "/api/tags"  # the auto probe

    run = tmp_path / "ol"
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["planner_used"], summary["planner_note"]) == (
        "ollama:llama3.1",
        "ollama answered",
    )
    assert summary["status"] == "finished" and summary["iterations"] == 4
    assert summary["llm_fallbacks"] >= 3  # steps 3 and 4, the hypothesis (and the score's)
    assert summary["llm_tokens_in"] > 0 and summary["llm_tokens_out"] > 0  # step 2's reply
    errors = " ".join(summary["llm_errors"])
    assert "RemoteProtocolError" in errors and "ConnectError" in errors, errors

    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    plans = [e for e in events if e["node"] == "plan" and e["action"] not in ("round", "report")]
    assert [e["summary"].split(" from ")[-1] for e in plans] == [
        "exemplar",
        "ollama:llama3.1",
        "heuristic-fallback",
        "heuristic-fallback",
    ]
    assert "RemoteProtocolError" in plans[2]["llm_errors"][0]
    assert "ConnectError" in plans[3]["llm_errors"][0]
    assert events[-1]["node"] == "report"
    prompts = pd.read_csv(run / "prompts.csv")  # nothing lost; nothing from the cut-off reply
    by_step = prompts.groupby("step")["source"].agg(set).to_dict()
    assert by_step[1] == {"exemplar"} and "ollama:llama3.1" in by_step[2]  # (+ mutation top-ups)
    assert "heuristic-fallback" in by_step[3] & by_step[4]
    assert "ollama:llama3.1" not in by_step[3] | by_step[4]
    assert not set(json.loads(PROPOSAL)["prompts"]) & set(prompts["prompt"])
    hypotheses = json.loads((run / "hypotheses.json").read_text())
    assert hypotheses[0]["score"] is not None and len({h["step"] for h in hypotheses}) == 1
    assert all(h["source"] == "revised" for h in hypotheses[1:])  # the round's revision, if kept
    report = (run / "report.md").read_text()
    assert "ollama:llama3.1" in report and "llm fallbacks" in report
    assert "RemoteProtocolError" in report and "ConnectError" in report
