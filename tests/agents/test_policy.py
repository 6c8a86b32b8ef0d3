"""The experiment-design policy (``agents/policy.py``) on hand-made situations: each rule, in
order, with the reason it logs."""

from __future__ import annotations

from dataclasses import replace

from neurosleuth.agents import policy
from neurosleuth.agents.actions import Finish, RunHypothesis, RunPatch
from neurosleuth.agents.policy import Candidate, Situation

LEAD = Candidate("Fires on colour words.", 0.30, 0.22, 0.38)
CLOSE = Candidate("Fires on the tokens 'red', 'blue'.", 0.28, 0.20, 0.36)
FAR = Candidate("Fires on commas.", 0.05, 0.00, 0.10)

START = Situation(step=1, budget_used=0.1, grew=3, stalled=0, hypothesis_every=4,
                  steps_since_hypothesis=None)
AFTER = replace(START, step=6, budget_used=0.4, grew=0, steps_since_hypothesis=0, leading=LEAD,
                rivals=(CLOSE, FAR), evidence_kinds=frozenset({"ablate"}))


def kind(s: Situation) -> str:
    return policy.choose(s).kind


def test_a_round_first_then_search_while_the_top_list_grows_in_the_first_half():
    action = policy.choose(START)
    assert action.kind == "hypothesize" and "records explanation" in action.reason
    grows = replace(AFTER, leading=None, rivals=(), grew=3, steps_since_hypothesis=1,
                    budget_used=0.1)
    action = policy.choose(grows)
    assert action.kind == "propose_prompts" and "grew by 3" in action.reason
    assert "grew by" not in policy.choose(replace(grows, budget_used=0.6)).reason  # past half


def test_causal_evidence_when_none_yet():
    idle = replace(AFTER, leading=None, rivals=(), steps_since_hypothesis=1,
                   evidence_kinds=frozenset())
    action = policy.choose(idle)
    assert action.kind == "ablate" and "no causal evidence yet" in action.reason


def test_a_stop_or_a_spent_budget_gives_a_closing_round_then_the_report():
    spent = replace(AFTER, steps_since_hypothesis=2,
                    budget=policy.Budget(stop="time budget (90 s)"))
    step = policy.decide(spent)
    assert step.route == "round" and step.stop == "time budget (90 s)"
    done = replace(spent, steps_since_hypothesis=0)
    assert policy.decide(done).route == "report"


def test_the_closing_round_is_reserved_in_the_budget():
    budget = policy.Budget(time_left_s=30.0, time_budget_s=90.0, step_s=5.0, round_s=40.0)
    s = replace(AFTER, steps_since_hypothesis=2, budget=budget)
    step = policy.decide(s)
    assert step.route == "round" and "closing round" in step.reason and step.stop
    assert policy.decide(replace(s, steps_since_hypothesis=0)).route == "report"
    roomy = replace(s, budget=replace(budget, time_left_s=60.0))
    assert policy.decide(roomy).route == "act"
    # before any round: a prior share of the budget is reserved
    prior = replace(budget, round_s=None, time_left_s=0.3 * 90)
    assert policy.decide(replace(s, budget=prior)).route == "round"
    passes = policy.Budget(passes_left=100, pass_budget=1000, step_passes=20, round_passes=300)
    assert policy.decide(replace(s, budget=passes)).route == "round"


def test_review_routes_control_actions_and_refuses_an_early_finish():
    assert policy.review(START, Finish(reason="enough")).route == "round"
    assert "finish refused" in policy.review(START, Finish(reason="enough")).reason
    step = policy.review(AFTER, Finish(reason="enough"))
    assert step.route == "report" and step.stop == "finished: enough"
    assert policy.review(AFTER, RunHypothesis(reason="now")).route == "round"
    assert policy.review(AFTER, RunPatch()).route == "act"


def test_the_fixed_schedule_searches_and_holds_a_round_every_n_steps():
    fixed = replace(AFTER, fixed=True, step=4, steps_since_hypothesis=4, hypothesis_every=4)
    assert policy.decide(fixed).route == "round"
    step = policy.decide(replace(fixed, step=5, steps_since_hypothesis=1))
    assert step.route == "act" and step.action.kind == "propose_prompts"


