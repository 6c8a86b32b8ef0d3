"""The experiment-design policy (``agents/policy.py``) on hand-made situations: each rule, in
order, with the reason it logs."""

from __future__ import annotations

from dataclasses import replace

from neurosleuth.agents import policy
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


def test_search_while_the_top_list_grows_in_the_first_half():
    action = policy.choose(START)
    assert action.kind == "propose_prompts" and "grew by 3" in action.reason
    assert kind(replace(START, budget_used=0.6)) == "ablate"  # past half: stop searching


def test_causal_evidence_then_the_explainer_before_the_first_hypothesis():
    stalled = replace(START, grew=0, stalled=2)
    assert kind(stalled) == "ablate"
    action = policy.choose(replace(stalled, evidence_kinds=frozenset({"ablate"})))
    assert action.kind == "hypothesize" and "2 step(s) without a new best" in action.reason


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
             "evidence": [{"kind": "ablate", "step": 1, "kl_z": 3.5},
                          {"kind": "compare", "step": 3, "a": CLOSE.text, "b": LEAD.text}]}
    cfg = RunConfig(iterations=10, max_forward_passes=100, hypothesis_every=3)
    s = policy.situation(state, cfg)
    assert s.grew == 1 and s.budget_used == 0.5 and s.stalled == 1
    assert s.steps_since_hypothesis == 1 and s.leading == LEAD and s.rivals == (CLOSE,)
    assert s.kinds_since_hypothesis == {"patch"} and s.causal_z == 3.5
    assert s.compared == {tuple(sorted((LEAD.text, CLOSE.text)))}
