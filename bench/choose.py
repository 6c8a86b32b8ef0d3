"""The embedded SmolLM2 as the experiment chooser: which form of the choice it handles reliably.

Two forms, the same situations, the same seeds (``--seeds`` per situation):

(a) menu: the agent's choice prompt (``prompts.render_choose``) and the ``ChooseExperiment``
    schema (one experiment kind from the menu and a reason) under the JSON grammar, what
    ``LLMPlanner.choose`` asks the embedded model for;
(b) tool call: the same prompt, with the tools listed as Ollama's chat templates list them, and a
    grammar of "one tool name with that tool's arguments" (what a local model behind Ollama
    answers to ``bind_tools``), parsed like ``AIMessage.tool_calls``.

Six situations from a run's life (search growing, search stalled with no hypothesis, no causal
evidence, two close rivals, an untested leader, a decided leader), each with the experiment
the policy (``agents/policy.py``) picks. Figures: valid choices (an experiment that validates),
agreement with the policy, distinct experiments chosen, seconds per choice. Run on one thread;
other processes inflate the seconds.

Measured (2 seeds, 1 thread): both forms valid 12/12, both always ``propose_prompts`` (the first
menu entry) whatever the situation, agreeing with the policy 2/12; 5.0 s vs 12.8 s per choice.
Hence the embedded planner does not choose experiments (``LLMPlanner(choice="policy")``).

Run: ``python bench/choose.py [--seeds 2] [--threads 1]``; JSON to ``bench/results/choose.json``.
Last line: ``embedded chooser: menu valid A/N (agrees with the policy B), tool call valid C/N
(agrees D); X s vs Y s per choice``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from neurosleuth.agents import policy, prompts
from neurosleuth.agents.actions import EXPERIMENTS, kind_of
from neurosleuth.agents.llm.embedded import EmbeddedChatModel
from neurosleuth.agents.llm.json_repair import bound_schema, repair_json
from neurosleuth.agents.planner import MENU, ChooseExperiment
from neurosleuth.agents.policy import Candidate, Situation
from neurosleuth.agents.prompts import PlannerView

HERE = Path(__file__).resolve().parent
TOP = [(3.1, " blue", "The sky was a deep blue"), (2.8, " red", "She wore a red"),
       (2.2, " green", "the green")]
EXEMPLARS = [(3.4, " purple", "painted the door purple"), (3.0, " yellow", "a yellow")]
LEAD = Candidate("Fires on colour words.", 0.31, 0.22, 0.40)
LIST = Candidate("Fires on the tokens 'blue', 'red', 'green'.", 0.29, 0.20, 0.38)
BASE = Situation(step=2, budget_used=0.1, grew=4, stalled=0, hypothesis_every=4,
                 steps_since_hypothesis=None)
SITUATIONS = {
    "search growing": BASE,
    "stalled, no hypothesis": replace(BASE, step=6, budget_used=0.3, grew=0, stalled=3,
                                      evidence_kinds=frozenset({"ablate"})),
    "no causal evidence": replace(BASE, step=5, grew=0, stalled=2),
    "close rivals": replace(BASE, step=9, budget_used=0.45, grew=0, steps_since_hypothesis=0,
                            leading=LEAD, rivals=(LIST,), evidence_kinds=frozenset({"ablate"})),
    "untested leader": replace(BASE, step=11, budget_used=0.55, grew=0, steps_since_hypothesis=2,
                               leading=LEAD, rivals=(LIST,), causal_z=6.0,
                               compared=frozenset({tuple(sorted((LEAD.text, LIST.text)))})),
    "decided leader": replace(BASE, step=13, budget_used=0.65, grew=0, steps_since_hypothesis=4,
                              leading=LEAD, rivals=(Candidate("Fires on commas.", 0.02, -0.03,
                                                              0.07),),
                              causal_z=6.0, tested=frozenset({LEAD.text})),
}


def view_of(s: Situation) -> PlannerView:
    cands = [f"{c.text!r}: margin {c.margin:+.3f} ({c.lo:+.3f}..{c.hi:+.3f})"
             for c in ([s.leading] if s.leading else []) + list(s.rivals)]
    status = (f"step {s.step} of 20, {100 * s.budget_used:.0f}% of the budget used; the top "
              f"list grew by {s.grew} at the last step; {s.stalled} step(s) without a new best; "
              + ("no hypothesis yet" if s.steps_since_hypothesis is None
                 else f"last hypothesis round {s.steps_since_hypothesis} step(s) ago") + ".")
    evidence = ["ablate: KL 0.21 (random neurons 0.01 +- 0.01, z=6.0)"] if s.causal_z else []
    return PlannerView(neuron="12:345", model="smollm2-135m", top=TOP, exemplars=EXEMPLARS,
                       hypothesis=s.leading.text if s.leading else None, evidence=evidence,
                       candidates=cands, status=status, iteration=s.step)


def tool_schema() -> dict:
    return {"anyOf": [{"type": "object", "properties": {
        "name": {"type": "string", "enum": [cls.__name__]},
        "arguments": cls.model_json_schema()}, "required": ["name", "arguments"]}
        for cls in EXPERIMENTS]}


def ask(llm: EmbeddedChatModel, form: str, s: Situation, seed: int) -> tuple[str | None, float]:
    """One choice: the experiment kind, or None when the reply does not give a valid one."""
    user = prompts.render_choose(view_of(s), MENU)
    messages = [SystemMessage(prompts.SYSTEM_PROMPT)]
    if form == "menu":
        schema = ChooseExperiment.model_json_schema()
    else:
        listing = "\n".join(f"- {cls.__name__}: {' '.join((cls.__doc__ or '').split())}"
                            for cls in EXPERIMENTS)
        messages.append(SystemMessage("Call exactly one of these tools; answer with JSON "
                                      f'{{"name": ..., "arguments": {{...}}}}:\n{listing}'))
        schema = tool_schema()
    messages.append(HumanMessage(user))
    start = time.perf_counter()
    out = llm.invoke(messages, json_schema=bound_schema(schema, llm.max_string_chars),
                     constrained=True, seed=seed, temperature=0.5)
    seconds = time.perf_counter() - start
    data = repair_json(str(out.content))
    if data is None:
        return None, seconds
    try:
        if form == "menu":
            return ChooseExperiment.model_validate(data).experiment, seconds
        cls = {c.__name__: c for c in EXPERIMENTS}.get(data.get("name", ""))
        if cls is None:
            return None, seconds
        return kind_of(cls.model_validate(data.get("arguments") or {})), seconds
    except (ValidationError, AttributeError):
        return None, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--json", type=Path, default=HERE / "results" / "choose.json")
    args = p.parse_args()
    llm = EmbeddedChatModel(seed=0, num_threads=args.threads, max_new_tokens=args.max_new_tokens)
    rows, results = [], {"menu": [], "tool call": []}
    for name, s in SITUATIONS.items():
        want = policy.choose(s).kind
        for form in results:
            for seed in range(args.seeds):
                got, seconds = ask(llm, form, s, seed)
                results[form].append({"situation": name, "seed": seed, "policy": want,
                                      "chose": got, "seconds": seconds})
        rows.append([name, want, *(", ".join(str(r["chose"]) for r in results[f]
                                             if r["situation"] == name) for f in results)])
    summary = {}
    for form, rs in results.items():
        summary[form] = {"n": len(rs), "valid": sum(r["chose"] is not None for r in rs),
                         "agrees": sum(r["chose"] == r["policy"] for r in rs),
                         "distinct": len({r["chose"] for r in rs if r["chose"]}),
                         "seconds": statistics.median(r["seconds"] for r in rs)}
    console = Console()
    table = Table(title="embedded SmolLM2 choosing experiments")
    for col in ("situation", "policy's choice", "menu", "tool call"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    recorded = {k: str(v) for k, v in vars(args).items() if k != "json"}
    args.json.write_text(json.dumps({"args": recorded, "summary": summary, "results": results},
                                    indent=1))
    m, t = summary["menu"], summary["tool call"]
    console.print(f"embedded chooser: menu valid {m['valid']}/{m['n']} (agrees with the policy "
                  f"{m['agrees']}), tool call valid {t['valid']}/{t['n']} (agrees {t['agrees']}); "
                  f"{m['seconds']:.1f} s vs {t['seconds']:.1f} s per choice", markup=False,
                  highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
