"""The live view of an investigation (cli/live.py): plain lines off a terminal, a panel on
one; fed by the graph's nodes through the run's ``observer`` (``agents/context.py``)."""

import io

from rich.console import Console

from neurosleuth.agents.planner import HeuristicBackend
from neurosleuth.cli.live import LiveView
from tests.agent_helpers import investigate, write_corpus
from tests.agents.test_agent import config


def test_plain_lines_follow_the_run(tmp_path, tiny_lm):
    out = io.StringIO()
    cfg = config(tmp_path, write_corpus(tmp_path / "c.txt"), iterations=4, hypothesis_every=2,
                 policy="fixed")
    with LiveView(Console(file=out, width=200), cfg, cfg.neuron) as view:
        assert view.plain  # a StringIO is no terminal
        investigate(cfg, lm=tiny_lm, planner=HeuristicBackend(0),
                    observer=view)
    lines = out.getvalue().splitlines()
    steps = [x for x in lines if x.startswith("step ")]
    assert [s.split(":")[0] for s in steps] == [f"step {i}/4" for i in range(1, 5)]
    assert "dataset max" in steps[-1] and "forward passes" in steps[-1]
    assert any(x.startswith("seed: ") for x in lines)
    assert sum(x.startswith("test: ") for x in lines) == 2
    assert view.hypothesis is not None and view.hypothesis[0].startswith("Fires")


def test_plain_lines_name_each_chosen_experiment_and_why(tmp_path, tiny_lm):
    out = io.StringIO()
    cfg = config(tmp_path, write_corpus(tmp_path / "c.txt"), iterations=6, hypothesis_every=3)
    with LiveView(Console(file=out, width=300), cfg, cfg.neuron) as view:
        investigate(cfg, lm=tiny_lm, planner=HeuristicBackend(0),
                    observer=view)
    chosen = [x for x in out.getvalue().splitlines() if x.startswith("experiment ")]
    assert chosen and all("(" in x and "): " in x for x in chosen), chosen  # kind (why): result


def test_the_panel_shows_budget_best_and_leading_hypothesis(tmp_path, tiny_lm):
    cfg = config(tmp_path, write_corpus(tmp_path / "c.txt"), iterations=3, hypothesis_every=3)
    view = LiveView(Console(file=io.StringIO(), force_terminal=True, width=160), cfg, "1:3")
    assert not view.plain
    investigate(cfg, lm=tiny_lm, planner=HeuristicBackend(0),
                observer=view)
    text = io.StringIO()
    Console(file=text, width=160).print(view.render())
    shown = text.getvalue()
    for part in ("3 of 3 iterations", "best activation", "vs dataset max", "leading hypothesis",
                 "margin over floor", "neuron 1:3", "experiment"):
        assert part in shown, shown


def test_a_broken_view_never_stops_the_run(tmp_path, tiny_lm):
    cfg = config(tmp_path, write_corpus(tmp_path / "c.txt"), iterations=2)

    def broken(*args, **kwargs):
        raise RuntimeError("display gone")

    view = LiveView(Console(file=io.StringIO()), cfg, cfg.neuron)
    view._observe = broken  # the observer swallows its own errors
    run = investigate(cfg, lm=tiny_lm, planner=HeuristicBackend(0),
                      observer=view)
    assert (run / "report.md").is_file()
