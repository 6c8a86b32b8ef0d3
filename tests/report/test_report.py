"""The hypothesis report: every section filled from a hand-built run directory, the model-dependent
parts checked against direct computations, hostile strings escaped, missing files survived."""

from __future__ import annotations

import base64
import csv
import json
import re
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosleuth.report.build import SECTION_TITLES, write_report
from neurosleuth.report.data import load_run, vocab_projection
from neurosleuth.report.html import token_colour
from neurosleuth.report.markdown import code, pipes, text
from neurosleuth.tools.measure import measure
from neurosleuth.tools.neurons import NeuronId

NEURON = NeuronId(1, 3)
HOSTILE = "<script>alert(1)</script>"
HOSTILE_HYP = 'fires on <script>alert("hyp")</script> & "quotes"'
HOSTILE_STEER = "<img src=x onerror=alert(2)> focus on | pipes"
TRICKY = "the `cat` | sat ``` on\nthe mat"
PROMPTS = [
    "the cat sat on the mat .", "a dog ran to the park", "the eiffel tower is in paris",
    "def x ( ) : return y", "hello world", "the king and the queen", HOSTILE, TRICKY,
    "one two three four five", "happy sad big small",
]
EXEMPLAR_TEXTS = ["the cat sat on the mat . the dog ran", "print ( x ) if x else y",
                  "paris france eiffel tower", "red blue green one two"]


def _write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj), encoding="utf-8")


def _records(res, order) -> list[dict]:
    return [{"activation": float(res.max_act[i, 0]), "prompt": res.prompts[i],
             "max_token": res.max_token(i), "step": 2 + int(i),
             "source": ["seed", "planner"][i % 2]}
            for i in order]


