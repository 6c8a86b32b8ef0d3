import os
import shutil

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


# ---------------------------------------------------------------- browser tests
# Tests marked ``browser`` drive Debian's Chromium with playwright. ``make test`` installs it where
# apt-get can; without it they are skipped and the run ends with a banner saying so (a skip line
# is easy to miss). Under ``NEUROSLEUTH_REQUIRE_BROWSER=1`` (``.ci/run``) they fail instead.
NO_BROWSER = "no chromium on PATH (make chromium, or apt-get install -y chromium)"


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives Debian's Chromium with playwright (make test installs it)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("browser") is None or chromium_path() is not None:
        return
    if os.environ.get("NEUROSLEUTH_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"{NO_BROWSER}; NEUROSLEUTH_REQUIRE_BROWSER is set", pytrace=False)
    pytest.skip(NO_BROWSER)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # from the reports, not this process's stash: under pytest-xdist the tests ran in workers
    skipped = [r.nodeid for r in terminalreporter.stats.get("skipped", [])
               if NO_BROWSER in str(r.longrepr)]
    if not skipped:
        return
    tr = terminalreporter
    tr.write_sep("!", f"{len(skipped)} BROWSER TESTS DID NOT RUN: NO CHROMIUM", red=True, bold=True)
    tr.write_line(f"  {NO_BROWSER}; CI runs them. Not run:", red=True)
    for nodeid in skipped:
        tr.write_line(f"    {nodeid}", red=True)
    tr.write_sep("!", red=True, bold=True)
