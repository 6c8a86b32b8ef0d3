"""The report's experiment log (report/experiments.py), from a run's events."""

from neurosleuth.report.experiments import experiment_rows

EVENTS = [
    {"step": 0, "node": "seed", "action": "seed", "summary": "20 exemplar snippets"},
    {"step": 0, "node": "act", "action": "propose_prompts", "summary": "8/8 accepted, best 1.0"},
    {"step": 1, "node": "record", "action": "record", "summary": "8 measured, best 1.0"},
    {"step": 1, "node": "act", "action": "propose_prompts", "summary": "3/8 accepted, best 2.5"},
    {"step": 2, "node": "record", "action": "record", "summary": "3 measured, best 2.5"},
    {"step": 2, "node": "record", "action": "record", "summary": "0 measured, best 2.5",
     "recovery": "random_prompts"},
    {"step": 3, "node": "act", "action": "run_attack", "summary": "attack up: best 3.25"},
    {"step": 3, "node": "probe", "action": "probe", "summary": "KL 0.01 (z=4.0)"},
    {"step": 3, "node": "hypothesize", "action": "hypothesis",
     "summary": "3 candidates; explainer: Fires on mammals.; experiment: unseen ... concept"},
    {"step": 3, "node": "test", "action": "score", "summary": "explainer wins of 3: Fires on "
     "mammals. (aggregate 0.6, margin +0.2); the attack found 0 counterexample(s); decided by "
     "the unseen members experiment (concept)"},
    {"step": 6, "node": "test", "action": "score", "summary": "explainer wins of 3: Fires on "
     "mammals. (aggregate 0.6, margin +0.2)"},
]


def test_each_experiment_in_order_with_who_asked_and_what_changed():
    rows = experiment_rows(EVENTS)
    what = [r[1] for r in rows]
    assert what[0].startswith("corpus scan") and what[1] == "prompt search"
    assert rows[1][5] == "best activation 1.000 -> 2.500" and rows[1][2] == "the planner"
    assert what[2] == "stagnation recovery: random_prompts" and "monitor" in rows[2][2]
    assert what[3] == "run_attack" and rows[3][5] == "found 3.250 (best so far 2.500)"
    assert what[4].startswith("causal probes") and "concept-or-list" in what[5]
    assert rows[4][2].startswith("the schedule")
    assert rows[6][5] == ("leading hypothesis: Fires on mammals.; decided by the "
                          "concept-or-list experiment")
    assert rows[7][5] == "leading hypothesis unchanged"
    assert experiment_rows([]) == []


ADAPTIVE = [
    {"step": 2, "node": "act", "action": "ablate", "source": "heuristic",
     "reason": "no causal evidence yet", "summary": "zero-ablation: KL 0.2 (z=5.0)"},
    {"step": 3, "node": "act", "action": "hypothesize", "source": "ollama:llama3.1",
     "reason": "the top list stopped growing", "summary": "a hypothesis round is next"},
    {"step": 3, "node": "probe", "action": "probe", "summary": "tokens driving the peak: 'x'"},
    {"step": 3, "node": "test", "action": "score", "summary": "explainer wins of 2: Fires on x. "
     "(aggregate 0.5, margin +0.1)"},
    {"step": 4, "node": "act", "action": "test_hypothesis", "source": "steer",
     "reason": "the researcher asked to measure these texts", "summary": "measured as asked"},
    {"step": 5, "node": "act", "action": "compare", "source": "heuristic-fallback",
     "reason": "close", "summary": "on 6 prompt(s) where they disagree, 'a' was right 6x, 'b' 0x "
     "(sign test p=0.0312): 'a' wins"},
]


def test_chosen_experiments_say_who_chose_them_and_why():
    rows = experiment_rows(ADAPTIVE)
    assert rows[0][1:4] == ["ablate", "the experiment-design policy", "no causal evidence yet"]
    assert rows[1][1].startswith("causal probes")  # the round the planner chose, not a schedule
    assert rows[1][2:4] == ["the planner (ollama:llama3.1)", "the top list stopped growing"]
    assert rows[2][2] == "the planner (ollama:llama3.1)"
    assert rows[3][2] == "the researcher (steer)"
    assert rows[4][2] == "the experiment-design policy (the LLM gave no usable choice)"
    assert rows[4][5] == "the comparison decides between the two"
