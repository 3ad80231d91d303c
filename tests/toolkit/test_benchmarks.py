"""The benchmarks end to end on tiny sizes: they run, pass their own exactness checks and write their JSON results."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
METHODS = ("colpali-engine (fp32)", "ours fp32", "ours bf16 pages", "index fp32", "index bf16", "float64 brute force")


def run_benchmark(name, *args):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_bench_scoring_runs_on_tiny_sizes(tmp_path):
    out = run_benchmark(
        "bench_scoring.py",
        "--pages",
        "12",
        "--queries",
        "2",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--ceiling-size",
        "256",
        "--json-out",
        str(tmp_path / "scoring.json"),
    )
    data = json.loads((tmp_path / "scoring.json").read_text())
    assert sorted((row["method"], row["n_queries"]) for row in data["rows"]) == sorted((m, 2) for m in METHODS)
    assert all(row["pairs"] > 0 and row["diff"] < 0.02 for row in data["rows"])
    checks = [check for check in data["checks"] if check["kind"] == "check"]
    assert len(checks) == 5 and all(check["ok"] for check in checks)
    assert data["matmul_ceiling_gflops"]["fp32"] > 0 and "all exactness checks passed" in out


def test_bench_storage_runs_and_checks_itself(tmp_path):
    run_benchmark(
        "bench_storage.py",
        "--pages",
        "8",
        "--queries",
        "4",
        "--threads",
        "1",
        "--json-out",
        str(tmp_path / "storage.json"),
    )
    data = json.loads((tmp_path / "storage.json").read_text())
    assert len(data["rows"]) == 10 and all(data["checks"].values()) and data["full_page_pooling_s"] > 0
    exact = next(row for row in data["rows"] if row["option"] == "pool 1 float32")
    assert exact["max_diff"] == 0.0 and exact["top1"] == 1.0


def test_bench_train_measures_and_computes(tmp_path):
    run_benchmark("bench_train.py", "--steps", "1", "--batch-sizes", "2", "--json-out", str(tmp_path / "train.json"))
    data = json.loads((tmp_path / "train.json").read_text())
    assert data["measured"][0]["batch"] == 2 and data["measured"][0]["samples_per_s"] > 0
    recipe = next(row for row in data["computed"] if row["batch"] == 64 and row["processes"] == 1)
    assert 8.0 < recipe["weights"] < 8.6  # 4.44e9 bf16 parameters
    assert recipe["total"] == pytest.approx(
        sum(v for k, v in recipe.items() if k not in ("batch", "processes", "total"))
    )


def test_bench_eval_encoder_runs_and_checks_itself(tmp_path):
    out = run_benchmark(
        "bench_eval_encoder.py", "--pages", "6", "--batch-size", "2", "--repeats", "1", "--threads", "1",
        "--json-out", str(tmp_path / "eval.json"),
    )  # fmt: skip
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["ok"] and data["max_diff"] <= 1e-5 and "OK" in out
    plain, ours = data["rows"]
    assert (plain["method"], ours["method"]) == ("plain loop", "eval encoder")
    assert ours["padding"] < plain["padding"] and ours["pages_per_s"] > 0 and plain["pages_per_s"] > 0


def test_bench_qdrant_two_stage_runs_and_checks_itself(tmp_path):
    pytest.importorskip("qdrant_edge", reason="qdrant-edge-py is not installed (the qdrant extra)")
    run_benchmark(
        "bench_qdrant_two_stage.py", "--pages", "40", "--topics", "4", "--queries", "4", "--candidates", "5", "20",
        "--repeats", "1", "--threads", "1", "--json-out", str(tmp_path / "qdrant.json"),
    )  # fmt: skip
    data = json.loads((tmp_path / "qdrant.json").read_text())
    rows = {(row["store"], row["candidates"]): row for row in data["rows"]}
    assert data["exact_ok"] and rows[("edge", "all")]["recall_at_k"] == 1.0  # exact search finds the exact top-k
    assert set(rows) >= {("edge", "5"), ("edge", "20")} and 0 < rows[("edge", "5")]["recall_at_k"] <= 1


def test_bench_indexing_runs_and_checks_itself(tmp_path):
    out = run_benchmark("bench_indexing.py", "--sizes", "8", "--workers", "1", "--json-out", str(tmp_path / "ix.json"))
    (row,) = json.loads((tmp_path / "ix.json").read_text())["rows"]
    assert row["pages"] == 8 and row["peak_rss_mib"] > 0 and "PASS" in out