def build_run(run_dir: Path, lm) -> Path:
    """A finished run of the heuristic planner on NEURON, with activations measured for real."""
    run_dir.mkdir(parents=True, exist_ok=True)
    res = measure(lm, PROMPTS, NEURON)
    order = np.argsort(-res.max_act[:, 0])
    ex = measure(lm, EXEMPLAR_TEXTS, NEURON)
    all_acts = np.concatenate([a[:, 0] for a in ex.acts])
    ex_recs = [{"text": t, "tokens": ex.tokens[i], "acts": ex.acts[i][:, 0].tolist(),
                "max_act": float(ex.max_act[i, 0]), "argmax": int(ex.argmax_pos[i, 0])}
               for i, t in enumerate(EXEMPLAR_TEXTS)]
    ex_order = np.argsort(-ex.max_act[:, 0])
    dmax = float(ex.max_act.max())
    best = float(res.max_act.max())
    _write(run_dir / "config.json", {
        "run_id": "r<script>1", "model": lm.name, "neuron": str(NEURON), "planner": "heuristic",
        "planner_model": None, "iterations": 12, "time_budget_s": None, "max_forward_passes": 500,
        "steer": ["prefer code prompts"], "seed": 0, "dedup_threshold": 0.9, "patience": 4, "k": 5})
    _write(run_dir / "summary.json", {
        "run_id": "r<script>1", "model": lm.name, "model_desc": lm.describe(), "neuron": "1:3",
        "planner_used": "heuristic", "status": "finished", "stop_reason": "iteration budget",
        "iterations": 12, "forward_passes": 40, "llm_calls": 7, "llm_tokens_in": 3100,
        "llm_tokens_out": 420, "llm_failures": 1, "llm_repairs": 2, "wall_s": 12.5,
        "planner_s": 7.5, "model_s": 3.0, "best_activation": best, "best_prompt": PROMPTS[order[0]],
        "dataset_max": dmax,
        "stats": {"generated": 14, "accepted": 10, "rejected_duplicate": 2, "rejected_semantic": 1,
                  "rejected_junk": 1, "best_so_far": best, "history": [[1, 0.1], [5, best]]},
        "recoveries": [{"iteration": 8, "strategy": "exemplar restart", "best": best}],
        "steering": [{"message": HOSTILE_STEER, "received_at": "2025-01-01T10:00:03",
                      "applied_step": 6},
                     {"message": "late message", "received_at": "2025-01-01T10:00:09",
                      "applied_step": None}],
        "started_at": "2025-01-01T10:00:00", "finished_at": "2025-01-01T10:00:12"})
    _write(run_dir / "hypotheses.json", [
        {"step": 4, "text": "Fires on animals.", "explanation": "Early guess.",
         "source": "heuristic", "score": None},
        {"step": 10, "text": HOSTILE_HYP, "explanation": "It peaks on the tag.\n# not a heading",
         "source": "planner", "score": score_record(res),
         "candidates": [
             {"text": HOSTILE_HYP, "source": "planner", "rejected": None,
              "summary": "aggregate 0.620, margin +0.320"},
             {"text": "Fires on colors (red, blue).", "source": "explainer", "rejected": None,
              "summary": "aggregate 0.500, margin +0.200"},
             {"text": "The cat sat on the mat and the dog ran", "source": "embedded",
              "rejected": "copied from a prompt or exemplar", "summary": ""}]}])
    _write(run_dir / "explanation.json", {
        "step": 10, "sentence": "Fires on colors (red, blue).", "details": "2 top texts pruned.",
        "naming": "wordnet; WordNet 3.0", "forward_passes": 40, "seconds": 1.5,
        "pattern": {"kind": "token", "triggers": {"red": 1.0, HOSTILE_HYP: 0.5},
                    "concept": {"label": "colors", "examples": ["red"], "coverage": 1.0,
                                "source": "wordnet", "kind": "n", "synset": "color.n.01",
                                "also": []},
                    "required": {"the": 0.5}, "context_free": 0.4, "context": None,
                    "fire_share": 0.02},
        "pruned": [{"text": "the red", "tokens": ["the", " red"], "act": 2.0, "full_act": 2.5,
                    "importance": [0.6], "long_context": False}],
        "substitutions": [{"context": "the", "original": " red", "token": " blue",
                           "where": "peak", "source": "neighbour", "fraction": 0.9,
                           "fires": True},
                          {"context": "the", "original": " red", "token": " cat",
                           "where": "peak", "source": "prediction", "fraction": 0.1,
                           "fires": False}]})
    _write(run_dir / "heaps.json", {"k": 5, "top": _records(res, order[:5]),
                                    "bottom": _records(res, order[::-1][:5])})
    _write(run_dir / "exemplars.json", {
        "corpus": "tiny <corpus>", "window": 8, "tokens_scanned": 1234,
        "top": [ex_recs[i] for i in ex_order[:3]],
        "bottom": [ex_recs[i] for i in ex_order[::-1][:2]],
        "quantiles": {f"q{q}": float(np.quantile(all_acts, q)) for q in (0.5, 0.9, 0.99)},
        "mean": float(all_acts.mean()), "std": float(all_acts.std()),
        "frac_positive": float((all_acts > 0).mean())})
    _write_tables(run_dir, res, best)
    return run_dir


WINDOW_TEXT = "a held-out window | seen in its context"


def score_record(res) -> dict:
    """A score as ``ScoreResult.to_record`` writes it: counterexamples are (text, activation)."""
    act = {p: float(res.max_act[i, 0]) for i, p in enumerate(res.prompts)}
    pos, neg = [PROMPTS[4], PROMPTS[2]], [PROMPTS[6], PROMPTS[9]]
    return {
        "aggregate": 0.62, "ci": [0.5, 0.71], "components": {"detection": 0.7, "fuzzing": 0.54},
        "intervals": {"detection": [0.6, 0.8], "fuzzing": [0.4, 0.66]}, "floor": 0.3,
        "margin": 0.32, "margin_ci": [0.2, 0.45],
        "details": {"n": 20, "cohens_d": 1.25, "judge_auprc": 0.81, "floor_control": "other",
                    "predicted_high_but_low": [[PROMPTS[4], act[PROMPTS[4]]]],
                    "predicted_low_but_high": [[WINDOW_TEXT, 9.5], [PROMPTS[6], act[PROMPTS[6]]]],
                    "positive": [[p, act[p]] for p in pos], "negative": [[p, act[p]] for p in neg]}}


