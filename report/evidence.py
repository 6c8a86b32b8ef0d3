"""The evidence sections of the report: prompts found, dataset exemplars, activation histogram,
vocabulary projection, search curve. Each function turns run data into a ``Section``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from neurosleuth.report import plots
from neurosleuth.report.blocks import (
    Block,
    Cell,
    Heatmap,
    Image,
    Missing,
    Para,
    Prompt,
    Section,
    Table,
    find_mark,
)
from neurosleuth.report.data import ModelAnalysis, RunData, as_float, heap_records

MAX_EXEMPLARS = 10


def colour_scale(data: RunData, analysis: ModelAnalysis) -> float:
    """The neuron's largest |activation| seen in the run: heatmap colours saturate there."""
    values = [as_float(data.value(k)) for k in ("dataset_max", "best_activation")]
    for side in ("top", "bottom"):
        values += [as_float(r.get("activation")) for r in heap_records(data, side)]
        for ex in _exemplars(data, side):
            values += [as_float(a) for a in ex["acts"]]
    for ta in analysis.token_acts.values():
        values += [float(np.abs(ta.acts).max())] if len(ta.acts) else []
    finite = [abs(v) for v in values if v is not None]
    return max(finite) if finite and max(finite) > 0 else 1.0


def split_heaps(data: RunData) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(top, bottom) heap records with no prompt in both. The two heaps hold up to k prompts
    each, so while fewer than 2k prompts are measured they share prompts: the prompts are then
    ranked once and split, the upper half on top, the rest (lowest first) at the bottom."""
    top, bottom = heap_records(data, "top"), heap_records(data, "bottom")
    if not {r["prompt"] for r in top} & {r["prompt"] for r in bottom}:
        return top, bottom
    ranked = list({r["prompt"]: r for r in bottom + top}.values())
    ranked.sort(key=lambda r: -(as_float(r.get("activation")) or float("-inf")))
    n_top = min(len(top), (len(ranked) + 1) // 2)
    return ranked[:n_top], ranked[n_top:][::-1][: len(bottom)]


def prompts_section(data: RunData, analysis: ModelAnalysis, side: str, scale: float) -> Section:
    """Top (side='top') or bottom prompts from the heaps, with heatmaps when re-measured; a
    prompt is in one list or the other (``split_heaps``)."""
    title = "Top prompts" if side == "top" else "Bottom prompts"
    top, bottom = split_heaps(data)
    records = top if side == "top" else bottom
    if not heap_records(data, side):
        return Section(title, [Missing(data.why_missing("heaps.json"))], level=3)
    if not records:
        return Section(title, [Para("Every prompt measured is in the top list above.")], level=3)
    rows = []
    for i, r in enumerate(records, 1):
        ta = analysis.token_acts.get(r["prompt"])
        cell = (Heatmap(ta.tokens, ta.acts.tolist(), scale, ta.argmax, r["prompt"]) if ta
                is not None
                else Prompt(r["prompt"], find_mark(r["prompt"], r.get("max_token"))))
        rows.append([i, as_float(r.get("activation")), Prompt(str(r.get("max_token", ""))),
                     str(r.get("source", "")), r.get("step"), cell])
    which = "highest" if side == "top" else "lowest"
    k = data.heaps.get("k", len(records))
    intro = f"The {len(records)} prompts with the {which} max activation (k = {k})"
    if len(top) + len(bottom) < len(heap_records(data, "top")) + len(heap_records(data, "bottom")):
        n = len(top) + len(bottom)
        intro += (f"; only {n} prompts were measured, fewer than both lists hold, so they are "
                  "split between the two lists")
    blocks: list[Block] = [
        Para(intro + "; the max token is marked."),
        Table(["#", "activation", "max token", "source", "step", "prompt"], rows),
    ]
    blocks.append(_heatmap_note(analysis))
    return Section(title, blocks, level=3)


def _heatmap_note(analysis: ModelAnalysis) -> Para | Missing:
    if not analysis.token_acts:
        return Missing(f"Per-token heatmaps: {analysis.note or 'not available'}.")
    diff, check = analysis.max_abs_diff, ""
    if diff is not None:
        check = f" Largest difference from the recorded max activation: {diff:.2e}."
        if diff > 1e-2:
            check += " The model given may not be the one the run studied."
    return Para("Per-token activations re-measured with the model for the heatmaps "
                "(green positive, red negative; hover a token for its value)." + check)


def _exemplars(data: RunData, side: str) -> list[dict[str, Any]]:
    out = []
    for ex in data.exemplars.get(side) or []:
        if not isinstance(ex, dict):
            continue
        toks, acts = ex.get("tokens"), ex.get("acts")
        if isinstance(toks, list) and isinstance(acts, list) and len(toks) == len(acts) and toks:
            acts = [as_float(a) or 0.0 for a in acts]
            out.append({**ex, "tokens": [str(t) for t in toks], "acts": acts})
    return out


def exemplars_section(data: RunData, scale: float) -> Section:
    """Dataset exemplars (top and bottom windows of the corpus scan) with heatmaps; how deep the
    scan went and, for a sample, the dataset max expected at full depth."""
    title = "Dataset exemplars"
    if not data.exemplars:
        return Section(title, [Missing(data.why_missing("exemplars.json"))], level=3)
    ex = data.exemplars
    blocks: list = [
        Para(f"Corpus: {ex.get('corpus', '?')}; window {ex.get('window', '?')} tokens."),
        *depth_blocks(data),
        Para(f"Activation over all scanned tokens: mean {_num(ex.get('mean'))}, std "
             f"{_num(ex.get('std'))}, positive on {_pct(ex.get('frac_positive'))} of tokens.")]
    quantiles = _quantiles(data)
    if quantiles:
        blocks.append(Table(["quantile", "activation"], [[k, v] for k, v in quantiles.items()]))
    for side in ("top", "bottom"):
        blocks += _exemplar_table(data, side, scale)
    return Section(title, blocks, level=3)


def depth_blocks(data: RunData) -> list:
    """How many tokens the dataset max covers and, for a sample, its expected value at full
    depth (from ``exemplars.json``; older runs lack the depth fields)."""
    ex = data.exemplars
    tokens, windows = as_float(ex.get("tokens_scanned")), as_float(ex.get("windows_scanned"))
    total = as_float(ex.get("corpus_tokens"))
    scanned = f"{_int(tokens)}" + (f" ({_int(windows)} windows)" if windows else "")
    whole = ex.get("whole_corpus") is True
    if total is None and not whole:
        return [Para(f"{scanned} tokens scanned (the corpus's size was not recorded).")]
    if not whole and tokens and total:
        scanned += f", {tokens / total:.1%} of the corpus"
    rows: list[list[Any]] = [["tokens scanned", scanned]]
    if whole:
        rows.append(["corpus", "scanned whole: the dataset max is exact for it"])
    else:
        size = (f"about {_int(float(f'{total:.3g}'))} tokens (estimated from its documents' "
                "lengths)" if ex.get("corpus_tokens_estimated") else f"{_int(total)} tokens")
        rows.append(["corpus size", size])
    if ex.get("scan_policy"):
        rows.append(["depth", str(ex["scan_policy"])])
    dmax = as_float(data.value("dataset_max"))
    rows.append(["dataset max" + ("" if whole else " (of this sample)"), _num(dmax)])
    est = ex.get("max_full_depth")
    notes: list = []
    if isinstance(est, dict) and as_float(est.get("value")) is not None:
        rows.append(["expected max at full depth (estimate)",
                     f"{_num(est.get('value'))} (80% range {_num(est.get('lo'))} – "
                     f"{_num(est.get('hi'))})"])
        notes.append(Para(
            f"The estimate: an exponential tail fitted to the top {_int(est.get('k'))} window "
            f"maxima, extrapolated from {_int(est.get('windows_scanned'))} to "
            f"{_int(est.get('windows_full'))} windows (the mean of the Gumbel maximum; the range "
            "includes the fit's uncertainty). It assumes independent windows and an exponential "
            "tail: an activation that saturates makes it too high."))
    if not whole:
        notes.append(Para("A longer time budget, or --exemplar-tokens, scans deeper (the scan "
                          "is cached per layer)."))
    return [Table(["corpus scan", ""], rows), *notes]


def depth_short(data: RunData) -> str:
    """'max of 49,984 tokens scanned; about 7.0 expected at full depth, an estimate', or 'max
    over the whole corpus, N tokens'."""
    ex = data.exemplars
    if as_float(ex.get("tokens_scanned")) is None:
        return "depth of the corpus scan not recorded"
    if ex.get("whole_corpus") is True:
        return f"max over the whole corpus, {_int(ex.get('tokens_scanned'))} tokens"
    text = f"max of {_int(ex.get('tokens_scanned'))} tokens scanned"
    est = ex.get("max_full_depth")
    if isinstance(est, dict) and as_float(est.get("value")) is not None:
        text += f"; about {_num(est.get('value'))} expected at full depth, an estimate"
    return text


