"""The investigation as a LangGraph ``StateGraph``, checkpointed to SQLite after every node.

    START -> seed -> plan --+--> act -> record --> plan
                            +--> probe -> hypothesize -> test -> revise --> plan
                            +--> report -> END

``plan`` asks the policy (``agents/policy.py``) what runs next and routes there: an experiment
(``act``, dispatched by action type through ``agents/handlers.py``), a hypothesis round (the
nodes of ``agents/round.py``: probes, candidates, scores, then test-revise-rescore of the leader)
or the report. Control is in the edges: no action passes through ``act`` just to be routed.

``run`` starts or resumes a run: a resumed run re-enters at the node after its last checkpoint
(``graph.invoke(None, config)`` with the same thread id); a finished run given a larger budget
re-enters at ``plan``. A run checkpointed by a version whose graph had other nodes cannot resume:
``run`` says so (its files stay as they are).
"""

from __future__ import annotations

import functools
import signal
import sqlite3
import threading

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from neurosleuth.agents import nodes, round
from neurosleuth.agents.context import RunContext
from neurosleuth.agents.state import InvestigationState

THREAD = {"thread_id": "investigation"}
NODES_PER_ITERATION = 7  # plan, act, record (+ probe, hypothesize, test, revise now and then)
NODES = {"seed": nodes, "plan": nodes, "act": nodes, "record": nodes, "probe": round,
         "hypothesize": round, "test": round, "revise": round, "report": nodes}


def build_graph(ctx: RunContext, checkpointer):
    g = StateGraph(InvestigationState)
    for name, module in NODES.items():
        fn = functools.partial(getattr(module, name), ctx)
        g.add_node(name, nodes.timed(ctx, name, fn))
    g.add_edge(START, "seed")
    g.add_edge("seed", "plan")
    g.add_conditional_edges("plan", nodes.route_after_plan)
    g.add_edge("act", "record")
    g.add_edge("record", "plan")
    g.add_edge("probe", "hypothesize")
    g.add_edge("hypothesize", "test")
    g.add_edge("test", "revise")
    g.add_edge("revise", "plan")
    g.add_edge("report", END)
    return g.compile(checkpointer=checkpointer)


class OldRunError(RuntimeError):
    """A run checkpointed by a version of the graph with other nodes: it cannot resume."""


def check_resumable(run: str, values: dict, next_nodes: tuple[str, ...]) -> None:
    """Raise ``OldRunError`` (saying why, and what to do) when a checkpoint was written by a
    graph with other nodes: one it would resume at is gone (``check``), or its state is the old
    one (a ``hypothesis_due`` flag, no measured ``costs``)."""
    gone = [n for n in next_nodes if n not in NODES]
    if gone or ("costs" not in values and "hypothesis_due" in values):
        raise OldRunError(
            f"{run} was checkpointed by an older neurosleuth (its graph had a node "
            f"{', '.join(gone) or 'check'!r} that this version replaced): it cannot resume. Its "
            "files are kept; start a new run (the same command without --resume, or a new "
            "--run-id).")


def run(ctx: RunContext, resume: bool = False) -> dict:
    """Run (or resume) to the end of the budget; Ctrl-C (or ``ctx.stop``) stops at the next step
    boundary."""
    conn = sqlite3.connect(ctx.files / "checkpoints.sqlite", check_same_thread=False)
    try:
        graph = build_graph(ctx, SqliteSaver(conn))
        limit = (ctx.cfg.iterations + 10) * NODES_PER_ITERATION + 50
        config = {"configurable": THREAD, "recursion_limit": limit}
        start: dict | None = None
        if resume:
            snapshot = graph.get_state(config)
            if not snapshot.values:
                start = {}  # killed before the first checkpoint: start over
            else:
                check_resumable(ctx.files.path.name, snapshot.values, tuple(snapshot.next or ()))
                ctx.reload_exemplars()
                if not snapshot.next:  # finished: re-enter at check with the new budget
                    graph.update_state(
                        config, {"done": False, "stop_reason": None}, as_node="record"
                    )
        else:
            start = {}
        if threading.current_thread() is not threading.main_thread():
            return graph.invoke(start, config)
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):
            ctx.stop.set()  # the next check routes to the report
            signal.signal(signal.SIGINT, previous)  # a second Ctrl-C stops at once

        signal.signal(signal.SIGINT, on_sigint)
        try:
            return graph.invoke(start, config)
        finally:
            signal.signal(signal.SIGINT, previous)
    finally:
        conn.close()