def _write_tables(run_dir: Path, res, best: float) -> None:
    """prompts.csv (every status), curve.csv and events.jsonl."""
    with open(run_dir / "prompts.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", "prompt", "status", "activation", "max_token", "source", "similarity"])
        for i, p in enumerate(PROMPTS):
            w.writerow([1 + i, p, "accepted", float(res.max_act[i, 0]), res.max_token(i),
                        "planner", 0.4 if i else ""])
        w.writerow([11, PROMPTS[0], "duplicate", "", "", "mutation", 1.0])
        w.writerow([12, "the cat sat on a mat .", "semantic", "", "", "planner", 0.97])
        w.writerow([13, HOSTILE + " again", "semantic", "", "", "planner", 0.95])
        w.writerow([14, "zzzz ####", "junk", "", "", "random", ""])
    with open(run_dir / "curve.csv", "w", encoding="utf-8") as f:
        f.write("forward_passes,step,best\n")
        for fp, step in ((4, 1), (12, 3), (25, 6), (40, 12)):
            f.write(f"{fp},{step},{best * min(1.0, fp / 25)}\n")
    events = [{"time": "t", "step": i, "node": ["plan", "act", "record"][i % 3], "action": "x",
               "summary": "<b>s</b>", "duration_s": 0.5, "llm_tokens_in": 10, "llm_tokens_out": 2}
              for i in range(9)]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    _write(run_dir / "evidence.json", [
        {"kind": "ablate", "step": 6, "headline": "KL 0.3 (random neurons: 0.01 +- 0.01, z=29)"},
        {"kind": "attribute", "step": 6, "headline": "tokens driving the peak: '<script>' +0.5"},
    ])


def sections(md: str) -> dict[str, str]:
    """Heading -> body text up to the next heading."""
    parts = re.split(r"^(#{2,3}) (.+)$", md, flags=re.MULTILINE)
    return {parts[i + 1].replace("\\", ""): parts[i + 2].strip() for i in range(1, len(parts), 3)}


def cell_count(line: str) -> int:
    """Unescaped pipes in a GFM table line (a backslash escapes the next character)."""
    n, i = 0, 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        n += line[i] == "|"
        i += 1
    return n


@pytest.fixture(scope="module")
def full_report(tiny_lm, tmp_path_factory):
    run = build_run(tmp_path_factory.mktemp("runs") / "r1", tiny_lm)
    md_path, html_path = write_report(run, tiny_lm, NEURON)
    return run, md_path.read_text(), html_path.read_text()


