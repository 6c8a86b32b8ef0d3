"""The investigation as a LangGraph ``StateGraph``, checkpointed to SQLite after every node.

    START -> seed -> plan -> act -> record -> check --+--> plan
                                                      +--> probe -> hypothesize -> test --+--> plan
                                                      +--> report -> END                  +--> report

``probe`` gathers causal evidence (ablation vs random neurons, token attribution) for the
hypothesis; every tool runs through ``agents/handlers.py``'s table, keyed by action type.

``run`` starts or resumes a run: a resumed run re-enters at the node after its last checkpoint
(``graph.invoke(None, config)`` with the same thread id); a finished run given a larger budget
re-enters at ``check``.
"""

from __future__ import annotations

import functools
import signal
import sqlite3
import threading
from typing import Literal

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from neurosleuth.agents import nodes
from neurosleuth.agents.context import RunContext
from neurosleuth.agents.state import InvestigationState

THREAD = {"thread_id": "investigation"}
NODES_PER_ITERATION = 7  # plan, act, record, check (+ probe, hypothesize, test now and then)


def route_after_check(state: InvestigationState) -> Literal["plan", "probe", "report"]:
    return nodes.route_after_check(state)  # type: ignore[return-value]


def route_after_test(state: InvestigationState) -> Literal["plan", "report"]:
    return nodes.route_after_test(state)  # type: ignore[return-value]


def build_graph(ctx: RunContext, checkpointer):
    g = StateGraph(InvestigationState)
    for name in (
        "seed",
        "plan",
        "act",
        "record",
        "check",
        "probe",
        "hypothesize",
        "test",
        "report",
    ):
        fn = functools.partial(getattr(nodes, name), ctx)
        g.add_node(name, nodes.timed(ctx, name, fn))
    g.add_edge(START, "seed")
    g.add_edge("seed", "plan")
    g.add_edge("plan", "act")
    g.add_edge("act", "record")
    g.add_edge("record", "check")
    g.add_conditional_edges("check", route_after_check)
    g.add_edge("probe", "hypothesize")
    g.add_edge("hypothesize", "test")
    g.add_conditional_edges("test", route_after_test)
    g.add_edge("report", END)
    return g.compile(checkpointer=checkpointer)


def run(ctx: RunContext, resume: bool = False) -> dict:
    """Run (or resume) to the end of the budget; Ctrl-C (or ``ctx.stop``) stops at the next step
    boundary."""
    conn = sqlite3.connect(ctx.files / "checkpoints.sqlite", check_same_thread=False)
    try:
        graph = build_graph(ctx, SqliteSaver(conn))
        limit = (ctx.cfg.iterations + 10) * NODES_PER_ITERATION + 50
        config = {"configurable": THREAD, "recursion_limit": limit}
        start = None
        if resume:
            snapshot = graph.get_state(config)
            if not snapshot.values:
                start = {}  # killed before the first checkpoint: start over
            else:
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
