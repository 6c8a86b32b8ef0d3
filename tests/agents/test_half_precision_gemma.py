"""Gemma-3-270m in bfloat16 on the CPU finishes an investigation with a hypothesis
(``test_half_precision.py`` says what is checked; this is its longest case, in a file of its own
so that pytest-xdist runs it beside the others)."""

import pytest

from tests.agents.test_half_precision import check_bf16_investigation

pytestmark = pytest.mark.integration


def test_gemma_bf16_investigation_finishes_with_a_hypothesis(tmp_path):
    check_bf16_investigation(tmp_path, "gemma3-270m", "9:100",
                             "18 layers, d_mlp 2048, cpu, bfloat16")
