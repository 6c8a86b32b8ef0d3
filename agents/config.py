"""One typed run configuration. Override order: defaults < config file < environment < CLI flags.

The resolved config is saved as ``config.json`` in every run directory. Environment variables are
``NEUROSLEUTH_<FIELD>`` (e.g. ``NEUROSLEUTH_PLANNER=heuristic``); ``OLLAMA_HOST`` sets the Ollama
host. No secret is ever part of the config.

Scan depth: ``exemplar_tokens`` (corpus tokens scanned for dataset exemplars, cached per layer)
left unset is chosen from the time budget by ``scan_depth``: the deepest of ``SCAN_TIERS`` whose
scan fits in ``SCAN_SHARE`` of the budget at the device's ``SCAN_RATE``. A run without a time budget
(``make run``) keeps the short scan; an explicit value is always honoured. The resolved value is
what ``config.json`` records, so everything reading the config (the score, a resume) uses the same
cached scan. A batch chooses once from its whole budget (``batch/queue.py``).

``exemplar_tokens`` stays the name of the depth on the command line and in ``config.json`` (so a
config saved before still loads); ``RunConfig.scan()`` is the one place it becomes the scan's
``max_tokens`` (``tools/scan_config.py``: the scan config the score, the atlas and the records
share).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from neurosleuth.tools.placement import device_map_name, device_name, dtype_name
from neurosleuth.tools.scan_config import SHORT_SCAN, ScanConfig

PlannerName = Literal["auto", "ollama", "embedded", "heuristic"]

# Tiers, so that runs with similar budgets share one cached scan. The last one holds 58% of the
# shipped corpus (8,607,936 tokens in 64-token windows with SmolLM2's tokenizer), each source in
# its share until it runs out; a bigger corpus of your own is cut there too.
SCAN_TIERS = (SHORT_SCAN, 250_000, 1_000_000, 5_000_000)
# Tokens/s of a layer scan, used until a scan of the model on this kind of device has measured
# its own (``tools/scan.py`` keeps the last measured rate in the cache). CPU measured on 2 cores
# shared with other jobs (SmolLM2-135M, layer 12: 280 tokens/s beside one other job, 160 beside
# several; layer 29: 180): 250 is conservative for an idle machine of that size. CUDA: a
# conservative guess for a 1-8B model; bench/gpu.py measures it.
SCAN_RATE = {"cpu": 250.0, "cuda": 20_000.0}
SCAN_SHARE = 0.15  # at most this share of a time budget goes to the (first) scan of a layer


class RunConfig(BaseModel):
    run_id: str = ""
    runs_dir: str = "runs"
    model: str = "smollm2-135m"
    device: str | None = None  # None/auto: CUDA when present (tools/placement.py)
    dtype: str | None = None  # None/auto: bfloat16 on a GPU that has it; a run records its own
    device_map: str | None = None  # auto: split the model across the visible GPUs
    neuron: str = "12:345"
    planner: PlannerName = "auto"
    policy: Literal["adaptive", "fixed"] = "adaptive"  # adaptive: the planner chooses experiments
    ollama_model: str = "llama3.1"
    ollama_host: str = "http://127.0.0.1:11434"
    ollama_timeout_s: float = Field(120.0, gt=0)  # per request (httpx read/connect)
    iterations: int = Field(30, ge=1)
    time_budget_s: float | None = None
    max_forward_passes: int | None = None
    prompts_per_step: int = Field(8, ge=1, le=32)
    k: int = Field(20, ge=1)
    dedup_threshold: float = Field(0.9, gt=0, le=1)
    patience: int = Field(5, ge=1)
    hypothesis_every: int = Field(10, ge=1)
    temperature: float = 0.7
    seed: int = 0
    steer: list[str] = []
    hypothesis: str | None = None  # the researcher's own candidate, scored beside the agent's
    system_prompt: str | None = None
    corpus: str | None = None  # None: the default shipped corpus
    exemplar_tokens: int | None = Field(None, ge=1)  # None: chosen from time_budget_s
    sweep_words: int | None = Field(None, ge=0)  # vocabulary sweep (tools/vocab_sweep.py):
    # words at most (None: all the budget affords, 0: none)
    window: int = 64
    max_prompt_chars: int = 1000
    atlas: str | None = None  # the atlas this neuron was picked from (batch --from-atlas)

    @field_validator("run_id")
    @classmethod
    def _safe_run_id(cls, v: str) -> str:
        return check_run_id(v) if v else v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        return None if v is None else device_name(v)

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str | None) -> str | None:
        return None if v is None else dtype_name(v)

    @field_validator("device_map")
    @classmethod
    def _device_map(cls, v: str | None) -> str | None:
        return device_map_name(v)

    @model_validator(mode="after")
    def _scan_depth(self) -> RunConfig:
        if self.exemplar_tokens is None:
            # set without marking the field as given: a batch tells a chosen depth from a set one
            self.__dict__["exemplar_tokens"] = scan_depth(self.time_budget_s, self.device,
                                                          self.model)[0]
        return self

    def run_dir(self) -> Path:
        return run_path(self.runs_dir, self.run_id)

    def scan(self) -> ScanConfig:
        """The run's corpus scan: ``exemplar_tokens`` is its depth (``max_tokens``), and a
        neuron's top ``max(k, 2 * prompts_per_step)`` windows are read (two steps' worth of
        seeds at least)."""
        assert self.exemplar_tokens is not None  # set by ``_scan_depth`` when not given
        return ScanConfig(corpus=self.corpus, window=self.window, max_tokens=self.exemplar_tokens,
                          k=max(self.k, 2 * self.prompts_per_step))

    def public_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def scan_device(device: str | None) -> str:
    """'cuda' or 'cpu': the rate class of ``device`` (None: what ``load_model`` would pick)."""
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith("cuda") else "cpu"


def scan_depth(time_budget_s: float | None, device: str | None = None,
               model: str | None = None) -> tuple[int, str]:
    """(corpus tokens to scan, why): the deepest ``SCAN_TIERS`` entry whose scan takes at most
    ``SCAN_SHARE`` of ``time_budget_s`` at the scan rate of ``model`` on ``device`` (measured by
    an earlier scan, else ``SCAN_RATE``); the first tier without a budget."""
    if not time_budget_s:
        return SCAN_TIERS[0], "no time budget: the short scan"
    kind = scan_device(device)
    measured = measured_scan_rate(model, kind) if model else None
    rate = measured or SCAN_RATE[kind]
    affordable = SCAN_SHARE * time_budget_s * rate
    tokens = max([t for t in SCAN_TIERS if t <= affordable], default=SCAN_TIERS[0])
    how = "measured" if measured else "assumed"
    return tokens, (f"{SCAN_SHARE:.0%} of the {time_budget_s:,.0f} s budget at ~"
                    f"{rate:,.0f} tokens/s ({kind}, {how}) affords {affordable:,.0f} tokens")


def measured_scan_rate(model: str, kind: str) -> float | None:
    """The last scan rate (tokens/s) measured for ``model`` on ``kind`` ('cpu'/'cuda'), if any."""
    from neurosleuth.tools.model import cache_dir

    try:
        rate = json.loads((cache_dir() / "scan_rates.json").read_text()).get(f"{model}|{kind}")
    except (OSError, ValueError, AttributeError):
        return None
    return float(rate) if isinstance(rate, int | float) and rate > 0 else None


def check_run_id(run_id: str) -> str:
    """``run_id`` if it is a safe folder name (letters, digits, '.', '_', '-'), else ValueError."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", run_id):
        raise ValueError(
            f"run id {run_id!r} must be letters, digits, '.', '_' or '-' "
            "(it names a folder in the runs directory)"
        )
    return run_id


