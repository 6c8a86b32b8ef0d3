"""The import graph flows one way between stages (README "Layout"). Every ``neurosleuth`` import in
every module, top-level or inside a function, is checked against the stages its stage may use."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("agents", "tools", "memory", "score", "report", "batch", "atlas")

# stage -> stages it may import. ``agents.cli`` is the command line: it may use everything.
MAY_USE = {
    "tools": {"tools"},
    "memory": {"memory", "tools"},
    "score": {"score", "tools", "memory"},
    # report rendering reads run and batch files (the site reads batch.json through its queue)
    "report": {"report", "tools", "batch"},
    "agents": {"agents", "tools", "memory", "score", "report"},
    "batch": {"batch", "agents", "tools", "memory", "report", "atlas"},
    # the whole-model atlas: one scan, records-based explanations and scores, its site
    "atlas": {"atlas", "tools", "memory", "score", "report"},
    "agents.cli": set(STAGES) | {"agents.cli"},
}


def stage_of(module: str) -> str:
    parts = module.split(".")
    if parts[:2] in (["agents", "cli"], ["agents", "__main__"]):  # ``python -m neurosleuth.agents``
        return "agents.cli"
    return parts[0]


def imports(path: Path) -> list[str]:
    """Every ``neurosleuth.X...`` module a file imports (without the ``neurosleuth.`` prefix)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            mods = [n for n in names[:1] if n.startswith("neurosleuth.")]
            if node.module in {f"neurosleuth.{s}" for s in STAGES}:
                mods = names[1:]  # from neurosleuth.agents import prompts
            out += [m.removeprefix("neurosleuth.") for m in mods]
        elif isinstance(node, ast.Import):
            out += [a.name.removeprefix("neurosleuth.") for a in node.names
                    if a.name.startswith("neurosleuth.")]
    return out


def violations() -> list[str]:
    bad = []
    for stage in STAGES:
        for path in sorted((ROOT / stage).rglob("*.py")):
            mine = stage_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
            for target in imports(path):
                theirs = stage_of(target)
                if theirs not in MAY_USE[mine]:
                    bad.append(f"{path.relative_to(ROOT)} ({mine}) imports {target} ({theirs})")
    return bad


def test_imports_flow_one_way():
    assert violations() == []


def test_the_check_sees_upward_imports(tmp_path, monkeypatch):
    """The check fails on a planted upward import (tools -> agents), also inside a function."""
    for stage in STAGES:
        (tmp_path / stage).mkdir()
    (tmp_path / "tools" / "bad.py").write_text(
        "def f():\n    from neurosleuth.agents.planner import make_planner\n")
    (tmp_path / "memory" / "bad.py").write_text("from neurosleuth.agents import graph\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert len(violations()) == 2
