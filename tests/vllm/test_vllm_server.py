"""End to end over HTTP: `vllm serve` (CPU, vLLM 0.32) on tiny ColQwen3 checkpoints, both routes, through the one
harness (`colqwen3 vllm-check --via server`): 4 query and 5 page `/pooling` requests (the last page twice), 4
`/score` calls with page images and 1 `/rerank`, each checked against Transformers (max |diff| <= 1e-5, fp32) and
against MaxSim of the served vectors. The Transformers route is launched with its DeepStack-channel override (what
`colqwen3 serve-line --route transformers` prints). The server is always stopped."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.vllm


@pytest.mark.parametrize("case", ["native", "transformers"])
def test_vllm_serve_route(tmp_path, case):
    report_path = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "colqwen3",
        "vllm-check",
        "--via",
        "server",
        "--cases",
        case,
        "--json-out",
        str(report_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] and not report["errors"], output[-6000:]
    served = {row["modality"]: row for row in report["comparisons"] if row["reference"] == "transformers"}
    assert set(served) == {"text", "image", "image-again"}  # over HTTP: no mixed batch of one request
    for row in served.values():  # both routes exact; the Transformers backend with its DeepStack-channel override
        assert row["same_token_counts"] and row["max_abs"] <= 1e-5 and row["same_ranking"] == 4, row
    info = report["infos"][case]
    assert info["query_augmentation_tokens"] == [10] * 4  # the client's 10, never doubled by the server's processor
    assert info["served_vs_encoded"] < 1e-3  # /score == MaxSim of the /pooling vectors
    assert info["rerank_top2"] == info["ranking_top2"] and len(info["rerank_top2"]) == 2