def test_close_rivals_are_compared_once_then_causal_evidence_then_a_test():
    action = policy.choose(AFTER)
    assert action.kind == "compare" and {action.a, action.b} == {LEAD.text, CLOSE.text}
    assert "within each other's intervals" in action.reason
    compared = replace(AFTER, compared=frozenset({tuple(sorted((LEAD.text, CLOSE.text)))}))
    action = policy.choose(compared)
    assert action.kind == "patch" and "no ablation yet" in action.reason
    weak = replace(compared, causal_z=0.4)
    assert kind(weak) == "patch"
    causal = replace(compared, causal_z=5.0)
    action = policy.choose(causal)
    assert action.kind == "test_hypothesis" and action.hypothesis == LEAD.text


def test_finish_only_when_the_leader_clears_every_rival():
    tested = replace(AFTER, causal_z=5.0, tested=frozenset({LEAD.text}),
                     compared=frozenset({tuple(sorted((LEAD.text, CLOSE.text)))}))
    assert kind(tested) != "finish"  # CLOSE's interval reaches the leader's lower bound
    clear = replace(tested, rivals=(FAR,))
    action = policy.choose(clear)
    assert action.kind == "finish" and "clears every rival" in action.reason
    negative = replace(clear, leading=Candidate(LEAD.text, 0.02, -0.01, 0.05))
    assert kind(negative) != "finish"  # a margin interval reaching 0 decides nothing


def test_stalled_search_attacks_once_per_round_then_a_new_round_is_due():
    idle = replace(AFTER, leading=None, rivals=(), stalled=3, steps_since_hypothesis=2)
    action = policy.choose(idle)
    assert action.kind == "attack" and "no new best for 3 steps" in action.reason
    attacked = replace(idle, kinds_since_hypothesis=frozenset({"attack"}))
    assert kind(attacked) == "propose_prompts"
    assert kind(replace(attacked, steps_since_hypothesis=4)) == "hypothesize"


def test_overlap_is_read_off_the_intervals():
    assert policy.overlaps(LEAD, CLOSE) and not policy.overlaps(LEAD, FAR)
    no_ci = Candidate("x", 0.30, None, None)
    assert policy.overlaps(no_ci, Candidate("y", 0.29, None, None))
    assert not policy.overlaps(no_ci, Candidate("y", 0.20, None, None))


def test_the_situation_is_read_from_graph_state():
    from neurosleuth.agents.config import RunConfig
    from neurosleuth.memory.topk import ActivationHeaps, Record

    heaps = ActivationHeaps(k=5)
    heaps.push(Record(2.0, "a b", "b", 3, "planner"))
    heaps.push(Record(1.0, "c d", "d", 2, "planner"))
    table = [{"text": LEAD.text, "margin": 0.3, "margin_ci": [0.22, 0.38]},
             {"text": CLOSE.text, "margin": 0.28, "margin_ci": [0.2, 0.36]},
             {"text": "rejected one", "rejected": "copied"}]
    state = {"iteration": 3, "forward_passes": 50, "heaps": heaps.to_dict(),
             "stagnation": {"stale": 1},
             "hypotheses": [{"step": 2, "text": LEAD.text, "candidates": table}],
             "experiments": [{"step": 1, "kind": "attack"}, {"step": 3, "kind": "patch"}],
             "evidence": [{"kind": "ablate", "step": 1, "kl_z": 3.5, "mode": "zero",
                           "prompts": 4},
                          {"kind": "compare", "step": 3, "a": CLOSE.text, "b": LEAD.text,
                           "prompts": 8, "disagree": 3, "a_right": 2, "b_right": 1, "p": 1.0,
                           "verdict": "undecided", "threshold": 0.5}]}
    cfg = RunConfig(iterations=10, max_forward_passes=100, hypothesis_every=3)
    s = policy.situation(state, cfg)
    assert s.grew == 1 and s.budget_used == 0.5 and s.stalled == 1
    assert s.steps_since_hypothesis == 1 and s.leading == LEAD and s.rivals == (CLOSE,)
    assert s.kinds_since_hypothesis == {"patch"} and s.causal_z == 3.5
    assert s.compared == {tuple(sorted((LEAD.text, CLOSE.text)))}
