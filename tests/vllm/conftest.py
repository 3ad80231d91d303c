"""The vllm tier: every test here is marked `vllm` and needs vLLM (the CPU build in `.venvs/vllm`)."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _needs_vllm():
    """Only the vllm tier selects these tests (marker `vllm`); anywhere else, say why they cannot run."""
    pytest.importorskip("vllm", reason="vLLM is not installed in this environment (only the vllm tier installs it)")