def run_path(runs_dir: str | Path, run_id: str) -> Path:
    """``runs_dir/run_id``, refusing any id that would escape ``runs_dir``."""
    check_run_id(run_id)
    base = Path(runs_dir).resolve()
    path = (base / run_id).resolve()
    if path.parent != base:
        raise ValueError(f"run id {run_id!r} escapes {runs_dir}")
    return path


def parse_duration(text: str | None) -> float | None:
    """``"8h"``, ``"90m"``, ``"45s"``, ``"1h30m"`` or plain seconds -> seconds."""
    if text is None or text == "":
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(a + b for a, b in parts) != text.replace(" ", ""):
        raise ValueError(f"bad duration {text!r}: use e.g. 8h, 90m, 45s or 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def resolve_config(
    file: Path | None = None, env: dict[str, str] | None = None, **flags: Any
) -> RunConfig:
    """Merge defaults < ``file`` (TOML or JSON) < environment < ``flags`` (None flags ignored)."""
    merged: dict[str, Any] = {}
    if file is not None:
        text = Path(file).read_text()
        merged.update(tomllib.loads(text) if Path(file).suffix == ".toml" else json.loads(text))
    env = dict(os.environ) if env is None else env
    for name in RunConfig.model_fields:
        value = env.get(f"NEUROSLEUTH_{name.upper()}")
        if value is not None:
            merged[name] = json.loads(value) if name == "steer" else value
    if "OLLAMA_HOST" in env:
        host = env["OLLAMA_HOST"]
        merged["ollama_host"] = host if "://" in host else f"http://{host}"
    merged.update({k: v for k, v in flags.items() if v is not None})
    return RunConfig.model_validate(merged)
