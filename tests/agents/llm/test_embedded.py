"""The embedded planner LLM: JSON repair (unit), decoding plumbing on a tiny random model (unit),
and SmolLM2 chat + grammar-constrained structured output (integration)."""

from __future__ import annotations

import string
import sys
from typing import Literal

import pytest
import torch
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from neurosleuth.agents.llm import embedded as E
from neurosleuth.agents.llm.json_repair import (
    RepairStats,
    bound_schema,
    repair_json,
    schema_skeleton,
)
from neurosleuth.agents.llm.sampling import ban_repeated_ngrams, sample_token


class ProposePrompts(BaseModel):
    kind: Literal["propose_prompts"]
    prompts: list[str] = Field(min_length=1, max_length=8)
    rationale: str


# ---------------------------------------------------------------- repair_json

REPAIRS = [
    ('{"a": 1}', {"a": 1}),
    ('Sure! Here it is:\n```json\n{"a": [1, 2,], "b": "x",}\n```\nDone.', {"a": [1, 2], "b": "x"}),
    ("{'kind': 'propose_prompts', 'prompts': ['it\\'s a cat', \"dog\"]}",
     {"kind": "propose_prompts", "prompts": ["it's a cat", "dog"]}),
    ('{kind: "x", prompts: ["a" "b"], ok: True, n: None, f: false}',
     {"kind": "x", "prompts": ["a", "b"], "ok": True, "n": None, "f": False}),
    ('{"prompts": ["The cat sat", "The dog ran', {"prompts": ["The cat sat", "The dog ran"]}),
    ('{"prompts": ["a"], "rationale":', {"prompts": ["a"]}),
    ('{"prompts": ["a"], "rationale"', {"prompts": ["a"]}),
    ('{"prompts": ["a"],', {"prompts": ["a"]}),
    ('{"a": {"b": [1, 2}', {"a": {"b": [1, 2]}}),
    ('{"a": "line\nbreak\ttab"}', {"a": "line\nbreak\ttab"}),
    ('{"a": 1} trailing {"b": 2}', {"a": 1}),
    ('{"a": "x" "b": 2}', {"a": "x", "b": 2}),
    ('{"a": "x"\n"b": {"c": 1}\n"d": [1]}', {"a": "x", "b": {"c": 1}, "d": [1]}),
    ('{"kind": propose_prompts}', {"kind": "propose_prompts"}),
    ('{"a": -1.5e3, "b": 0x12, "c": 7}', {"a": -1500.0, "b": "0x12", "c": 7}),
    ("{}}", {}),
    ('{"a": "\\u00e9\\"q\\""}', {"a": 'é"q"'}),
    ('{"a": [1, 2]]}', {"a": [1, 2]}),
    ('{"x": 1,,, "y": 2}', {"x": 1, "y": 2}),
    ('{"x": [,1]}', {"x": [1]}),
    ("prefix text {\"a\": {\"b\": {\"c\": ['deep'", {"a": {"b": {"c": ["deep"]}}}),
    ('{"a" "b"}', {"a": "b"}),
    ('{"a": "}{][,:"}', {"a": "}{][,:"}),
    ('{"a": 1, 2}', {"a": 1}),  # a dangling key-less scalar is dropped
]


@pytest.mark.parametrize(("text", "expected"), REPAIRS)
def test_repair_json_recovers_the_first_object(text, expected):
    assert repair_json(text) == expected


@pytest.mark.parametrize("text", ["", "no json here", "[1, 2]", "{", '{"a": 1, {"b": 2}}', "{,,,"])
def test_repair_json_gives_none_or_an_object_never_raises(text):
    out = repair_json(text)
    assert out is None or isinstance(out, dict)
    if text in ("", "no json here", "[1, 2]", '{"a": 1, {"b": 2}}'):
        assert out is None


