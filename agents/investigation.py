"""The resources of one running investigation, shared by the graph nodes: the model and neuron,
the planner, the prompt memory (FAISS de-duplication), the dataset exemplars, the run files, and
the tool registry that maps each action type to the tool that carries it out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurosleuth.agents import candidates
from neurosleuth.agents.actions import (
    CompareHypotheses,
    Finish,
    ProposePrompts,
    RunAblation,
    RunAttack,
    RunAttribution,
    RunHypothesis,
    RunPatch,
    RunSteering,
    TestHypothesis,
)
from neurosleuth.agents.config import RunConfig
from neurosleuth.agents.heuristic import HeuristicPlanner
from neurosleuth.agents.prompts import PlannerView
from neurosleuth.agents.rundir import RunFiles, now_iso
from neurosleuth.memory.dedup import DedupResult, PromptDeduper, RejectedPrompt
from neurosleuth.memory.seeds import random_prompts
from neurosleuth.memory.topk import ActivationHeaps
from neurosleuth.tools import backoff
from neurosleuth.tools.measure import ActivationResult, measure
from neurosleuth.tools.model import LoadedModel
from neurosleuth.tools.neurons import NeuronId

Tool = Callable[[Any, dict], dict]


@dataclass
class Investigation:
    cfg: RunConfig
    lm: LoadedModel
    neuron: NeuronId
    planner: Any
    planner_note: str
    files: RunFiles
    dedup: PromptDeduper
    snippets: list[tuple[float, str, str]] = field(default_factory=list)  # (act, peak, text)
    dataset_max: float | None = None
    interrupted: bool = False
    registry: dict[type, Tool] = field(default_factory=dict)
    score_cache: dict = field(default_factory=dict)  # neuron-level score evidence, reused
    board: Any = None  # a layer-parallel batch's search board (``batch/interleave.py``)
    # seconds this thread spent on the other neurons' turns of its layer-parallel group, so far
    others_s: Callable[[], float] = lambda: 0.0
    backoffs_at_start: int = field(default_factory=lambda: len(backoff.backoffs()))
    # called after every node with (node, event, state, update, investigation): a live view
    observer: Callable[..., None] | None = None

    def __post_init__(self) -> None:
        from neurosleuth.agents import experiments, probes

        self.registry = {
            RunAblation: lambda action, state: probes.run_ablation(self, action, state),
            RunAttribution: lambda action, state: probes.run_attribution(self, action, state),
            RunSteering: lambda action, state: probes.run_steering(self, action, state),
            RunPatch: lambda action, state: experiments.run_patch(self, action, state),
            TestHypothesis: lambda action, state: experiments.run_test(self, action, state),
            CompareHypotheses: lambda action, state: experiments.run_compare(self, action, state),
            RunHypothesis: lambda action, state: {
                "rows": [], "forward_passes": 0, "summary": "a hypothesis round is next"},
            ProposePrompts: self.run_prompts,
            RunAttack: self.run_attack,
            Finish: self.run_finish,
        }

    # ---- evidence ----------------------------------------------------------------------
    def load_exemplars(self) -> list[tuple[float, str, str]]:
        """Top dataset windows of the neuron, cut to end at their peak token (the model is
        causal: the text up to the peak carries the activation). Writes exemplars.json."""
        from neurosleuth.agents.exemplars import exemplar_snippets

        data, self.snippets = exemplar_snippets(self.lm, self.neuron, self.cfg)
        self.dataset_max = data.get("top", [{}])[0].get("max_act") if data.get("top") else None
        self.files.write_json("exemplars.json", data)
        return self.snippets

    def ensure_exemplars(self) -> None:
        """On resume: reload the snippets from exemplars.json without scanning again."""
        if self.snippets:
            return
        from neurosleuth.agents.exemplars import snippets_from_json

        data = self.files.read_json("exemplars.json", {})
        self.snippets = snippets_from_json(data)
        self.dataset_max = data["top"][0]["max_act"] if data.get("top") else None

    def measure(self, prompts: list[str]) -> ActivationResult:
        return measure(self.lm, prompts, [self.neuron])

    def view(self, state: dict, explanation: Any = None) -> PlannerView:
        heaps = ActivationHeaps.from_dict(state["heaps"])
        last = (state.get("hypotheses") or [None])[-1]
        steering = [m["message"] for m in state.get("steering", [])]
        return PlannerView(
            neuron=str(self.neuron),
            model=self.cfg.model,
            top=[(r.activation, r.max_token, r.prompt) for r in heaps.top(10)],
            bottom=[(r.activation, r.max_token, r.prompt) for r in heaps.bottom(5)],
            exemplars=self.snippets[:8],
            hypothesis=last["text"] if last else None,
            steering=steering,
            feedback=self._feedback(state),
            iteration=state.get("iteration", 0),
            evidence=latest_findings(state.get("evidence", [])),
            findings=candidates.findings(explanation) if explanation is not None else [],
            candidates=[_candidate_line(c) for c in (last or {}).get("candidates", [])
                        if c.get("margin") is not None],
            status=self._status(state),
        )

    def _status(self, state: dict) -> str:
        """Where the investigation stands, for the planner's experiment choice."""
        from neurosleuth.agents.policy import situation

        s = situation(state, self.cfg)
        parts = [f"step {s.step} of {self.cfg.iterations}, {100 * s.budget_used:.0f}% of the "
                 "budget used", f"the top list grew by {s.grew} at the last step",
                 f"{s.stalled} step(s) without a new best"]
        if s.steps_since_hypothesis is None:
            parts.append("no hypothesis yet")
        else:
            parts.append(f"last hypothesis round {s.steps_since_hypothesis} step(s) ago")
        if s.kinds_since_hypothesis:
            parts.append("run since: " + ", ".join(sorted(s.kinds_since_hypothesis)))
        return "; ".join(parts) + "."

    def probe(self, state: dict, skip: frozenset[str] = frozenset()) -> tuple[list[dict], int]:
        """Run the causal probes through the registry, but those in ``skip`` (run since the last
        hypothesis already); returns findings and forward passes."""
        findings, passes = [], 0
        probes_ = (RunAblation(prompts=min(4, self.cfg.k)), RunAttribution(steps=16), RunSteering())
        for action in probes_:
            if action.kind in skip:
                continue
            outcome = self.registry[type(action)](action, state)
            passes += outcome["forward_passes"]
            if outcome["evidence"]:
                findings.append(outcome["evidence"])
        return findings, passes

    def explain(self, state: dict):
        """The evidence explainer (``tools/explain.py``) on the best prompts and the top dataset
        windows; saved as ``explanation.json``."""
        from neurosleuth.tools.explain import explain

        data = self.files.read_json("exemplars.json", {})
        top = data.get("top", [])
        heaps = ActivationHeaps.from_dict(state["heaps"])
        texts = [r.prompt for r in heaps.top(8)]
        texts += ["".join(e["tokens"][: int(e["argmax"]) + 1]) for e in top]
        windows = [(e["tokens"], np.asarray(e["acts"], dtype=float)) for e in top]
        result = explain(self.lm, self.neuron, texts, windows)
        self.files.write_json("explanation.json", {"step": state.get("iteration", 0),
                                                   **result.to_dict()})
        return result

    def score(self, hypothesis: str, writer: Any = None):
        """Score a hypothesis (score/run.py): with ``writer``, else this run's planner writes."""
        from neurosleuth.agents.scoring import planner_control, planner_writer, score_config
        from neurosleuth.score.run import score_hypothesis

        config = score_config(
            self.cfg,
            sim_windows=2,
            random_windows=8,
            n_prompts=6,
            paraphrases=2,
            baseline=10,
            n_boot=500,
        )
        return score_hypothesis(
            self.lm,
            self.neuron,
            hypothesis,
            writer=writer or planner_writer(self.planner, self.neuron, self.lm.name),
            hypothesize=planner_control(self.planner),
            config=config,
            exemplars=self.files.read_json("exemplars.json", {}),
            cache=self.score_cache,
        )

    def attack_counterexamples(self, hypothesis: str, state: dict, threshold: float,
                               writer: Any = None):
        """Prompts the attack drives above ``threshold`` that the hypothesis does not cover, as
        judged by ``writer`` (the one that scored it; else the planner's)."""
        from neurosleuth.agents.scoring import planner_writer
        from neurosleuth.score.run import attack_counterexamples

        seeds = [r.prompt for r in ActivationHeaps.from_dict(state["heaps"]).top(2)]
        return attack_counterexamples(
            self.lm,
            self.neuron,
            hypothesis,
            seeds,
            threshold,
            seed=self.cfg.seed + state.get("iteration", 0),
            writer=writer or planner_writer(self.planner, self.neuron, self.lm.name),
        )

    def _feedback(self, state: dict) -> str:
        """Rejections so far, and the last hypothesis's counterexamples (to refine it)."""
        parts = []
        stats = state.get("stats", {})
        dup, sem = stats.get("rejected_duplicate", 0), stats.get("rejected_semantic", 0)
        if dup or sem:
            parts.append(
                f"{dup} exact repeats and {sem} near-repeats were rejected so far; "
                "write texts unlike the ones above."
            )
        last = (state.get("hypotheses") or [None])[-1]
        details = ((last or {}).get("score") or {}).get("details") or {}
        for key, what in (
            (
                "predicted_high_but_low",
                "the hypothesis predicted firing, but the neuron stayed low",
            ),
            ("predicted_low_but_high", "the hypothesis predicted nothing, but the neuron fired"),
        ):
            examples = [repr(t) for t, _ in details.get(key, [])[:2]]
            if examples:
                parts.append(f"Counterexamples ({what}): " + ", ".join(examples) + ".")
        return " ".join(parts)

    # ---- tools -------------------------------------------------------------------------
    def run_prompts(self, action: ProposePrompts, state: dict) -> dict:
        """De-duplicate, then measure the accepted prompts in one batch. When an LLM's proposal
        is mostly rejected (a weak planner repeating itself), the batch is topped up with the
        heuristic's mutations of the best prompts, so every step still explores."""
        source = state.get("action_source", "planner")
        prompts = [p[: self.cfg.max_prompt_chars] for p in action.prompts]
        sources = [source] * len(prompts)
        checked = self.dedup.check(prompts, record=False)  # counted once, in record
        missing = self.cfg.prompts_per_step // 2 - len(checked.accepted)
        if missing > 0 and source not in QUEUED_SOURCES:
            extra = HeuristicPlanner(self.cfg.seed).propose(self.view(state), missing).prompts
            prompts += [p[: self.cfg.max_prompt_chars] for p in extra]
            sources += ["mutation"] * len(extra)
            checked = self.dedup.check(prompts, record=False)  # same decisions for the first part
        origin = dict(zip(prompts, sources, strict=True))
        rows = [
            _row(r.prompt, r.reason, origin[r.prompt], similarity=r.similarity)
            for r in checked.rejected
        ]
        accepted = [p for p in checked.accepted if self.lm.encode(p)[self.lm.n_prefix :]]
        if accepted:
            res = self.measure(accepted)
            rows += [
                _row(p, "accepted", origin[p], float(res.max_act[i, 0]), res.max_token(i))
                for i, p in enumerate(accepted)
            ]
        rows += self.shared_rows(accepted)
        best = max((r["activation"] for r in rows if r["activation"] is not None), default=None)
        return {
            "rows": rows,
            "forward_passes": len(accepted),
            "dedup": checked.to_dict(),
            "summary": f"{len(accepted)}/{len(prompts)} accepted, best {best}",
        }

    def shared_rows(self, mine: list[str]) -> list[dict]:
        """In a layer-parallel batch: post this step's prompts to the group's board and take the
        others' (measured for this neuron in the same shared passes: cache reads, no forward
        pass), as rows with status ``shared`` and source ``neuron L:I``."""
        if self.board is None:
            return []
        theirs = [(p, n) for p, n in self.board.exchange(str(self.neuron), mine)
                  if self.lm.encode(p)[self.lm.n_prefix :]]
        if not theirs:
            return []
        res = self.measure([p for p, _ in theirs])
        return [_row(p, "shared", f"neuron {n}", float(res.max_act[i, 0]), res.max_token(i))
                for i, (p, n) in enumerate(theirs)]

    def run_attack(self, action: RunAttack, state: dict) -> dict:
        """Gradient-guided search seeded with the best prompt; its best prompts are measured."""
        from neurosleuth.agents.attack_tool import attack_rows

        heaps = ActivationHeaps.from_dict(state["heaps"])
        seeds = [r.prompt for r in heaps.top(2)] + [s for _, _, s in self.snippets[:1]]
        outcome = attack_rows(self, seeds, action.steps, action.length, state.get("iteration", 0),
                              action.direction)
        return {**outcome, "summary": f"attack ({action.direction}): {outcome['summary']}"}

    def run_finish(self, action: Finish, state: dict) -> dict:
        return {
            "rows": [],
            "forward_passes": 0,
            "summary": f"finish: {action.reason}",
        }

    # ---- memory and recovery -----------------------------------------------------------
    def remember(self, step: int, measured: list[dict], checked: dict | None) -> None:
        """Fold one step into the FAISS memory: its filter decisions (adaptive threshold) and
        its measured prompts. Once per step: a re-run after a kill is skipped."""
        marker = self.files.read_json("dedup_step.json", {"step": 0})["step"]
        if step <= marker:
            return
        if checked:
            rejected = [RejectedPrompt(**r) for r in checked["rejected"]]
            self.dedup.observe(
                DedupResult(
                    checked["accepted"], rejected, checked["threshold"], checked.get("exploit", 0)
                )
            )
        if measured:
            self.dedup.add([r["prompt"] for r in measured], [r["activation"] for r in measured])
        self.dedup.save(self.files / "dedup")
        self.files.write_json("dedup_step.json", {"step": step})

    def recover(self, strategy: str, state: dict) -> dict:
        """State changes that carry out a stagnation recovery strategy."""
        n = self.cfg.prompts_per_step
        if strategy == "exemplar_restart":
            cur = state.get("exemplar_cursor", 0)
            picked = self.snippets[cur : cur + n] or self.snippets[:n]
            return {
                "pending": [{"prompt": s, "source": "exemplar"} for _, _, s in picked],
                "exemplar_cursor": cur + len(picked),
            }
        if strategy == "random_prompts":
            rng = np.random.default_rng([self.cfg.seed, state["iteration"]])
            return {"pending": [{"prompt": p, "source": "random"} for p in random_prompts(n, rng)]}
        if strategy == "raise_temperature":
            return {"temperature": min(1.5, state.get("temperature", self.cfg.temperature) + 0.3)}
        if strategy == "attack":
            return {"pending": [{"action": RunAttack().model_dump(), "source": "attack"}]}
        raise ValueError(f"unknown recovery strategy {strategy!r}")

    # ---- budgets and bookkeeping -------------------------------------------------------
    def stop_reason(self, state: dict) -> str | None:
        cfg = self.cfg
        if self.interrupted:
            return "interrupted (Ctrl-C)"
        if (state.get("action") or {}).get("kind") == "finish" and state.get("hypotheses"):
            return "planner finished: " + (state["action"].get("reason") or "decided")
        if state["iteration"] >= cfg.iterations:
            return f"iteration budget ({cfg.iterations})"
        if cfg.max_forward_passes and state["forward_passes"] >= cfg.max_forward_passes:
            return f"forward-pass budget ({cfg.max_forward_passes})"
        if cfg.time_budget_s and state.get("elapsed_s", 0.0) >= cfg.time_budget_s:
            return f"time budget ({cfg.time_budget_s:.0f} s)"
        return None

    def save_hypotheses(self, hypotheses: list[dict]) -> None:
        self.files.write_json("hypotheses.json", hypotheses)

    def write_summary(self, state: dict, status: str) -> dict:
        heaps = ActivationHeaps.from_dict(state["heaps"])
        llm = state.get("llm", {})
        top = heaps.top(1)
        previous = self.files.read_json("summary.json", {}) or {}
        errors = list(getattr(self.planner, "last_errors", None) or previous.get("llm_errors", []))
        summary = {
            "run_id": self.cfg.run_id,
            "model": self.cfg.model,
            "model_desc": self.lm.describe(),
            "neuron": str(self.neuron),
            "planner_used": self.planner.name,
            "planner_note": self.planner_note,
            "status": status,
            "stop_reason": state.get("stop_reason"),
            "iterations": state.get("iteration", 0),
            "forward_passes": state.get("forward_passes", 0),
            "llm_calls": llm.get("calls", 0),
            "llm_tokens_in": llm.get("tokens_in", 0),
            "llm_tokens_out": llm.get("tokens_out", 0),
            "llm_failures": llm.get("failures", 0),
            "llm_repairs": llm.get("repairs", 0),
            "llm_fallbacks": llm.get("fallbacks", 0),
            "llm_errors": errors,  # the last distinct LLM errors (the planner keeps them)
            "wall_s": round(state.get("elapsed_s", 0.0), 3),
            "own_s": round(state.get("own_s", state.get("elapsed_s", 0.0)), 3),
            "oom_backoffs": backoff.summary(self.backoffs_at_start),
            "planner_s": round(llm.get("seconds", 0.0), 3),
            "model_s": round(state.get("model_s", 0.0), 3),
            "best_activation": top[0].activation if top else None,
            "best_prompt": top[0].prompt if top else None,
            "dataset_max": self.dataset_max,
            "stats": state.get("stats", {}),
            "recoveries": state.get("recoveries", []),
            "steering": state.get("steering", []),
            "started_at": previous.get("started_at", now_iso()),
            "finished_at": None,
        }
        if status in ("finished", "interrupted", "failed"):
            summary["finished_at"] = now_iso()
        self.files.write_json("summary.json", summary)
        return summary

    def finish(self, state: dict, status: str) -> None:
        """Final files and the report."""
        from neurosleuth.report.build import write_report

        self.write_summary(state, status)
        heaps = ActivationHeaps.from_dict(state["heaps"])
        self.files.write_json(
            "heaps.json",
            {
                "k": self.cfg.k,
                "top": [r.to_dict() for r in heaps.top()],
                "bottom": [r.to_dict() for r in heaps.bottom()],
            },
        )
        self.files.write_curve(state.get("curve", []))
        self.save_hypotheses(state.get("hypotheses", []))
        self.files.write_json("evidence.json", state.get("evidence", []))
        write_report(self.files.path, self.lm, self.neuron)


def _candidate_line(c: dict) -> str:
    lo, hi = c.get("margin_ci") or (None, None)
    interval = f" ({lo:+.3f}..{hi:+.3f})" if lo is not None and hi is not None else ""
    return f"{c['text']!r}: margin {c['margin']:+.3f}{interval}"


def latest_findings(evidence: list[dict]) -> list[str]:
    """The headline of the newest finding of each kind (ablation, attribution)."""
    latest: dict[str, str] = {}
    for e in evidence:
        latest[e["kind"]] = e["headline"]
    return [f"{kind}: {text}" for kind, text in latest.items()]


QUEUED_SOURCES = ("exemplar", "random", "attack", "mutation", "heuristic", "steer")


def _row(
    prompt: str,
    status: str,
    source: str,
    activation: float | None = None,
    max_token: str | None = None,
    similarity: float | None = None,
) -> dict:
    """One line of prompts.csv."""
    return {
        "prompt": prompt,
        "status": status,
        "activation": activation,
        "max_token": max_token,
        "source": source,
        "similarity": None if similarity is None else round(float(similarity), 4),
    }
