"""End-to-end: `vllm serve` (CPU, vLLM 0.32) on a tiny ColQwen3 checkpoint, both routes, queried over HTTP.

The demo sends a bounded set of requests (2 query + 3 page `/pooling`, 2 `/score` with page images, 1 `/rerank`),
checks them against Transformers and against MaxSim of the served vectors, and always stops the server."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed in this environment (only the vllm tier installs it)")

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("route", ["native", "transformers"])
def test_vllm_serve_route(route):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "vllm_client.py"), "demo", "--route", route],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    match = re.search(rf"PARITY route={route} text_max_abs=(\S+) image_max_abs=(\S+) same_ranking=(\w+)", output)
    assert match, output[-6000:]
    text_abs, image_abs = float(match.group(1)), float(match.group(2))
    assert text_abs < 1e-4
    if route == "native":
        assert image_abs < 1e-4 and match.group(3) == "True"
    else:
        assert 1e-3 < image_abs < float("inf")  # DeepStack dropped: a visible gap, same token counts
    score = re.search(r"SCORE pages: .* max_abs_vs_pooling=(\S+)", output)
    assert score and float(score.group(1)) < 1e-3, output[-3000:]
    assert re.search(r"RERANK .*: \[\(\d+, \S+\), \(\d+, \S+\)\]", output), output[-3000:]