def test_every_section_present_and_filled(full_report):
    run, md, html = full_report
    body = sections(md)
    for title in SECTION_TITLES:
        assert title in body, title
        assert body[title], f"empty section {title}"
        assert "not available" not in body[title], (title, body[title])
        assert f">{title}</h" in html
    assert md.startswith("# Neuron 1:3 in tiny-random-0")
    assert "Fires on animals." in body["Hypothesis history"]
    assert "detection" in body["Hypothesis"] and "0.620" in body["Hypothesis"]
    assert "0.600 – 0.800" in body["Hypothesis"] and "margin over the floor" in body["Hypothesis"]
    assert "| n | 20 |" in body["Hypothesis"]
    assert "exemplar restart" in body["What the agent tried and rejected"]
    assert "step 6" in body["Steering"] and "not applied yet" in body["Steering"]
    assert "neurosleuth steer" in body["Steering"] and "run start" in body["Steering"]
    assert "prefer code prompts" in body["Steering"]
    assert "7.5 (60%)" in body["Cost"] and "heuristic" in body["Planner and model"]
    assert "iteration budget" in body["Run status"]
    assert "rejected: copied from a prompt" in body["Candidates"]
    assert "margin +0.200" in body["Candidates"] and "| yes | planner |" in body["Candidates"]
    assert "colors (named by wordnet: color.n.01)" in body["Explanation pattern"]
    assert "' red' → ' blue'" in body["Explanation pattern"]
    assert (run / "report_assets" / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_html_embeds_png_plots(full_report):
    _, _, html = full_report
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 2  # histogram and search curve
    for b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<link" not in html


def test_hostile_strings_are_text(full_report):
    _, md, html = full_report
    assert "<script" not in html.lower()  # no script at all: neither from data nor our own
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "r&lt;script&gt;1" in html  # the run id
    assert "<b>s</b>" not in html and "&lt;b&gt;s&lt;/b&gt;" in html  # the experiment log
    assert "&lt;script&gt;alert(&quot;hyp&quot;)&lt;/script&gt;" in html
    # Markdown: free text is entity-escaped; prompts sit in code spans
    assert "&lt;img src=x onerror=alert(2)&gt;" in md
    assert "&lt;script&gt;alert(\"hyp\")&lt;/script&gt;" in md
    assert "\n# not a heading" not in md
    for line in md.splitlines():
        assert "<script" not in line or "`" in line, line


def test_markdown_tables_keep_their_shape(full_report):
    _, md, _ = full_report
    tables = re.findall(r"(?:^\|.*\|$\n?)+", md, flags=re.MULTILINE)
    assert len(tables) >= 10
    for t in tables:
        lines = t.strip().splitlines()
        assert len({cell_count(line) for line in lines}) == 1, lines
    assert "⏎" in md and "«" in md  # the newline of TRICKY made visible, the max token marked


def test_heatmaps_carry_remeasured_values(full_report, tiny_lm):
    _, md, html = full_report
    res = measure(tiny_lm, ["the eiffel tower is in paris"], NEURON)
    for tok, act in zip(res.tokens[0], res.per_token(0), strict=True):
        assert f'title="{act:+.4g} {html_escape(repr(tok))}"' in html
    assert "Largest difference from the recorded max activation: 0.00e+00" in md
    assert html.count('class="tok max"') >= 10 + 5  # 10 heap prompts + 5 exemplars


def test_vocab_projection_folds_the_final_norm():
    from transformers import LlamaForCausalLM

    from neurosleuth.tools.model import from_hf_model
    from tests.fixtures import tiny_config, tiny_tokenizer

    torch.manual_seed(3)
    hf = LlamaForCausalLM(tiny_config()).eval()
    with torch.no_grad():
        hf.model.norm.weight.copy_(torch.randn(16) * 3)
    lm = from_hf_model(hf, tiny_tokenizer(), name="tiny-norm")
    proj = vocab_projection(lm, NEURON, k=5)
    w = hf.model.layers[1].mlp.down_proj.weight[:, 3] * hf.model.norm.weight  # (d_model,)
    logits = (hf.lm_head.weight @ w).detach()  # (vocab,)
    expected = lm.token_strs(torch.argsort(logits, descending=True)[:5].tolist())
    assert [t for t, _ in proj.promoted] == expected
    assert proj.promoted[0][1] == pytest.approx(float(logits.max()), rel=1e-5)
    assert proj.suppressed[0][1] == pytest.approx(float(logits.min()), rel=1e-5)
    raw = hf.lm_head.weight @ hf.model.layers[1].mlp.down_proj.weight[:, 3]
    assert int(raw.argmax()) != int(logits.argmax())  # the norm changes the answer here
    assert "RMSNorm" in proj.norm


def test_report_without_model(tiny_lm, tmp_path):
    run = build_run(tmp_path / "r2", tiny_lm)
    md_path, html_path = write_report(run)
    md, html = md_path.read_text(), html_path.read_text()
    body = sections(md)
    assert "not available (report written without the model)" in body["Vocabulary projection"]
    assert "Per-token heatmaps: not available" in body["Top prompts"]
    assert "«" in body["Top prompts"]  # max token still marked from the recorded max_token
    assert html.count('class="tok max"') == 5  # exemplars carry their own per-token acts
    assert "<script" not in html.lower()


def test_minimal_run_dir_says_what_is_missing(tmp_path):
    run = tmp_path / "r3"
    run.mkdir()
    _write(run / "config.json", {"run_id": "r3", "model": "smollm2-135m", "neuron": "12:345",
                                 "planner": "auto", "iterations": 30})
    _write(run / "summary.json", {"run_id": "r3", "model": "smollm2-135m", "status": "running",
                                  "iterations": 0, "forward_passes": 0, "planner_used": "embedded"})
    md_path, html_path = write_report(run)
    md = md_path.read_text()
    body = sections(md)
    assert set(SECTION_TITLES) <= set(body)
    assert all(body[t] for t in SECTION_TITLES)
    assert "hypotheses.json missing" in body["Hypothesis"]
    assert "heaps.json missing" in body["Top prompts"]
    assert "exemplars.json missing" in body["Dataset exemplars"]
    assert "curve.csv missing" in body["Search curve"]
    for f in ("heaps.json", "prompts.csv", "events.jsonl", "exemplars.json"):
        assert f in body["Run status"]
    assert "data:image/png" not in html_path.read_text()


def test_corrupt_and_absent_files(tmp_path, tiny_lm):
    run = build_run(tmp_path / "r4", tiny_lm)
    (run / "heaps.json").write_text('{"k": 5, "top": [')  # killed mid-write
    (run / "prompts.csv").write_text("")
    with open(run / "events.jsonl", "a") as f:
        f.write('{"time": "t", "ste')
    data = load_run(run)
    assert data.missing["heaps.json"].startswith("unreadable")
    assert data.missing["prompts.csv"].startswith("unreadable")
    assert "1 bad line" in data.missing["events.jsonl"] and len(data.events) == 9
    md = write_report(run, tiny_lm)[0].read_text()  # neuron taken from the run
    assert "heaps.json unreadable" in sections(md)["Top prompts"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "Neuron ? in unknown model" in write_report(empty)[0].read_text()
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")


def test_markdown_escapes():
    assert code("a ``b`` c") == "```a ``b`` c```"
    assert code("`x`") == "`` `x` ``"
    assert pipes("a|b") == "a\\|b" and pipes("a\\|b") == "a\\\\\\|b"
    assert cell_count(pipes("x \\\\| y |")) == 0
    inert = "&lt;b&gt;\\[x\\](javascript:y)&lt;/b&gt; \\*z\\*"
    assert text("<b>[x](javascript:y)</b> *z*") == inert
    assert text("# h\n1. item", block=True) == "\\# h\n1\\. item"
    assert text("1.5 #3") == "1.5 #3"


def test_token_colour_sign_and_saturation():
    assert token_colour(2.0, 1.0) == "rgba(22,163,74,1.00)"
    assert token_colour(-0.5, 1.0) == "rgba(220,38,38,0.50)"
    assert token_colour(0.0, 0.0) == "rgba(22,163,74,0.00)"


@pytest.mark.integration
def test_report_on_smollm2(smollm2, tmp_path):
    """Real BPE tokens align back to the prompt; the projection runs over the full vocabulary."""
    neuron = NeuronId(12, 345)
    prompts = ["The Eiffel Tower is in Paris.", "def f(x):\n    return x", HOSTILE]
    res = measure(smollm2, prompts, neuron)
    run = tmp_path / "smol"
    run.mkdir()
    _write(run / "summary.json", {"run_id": "smol", "model": smollm2.name, "neuron": "12:345",
                                  "status": "finished"})
    _write(run / "heaps.json", {"k": 3, "top": _records(res, np.argsort(-res.max_act[:, 0])),
                                "bottom": []})
    md_path, html_path = write_report(run, smollm2)
    md, html = md_path.read_text(), html_path.read_text()
    assert "Largest difference from the recorded max activation: 0.00e+00" in md
    i = int(np.argmax(res.max_act[:, 0]))
    tok = res.max_token(i)
    assert f"«{tok.strip()}»" in md  # marked inside the original prompt text
    proj = vocab_projection(smollm2, neuron)
    assert len(proj.promoted) == 15 and proj.promoted[0][1] > 0 > proj.suppressed[0][1]
    assert "<script" not in html.lower() and html.count('class="tok max"') == 3


def test_marks_survive_unknown_tokens():
    from neurosleuth.report.blocks import Heatmap, find_mark, heatmap_text

    h = Heatmap(["a", "<unk>", "b", "a"], [0.1, 0.0, 0.2, 0.9], 1.0, mark=3, text="a ? b a")
    assert heatmap_text(h) == ("a ? b a", (6, 7))  # the second "a", not the first
    h = Heatmap(["x", "<unk>"], [0.1, 0.5], 1.0, mark=1, text="x ?")
    assert heatmap_text(h) == ("x<unk>", (1, 6))  # max token not in the text: tokens joined
    assert find_mark("the cat", " cat") == (4, 7) and find_mark("x", "\n") is None


def test_counterexamples_are_tables_and_internals_are_folded(full_report):
    _, md, html = full_report
    hyp = sections(md)["Hypothesis"]
    assert "items: [[" not in md and "[[" not in hyp  # no raw Python / JSON lists
    table = hyp.split("Predicted to fire, but stayed below")[1].split("Predicted quiet")[0]
    assert "| # | activation | max token | text | from |" in table
    assert "«" in table and "written to fire" in table  # re-measured: the max token is marked
    quiet = hyp.split("Predicted quiet, but fired (2):")[1].split("<details>")[0]
    assert "9.500" in quiet and "held-out window" in quiet and "written to stay quiet" in quiet
    window_row = next(line for line in quiet.splitlines() if "9.500" in line)
    assert "«" not in window_row and "\\|" in window_row  # not reproduced alone: unmarked
    # internals only inside the folded block, in both formats
    folded = hyp.split("<details>")[1]
    assert hyp.index("cohens\\_d") > hyp.index("<details>") and "judge\\_auprc" in folded
    assert "<summary>Score internals" in html
    details = html.split("<details>")[1].split("</details>")[0]
    assert "cohens_d" in details and "cohens_d" not in html.split("<details>")[0]
    assert "written to stay quiet" in details and 'class="tok max"' in details


def test_no_prompt_in_both_top_and_bottom(tiny_lm, tmp_path):
    """With fewer prompts measured than both heaps hold, each prompt is listed once."""
    run = build_run(tmp_path / "few", tiny_lm)
    res = measure(tiny_lm, PROMPTS[:6], NEURON)
    order = np.argsort(-res.max_act[:, 0])
    _write(run / "heaps.json", {"k": 5, "top": _records(res, order[:5]),
                                "bottom": _records(res, order[::-1][:5])})
    body = sections(write_report(run, tiny_lm, NEURON)[0].read_text())
    top, bottom = body["Top prompts"], body["Bottom prompts"]
    listed = {p: (_mentions(top, p), _mentions(bottom, p)) for p in PROMPTS[:6]}
    assert all(t + b == 1 for t, b in listed.values()), listed
    highest, lowest = PROMPTS[int(order[0])], PROMPTS[int(order[-1])]
    assert listed[highest] == (1, 0) and listed[lowest] == (0, 1)
    assert "split between the two lists" in top and "| 3 |" in bottom


def _mentions(section: str, prompt: str) -> int:
    """Rows of a prompts table holding ``prompt`` (words may carry the «max» mark)."""
    words = prompt.split()
    return sum(all(w in line.replace("«", "").replace("»", "") for w in words)
               for line in section.splitlines() if line.startswith("| ") and "---" not in line)


def test_scan_depth_and_full_depth_estimate(tiny_lm, tmp_path):
    """exemplars.json says how deep the scan went; a sample gets an expected max at full depth."""
    from neurosleuth.agents.config import RunConfig
    from neurosleuth.agents.exemplars import exemplar_snippets
    from tests.agent_helpers import write_corpus

    corpus = write_corpus(tmp_path / "corpus.txt")
    cfg = RunConfig(neuron=str(NEURON), corpus=str(corpus), window=8, k=5, prompts_per_step=2,
                    exemplar_tokens=96)
    sample, _ = exemplar_snippets(tiny_lm, NEURON, cfg)
    assert sample["whole_corpus"] is False and sample["windows_scanned"] == 12
    assert sample["corpus_tokens_estimated"] and sample["corpus_tokens"] > 96
    est = sample["max_full_depth"]
    assert est["windows_full"] == sample["corpus_tokens"] // 8 and est["k"] == 5
    assert est["lo"] <= est["value"] <= est["hi"] and est["value"] >= sample["top"][0]["max_act"]
    whole, _ = exemplar_snippets(tiny_lm, NEURON, cfg.model_copy(update={"exemplar_tokens": 10**6}))
    assert whole["whole_corpus"] is True and whole["max_full_depth"] is None
    assert abs(whole["windows_scanned"] - est["windows_full"]) <= 0.1 * whole["windows_scanned"]
    run = build_run(tmp_path / "deep", tiny_lm)
    for data, expect in ((sample, "| expected max at full depth (estimate) |"),
                         (whole, "scanned whole: the dataset max is exact")):
        _write(run / "exemplars.json", data)
        md = write_report(run)[0].read_text()
        body = sections(md)
        assert expect in body["Dataset exemplars"], body["Dataset exemplars"]
        assert f"| tokens scanned | {data['tokens_scanned']:,} (" in body["Dataset exemplars"]
        assert "dataset max covers" in body["Run status"]
    assert "given" in sample["scan_policy"]  # 96 tokens: not the default for its budget


def test_expected_max_extrapolates_an_exponential_tail():
    from neurosleuth.tools.exemplars import expected_max

    rng = np.random.default_rng(0)
    errors, inside = [], 0
    for _ in range(100):
        x = rng.exponential(1.0, 50_000)
        top = np.sort(x[:500])[::-1][:20]
        est = expected_max(top, 500, 50_000)
        errors.append(est.value - x.max())
        inside += est.lo <= x.max() <= est.hi
    assert abs(np.mean(errors)) < 0.5 and 65 <= inside <= 95  # unbiased; an ~80% range
    assert expected_max(top, 500, 500) is None and expected_max(top[:2], 500, 5000) is None


def test_scan_depth_follows_the_time_budget(tmp_path, monkeypatch):
    from neurosleuth.agents.config import SCAN_TIERS, RunConfig, scan_depth
    from neurosleuth.tools.scan import record_scan_rate

    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path))  # no rate measured yet: the defaults

    assert RunConfig().exemplar_tokens == SCAN_TIERS[0] == scan_depth(None)[0]
    assert RunConfig(time_budget_s=600, device="cpu").exemplar_tokens == SCAN_TIERS[0]
    overnight = RunConfig(time_budget_s=8 * 3600, device="cpu")
    assert SCAN_TIERS[0] < overnight.exemplar_tokens <= 0.15 * 8 * 3600 * 250
    assert "exemplar_tokens" not in overnight.model_fields_set
    assert RunConfig(time_budget_s=3600, device="cuda").exemplar_tokens == SCAN_TIERS[-1]
    assert RunConfig(exemplar_tokens=1234, time_budget_s=1e6).exemplar_tokens == 1234
    # a scan that measured its rate on this machine decides from then on
    assert "assumed" in scan_depth(3600, "cuda", "big-model")[1]
    record_scan_rate("big-model", "cuda", 100.0)
    tokens, why = scan_depth(3600, "cuda", "big-model")
    assert tokens == SCAN_TIERS[0] and "100 tokens/s (cuda, measured)" in why
    assert RunConfig(model="big-model", time_budget_s=3600, device="cuda").exemplar_tokens == tokens


