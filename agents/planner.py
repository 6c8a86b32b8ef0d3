"""Planner backends: the only place an LLM is called.

- ``ollama``: ``ChatOllama`` (langchain-ollama), model ``--ollama-model`` at ``OLLAMA_HOST``, JSON
  schema structured output; a reply that does not parse is repaired (``repair_json``) or retried.
- ``embedded``: SmolLM2-135M-Instruct from the shipped GGUF as a LangChain chat model with
  constrained JSON decoding (``agents/llm/embedded.py``). Weak but local.
- ``heuristic``: the deterministic no-LLM policy (``agents/heuristic.py``).
- ``auto``: Ollama when its server answers within 2 s and has the model, else embedded; the run
  records which one it used.

LLM output is data: it is validated into the pydantic actions of ``agents/actions.py`` and never
executed. A reply that stays malformed after the retries is counted as a failure and the step
falls back to the heuristic planner, so a bad LLM never crashes a run. A server that cannot be
reached, drops the connection or does not answer within ``ollama_timeout_s`` fails the request at
once (no retry: it would cost the timeout again); the next request tries again, so a restarted
server is picked up. Fallbacks are counted (``CallInfo.usage``) and the last distinct errors kept
(``LLMPlanner.last_errors``) for the run summary. LangSmith tracing works through LangChain's own
variables (``LANGSMITH_TRACING=true``, ``LANGSMITH_API_KEY``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationError

from neurosleuth.agents import prompts
from neurosleuth.agents.actions import (
    EXPERIMENT_TYPES,
    EXPERIMENTS,
    Experiment,
    ProposePrompts,
    StateHypothesis,
    TestPrompts,
    kind_of,
    search,
)
from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.heuristic import HeuristicPlanner
from neurosleuth.agents.prompts import PlannerView

# the experiment menu as the LLM reads it: kind and the first line of the experiment's docstring
MENU = [(kind_of(cls), " ".join((cls.__doc__ or "").split("\n\n")[0].split()))
        for cls in EXPERIMENTS]
NO_TOOLS = "does not support tools"  # Ollama's error for a model without tool calling
BY_TOOL_NAME = {cls.__name__: cls for cls in EXPERIMENTS} | {kind_of(c): c for c in EXPERIMENTS}


class ChooseExperiment(BaseModel):
    """The next experiment of the investigation, and why (the embedded model's form: one word
    from the menu and a sentence; the experiment runs with its defaults)."""

    kind: Literal["choose"] = "choose"
    experiment: Literal[tuple(k for k, _ in MENU)]  # type: ignore[valid-type]
    reason: str = Field("", max_length=300)


class PlannerUnavailable(RuntimeError):
    """The requested planner backend cannot be used (e.g. Ollama is not answering)."""


@dataclass
class CallInfo:
    """What one planner request cost, for the event log and the LLM usage counters."""

    source: str  # the backend that produced the action, or "heuristic-fallback"
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    failures: int = 0
    repairs: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def and_then(self, later: CallInfo) -> CallInfo:
        """This request and a later one for the same step, summed; the source is the later's
        (who wrote what the step uses) unless this one fell back."""
        source = self.source if self.source == "heuristic-fallback" else later.source
        return CallInfo(source=source, calls=self.calls + later.calls,
                        tokens_in=self.tokens_in + later.tokens_in,
                        tokens_out=self.tokens_out + later.tokens_out,
                        failures=self.failures + later.failures,
                        repairs=self.repairs + later.repairs, seconds=self.seconds + later.seconds,
                        errors=self.errors + later.errors)

    def usage(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "failures": self.failures,
            "repairs": self.repairs,
            "seconds": self.seconds,
            "fallbacks": int(self.source == "heuristic-fallback"),
        }


def unreachable(err: BaseException) -> bool:
    """True for transport failures (refused, reset, disconnected, timed out), not bad replies."""
    if isinstance(err, ConnectionError | TimeoutError):
        return True
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx comes with langchain-ollama
        return False
    return isinstance(err, httpx.TransportError)


class LLMPlanner:
    """Asks a LangChain chat model for actions; retries, repairs, falls back to the heuristic."""

    def __init__(self, chat: Any, name: str, system_prompt: str, seed: int = 0, retries: int = 2,
                 choice: str = "menu"):
        self.chat = chat
        self.name = name
        # how it chooses experiments: "tools" (tool calls), "menu" (a word from the menu) or
        # "policy" (it does not: the experiment-design policy chooses, the LLM writes prompts)
        self.choice = choice
        self.system_prompt = system_prompt
        self.retries = retries
        self.fallback = HeuristicPlanner(seed)
        self.last_errors: deque[str] = deque(maxlen=3)  # most recent distinct, for the summary

    def propose(
        self, view: PlannerView, n: int, temperature: float
    ) -> tuple[ProposePrompts, CallInfo]:
        action, info = self.ask(ProposePrompts, prompts.render_propose(view, n), temperature)
        if action is None:
            return self.fallback.propose(view, n, temperature), info
        return ProposePrompts(prompts=action.prompts[:n], rationale=action.rationale), info

    def hypothesize(self, view: PlannerView) -> tuple[StateHypothesis, CallInfo]:
        action, info = self.ask(StateHypothesis, prompts.render_hypothesize(view), 0.3)
        return (action or self.fallback.hypothesize(view)), info

    def test_prompts(
        self, view: PlannerView, claim: str, n: int = 6
    ) -> tuple[TestPrompts, CallInfo]:
        action, info = self.ask(TestPrompts, prompts.render_test(view, claim, n), 0.5)
        return (action or self.fallback.test_prompts(view, claim, n)), info

    def choose(self, view: PlannerView, suggestion: Experiment, n: int, temperature: float
               ) -> tuple[Experiment, CallInfo]:
        """The next experiment: the LLM's tool call (Ollama: ``bind_tools`` over the experiments,
        LangChain's tool-calling idiom; a model without tool calling is asked for a menu word
        from then on), or the policy's ``suggestion`` for a planner that does not choose (the
        embedded SmolLM2: measured, it picks the first menu entry whatever the situation;
        ``bench/choose.py``) or when the LLM gives no usable choice (a counted fallback). A prompt
        search without prompts gets them from ``propose``: the LLM writes them."""
        if self.choice == "policy":
            action, info = suggestion, CallInfo(source="heuristic")
        else:
            user = prompts.render_choose(view, MENU)
            action, info = None, CallInfo(source=self.name)
            if self.choice == "tools":
                action, info = self._tool_call(user, temperature)
                if any(NO_TOOLS in e for e in info.errors):  # a model without tool calling
                    self.choice = "menu"
            if self.choice == "menu":
                choice, more = self.ask(ChooseExperiment, user, temperature)
                if info.calls:  # the tool call that failed is counted, the menu word answers
                    more = CallInfo(**{**info.and_then(more).__dict__, "source": more.source})
                info = more
                if choice is not None and choice.experiment != "propose_prompts":
                    action = EXPERIMENT_TYPES[choice.experiment](reason=choice.reason)
                elif choice is not None:
                    action = search(choice.reason)
        if action is None:
            action = suggestion.model_copy(update={"reason": f"{suggestion.reason} (the LLM gave "
                                                   "no usable choice; the policy's)"})
        if isinstance(action, ProposePrompts) and not action.prompts:
            written, more = self.propose(view, n, temperature)
            info = info.and_then(more)  # the source: who wrote the prompts (or a fallback)
            action = written.model_copy(update={"reason": action.reason})
        return action, info

    def _tool_call(self, user: str, temperature: float) -> tuple[Experiment | None, CallInfo]:
        """One experiment as a tool call of the chat model (``AIMessage.tool_calls``); a reply
        without a valid call is retried like a malformed JSON reply."""
        chat = self.chat.model_copy(update={"temperature": temperature}).bind_tools(
            list(EXPERIMENTS))
        messages = [SystemMessage(self.system_prompt), HumanMessage(user)]

        def attempt(info: CallInfo) -> Experiment:
            reply = chat.invoke(messages)
            usage = getattr(reply, "usage_metadata", None) or {}
            info.tokens_in += int(usage.get("input_tokens", 0))
            info.tokens_out += int(usage.get("output_tokens", 0))
            return _experiment_from(reply)

        return self._retried(attempt)

    def ask(self, schema: type[BaseModel], user: str, temperature: float):
        """One request, retried and repaired; (None, info) when it failed: the score's ``Asker``
        (``score/requests.py``), so the score's writer asks this chat model too."""
        messages = [SystemMessage(self.system_prompt), HumanMessage(user)]
        return self._retried(lambda info: self._invoke(schema, messages, temperature, info))

    def _retried(self, attempt: Callable[[CallInfo], Any]) -> tuple[Any, CallInfo]:
        """``attempt`` up to ``retries + 1`` times; a failure is counted and kept (the last
        distinct errors), a transport failure ends the tries; (None, info) when none worked."""
        info = CallInfo(source=self.name)
        start = time.perf_counter()
        for _ in range(self.retries + 1):
            info.calls += 1
            try:
                result = attempt(info)
            except Exception as err:  # noqa: BLE001 - any backend error is counted, never fatal
                info.failures += 1
                info.errors.append(f"{type(err).__name__}: {str(err)[:200]}")
                if info.errors[-1] in self.last_errors:
                    self.last_errors.remove(info.errors[-1])
                self.last_errors.append(info.errors[-1])
                if unreachable(err) or NO_TOOLS in str(err):  # asking again cannot help
                    break
                continue
            info.seconds = time.perf_counter() - start
            return result, info
        info.seconds = time.perf_counter() - start
        info.source = "heuristic-fallback"
        return None, info

    def _invoke(self, schema, messages, temperature, info: CallInfo) -> BaseModel:
        chat = self.chat.model_copy(update={"temperature": temperature})
        out = chat.with_structured_output(schema, include_raw=True).invoke(messages)
        raw = out.get("raw")
        usage = getattr(raw, "usage_metadata", None) or {}
        info.tokens_in += int(usage.get("input_tokens", 0))
        info.tokens_out += int(usage.get("output_tokens", 0))
        if out.get("parsed") is not None:
            return out["parsed"]
        from neurosleuth.agents.llm.json_repair import repair_json

        data = repair_json(getattr(raw, "content", "") or "")
        if data is None:
            raise ValueError(f"unparsable reply: {out.get('parsing_error')}")
        data.setdefault("kind", schema.model_fields["kind"].default)
        try:
            action = schema.model_validate(data)
        except ValidationError as err:
            raise ValueError(f"reply does not fit {schema.__name__}: {err.errors()[:2]}") from err
        info.repairs += 1
        return action


