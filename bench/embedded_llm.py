"""The embedded planner LLM (SmolLM2-135M-Instruct through ``agents/llm/embedded.py``): decoding
speed on one thread, and how often structured output parses with and without grammar constraints.

Figures, one run, one machine:

(a) plain chat: output tokens per second of ``EmbeddedChatModel.invoke`` (KV-cached token loop,
    ``num_threads`` threads), median over ``--chats`` replies, after one warm-up call.
(b) structured output for a small ``ProposePrompts`` schema (kind, 1-8 prompts, rationale), one
    call per seed: parse rate (a validated pydantic instance, after ``repair_json`` if needed) and
    tokens/s, with xgrammar constraints (``constrained=True``) and without (free text + repair).
    A JSON-repair breakdown (clean / repaired / failed) and the generation stop reasons go with it.

Timing is wall time of whole calls (prompt prefill included). Other processes on the machine
inflate every figure; the JSON records the load average before and after.

Run: ``python bench/embedded_llm.py [--seeds 10] [--threads 1] [--max-new-tokens 160]``.
Writes ``bench/results/embedded_llm.json``; the last line printed is
``parse rate: constrained <a>/<n>, unconstrained <b>/<n>; <t> tokens/s on <k> thread(s)``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Literal

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from neurosleuth.agents.llm.embedded import EmbeddedChatModel

MESSAGES = [
    SystemMessage("You propose short English prompts that make a language-model neuron fire. "
                  "The neuron seems to respond to words about cats. Do not copy examples."),
    HumanMessage("Propose 4 new, varied prompts."),
]
CHATS = ["Write one short sentence about cats.", "Name three colours.",
         "What is the capital of France?", "Describe a rainy day in one sentence."]


class ProposePrompts(BaseModel):
    kind: Literal["propose_prompts"]
    prompts: list[str] = Field(min_length=1, max_length=8)
    rationale: str


def chat_speed(llm: EmbeddedChatModel, n: int) -> dict:
    llm.invoke("Hello.", max_new_tokens=8)  # warm-up
    rates, tokens = [], []
    for i in range(n):
        llm.invoke(CHATS[i % len(CHATS)], max_new_tokens=48)
        rates.append(llm.last_stats.tokens_per_s)
        tokens.append(llm.last_stats.output_tokens)
    return {"calls": n, "median_tokens_per_s": statistics.median(rates),
            "output_tokens": tokens}


def structured(constrained: bool, seeds: int, threads: int, max_new: int) -> dict:
    def make() -> tuple[EmbeddedChatModel, object]:
        llm = EmbeddedChatModel(num_threads=threads, max_new_tokens=max_new)
        return llm, llm.with_structured_output(ProposePrompts, constrained=constrained,
                                               include_raw=True)

    make()[1].invoke(MESSAGES, seed=10_000, max_new_tokens=8)  # warm-up: grammar compile
    llm, runnable = make()  # fresh counters
    parsed, tokens, seconds, reasons, samples = 0, 0, 0.0, Counter(), []
    for seed in range(seeds):
        out = runnable.invoke(MESSAGES, seed=seed)
        st = llm.last_stats
        parsed += out["parsed"] is not None
        tokens += st.output_tokens
        seconds += st.seconds
        reasons[st.stop_reason] += 1
        samples.append(out["parsed"].model_dump() if out["parsed"] else out["raw"].content[:300])
    return {"constrained": constrained, "seeds": seeds, "parsed": parsed,
            "tokens_per_s": tokens / seconds, "mean_output_tokens": tokens / seeds,
            "repair": llm.stats.parse.as_dict(), "invalid": llm.stats.invalid,
            "stop_reasons": dict(reasons), "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--chats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    args = ap.parse_args()
    load_before = os.getloadavg()
    start = time.perf_counter()
    llm = EmbeddedChatModel(num_threads=args.threads, seed=0).load()
    chat = chat_speed(llm, args.chats)
    runs = [structured(c, args.seeds, args.threads, args.max_new_tokens) for c in (True, False)]
    result = {"threads": args.threads, "max_new_tokens": args.max_new_tokens, "chat": chat,
              "structured": runs, "load_avg_before": load_before,
              "load_avg_after": os.getloadavg(), "wall_s": time.perf_counter() - start}
    out = Path(__file__).parent / "results" / "embedded_llm.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"{'mode':<14}{'parsed':>8}{'tokens/s':>10}{'out tok':>9}  repair (clean/rep/fail)")
    print(f"{'chat':<14}{'-':>8}{chat['median_tokens_per_s']:>10.1f}"
          f"{statistics.mean(chat['output_tokens']):>9.0f}")
    for r in runs:
        rep = r["repair"]
        print(f"{'constrained' if r['constrained'] else 'unconstrained':<14}"
              f"{r['parsed']:>5}/{r['seeds']:<2}{r['tokens_per_s']:>10.1f}"
              f"{r['mean_output_tokens']:>9.0f}  {rep['clean']}/{rep['repaired']}/{rep['failed']}"
              f"  stops {r['stop_reasons']}")
    print(f"load average before {load_before[0]:.1f}, after {result['load_avg_after'][0]:.1f}; "
          f"written to {out}")
    print(f"parse rate: constrained {runs[0]['parsed']}/{args.seeds}, unconstrained "
          f"{runs[1]['parsed']}/{args.seeds}; {chat['median_tokens_per_s']:.1f} tokens/s on "
          f"{args.threads} thread(s)")


if __name__ == "__main__":
    main()