def _exemplar_table(data: RunData, side: str, scale: float) -> list:
    items = _exemplars(data, side)[:MAX_EXEMPLARS]
    if not items:
        return [Missing(f"No {side} exemplars recorded.")]
    rows = []
    for i, e in enumerate(items, 1):
        acts = e["acts"]
        argmax = e.get("argmax")
        mark = argmax if isinstance(argmax, int) else int(np.argmax(acts))
        mark = mark if 0 <= mark < len(acts) else int(np.argmax(acts))
        value = e.get("value", e.get("max_act") if side == "top" else e.get("min_act"))
        rows.append([i, as_float(value), Prompt(e["tokens"][mark]),
                     Heatmap(e["tokens"], acts, scale, mark, _str(e.get("text")))])
    # top windows are ranked by their max, bottom ones by their min (what suppresses it)
    word = "max" if side == "top" else "min"
    return [Para(f"{side.capitalize()} exemplars ({len(items)} shown):"),
            Table(["#", f"{word} activation", f"{word} token", "text"], rows)]


def _quantiles(data: RunData) -> dict[str, float]:
    q = data.exemplars.get("quantiles") or {}
    out = {str(k): as_float(v) for k, v in q.items()} if isinstance(q, dict) else {}
    return {k: v for k, v in out.items() if v is not None}


