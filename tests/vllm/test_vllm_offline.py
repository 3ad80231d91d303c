"""scripts/vllm_offline.py: `LLM.encode` + MaxSim and `LLM.score` with page images, on both routes, vs Transformers."""

import re
import subprocess
import sys

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed in this environment (only the vllm tier installs it)")

from conftest import REPO_ROOT, kit  # noqa: E402


def run_offline(*args, timeout=600):
    result = subprocess.run(
        [sys.executable, "scripts/vllm_offline.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    return result.returncode, result.stdout + result.stderr


def test_offline_check_both_routes():
    status, output = run_offline("--check")
    assert status == 0, output[-6000:]
    rows = {}
    for line in output.splitlines():
        match = re.match(r"^(native|transformers)\s+((?:\S+\s+){4})(\d)/(\d)\s+(\d)/(\d)\s+(\S+)", line)
        if match:
            values = [float(v) for v in match.group(2).split()]
            rows[match.group(1)] = values, int(match.group(3)), float(match.group(7))
    assert set(rows) == {"native", "transformers"}, output[-3000:]
    (text_abs, text_cos, image_abs, image_cos), same_ranking, score_vs_encode = rows["native"]
    assert text_abs < 1e-4 and image_abs < 1e-4 and image_cos > 0.9999 and same_ranking == 3
    (text_abs, _, image_abs, _), _, _ = rows["transformers"]
    assert text_abs < 1e-4
    assert image_abs > 1e-3  # DeepStack is dropped on this route; the gap must be visible, not hidden
    assert all(row[2] < 1e-3 for row in rows.values())  # LLM.score == MaxSim of LLM.encode vectors


def test_offline_retrieval_refuses_then_serves_a_biased_checkpoint(tmp_path):
    folder = kit.write_checkpoint(tmp_path / "ckpt")  # head bias + `embed_dim`: vLLM 0.32 would drop the bias
    pages = kit.write_sample_pages(tmp_path / "pages")[0].parent
    args = ["--model", str(folder), "--pages", str(pages), "--query", "total due", "--top-k", "2", "--enforce-eager"]
    status, output = run_offline(*args)
    assert status != 0 and "vllm_export.py" in output and "drop the bias" in output, output[-3000:]

    subprocess.run([sys.executable, "scripts/vllm_export.py", str(folder)], cwd=REPO_ROOT, check=True)
    status, output = run_offline(*args, "--dtype", "float32")
    assert status == 0, output[-6000:]
    hits = re.findall(r"^\s+\d\.\s+(\S+) \(LLM\.score\s+(\S+)\)\s+(\S+)$", output, flags=re.M)
    assert len(hits) == 2, output[-3000:]
    assert all(abs(float(a) - float(b)) < 1e-2 for a, b, _ in hits)  # printed with 3 decimals


def test_max_pixels_in_vllm_matches_the_processor_budget():
    """`mm_processor_kwargs={"max_pixels": N * 32**2}` in vLLM == `max_num_visual_tokens=N` in Transformers."""
    status, output = run_offline("--check", "--route", "native", "--max-visual-tokens", "16")
    assert status == 0, output[-6000:]
    tokens = re.search(r"^native: tokens per page \[([\d, ]+)\]", output, flags=re.M)
    assert tokens, output[-3000:]
    # 16 visual tokens + the 11 text tokens of the page prompt (the default budget gives 64 + 11 on these pages)
    assert {int(n) for n in tokens.group(1).split(",")} == {16 + 11}