def test_repair_stats_count_clean_repaired_failed():
    stats = RepairStats()
    repair_json('{"a": 1}', stats)
    repair_json("{'a': 1,}", stats)
    repair_json("nothing", stats)
    repair_json("[1]", stats)
    assert stats.as_dict() == {"calls": 4, "clean": 1, "repaired": 1, "failed": 2}


def test_schema_skeleton_and_bound_schema():
    schema = ProposePrompts.model_json_schema()
    assert schema_skeleton(schema) == (
        '{"kind": "propose_prompts", "prompts": [string, ...], "rationale": string}'
    )
    bounded = bound_schema(schema, 50)
    assert bounded["properties"]["prompts"]["items"]["maxLength"] == 50
    assert bounded["properties"]["prompts"]["items"]["minLength"] == 1  # no empty list items
    assert bounded["properties"]["rationale"]["maxLength"] == 50
    assert "maxLength" not in bounded["properties"]["kind"]  # a const is left alone
    assert "maxLength" not in schema["properties"]["rationale"]  # the input is not modified
    assert bound_schema({"type": "string", "minLength": 80}, 50)["maxLength"] == 80


# ---------------------------------------------------------------- decoding pieces


def test_ban_repeats_masks_the_token_that_would_repeat_an_ngram():
    logits = torch.zeros(10)
    gen = [1, 2, 3, 1, 2]  # next 3 would repeat the trigram (1, 2, 3)
    assert ban_repeated_ngrams(logits, gen, 3) == 1
    assert torch.isneginf(logits[3]) and torch.isfinite(logits[[0, 1, 2, 4]]).all()
    assert ban_repeated_ngrams(torch.zeros(10), gen, 0) == 0


def test_ban_repeats_is_skipped_when_it_would_leave_nothing():
    logits = torch.full((10,), float("-inf"))
    logits[3] = 0.0  # the grammar allows only token 3, which the ban would remove
    assert ban_repeated_ngrams(logits, [1, 2, 3, 1, 2], 3) == 0
    assert logits[3] == 0.0


def test_pick_greedy_and_top_p():
    logits = torch.tensor([0.0, 5.0, 4.9, -3.0])
    assert sample_token(logits, 0.0, 1.0, torch.Generator()) == 1
    rng = torch.Generator().manual_seed(0)
    picks = {sample_token(logits, 1.0, 0.5, rng) for _ in range(50)}
    assert picks == {1}  # token 1 alone holds more than half the mass
    picks = {sample_token(logits, 1.0, 0.99, rng) for _ in range(200)}
    assert picks == {1, 2}


# ---------------------------------------------------------------- the chat model on a tiny LM


@pytest.fixture
def tiny_backend(monkeypatch):
    """A tiny random Llama registered as the embedded backend ``tiny`` (no SmolLM2 needed)."""
    from transformers import LlamaForCausalLM

    from tests.fixtures import tiny_config, tiny_tokenizer

    torch.manual_seed(0)
    hf = LlamaForCausalLM(tiny_config()).eval()
    tok = tiny_tokenizer()
    monkeypatch.setattr(tok, "chat_template",
                        "{% for m in messages %}{{ m['content'] }} {% endfor %}")
    backend = E._Backend(hf, tok, torch.device("cpu"), frozenset({0}))
    monkeypatch.setitem(E._BACKENDS, ("tiny", "cpu"), backend)
    return backend


