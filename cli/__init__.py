"""The ``neurosleuth`` command line. Each area registers its commands from ``cli/<area>.py``;
it sits above every other stage (README "Layout") and is the only one that parses arguments.

Startup is kept cheap: command modules import torch, transformers and the tools inside the
commands, so ``--help`` and argument errors answer in a fraction of a second; a neuron and the
model name are checked against the model's configuration (``precheck``) before any weights load.
"""

from __future__ import annotations

import os

# Thread policy, decided once before torch loads: OpenMP threads that sleep instead of spinning.
# With spinning threads, two torch processes on the same cores (the planner beside the model, a
# batch beside a server) ran 15x slower; passive waiting costs little when the process is alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import functools  # noqa: E402
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from neurosleuth.tools.model import LoadedModel, ModelShape
    from neurosleuth.tools.neurons import NeuronId

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
    _quiet_transformers()
    threads = os.environ.get("NEUROSLEUTH_THREADS")
    if threads:  # e.g. 1 when several runs share a machine
        _set_threads(int(threads))


def _quiet_transformers() -> None:
    """transformers logs errors only and shows no progress bars: set now where it is loaded, else
    through the environment it reads when it loads (importing it here would cost a second)."""
    if "transformers" in sys.modules or "huggingface_hub" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    else:
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


def _set_threads(n: int) -> None:
    """torch's intra-op threads: now where torch is loaded, else by the variable it reads when it
    loads (OpenMP's, which also reaches the processes this one starts)."""
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="smollm2-135m (embedded default), gemma3-270m, a "
        "TransformerLens name, a local HF folder or a .gguf file",
    ),
]
CORPUS_HELP = ("'default' (the shipped corpus: README 'Corpus'), some of its sources "
               "('wiki,code'), hf:NAME[:CONFIG][:SPLIT] (a Hugging Face data set, streamed), or "
               "a file or folder of your own (.txt, .jsonl, .parquet, .arrow, a save_to_disk "
               "folder); SPEC#COLUMN names the text column (default: text)")
DeviceOpt = Annotated[str | None, typer.Option(
    help="auto, cpu, cuda, cuda:N or mps (default auto: CUDA when present; "
    "env NEUROSLEUTH_DEVICE)")]
DtypeOpt = Annotated[str | None, typer.Option(
    help="auto, float32, bfloat16 or float16 (default auto: bfloat16 on a GPU that has it, "
    "float32 elsewhere; env NEUROSLEUTH_DTYPE)")]
DeviceMapOpt = Annotated[str | None, typer.Option(
    "--device-map", help="auto: split a model too large for one GPU across all visible GPUs "
    "(env NEUROSLEUTH_DEVICE_MAP)")]


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit ``code``."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def friendly_errors(fn: Callable) -> Callable:
    """Turn the errors a user can cause (bad neuron, unknown model, bad input) into one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pydantic import ValidationError  # here, not at import: --help stays fast

        from neurosleuth.tools.model import ModelLoadError
        from neurosleuth.tools.neurons import NeuronError

        try:
            return fn(*args, **kwargs)
        except ValidationError as err:  # a bad option value, in the config's own words
            fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()))
        except (ModelLoadError, NeuronError, ValueError, FileNotFoundError) as err:
            fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
        except RuntimeError as err:  # torch.OutOfMemoryError, without importing torch here
            if type(err).__name__ != "OutOfMemoryError":
                raise
            fail("out of memory even after halving every batch down to one row: try a smaller "
                 "--dtype, --device-map auto, or a smaller model")

    return wrapper


def load(model: str, device: str | None = None, dtype: str | None = None,
         device_map: str | None = None) -> LoadedModel:
    """Load a model with a status line (dequantising a GGUF the first time takes a few seconds).
    An unknown model fails at once, before torch loads (``precheck``); a device, dtype or device
    map that cannot be used here, or a model that cannot fit, fails before any weights load.
    Unset placement flags fall back to ``NEUROSLEUTH_DEVICE`` / ``_DTYPE`` / ``_DEVICE_MAP``."""
    from neurosleuth.tools.model import load_model, model_shape

    model_shape(model)
    env = os.environ.get
    device = device or env("NEUROSLEUTH_DEVICE")
    dtype = dtype or env("NEUROSLEUTH_DTYPE")
    device_map = device_map or env("NEUROSLEUTH_DEVICE_MAP")
    with err_console.status(f"loading {model} ..."):
        return load_model(model, device=device, dtype=dtype, device_map=device_map)


def precheck(model: str, neurons: Iterable[str | NeuronId] = ()) -> ModelShape | None:
    """Before any weights load: ``model`` is one ``load_model`` knows, and each neuron parses and
    exists in the model's shape as its configuration gives it. Raises the error the load or
    ``neuron_checked`` would raise; where the shape is not known without loading, only the format
    is checked here (``neuron_checked`` checks the range after the load). Returns the shape."""
    from neurosleuth.tools.model import model_shape
    from neurosleuth.tools.neurons import NeuronId

    shape = model_shape(model)
    for n in neurons:
        n = NeuronId.parse(n) if isinstance(n, str) else n
        if shape is not None:
            n.validate(shape.n_layers, shape.d_mlp)
    return shape


def neuron_checked(lm: LoadedModel, spec: str) -> NeuronId:
    from neurosleuth.tools.neurons import NeuronId

    return NeuronId.parse(spec).validate(lm.n_layers, lm.d_mlp)


def _register_all() -> None:
    from neurosleuth.cli import measure as cli_measure

    cli_measure.register(app)
    from neurosleuth.cli import investigate as cli_agent

    cli_agent.register(app)
    from neurosleuth.cli import exemplars as cli_corpus

    cli_corpus.register(app)
    from neurosleuth.cli import corpus as cli_corpus_table

    cli_corpus_table.register(app)
    from neurosleuth.cli import causal as cli_causal

    cli_causal.register(app)
    from neurosleuth.cli import attack as cli_attack

    cli_attack.register(app)
    from neurosleuth.cli import batch as cli_batch

    cli_batch.register(app)
    from neurosleuth.cli import score as cli_score

    cli_score.register(app)
    from neurosleuth.cli import records as cli_records

    cli_records.register(app)
    from neurosleuth.cli import atlas as cli_atlas

    cli_atlas.register(app)


_register_all()


def main() -> None:
    # libraries' deprecation notices (transformers' past_key_values ...) are for their callers'
    # developers, not for a researcher's terminal
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
    sys.exit(app())


if __name__ == "__main__":
    main()