def _experiment_from(reply: Any) -> Experiment:
    """The first tool call of ``reply`` that names an experiment and validates."""
    calls = getattr(reply, "tool_calls", None) or []
    if not calls:
        raise ValueError(f"no tool call in the reply: {str(getattr(reply, 'content', ''))[:120]!r}")
    errors = []
    for call in calls:
        cls = BY_TOOL_NAME.get(call.get("name", ""))
        if cls is None:
            errors.append(f"unknown tool {call.get('name')!r}")
            continue
        args = {k: v for k, v in (call.get("args") or {}).items() if k != "kind"}
        try:
            return cls.model_validate(args)
        except ValidationError as err:
            errors.append(f"{cls.__name__}: {err.errors()[:2]}")
    raise ValueError("; ".join(errors))


class HeuristicBackend:
    """The heuristic policy behind the same interface as ``LLMPlanner``."""

    def __init__(self, seed: int = 0):
        self.policy = HeuristicPlanner(seed)
        self.name = "heuristic"

    def propose(self, view, n, temperature):
        return self.policy.propose(view, n, temperature), CallInfo(source="heuristic")

    def choose(self, view, suggestion: Experiment, n, temperature):
        """The experiment-design policy's choice; its prompt search gets the mutations."""
        if isinstance(suggestion, ProposePrompts) and not suggestion.prompts:
            prompts_ = self.policy.propose(view, n, temperature).prompts
            suggestion = suggestion.model_copy(update={"prompts": prompts_})
        return suggestion, CallInfo(source="heuristic")

    def hypothesize(self, view):
        return self.policy.hypothesize(view), CallInfo(source="heuristic")

    def test_prompts(self, view, claim, n=6):
        return self.policy.test_prompts(view, claim, n), CallInfo(source="heuristic")


