"""The shape of a run: a frozen context, one handler per experiment, a strategy per recovery,
and a group's peers attached, never assigned."""

from __future__ import annotations

import dataclasses
import threading
from types import SimpleNamespace

import pytest

from neurosleuth.agents import handlers, recovery
from neurosleuth.agents.actions import EXPERIMENTS, RunAttack
from neurosleuth.agents.context import Alone, Exemplars, RunContext
from neurosleuth.agents.rundir import RunFiles
from neurosleuth.agents.summary import finish
from neurosleuth.memory.stagnation import DEFAULT_STRATEGIES
from neurosleuth.memory.topk import ActivationHeaps


def test_every_experiment_has_one_handler_and_control_actions_are_routes():
    from neurosleuth.agents.actions import Finish, RunHypothesis

    assert set(handlers.HANDLERS) == set(EXPERIMENTS) - {RunHypothesis, Finish}


def test_the_context_cannot_be_reassigned():
    ctx = RunContext(cfg=None, lm=None, neuron=None, planner=None, planner_note="", files=None,
                     memory=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.peers = Alone()  # type: ignore[misc]
    assert ctx.peers.exchange("0:1", ["a"]) == [] and ctx.peers.others_s() == 0.0
    assert not ctx.stopping()
    ctx.stop.set()
    assert ctx.stopping()


def test_exemplars_give_the_dataset_max_of_their_top_window():
    ex = Exemplars()
    assert ex.dataset_max is None and ex.snippets == []
    ex.set({"top": [{"max_act": 3.5, "argmax": 1, "tokens": ["a", " b"], "acts": [0.1, 3.5]}]})
    assert ex.dataset_max == 3.5 and len(ex.snippets) == 1


def test_each_recovery_strategy_changes_the_state():
    class Cfg:
        prompts_per_step, seed, temperature = 3, 0, 0.7

    ctx = RunContext(cfg=Cfg(), lm=None, neuron=None, planner=None, planner_note="", files=None,
                     memory=None, stop=threading.Event())
    ctx.exemplars.snippets = [(1.0, "x", f"snippet {i}") for i in range(5)]
    state = {"iteration": 4, "exemplar_cursor": 3, "temperature": 0.7}
    assert set(DEFAULT_STRATEGIES) <= set(recovery.STRATEGIES)
    restart = recovery.recover(ctx, "exemplar_restart", state)
    assert [p["prompt"] for p in restart["pending"]] == ["snippet 3", "snippet 4"]
    assert restart["exemplar_cursor"] == 5
    assert len(recovery.recover(ctx, "random_prompts", state)["pending"]) == 3
    assert recovery.recover(ctx, "raise_temperature", state)["temperature"] == pytest.approx(1.0)
    queued = recovery.recover(ctx, "attack", state)["pending"][0]
    assert RunAttack.model_validate(queued["action"]).reason == "stagnation recovery"
    with pytest.raises(ValueError, match="unknown recovery strategy 'pray'"):
        recovery.recover(ctx, "pray", state)


@pytest.mark.parametrize("with_reporter", [True, False])
def test_the_report_comes_from_the_reporter_given_from_above(tmp_path, with_reporter):
    """The agent imports no report: at the end ``finish`` writes the run's data files, then hands
    the folder, model and neuron to the run's reporter; a run without one writes data only."""
    calls = []
    ctx = RunContext(cfg=SimpleNamespace(run_id="r", model="m", k=3), planner_note="",
                     lm=SimpleNamespace(describe=lambda: "tiny"), neuron="0:1",
                     planner=SimpleNamespace(name="scripted"), files=RunFiles(tmp_path / "r"),
                     memory=None, reporter=(lambda *a: calls.append(a)) if with_reporter else None)
    finish(ctx, {"heaps": ActivationHeaps(k=3).to_dict()}, "finished")
    assert (tmp_path / "r" / "summary.json").is_file() and (tmp_path / "r" / "heaps.json").is_file()
    assert calls == ([(tmp_path / "r", ctx.lm, "0:1")] if with_reporter else [])


def test_a_run_checkpointed_by_the_old_graph_says_why_it_cannot_resume():
    from neurosleuth.agents.graph import OldRunError, check_resumable

    check_resumable("new", {"costs": {}, "iteration": 3}, ("plan",))  # today's: resumes
    with pytest.raises(OldRunError, match="older neurosleuth.*'check'.*without --resume"):
        check_resumable("old", {"iteration": 3, "hypothesis_due": False}, ("check",))
    with pytest.raises(OldRunError, match="cannot resume"):  # finished under the old graph
        check_resumable("old", {"iteration": 3, "hypothesis_due": False}, ())
