"""Experiment-design policy vs the fixed schedule: at the same forward-pass budget and seed, whose
final hypothesis simulates a neuron better on held-out windows?

Neurons: the 20 SmolLM2-135M neurons of ``bench/explain.py`` (its ``NEURONS``; ``--neurons K``
runs the first K) and, with ``--planted`` (default), the three planted neurons of the tests
(``tests/planted_smollm2.py``: animal names 6:100, weekday names 8:300, Python source 10:200),
whose answers are known. The planted model is built once and kept in the cache
(``<cache>/bench/smollm2-planted-<hash of the planting code>``, ~540 MB).

Per neuron, two investigations (``agents.session.investigate``, in-process, heuristic planner:
no LLM time), identical but for ``RunConfig.policy``:

- ``fixed``: today's schedule: prompts proposed every step, causal probes and a hypothesis round
  every ``hypothesis_every`` steps (and one when the budget runs out);
- ``adaptive``: the planner chooses the experiments.

Both get the same ``--seed``, ``max_forward_passes=--budget`` and ``iterations=10,000`` (so the
forward-pass budget is what stops them; the agent checks it between steps, so a hypothesis round
started under the budget can overshoot it), the same scan (``exemplar_tokens=--scan-tokens``) and
run in a temporary runs dir (``--keep`` to keep them).

Score (as ``bench/explain.py``): simulation correlation, Pearson r between the final hypothesis's
simulated and the real per-token activations, pooled over 12 held-out top windows and 12 random
held-out windows (all tokens of each); bootstrap 95% CI over tokens per run (300 resamples) and
over neurons for the means (10,000 resamples, seed 0). The final hypothesis is the last entry of
``hypotheses.json``, simulated as the product simulated it when it scored it: by its explainer
pattern when the explainer wrote it (the round's candidates, captured by an observer, through
``agents.candidates.writer_for``), else by the keyword/concept matcher (``score/writer.py``).

Held out means unseen by either run: the agent reads the scan's top ``max(k, 2 *
prompts_per_step)`` = 20 windows, so the held-out top windows are those ranked 21-32 (explain.py's
methods saw 12, and it holds out 13-24); the random windows (``heldout_windows``, seed 7) exclude
the scan's kept top/bottom windows and every window the agent's own scorer judged or drew test
prompts from (read from the runs' score caches).

Reported: per neuron both hypotheses and r; wins/ties/losses of adaptive (a tie: |r_a - r_f| <
0.001); mean r per policy with its CI and the paired mean difference; per policy, how often a
concept beat its token list (the final hypothesis's ``decided_by``: the concept-or-list experiment
said "concept" and the final hypothesis carries the concept, ``agents/candidates.py`` ``decide``),
with the experiment's verdicts; forward passes, hypothesis rounds and wall seconds per
investigation. Last line (the SmolLM2 neurons only; planted ones get their own line before it):
``adaptive beats fixed schedule on N/20 neurons; mean r X (CI a..b) vs Y (CI a..b)``.

Budget: the default (800 forward passes) covers what the fixed schedule spends on its first ten
search steps (8 prompts each, ~50-80 passes) and its scheduled hypothesis round at step 10 (~800
passes on SmolLM2: probes, explainer, concept experiment, scoring every candidate); it stops
after the next step with its end-of-budget round: 2 rounds, ~1,850 passes. Any budget from ~80 to
~900 gives the fixed schedule those same 2 rounds; under ~50 it makes only the end-of-budget
round (and an adaptive policy has no room to choose an experiment); 1,000 already gives it 3.

Run: ``python bench/agent.py [--neurons 20] [--budget 800] [--no-planted] [--threads 1]``; JSON
to ``bench/results/agent.json``, rewritten after every neuron (``"complete": false`` until the
end).

Timing (2026-12-04, the 2-core development machine; both policies behaved alike in this branch,
where ``policy`` is not read yet), per investigation at ``--budget 800`` (2 rounds; ~70% of the
time in ``test``: scoring and the attack's counterexample search): idle, ``--threads 1``: 95-102
s (layer 14), 148-162 s (layer 29); idle, ``--threads 2``: 60-62 s (layer 14). At ``--budget
40`` (1 round), idle, ``--threads 2``: 30-32 s (layer 14). Beside other jobs (load 3-7,
``--threads 1``, budget 1000, 3 rounds): 99-257 s. Once per layer, the scan of
``--scan-tokens`` (cached) and, once per machine, the planted model's build (~1 min). So the
default full run (46 investigations, 13 layer scans) takes ~2 h on 1 thread, ~1 h on 2 idle
threads: over the 40 minutes aimed at. ``--budget 40 --threads 2`` fits ~40 min on an idle
2-core machine, but compares only what each policy does before the forced end-of-budget round.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if str(HERE.parent) not in sys.path:
    sys.path.append(str(HERE.parent))  # tests/ (the planted neurons)
from explain import NEURONS, boot_ci, pearson, simulate  # noqa: E402

from neurosleuth.agents import candidates  # noqa: E402
from neurosleuth.agents.config import resolve_config  # noqa: E402
from neurosleuth.agents.session import investigate  # noqa: E402
from neurosleuth.report.build import write_report  # noqa: E402
from neurosleuth.score.writer import HeuristicWriter  # noqa: E402
from neurosleuth.tools.exemplars import exemplars, heldout_windows  # noqa: E402
from neurosleuth.tools.explain import Pattern  # noqa: E402
from neurosleuth.tools.measure import measure_ids  # noqa: E402
from neurosleuth.tools.model import LoadedModel, cache_dir, load_model  # noqa: E402
from neurosleuth.tools.neurons import NeuronId  # noqa: E402

POLICIES = ("fixed", "adaptive")
HELD_TOP, HELD_RANDOM, RANDOM_SEED = 12, 12, 7
TIE = 1e-3
console = Console(width=200)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--neurons", type=int, default=len(NEURONS),
                   help="the first K neurons of bench/explain.py's NEURONS")
    p.add_argument("--neuron", action="append", default=None,
                   help="explicit neuron L:I (repeatable; replaces NEURONS)")
    p.add_argument("--planted", action=argparse.BooleanOptionalAction, default=True,
                   help="also the planted neurons of tests/planted_smollm2.py")
    p.add_argument("--budget", type=int, default=800, help="forward passes per investigation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scan-tokens", type=int, default=32768)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default=None, help="default: CUDA when present")
    p.add_argument("--corpus", default=None, help="default: the shipped corpus")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    p.add_argument("--json", type=Path, default=HERE / "results" / "agent.json")
    return p.parse_args(argv)


# ---------------------------------------------------------------- the planted neurons


def planted_group(args) -> tuple[LoadedModel, str, list[tuple[str, NeuronId]]]:
    """The planted SmolLM2 (built once, kept in the cache), its folder and labelled neurons."""
    from tests import planted
    from tests import planted_smollm2 as P

    code = Path(P.__file__).read_bytes() + Path(planted.__file__).read_bytes()
    folder = cache_dir() / "bench" / f"smollm2-planted-{hashlib.sha1(code).hexdigest()[:12]}"
    if not (folder / "planted.json").is_file():
        console.print(f"building the planted model in {folder} ...", style="dim")
        tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        P.build(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    lm = load_model(str(folder), device=args.device)
    return lm, str(folder), [("animal", P.ANIMAL), ("weekday", P.WEEKDAY), ("code", P.CODE)]


# ---------------------------------------------------------------- one investigation


def run_policy(lm: LoadedModel, model: str, neuron: NeuronId, policy: str, args, runs: Path,
               tag: str) -> tuple[dict, dict]:
    """Investigate ``neuron`` under ``policy``; returns its record and what the held-out choice
    needs (the agent's top-window count, the windows its scorer used)."""
    cfg = resolve_config(None, model=model, planner="heuristic", policy=policy, seed=args.seed,
                         iterations=10_000, max_forward_passes=args.budget, device=args.device,
                         runs_dir=str(runs), neuron=str(neuron), exemplar_tokens=args.scan_tokens,
                         corpus=args.corpus, window=args.window,
                         run_id=f"{tag}-{neuron.layer}-{neuron.index}-{policy}")
    drafts: dict[int, list[dict]] = {}  # step -> the round's candidates (patterns included)
    held: list = []

    def observe(name, event, state, update, ctx) -> None:
        if not held:
            held.append(ctx)
        draft = update.get("pending_hypothesis") or {}
        if draft.get("candidates"):
            drafts[draft["step"]] = draft["candidates"]

    start, cpu = time.perf_counter(), time.process_time()
    run = investigate(cfg, lm=lm, observer=observe, reporter=write_report)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    summary = json.loads((run / "summary.json").read_text())
    hyps = json.loads((run / "hypotheses.json").read_text())
    final = hyps[-1] if hyps else {"text": "", "source": None, "step": None}
    cands = drafts.get(final.get("step")) or explainer_candidates(run, final)
    writer = candidates.writer_for(SimpleNamespace(neuron=neuron, lm=lm), cands)
    decided = final.get("decided_by")
    record = {
        "policy": policy, "run_id": cfg.run_id, "hypothesis": final["text"],
        "source": final.get("source"),
        "simulator": "pattern" if final["text"] in writer.patterns else "keywords",
        "decided_by": decided, "concept_beat_list": concept_beat_list(decided),
        "verdict": (final.get("experiment") or {}).get("verdict"),
        "aggregate": (final.get("score") or {}).get("aggregate"),
        "rounds": len(hyps), "forward_passes": summary["forward_passes"],
        "stop_reason": summary["stop_reason"], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "by_node_s": by_node(run),
    }
    used = [tok for entry in held[0].score_cache.values()
            for tok in list(entry["held"].tokens) + list(entry["held"].pool)]
    agent_k = max(cfg.k, 2 * cfg.prompts_per_step)
    return record, {"writer": writer, "agent_k": agent_k, "used": used}


def explainer_candidates(run: Path, final: dict) -> list[dict]:
    """The explainer's candidates of the final round from ``explanation.json`` (when no draft was
    seen): the same ``variants`` the round scored, each with its pattern."""
    data = json.loads((run / "explanation.json").read_text()) if (
        run / "explanation.json").is_file() else {}
    if not data or data.get("step") != final.get("step"):
        return []
    ex = SimpleNamespace(sentence=data["sentence"], details=data.get("details", ""),
                         pattern=Pattern.from_dict(data["pattern"]))
    return candidates.from_explainer(ex)


def concept_beat_list(decided: dict | None) -> bool:
    """The concept-or-list experiment said "concept" and the final hypothesis is the concept: it
    already was, or ``decide`` switched to it (``why_not``: it could not)."""
    return bool(decided and decided.get("verdict") == "concept" and not decided.get("why_not"))


def by_node(run: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in (run / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        out[e["node"]] = round(out.get(e["node"], 0.0) + float(e.get("duration_s") or 0.0), 2)
    return dict(sorted(out.items(), key=lambda x: -x[1]))


# ---------------------------------------------------------------- held-out windows


def held_out(lm: LoadedModel, neuron: NeuronId, args, agent_k: int, used: list) -> list:
    """(tokens, activations) of the held-out top windows (ranks agent_k+1 .. agent_k+12 of the
    scan) and of 12 random windows no run's scorer used."""
    top = exemplars(lm, [neuron], corpus=args.corpus, k=agent_k + HELD_TOP, window=args.window,
                    max_tokens=args.scan_tokens)[neuron].top[agent_k:]
    rows = [(list(e.window.tokens), np.asarray(e.acts, dtype=float)) for e in top]
    seen = list(dict.fromkeys("\x00".join(t) for t in used))
    rand = [w for w in heldout_windows(lm, neuron, HELD_RANDOM + len(used), corpus=args.corpus,
                                       window=args.window, max_tokens=args.scan_tokens,
                                       seed=RANDOM_SEED)
            if not any(s in "\x00".join(w.tokens) for s in seen)][:HELD_RANDOM]
    if rand:
        prefix = list(lm.encode("")[: lm.n_prefix])
        acts = measure_ids(lm, [prefix + list(w.token_ids) for w in rand], [neuron])
        rows += [(list(w.tokens), a[lm.n_prefix:, 0].astype(float))
                 for w, a in zip(rand, acts, strict=True)]
    return rows


def correlation(writer: HeuristicWriter, text: str, rows: list) -> tuple[float, list[float]]:
    pred, real = simulate(lambda t: writer.simulate(text, list(t)), rows)
    r = pearson(pred, real)
    lo, hi = boot_ci(np.stack([pred, real], axis=1), lambda s: pearson(s[:, 0], s[:, 1]), n=300)
    return round(r, 4), [round(lo, 4), round(hi, 4)]


# ---------------------------------------------------------------- the comparison


def bench_neuron(lm, model: str, neuron: NeuronId, label: str, group: str, args, runs,
                 order: tuple[str, ...] = POLICIES) -> dict:
    exemplars(lm, [neuron], corpus=args.corpus, k=32, window=args.window,
              max_tokens=args.scan_tokens)  # the layer's scan, charged to neither policy
    runs_, extra = {}, {}
    for policy in order:
        runs_[policy], extra[policy] = run_policy(lm, model, neuron, policy, args, runs, group)
    agent_k = max(e["agent_k"] for e in extra.values())
    rows = held_out(lm, neuron, args, agent_k, [t for e in extra.values() for t in e["used"]])
    for policy in POLICIES:
        r = runs_[policy]
        r["r"], r["ci"] = correlation(extra[policy]["writer"], r["hypothesis"], rows)
    diff = runs_["adaptive"]["r"] - runs_["fixed"]["r"]
    outcome = "tie" if abs(diff) < TIE else "win" if diff > 0 else "loss"
    return {"group": group, "neuron": str(neuron), "label": label, "held_windows": len(rows),
            "held_tokens": int(sum(len(t) for t, _ in rows)), "diff_r": round(diff, 4),
            "outcome": outcome, **runs_}


def summarise(rows: list[dict]) -> dict:
    if not rows:
        return {}
    out: dict = {"n": len(rows)}
    for policy in POLICIES:
        vals = np.array([r[policy]["r"] for r in rows])
        lo, hi = boot_ci(vals, lambda s: s.mean(axis=-1))
        runs_ = [r[policy] for r in rows]
        verdicts: dict[str, int] = {}
        for x in runs_:
            v = x["verdict"] or "no experiment"
            verdicts[v] = verdicts.get(v, 0) + 1
        out[policy] = {
            "mean_r": round(float(vals.mean()), 4), "ci": [round(lo, 4), round(hi, 4)],
            "concept_beat_list": sum(x["concept_beat_list"] for x in runs_),
            "experiment_ran": sum(x["decided_by"] is not None for x in runs_),
            "verdicts": verdicts,
            "mean_forward_passes": round(float(np.mean([x["forward_passes"] for x in runs_])), 1),
            "mean_rounds": round(float(np.mean([x["rounds"] for x in runs_])), 2),
            "mean_wall_s": round(float(np.mean([x["wall_s"] for x in runs_])), 1),
        }
    diffs = np.array([r["diff_r"] for r in rows])
    lo, hi = boot_ci(diffs, lambda s: s.mean(axis=-1))
    out["diff"] = {"mean": round(float(diffs.mean()), 4), "ci": [round(lo, 4), round(hi, 4)]}
    for k, name in (("win", "wins"), ("tie", "ties"), ("loss", "losses")):
        out[name] = sum(r["outcome"] == k for r in rows)
    return out


def short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def print_tables(rows: list[dict], summary: dict, args) -> None:
    table = Table(title=f"final hypothesis, simulation r on held-out windows (budget "
                  f"{args.budget} forward passes, seed {args.seed})")
    for col in ("neuron", "fixed schedule", "r", "adaptive", "r", "Δr", "", "passes f/a",
                "rounds f/a", "s f/a"):
        table.add_column(col, overflow="fold",
                         justify="left" if col in ("neuron", "fixed schedule", "adaptive")
                         else "right")
    for r in rows:
        f, a = r["fixed"], r["adaptive"]
        name = r["neuron"] + (f" ({r['label']})" if r["label"] else "")
        mark = lambda x: "*" if x["concept_beat_list"] else ""  # noqa: E731
        table.add_row(name, short(f["hypothesis"]) + mark(f), f"{f['r']:+.3f}",
                      short(a["hypothesis"]) + mark(a), f"{a['r']:+.3f}", f"{r['diff_r']:+.3f}",
                      r["outcome"], f"{f['forward_passes']}/{a['forward_passes']}",
                      f"{f['rounds']}/{a['rounds']}", f"{f['wall_s']:.0f}/{a['wall_s']:.0f}")
    console.print(table)
    console.print("* the concept-or-list experiment chose the concept", style="dim")
    table = Table(title="per policy")
    for col in ("neurons", "policy", "mean r", "95% CI", "concept beat list", "experiment ran",
                "verdicts", "passes", "rounds", "s / investigation"):
        table.add_column(col, justify="right")
    for group, s in summary.items():
        for policy in POLICIES:
            p = s[policy]
            table.add_row(group, policy, f"{p['mean_r']:+.3f}",
                          f"{p['ci'][0]:+.3f}..{p['ci'][1]:+.3f}",
                          f"{p['concept_beat_list']}/{s['n']}", f"{p['experiment_ran']}/{s['n']}",
                          ", ".join(f"{k} {v}" for k, v in p["verdicts"].items()),
                          f"{p['mean_forward_passes']:.0f}", f"{p['mean_rounds']:.1f}",
                          f"{p['mean_wall_s']:.0f}")
    console.print(table)


def warm_up() -> None:
    """One-time costs of a process (WordNet, report imports), charged to no investigation."""
    import neurosleuth.report.build  # noqa: F401
    from neurosleuth.tools.wordnet import wordnet

    wordnet()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    neurons = ([NeuronId.parse(n) for n in args.neuron] if args.neuron
               else NEURONS[: args.neurons])
    groups = []  # (name, () -> (model, its name for the run config, [(label, neuron)]))
    if neurons:
        groups.append(("smollm2", lambda: (load_model(args.model, device=args.device),
                                           args.model, [("", n) for n in neurons])))
    if args.planted:
        groups.append(("planted", lambda: planted_group(args)))
    warm_up()
    runs = args.keep or Path(tempfile.mkdtemp(prefix="bench-agent-"))
    started, load = time.perf_counter(), os.getloadavg()
    rows: list[dict] = []
    out: dict = {}
    try:
        for group, load_group in groups:
            lm, model, picks = load_group()
            for label, n in picks:
                order = POLICIES if len(rows) % 2 == 0 else POLICIES[::-1]  # warm caches: fair
                console.print(f"{group} {n} {label}: {', '.join(order)} ...", style="dim")
                row = bench_neuron(lm, model, n, label, group, args, runs, order)
                rows.append(row)
                console.print(f"  fixed {row['fixed']['r']:+.3f} ({row['fixed']['wall_s']:.0f} s)"
                              f"  adaptive {row['adaptive']['r']:+.3f} "
                              f"({row['adaptive']['wall_s']:.0f} s)  {row['outcome']}",
                              markup=False, highlight=False)
                out = write_json(args, rows, load, started, complete=False)
    finally:
        if args.keep is None:
            shutil.rmtree(runs, ignore_errors=True)
    out = write_json(args, rows, load, started, complete=True)
    print_tables(rows, out["summary"], args)
    planted = out["summary"].get("planted")
    if planted:
        console.print(line(planted, "planted: adaptive beats fixed schedule on"), markup=False,
                      highlight=False, soft_wrap=True)
    main_group = out["summary"].get("smollm2")
    if main_group:
        d = main_group["diff"]
        console.print(f"wins/ties/losses {main_group['wins']}/{main_group['ties']}/"
                      f"{main_group['losses']}; mean Δr {d['mean']:+.3f} (95% CI "
                      f"{d['ci'][0]:+.3f}..{d['ci'][1]:+.3f})", markup=False, highlight=False)
        print(line(main_group, "adaptive beats fixed schedule on"), flush=True)
    return out


def line(s: dict, head: str) -> str:
    a, f = s["adaptive"], s["fixed"]
    return (f"{head} {s['wins']}/{s['n']} neurons; mean r {a['mean_r']:.3f} (CI "
            f"{a['ci'][0]:.3f}..{a['ci'][1]:.3f}) vs {f['mean_r']:.3f} (CI {f['ci'][0]:.3f}.."
            f"{f['ci'][1]:.3f})")


def write_json(args, rows: list[dict], load, started: float, complete: bool) -> dict:
    groups = {g: summarise([r for r in rows if r["group"] == g])
              for g in dict.fromkeys(r["group"] for r in rows)}
    paths = ("keep", "json")  # no machine paths in the results
    out = {"complete": complete, "args": {k: str(v) for k, v in vars(args).items()
                                          if k not in paths},
           "machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
           "load_before": load, "load_after": os.getloadavg(),
           "wall_s": round(time.perf_counter() - started, 1), "summary": groups,
           "neurons": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
