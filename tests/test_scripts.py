"""The main job: the retrieval CLI on generated sample pages (PNG + PDF), with the offline tiny checkpoint."""

import subprocess
import sys

from conftest import REPO_ROOT, kit


def run_script(*args, cwd=REPO_ROOT):
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_retrieval_cli_ranks_sample_pages_offline(tmp_path):
    pages = tmp_path / "pages"
    run_script("scripts/make_sample_pages.py", str(pages))
    assert {p.name for p in pages.iterdir()} >= {"invoice.png", "appendix.pdf"}
    out = run_script(
        "scripts/retrieve.py", "--pages", str(pages), "--query", "invoice total", "--query", "capital of France",
        "--top-k", "2", "--batch-size", "2",
    )
    assert "RANDOM weights" in out
    for query in ("invoice total", "capital of France"):
        block = out.split(f"query: {query}\n")[1].split("\n\n")[0].splitlines()
        assert len(block) == 2 and block[0].lstrip().startswith("1.") and block[1].lstrip().startswith("2.")
    assert "appendix.pdf#page=" in out or "appendix.pdf" not in out  # PDF pages are named per page
    assert "indexed 6 pages" in out and "6 pages, 2 queries" in out and "scores are finite: True" in out


def test_retrieval_cli_reuses_its_index(tmp_path, tomoro_checkpoint):
    pages = tmp_path / "pages"
    run_script("scripts/make_sample_pages.py", str(pages))
    index = tmp_path / "index.safetensors"
    common = ["scripts/retrieve.py", "--model", str(tomoro_checkpoint), "--index", str(index), "--query", "total due"]
    built = run_script(*common, "--pages", str(pages))
    reused = run_script(*common)  # no --pages: nothing is embedded again
    assert "indexed 6 pages" in built and f"searching {index}: 6 pages" in reused
    ranking = lambda out: out.split("query: total due\n")[1].split("\n\n")[0]  # noqa: E731
    assert ranking(built) == ranking(reused)
    other_model = kit.write_checkpoint(tmp_path / "other")
    other = subprocess.run(
        [sys.executable, "scripts/retrieve.py", "--model", str(other_model), "--index", str(index), "--query", "q"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert other.returncode != 0 and "--reindex" in other.stderr, other.stderr[-2000:]


def test_retrieval_cli_rejects_an_empty_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/retrieve.py", "--pages", str(tmp_path), "--query", "q"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0 and "no PNG, JPEG or PDF pages" in result.stderr


def test_storage_benchmark_runs_and_checks_itself():
    out = run_script("scripts/bench_storage.py", "--pages", "8", "--queries", "4", "--threads", "1")
    rows = [line for line in out.splitlines() if line.startswith("pool ")]
    assert len(rows) == 10 and "check: float32 identical to reference: ok" in out