@pytest.fixture
def char_backend(monkeypatch):
    """A tiny random Llama over a character-level vocabulary (printable ASCII), registered as
    the backend ``chars``: it can spell any JSON, so the grammar path runs without SmolLM2."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from tests.fixtures import tiny_config

    chars = ["<pad>", "<eos>", "<unk>", *string.printable[:95]]
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    cfg = tiny_config()
    cfg.vocab_size, cfg.eos_token_id, cfg.max_position_embeddings = len(chars), 1, 512
    torch.manual_seed(0)
    backend = E._Backend(LlamaForCausalLM(cfg).eval(), fast, torch.device("cpu"), frozenset({1}))
    monkeypatch.setitem(E._BACKENDS, ("chars", "cpu"), backend)
    return backend


def test_constrained_output_always_parses_on_a_random_model(char_backend):
    llm = E.EmbeddedChatModel(model_name="chars", seed=0, max_new_tokens=120, temperature=1.0)
    runnable = llm.with_structured_output(ProposePrompts)
    for seed in range(4):
        out = runnable.invoke("propose prompts", seed=seed)
        assert isinstance(out, ProposePrompts) and 1 <= len(out.prompts) <= 8
        assert llm.last_stats.constrained and llm.last_stats.stop_reason == "eos"
    assert llm.stats.parse.as_dict() == {"calls": 4, "clean": 4, "repaired": 0, "failed": 0}


def test_wrap_up_closes_the_object_within_the_budget(char_backend):
    # A random model rarely samples '"': its strings run on. Without the wrap-up bonus the
    # budget ends inside the first prompt and "rationale" is missing; with it the JSON closes.
    kw = {"model_name": "chars", "max_new_tokens": 70, "temperature": 1.0}
    cut = E.EmbeddedChatModel(close_reserve=0, **kw)
    with pytest.raises(OutputParserException, match="rationale"):
        cut.with_structured_output(ProposePrompts).invoke("propose prompts", seed=3)
    assert cut.last_stats.stop_reason == "max_tokens"
    wrapped = E.EmbeddedChatModel(**kw)
    out = wrapped.with_structured_output(ProposePrompts).invoke("propose prompts", seed=3)
    assert isinstance(out, ProposePrompts) and wrapped.last_stats.stop_reason == "eos"
    assert wrapped.last_stats.output_tokens <= 70


def test_without_xgrammar_structured_output_is_unconstrained(char_backend, monkeypatch):
    monkeypatch.setitem(sys.modules, "xgrammar", None)  # import fails
    monkeypatch.setattr(char_backend, "compiler", None)
    llm = E.EmbeddedChatModel(model_name="chars", seed=0, max_new_tokens=10)
    raw = llm.with_structured_output(ProposePrompts, include_raw=True)
    with pytest.warns(UserWarning, match="xgrammar is not installed"):
        raw.invoke("propose prompts")
    assert not llm.last_stats.constrained


def test_chat_call_reports_usage_timing_and_restores_threads(tiny_backend):
    threads = torch.get_num_threads()
    llm = E.EmbeddedChatModel(model_name="tiny", seed=0, max_new_tokens=6, num_threads=1,
                              no_repeat_ngram_size=0)
    msg = llm.invoke([SystemMessage("the cat"), HumanMessage("sat on the mat")])
    assert isinstance(msg, AIMessage) and isinstance(msg.content, str)
    st = llm.last_stats
    assert st.input_tokens == msg.usage_metadata["input_tokens"] > 0
    assert st.output_tokens == msg.usage_metadata["output_tokens"] <= 6
    assert msg.response_metadata["backend"] == "embedded"
    assert msg.response_metadata["stop_reason"] in ("eos", "max_tokens")
    assert msg.response_metadata["seconds"] > 0
    assert torch.get_num_threads() == threads
    assert llm.stats.calls == 1 and llm.stats.output_tokens == st.output_tokens


def test_seeds_reproduce_and_differ(tiny_backend):
    kw = {"model_name": "tiny", "max_new_tokens": 8, "temperature": 1.5, "top_p": 1.0}
    a = E.EmbeddedChatModel(seed=1, **kw)
    b = E.EmbeddedChatModel(seed=1, **kw)
    first = [a.invoke("the cat").content for _ in range(3)]
    assert first == [b.invoke("the cat").content for _ in range(3)]
    assert len(set(first)) > 1  # one stream: consecutive calls differ
    per_call = [a.invoke("the cat", seed=7).content for _ in range(2)]
    assert per_call[0] == per_call[1]


def test_unknown_call_option_is_an_error(tiny_backend):
    with pytest.raises(TypeError, match="unknown call options"):
        E.EmbeddedChatModel(model_name="tiny").invoke("the cat", tempurature=0.1)


def test_generation_failure_raises_output_parser_exception(tiny_backend, monkeypatch):
    def broken(**_):
        raise RuntimeError("boom")

    monkeypatch.setattr(tiny_backend, "hf", type("Broken", (), {"config": None,
                                                                "__call__": broken})())
    llm = E.EmbeddedChatModel(model_name="tiny")
    with pytest.raises(OutputParserException, match="generation failed"):
        llm.invoke("the cat")
    assert llm.stats.failures == 1


def test_structured_output_unparsable_is_an_output_parser_exception(tiny_backend):
    llm = E.EmbeddedChatModel(model_name="tiny", seed=0, max_new_tokens=5)
    runnable = llm.with_structured_output(ProposePrompts, constrained=False)
    with pytest.raises(OutputParserException):  # a random model's words are not JSON
        runnable.invoke("the cat")
    raw = llm.with_structured_output(ProposePrompts, constrained=False, include_raw=True)
    out = raw.invoke("the cat")
    assert out["parsed"] is None and isinstance(out["parsing_error"], OutputParserException)
    assert isinstance(out["raw"], AIMessage)
    assert llm.stats.parse.failed == 2


def test_parse_message_repairs_and_validates():
    llm = E.EmbeddedChatModel()
    ok = llm._parse_message(ProposePrompts, AIMessage(
        "{'kind': 'propose_prompts', 'prompts': ['a cat',], 'rationale': 'cats'"))
    assert ok == ProposePrompts(kind="propose_prompts", prompts=["a cat"], rationale="cats")
    with pytest.raises(OutputParserException, match="does not match ProposePrompts"):
        llm._parse_message(ProposePrompts, AIMessage('{"kind": "other", "prompts": []}'))
    assert llm._parse_message({"type": "object"}, AIMessage('{"x": 1}')) == {"x": 1}
    assert (llm.stats.parse.repaired, llm.stats.parse.clean, llm.stats.invalid) == (1, 2, 1)
    with pytest.raises(ValueError, match="pydantic model class"):
        llm.with_structured_output(list)


def test_unknown_planner_model_is_a_model_load_error(tmp_path):
    from neurosleuth.tools.model import ModelLoadError

    with pytest.raises(ModelLoadError, match="not an embedded model"):
        E.EmbeddedChatModel(model_name=str(tmp_path / "missing")).load()


# ---------------------------------------------------------------- SmolLM2 (integration)


@pytest.fixture(scope="module")
def smol():
    return E.EmbeddedChatModel(seed=0, max_new_tokens=96).load()


@pytest.mark.integration
def test_smollm2_plain_chat_reply(smol):
    msg = smol.invoke("Write one short sentence about cats.", max_new_tokens=40)
    assert len(msg.content.split()) >= 3
    assert msg.response_metadata["backend"] == "embedded"
    assert 0 < msg.usage_metadata["output_tokens"] <= 40
    assert smol.last_stats.tokens_per_s > 0


@pytest.mark.integration
def test_smollm2_structured_output_parses_for_every_seed(smol):
    runnable = smol.with_structured_output(ProposePrompts)
    messages = [
        SystemMessage("You propose short English prompts that make a language-model neuron "
                      "fire. The neuron seems to respond to words about cats."),
        HumanMessage("Propose 4 new, varied prompts."),
    ]
    for seed in range(5):
        out = runnable.invoke(messages, seed=seed)
        assert isinstance(out, ProposePrompts)
        assert 1 <= len(out.prompts) <= 8
        assert smol.last_stats.constrained
    assert smol.stats.parse.failed == 0
