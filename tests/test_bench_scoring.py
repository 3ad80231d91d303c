"""scripts/bench_scoring.py end to end on tiny sizes: it runs, prints its table and passes its exactness checks."""

import subprocess
import sys

from conftest import REPO_ROOT

METHODS = ("colpali-engine (fp32)", "ours fp32", "ours bf16 pages", "float64 brute force")


def test_bench_scoring_runs_on_tiny_sizes():
    args = ["scripts/bench_scoring.py", "--pages", "12", "--queries", "2", "--repeats", "1", "--threads", "1"]
    result = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("method") and "max|diff| f64" in line and "vs colpali" in line for line in lines)
    for method in METHODS:
        rows = [line for line in lines if line.startswith(method)]
        assert len(rows) == 1 and rows[0][len(method):].split()[0] == "2", (method, result.stdout)
    assert "matmul ceiling" in result.stdout and "all exactness checks passed" in result.stdout