def test_a_batch_chooses_its_scan_depth_once(tmp_path, monkeypatch):
    """A batch's depth comes from its whole budget (one cached scan per layer), unless given."""
    from neurosleuth.agents.config import RunConfig, scan_depth

    monkeypatch.setenv("NEUROSLEUTH_CACHE", str(tmp_path / "cache"))  # no measured scan rate
    from neurosleuth.batch.queue import BatchQueue
    from neurosleuth.batch.select import NeuronPick

    picks = [NeuronPick(NeuronId(12, i)) for i in range(3)]
    night = BatchQueue.create(tmp_path, "night", picks, RunConfig(device="cpu"), 8 * 3600)
    assert night.batch.run_config["exemplar_tokens"] == scan_depth(8 * 3600, "cpu")[0] > 50_000
    runs = [RunConfig.model_validate(night.run_config(e)) for e in night.batch.entries]
    assert {r.exemplar_tokens for r in runs} == {scan_depth(8 * 3600, "cpu")[0]}
    given = BatchQueue.create(tmp_path, "given", picks, RunConfig(exemplar_tokens=2000), 8 * 3600)
    assert given.batch.run_config["exemplar_tokens"] == 2000


def test_the_revisions_section_lists_each_clause_its_experiment_and_the_edit():
    from neurosleuth.report.revisions import revision_rows

    evidence = [
        {"kind": "ablate", "step": 1},
        {"kind": "revise", "step": 1, "round": 1, "before": "Fires on X, mostly after 'the'.",
         "after": "Fires on X.", "margin_before": 0.3, "margin_after": 0.31, "kept": True,
         "outcome": "kept", "tests": [{"clause": "context 'the'", "experiment": "deleted",
                                       "result": "keeps 88%", "verdict": "fails",
                                       "edit": "drop the context 'the'"}]},
        {"kind": "revise", "step": 1, "round": 2, "before": "Fires on X.", "after": None,
         "margin_before": 0.31, "kept": False, "outcome": "no edit", "tests": []},
    ]
    rounds, tests = revision_rows(evidence)
    assert rounds == [[1, 1, "Fires on X, mostly after 'the'.", "Fires on X.",
                       "+0.300 → +0.310", "kept"],
                      [1, 2, "Fires on X.", "(no edit)", "+0.310",
                       "no edit: every clause held or was undecided"]]
    assert tests == [[1, 1, "context 'the'", "deleted", "keeps 88%", "fails",
                      "drop the context 'the'"]]
