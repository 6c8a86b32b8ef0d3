"""The deep dive against the atlas read-off it starts from: at the same scan, forward-pass budget
and seed, does testing and revising on the model (``agents/revise.py``) give a hypothesis that
simulates the neuron better on held-out windows than the records explanation of its scan?

Neurons: the 20 SmolLM2-135M neurons of ``bench/explain.py`` (its ``NEURONS``; ``--neurons K``
runs the first K) and, with ``--planted`` (default), the three planted neurons of the tests
(``tests/planted_smollm2.py``: animal names 6:100, weekday names 8:300, Python source 10:200),
whose answers are known. The planted model is built once and kept in the cache
(``<cache>/bench/smollm2-planted-<hash of the planting code>``, ~540 MB).

Per neuron, one investigation (``agents.session.investigate``, in-process, heuristic planner:
no LLM time, adaptive policy) with ``max_forward_passes=--budget``, ``iterations=10,000``, the
scan of ``--scan-tokens`` and ``--seed``, in a temporary runs dir (``--keep`` to keep them).
Two hypotheses are read off it:

- ``atlas``: the records explanation of the run's own scan (``readoff.json``: what the atlas
  writes for the neuron, from its top windows and the scan's random sample, no forward pass),
  simulated by its pattern;
- ``deep``: the final hypothesis after the rounds of test, revise, rescore, simulated as the
  product simulated it when it scored it (its pattern, else the keyword/concept matcher).

Score (as ``bench/explain.py``): simulation correlation, Pearson r between the simulated and the
real per-token activations, pooled over 12 held-out top windows and 12 random held-out windows;
bootstrap 95% CI over tokens per hypothesis (300 resamples) and over neurons for the means
(10,000 resamples, seed 0). Held out means unseen by either: the run reads the scan's top
``max(k, 2 * prompts_per_step)`` = 20 windows and its score the next 8 (``validation_top``), so
the held-out top windows are those ranked 29-40; the random windows (``heldout_windows``, seed
7) exclude the scan's kept top/bottom windows and every window the run's scorer judged or drew
test prompts from.

Reported: per neuron both hypotheses and r, wins/ties/losses of the deep dive (a tie: |Δr| <
0.001), whether a revision was kept (``revised``) and what the revision rounds edited; mean r
per arm with its CI and the paired mean difference; forward passes, rounds and wall seconds.
Last line (the SmolLM2 neurons; the planted ones get their own line before it):
``deep dive beats atlas on N/20 neurons; mean r X (CI a..b) vs Y (CI a..b); revised on M/20``.

Run: ``python bench/agent.py [--neurons 20] [--budget 2000] [--no-planted] [--threads 1]``; JSON
to ``bench/results/agent.json``, rewritten after every neuron (``"complete": false`` until the
end).
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
from neurosleuth.agents.exemplars import VALIDATION_TOP  # noqa: E402
from neurosleuth.agents.session import investigate  # noqa: E402
from neurosleuth.report.build import write_report  # noqa: E402
from neurosleuth.score.writer import HeuristicWriter  # noqa: E402
from neurosleuth.tools.exemplars import exemplars, heldout_windows  # noqa: E402
from neurosleuth.tools.explain import Pattern  # noqa: E402
from neurosleuth.tools.measure import measure_ids  # noqa: E402
from neurosleuth.tools.model import LoadedModel, cache_dir, load_model  # noqa: E402
from neurosleuth.tools.neurons import NeuronId  # noqa: E402

ARMS = ("atlas", "deep")
HELD_TOP, HELD_RANDOM, RANDOM_SEED = 12, 12, 7
READ = 20  # top windows a run reads (max(k, 2 * prompts_per_step) at the defaults)
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
    p.add_argument("--budget", type=int, default=2000,
                   help="forward passes per investigation (two or three rounds on SmolLM2)")
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


def run_deep(lm: LoadedModel, model: str, neuron: NeuronId, args, runs: Path, tag: str
             ) -> tuple[dict, dict]:
    """Investigate ``neuron``; returns the record of each arm and what the held-out choice needs
    (the agent's top-window count, the windows its scorer used)."""
    cfg = resolve_config(None, model=model, planner="heuristic", policy="adaptive",
                         seed=args.seed, iterations=10_000, max_forward_passes=args.budget,
                         device=args.device, runs_dir=str(runs), neuron=str(neuron),
                         exemplar_tokens=args.scan_tokens, corpus=args.corpus,
                         window=args.window, run_id=f"{tag}-{neuron.layer}-{neuron.index}")
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
    readoff = json.loads((run / "readoff.json").read_text()) if (
        run / "readoff.json").is_file() else {"text": "", "pattern": None}
    cands = list(drafts.get(final.get("step")) or explainer_candidates(run, final))
    cands += [c for c in ({"text": final["text"], "pattern": final.get("pattern")}, readoff)
              if c.get("pattern")]
    writer = candidates.writer_for(SimpleNamespace(neuron=neuron, lm=lm), cands)
    evidence = json.loads((run / "evidence.json").read_text())
    revisions = [e for e in evidence if e["kind"] == "revise"]
    kept = [e for e in revisions if e["kept"]]
    edits = [t["edit"] for e in kept for t in e["tests"] if t["edit"] != "keep"]
    deep = {
        "run_id": cfg.run_id, "hypothesis": final["text"], "source": final.get("source"),
        "simulator": "pattern" if final["text"] in writer.patterns else "keywords",
        "aggregate": (final.get("score") or {}).get("aggregate"),
        "margin": (final.get("score") or {}).get("margin"),
        "revised": bool(kept), "revision_rounds": len(revisions), "edits": edits,
        "rounds": len(hyps), "forward_passes": summary["forward_passes"],
        "stop_reason": summary["stop_reason"], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "by_node_s": by_node(run),
    }
    atlas = {"hypothesis": readoff["text"], "source": "records read-off",
             "simulator": "pattern" if readoff.get("pattern") else "keywords"}
    used = [tok for entry in held[0].score_cache.values()
            for tok in list(entry["held"].tokens) + list(entry["held"].pool)]
    seen = json.loads((run / "exemplars.json").read_text())
    agent_k = len(seen["top"]) + len(seen.get("validation_top", []))  # every window it read
    return {"atlas": atlas, "deep": deep}, {"writer": writer, "agent_k": agent_k, "used": used}


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


def bench_neuron(lm, model: str, neuron: NeuronId, label: str, group: str, args, runs) -> dict:
    exemplars(lm, [neuron], corpus=args.corpus, k=READ + VALIDATION_TOP + HELD_TOP,
              window=args.window,
              max_tokens=args.scan_tokens)  # the layer's scan, charged to neither arm
    arms, extra = run_deep(lm, model, neuron, args, runs, group)
    rows = held_out(lm, neuron, args, extra["agent_k"], extra["used"])
    for arm in ARMS:
        a = arms[arm]
        a["r"], a["ci"] = correlation(extra["writer"], a["hypothesis"], rows)
    diff = arms["deep"]["r"] - arms["atlas"]["r"]
    outcome = "tie" if abs(diff) < TIE else "win" if diff > 0 else "loss"
    return {"group": group, "neuron": str(neuron), "label": label, "held_windows": len(rows),
            "held_tokens": int(sum(len(t) for t, _ in rows)), "diff_r": round(diff, 4),
            "outcome": outcome, **arms}


def summarise(rows: list[dict]) -> dict:
    if not rows:
        return {}
    out: dict = {"n": len(rows)}
    for arm in ARMS:
        vals = np.array([r[arm]["r"] for r in rows])
        lo, hi = boot_ci(vals, lambda s: s.mean(axis=-1))
        out[arm] = {"mean_r": round(float(vals.mean()), 4), "ci": [round(lo, 4), round(hi, 4)]}
    deep = [r["deep"] for r in rows]
    out["revised"] = sum(x["revised"] for x in deep)
    out["deep"].update({
        "mean_forward_passes": round(float(np.mean([x["forward_passes"] for x in deep])), 1),
        "mean_rounds": round(float(np.mean([x["rounds"] for x in deep])), 2),
        "mean_wall_s": round(float(np.mean([x["wall_s"] for x in deep])), 1)})
    diffs = np.array([r["diff_r"] for r in rows])
    lo, hi = boot_ci(diffs, lambda s: s.mean(axis=-1))
    out["diff"] = {"mean": round(float(diffs.mean()), 4), "ci": [round(lo, 4), round(hi, 4)]}
    for k, name in (("win", "wins"), ("tie", "ties"), ("loss", "losses")):
        out[name] = sum(r["outcome"] == k for r in rows)
    return out


def short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def print_tables(rows: list[dict], summary: dict, args) -> None:
    table = Table(title=f"atlas read-off vs deep dive, simulation r on held-out windows (budget "
                  f"{args.budget} forward passes, seed {args.seed})")
    for col in ("neuron", "atlas read-off", "r", "deep dive", "r", "Δr", "", "revised",
                "passes", "rounds", "s"):
        table.add_column(col, overflow="fold", justify="left" if col in (
            "neuron", "atlas read-off", "deep dive") else "right")
    for r in rows:
        a, d = r["atlas"], r["deep"]
        name = r["neuron"] + (f" ({r['label']})" if r["label"] else "")
        table.add_row(name, short(a["hypothesis"]), f"{a['r']:+.3f}", short(d["hypothesis"]),
                      f"{d['r']:+.3f}", f"{r['diff_r']:+.3f}", r["outcome"],
                      "yes" if d["revised"] else "", str(d["forward_passes"]), str(d["rounds"]),
                      f"{d['wall_s']:.0f}")
    console.print(table)
    table = Table(title="per arm")
    for col in ("neurons", "arm", "mean r", "95% CI", "revised", "passes", "rounds",
                "s / investigation"):
        table.add_column(col, justify="right")
    for group, s in summary.items():
        for arm in ARMS:
            p = s[arm]
            table.add_row(group, arm, f"{p['mean_r']:+.3f}",
                          f"{p['ci'][0]:+.3f}..{p['ci'][1]:+.3f}",
                          f"{s['revised']}/{s['n']}" if arm == "deep" else "",
                          f"{p.get('mean_forward_passes', 0):.0f}",
                          f"{p.get('mean_rounds', 0):.1f}", f"{p.get('mean_wall_s', 0):.0f}")
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
                console.print(f"{group} {n} {label} ...", style="dim")
                row = bench_neuron(lm, model, n, label, group, args, runs)
                rows.append(row)
                console.print(f"  atlas {row['atlas']['r']:+.3f}  deep {row['deep']['r']:+.3f} "
                              f"({row['deep']['wall_s']:.0f} s, revised: "
                              f"{row['deep']['revised']})  {row['outcome']}", markup=False,
                              highlight=False)
                out = write_json(args, rows, load, started, complete=False)
    finally:
        if args.keep is None:
            shutil.rmtree(runs, ignore_errors=True)
    out = write_json(args, rows, load, started, complete=True)
    print_tables(rows, out["summary"], args)
    planted = out["summary"].get("planted")
    if planted:
        console.print(line(planted, "planted: deep dive beats atlas on"), markup=False,
                      highlight=False, soft_wrap=True)
    main_group = out["summary"].get("smollm2")
    if main_group:
        d = main_group["diff"]
        console.print(f"wins/ties/losses {main_group['wins']}/{main_group['ties']}/"
                      f"{main_group['losses']}; mean Δr {d['mean']:+.3f} (95% CI "
                      f"{d['ci'][0]:+.3f}..{d['ci'][1]:+.3f})", markup=False, highlight=False)
        print(line(main_group, "deep dive beats atlas on"), flush=True)
    return out


def line(s: dict, head: str) -> str:
    d, a = s["deep"], s["atlas"]
    return (f"{head} {s['wins']}/{s['n']} neurons; mean r {d['mean_r']:.3f} (CI "
            f"{d['ci'][0]:.3f}..{d['ci'][1]:.3f}) vs {a['mean_r']:.3f} (CI {a['ci'][0]:.3f}.."
            f"{a['ci'][1]:.3f}); revised on {s['revised']}/{s['n']}")


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
