"""End-to-end: `vllm serve` (CPU, vLLM 0.32) on a tiny ColQwen3 checkpoint, queried over HTTP, vs Transformers."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed in this environment")

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_vllm_serve_native_parity():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "vllm_client.py"), "demo", "--route", "native"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    match = re.search(r"PARITY route=native text_max_abs=(\S+) image_max_abs=(\S+) same_ranking=True", output)
    assert match, output[-6000:]
    assert float(match.group(1)) < 1e-4 and float(match.group(2)) < 1e-4
