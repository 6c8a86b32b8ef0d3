"""The import graph between stages is a DAG that points down (README "Layout", STYLE.md):

    cli > report > batch, atlas > agents > score, memory > tools

Every ``neurosleuth`` import in every module, at the top or inside a function (and a constant
``importlib.import_module("neurosleuth....")``), is checked against the stages its stage may use;
the table of what may use what is itself checked to have no cycle."""

from __future__ import annotations

import ast
import tomllib
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# stage -> the other stages it may import (each may import itself), top of the stack first
MAY_USE: dict[str, set[str]] = {
    "cli": {"report", "batch", "atlas", "agents", "score", "memory", "tools"},  # the commands
    # reports, the batch index and the atlas pages: they read run, batch and atlas files
    "report": {"batch", "atlas", "agents", "score", "memory", "tools"},
    "batch": {"agents", "score", "memory", "tools"},  # many investigations
    "atlas": {"agents", "score", "memory", "tools"},  # one scan of a whole model
    "agents": {"score", "memory", "tools"},  # the investigation
    "score": {"memory", "tools"},
    "memory": {"tools"},
    "tools": set(),
}
STAGES = tuple(MAY_USE)


def stage_of(module: str) -> str:
    return module.split(".")[0]


def _named(node: ast.AST) -> list[str]:
    """The ``neurosleuth.X...`` modules one import statement (or import call) names."""
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        if node.module == "neurosleuth" or node.module in {f"neurosleuth.{s}" for s in STAGES}:
            return [f"{node.module}.{a.name}" for a in node.names]  # from neurosleuth.x import y
        return [node.module]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        fn = node.func
        name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
        if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def imports(path: Path) -> list[str]:
    """Every ``neurosleuth.X...`` module a file imports (without the ``neurosleuth.`` prefix);
    a relative import stays inside its stage and is not listed."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        out += [m.removeprefix("neurosleuth.") for m in _named(node)
                if m.startswith("neurosleuth.")]
    return out


def violations() -> list[str]:
    bad = []
    for stage in STAGES:
        for path in sorted((ROOT / stage).rglob("*.py")):
            for target in imports(path):
                theirs = stage_of(target)
                if theirs != stage and theirs not in MAY_USE[stage]:
                    bad.append(f"{path.relative_to(ROOT)} ({stage}) imports {target} ({theirs})")
    return bad


def order(may_use: dict[str, set[str]]) -> tuple[str, ...]:
    """The stages from the bottom up; raises CycleError when the table has a cycle."""
    graph = {stage: {s for s in used if s != stage} for stage, used in may_use.items()}
    return tuple(TopologicalSorter(graph).static_order())


def test_the_stages_are_a_dag():
    bottom_up = order(MAY_USE)
    assert bottom_up[0] == "tools" and bottom_up[-1] == "cli"
    assert all(used <= set(STAGES) for used in MAY_USE.values())
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(packages["package-dir"].values()) == set(STAGES)  # every folder has a place


def test_the_order_check_sees_a_cycle():
    with pytest.raises(CycleError):
        order({**MAY_USE, "tools": {"report"}})


def test_imports_flow_one_way():
    assert violations() == []


def test_the_check_sees_upward_imports(tmp_path, monkeypatch):
    """The check fails on planted upward imports: at the top of a module, inside a function, of
    a whole stage, and by name through importlib."""
    for stage in STAGES:
        (tmp_path / stage).mkdir()
    (tmp_path / "tools" / "bad.py").write_text(
        "def f():\n    from neurosleuth.agents.planner import make_planner\n")
    (tmp_path / "memory" / "bad.py").write_text("from neurosleuth.agents import graph\n")
    (tmp_path / "agents" / "bad.py").write_text(
        "from neurosleuth import report\nimport importlib\n"
        "def g():\n    return importlib.import_module('neurosleuth.cli.batch')\n")
    (tmp_path / "batch" / "bad.py").write_text("import neurosleuth.report.site\n")
    (tmp_path / "report" / "fine.py").write_text("from neurosleuth.batch.queue import Batch\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert sorted(v.split(" ")[0] for v in violations()) == [
        "agents/bad.py", "agents/bad.py", "batch/bad.py", "memory/bad.py", "tools/bad.py"]
