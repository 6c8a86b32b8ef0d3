"""Files of one run directory (layout: README "Runs"). Writes are atomic or append-only, and the
per-step appends are idempotent, so a node re-run after a kill never duplicates a result."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

PROMPT_COLUMNS = ["step", "prompt", "status", "activation", "max_token", "source", "similarity"]


class RunSummary(TypedDict, total=False):
    """``summary.json``: written by the agent at every plan (``agents/summary.py``), read by
    the report (``report/data.py``); a run killed early may lack any key (the report reads each
    with a default)."""

    run_id: str
    model: str
    model_desc: str
    neuron: str
    planner_used: str
    planner_note: str
    status: str  # running | finishing | finished | interrupted | failed
    stop_reason: str | None
    iterations: int
    forward_passes: int
    llm_calls: int
    llm_tokens_in: int
    llm_tokens_out: int
    llm_failures: int
    llm_repairs: int
    llm_fallbacks: int
    llm_errors: list[str]
    wall_s: float
    own_s: float  # wall_s less the other neurons' turns in a layer-parallel group
    oom_backoffs: dict[str, Any]
    planner_s: float
    model_s: float
    best_activation: float | None
    best_prompt: str | None
    dataset_max: float | None
    stats: dict[str, Any]  # memory.topk.SearchStats.to_dict()
    recoveries: list[dict[str, Any]]
    steering: list[dict[str, Any]]
    started_at: str
    finished_at: str | None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunFiles:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._last_prompt_step: int | None = None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, self.path / name)

    def read_json(self, name: str, default: Any = None) -> Any:
        path = self.path / name
        return json.loads(path.read_text()) if path.is_file() else default

    def append_event(self, event: dict[str, Any]) -> None:
        line = json.dumps({"time": now_iso(), **event}, default=str)
        with open(self.path / "events.jsonl", "a") as f:
            f.write(line + "\n")

    def last_prompt_step(self) -> int:
        if self._last_prompt_step is None:
            self._last_prompt_step = -1
            path = self.path / "prompts.csv"
            if path.is_file():
                with open(path, newline="") as f:
                    for row in csv.DictReader(f):
                        self._last_prompt_step = max(self._last_prompt_step, int(row["step"]))
        return self._last_prompt_step

    def append_prompts(self, step: int, rows: list[dict[str, Any]]) -> bool:
        """Append one step's rows in a single write; a step already written is skipped."""
        if step <= self.last_prompt_step():
            return False
        path = self.path / "prompts.csv"
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=PROMPT_COLUMNS, extrasaction="ignore")
        if not path.is_file():
            writer.writeheader()
        for row in rows:
            writer.writerow({"step": step, **row})
        with open(path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        self._last_prompt_step = step
        return True

    def write_curve(self, curve: list[list[float]]) -> None:
        lines = ["forward_passes,step,best"] + [f"{int(fp)},{int(s)},{b}" for fp, s, b in curve]
        tmp = self.path / ".curve.csv.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.path / "curve.csv")

    def read_steering(self, seen: int) -> list[dict[str, Any]]:
        """Steering messages appended by ``neurosleuth steer`` after the first ``seen`` lines."""
        path = self.path / "steer.jsonl"
        if not path.is_file():
            return []
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        out = []
        for ln in lines[seen:]:
            try:
                out.append(json.loads(ln))
            except json.JSONDecodeError:
                out.append({"message": ln, "received_at": None})
        return out


def post_steering(run_dir: Path, message: str, kind: str = "steer",
                  request: dict[str, Any] | None = None) -> None:
    """Append to a run's inbox (read by the run at its next step): a steering message (``kind``
    "steer"), a candidate hypothesis ("hypothesis"), or an experiment to run as it is
    ("experiment": ``request`` is the action, e.g. ``{"kind": "compare", "a": .., "b": ..}``)."""
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"no run at {run_dir}")
    entry: dict[str, Any] = {"message": message, "received_at": now_iso()}
    if kind != "steer":
        entry["kind"] = kind
    if request is not None:
        entry["request"] = request
    with open(run_dir / "steer.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")