def accepted_activations(data: RunData) -> list[float]:
    df = data.prompts
    if df is None or "activation" not in df or "status" not in df:
        return []
    acts = pd.to_numeric(df.loc[df["status"] == "accepted", "activation"], errors="coerce")
    return [float(a) for a in acts.dropna()]


def histogram_section(data: RunData) -> Section:
    title = "Activation histogram"
    accepted = accepted_activations(data)
    dmax = as_float(data.value("dataset_max"))
    png = plots.activation_histogram(accepted, _quantiles(data), dmax)
    if png is None:
        return Section(title, [Missing(data.why_missing("prompts.csv", "exemplars.json"))], level=3)
    note = "" if accepted else f" Prompts: {data.why_missing('prompts.csv')}."
    return Section(title, [
        Para("Max activation of every accepted prompt the agent tried, against the neuron's "
             "activation quantiles over the dataset (dashed lines)." + note),
        Image(png, "histogram.png", "histogram of prompt activations with dataset quantiles"),
    ], level=3)


def vocab_section(analysis: ModelAnalysis) -> Section:
    title = "Vocabulary projection"
    v = analysis.vocab
    if v is None:
        return Section(title, [Missing(analysis.note)], level=3)
    rows: list[list[Cell]] = [[i + 1, Prompt(p[0]), p[1], Prompt(s[0]), s[1]]
            for i, (p, s) in enumerate(zip(v.promoted, v.suppressed, strict=True))]
    return Section(title, [
        Para("The neuron's output weights projected onto the vocabulary, "
             f"W_out[layer, index] @ W_U through the final norm ({v.norm}): the logit change per "
             "unit of activation along the direct path. Approximation: later layers, the "
             "norm's per-position scale and biases are ignored, so this shows what the neuron "
             "writes, not its full effect."),
        Table(["rank", "promoted token", "logit", "suppressed token", "logit"], rows),
    ], level=3)


def curve_section(data: RunData) -> Section:
    """Best activation vs forward passes (curve.csv), else vs iterations (stats.history)."""
    title = "Search curve"
    dmax = as_float(data.value("dataset_max"))
    x, y, xlabel = _curve_points(data)
    png = plots.search_curve(x, y, xlabel, dmax) if x else None
    if png is None:
        return Section(title, [Missing(data.why_missing("curve.csv"))])
    best, at = max(y), x[int(np.argmax(y))]
    text = f"Best activation {best:.3f}, first reached at {xlabel} {at:,.0f}."
    if dmax is not None and dmax > 0:
        text += (f" Best dataset exemplar {dmax:.3f} ({depth_short(data)}): the agent reached "
                 f"{best / dmax:.0%} of it.")
    if xlabel != "forward passes":
        state = data.missing.get("curve.csv", "empty")
        text += f" (curve.csv {state}: plotted against iterations.)"
    img = Image(png, "curve.png", "best activation so far vs " + xlabel)
    return Section(title, [Para(text), img])


def _curve_points(data: RunData) -> tuple[list[float], list[float], str]:
    df = data.curve
    if df is not None and {"forward_passes", "best"} <= set(df.columns):
        pts = df[["forward_passes", "best"]].apply(pd.to_numeric, errors="coerce").dropna()
        if len(pts):
            return pts["forward_passes"].tolist(), pts["best"].tolist(), "forward passes"
    hist = (data.summary.get("stats") or {}).get("history") or []
    pairs = [h for h in hist if isinstance(h, list | tuple) and len(h) == 2]
    pts = [(as_float(a), as_float(b)) for a, b in pairs]
    pts = [(a, b) for a, b in pts if a is not None and b is not None]
    return [a for a, _ in pts], [b for _, b in pts], "iterations"


def _str(x: Any) -> str | None:
    return x if isinstance(x, str) else None


def _num(x: Any) -> str:
    v = as_float(x)
    return "?" if v is None else f"{v:.3f}"


def _int(x: Any) -> str:
    v = as_float(x)
    return "?" if v is None else f"{int(v):,}"


def _pct(x: Any) -> str:
    v = as_float(x)
    return "?" if v is None else f"{v:.1%}"


def causal_section(data: RunData) -> Section:
    """Causal probes run before each hypothesis: ablation vs random neurons, attribution."""
    title = "Causal evidence"
    if not data.evidence:
        return Section(title, [Missing(data.why_missing("evidence.json")
                                       if "evidence.json" in data.missing
                                       else "No causal probe was run.")], level=3)
    rows = [[e.get("step"), str(e.get("kind")), str(e.get("headline", ""))] for e in data.evidence]
    return Section(title, [
        Para("Before each hypothesis the neuron is ablated on its top prompts (next-token KL and "
             "loss change, next to random neurons of the same layer: z-scores), and the best "
             "prompt's peak is attributed to its input tokens by integrated gradients; adding the "
             "neuron's output direction on quiet prompts shows which next tokens it promotes."),
        Table(["step", "probe", "finding"], rows)], level=3)