def ollama_status(host: str, model: str, timeout: float = 2.0) -> str | None:
    """None when ``host`` answers and has ``model``; else a one-line reason."""
    try:
        import ollama

        listed = ollama.Client(host=host, timeout=timeout).list()
    except Exception as err:  # noqa: BLE001 - httpx.ConnectError and friends
        return f"Ollama is not answering at {host} ({type(err).__name__})"
    names = {getattr(m, "model", None) or m.get("model", "") for m in listed.get("models", [])}
    wanted = model if ":" in model else f"{model}:latest"
    if wanted not in names and model not in names:
        return f"Ollama at {host} has no model {model!r}: run `ollama pull {model}`"
    return None


def make_planner(cfg: RunConfig) -> tuple[Any, str]:
    """Build the planner ``cfg.planner`` asks for; returns it and a note on how it was chosen."""
    system = cfg.system_prompt or prompts.SYSTEM_PROMPT
    if cfg.planner == "heuristic":
        return HeuristicBackend(cfg.seed), "heuristic (deterministic, no LLM)"
    if cfg.planner in ("ollama", "auto"):
        problem = ollama_status(cfg.ollama_host, cfg.ollama_model)
        if problem is None:
            from langchain_ollama import ChatOllama

            chat = ChatOllama(
                model=cfg.ollama_model,
                base_url=cfg.ollama_host,
                temperature=cfg.temperature,
                seed=cfg.seed,
                client_kwargs={"timeout": cfg.ollama_timeout_s},  # httpx's default: none
            )
            return LLMPlanner(
                chat, f"ollama:{cfg.ollama_model}", system, cfg.seed, choice="tools"
            ), "ollama answered"
        if cfg.planner == "ollama":
            raise PlannerUnavailable(f"{problem}; start `ollama serve` or use --planner embedded")
        note = f"{problem}; using the embedded planner"
    else:
        note = "embedded planner requested"
    from neurosleuth.agents.llm.embedded import EmbeddedChatModel
    from neurosleuth.tools.placement import resolve_placement

    # on the studied model's GPU when it has one (135M parameters in float32: 0.5 GB)
    device = resolve_placement(cfg.device, "float32").device
    embedded = EmbeddedChatModel(temperature=cfg.temperature, seed=cfg.seed, device=device)
    # SmolLM2-135M writes prompts and hypotheses; it does not choose experiments (bench/choose.py)
    return LLMPlanner(embedded, "embedded:smollm2-135m", system, cfg.seed, choice="policy"), note
