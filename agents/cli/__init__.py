"""The ``neurosleuth`` command line. Each area registers its commands from ``cli_<area>.py``."""

from __future__ import annotations

import os

# Thread policy, decided once before torch loads: OpenMP threads that sleep instead of spinning.
# With spinning threads, two torch processes on the same cores (the planner beside the model, a
# batch beside a server) ran 15x slower; passive waiting costs little when the process is alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import functools  # noqa: E402
import sys
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    help="neurosleuth: investigate individual neurons of transformer language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


@app.callback()
def _root() -> None:
    """Investigate neurons: measure, exemplars, investigate, resume, steer, and the causal tools."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    threads = os.environ.get("NEUROSLEUTH_THREADS")
    if threads:  # e.g. 1 when several runs share a machine
        import torch

        torch.set_num_threads(int(threads))


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="smollm2-135m (embedded default), gemma3-270m, a "
        "TransformerLens name, a local HF folder or a .gguf file",
    ),
]
DeviceOpt = Annotated[str | None, typer.Option(help="cuda or cpu (default: cuda when present)")]


def fail(message: str, code: int = 2) -> None:
    """One line on stderr, then exit ``code``."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def friendly_errors(fn: Callable) -> Callable:
    """Turn the errors a user can cause (bad neuron, unknown model, bad input) into one line."""
    from pydantic import ValidationError

    from neurosleuth.tools.model import ModelLoadError
    from neurosleuth.tools.neurons import NeuronError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValidationError as err:  # a bad option value, in the config's own words
            fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()))
        except (ModelLoadError, NeuronError, ValueError, FileNotFoundError) as err:
            fail(str(err).splitlines()[0] if str(err) else type(err).__name__)

    return wrapper


def load(model: str, device: str | None = None):
    """Load a model with a status line (dequantising a GGUF the first time takes a few seconds)."""
    from neurosleuth.tools.model import load_model

    with err_console.status(f"loading {model} ..."):
        return load_model(model, device=device)


def neuron_checked(lm, spec: str):
    from neurosleuth.tools.neurons import NeuronId

    return NeuronId.parse(spec).validate(lm.n_layers, lm.d_mlp)


def _register_all() -> None:
    from neurosleuth.agents.cli import measure as cli_measure

    cli_measure.register(app)
    from neurosleuth.agents.cli import investigate as cli_agent

    cli_agent.register(app)
    from neurosleuth.agents.cli import exemplars as cli_corpus

    cli_corpus.register(app)
    from neurosleuth.agents.cli import causal as cli_causal

    cli_causal.register(app)
    from neurosleuth.agents.cli import attack as cli_attack

    cli_attack.register(app)
    from neurosleuth.agents.cli import batch as cli_batch

    cli_batch.register(app)
    from neurosleuth.agents.cli import score as cli_score

    cli_score.register(app)


_register_all()


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
    sys.exit(app())


if __name__ == "__main__":
    main()
