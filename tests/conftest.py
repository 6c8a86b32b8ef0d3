import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach a model hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"
torch.set_num_threads(int(os.environ.get("NEUROSLEUTH_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def tiny_lm():
    from tests.fixtures import tiny_random_lm

    return tiny_random_lm()


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M (integration tests only)."""
    from neurosleuth.tools.model import load_model

    return load_model("smollm2-135m", device="cpu")
