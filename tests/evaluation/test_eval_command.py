"""`colqwen3 eval`: the command over `colqwen3.evaluation.evaluate`, and the ViDoRe benchmarks it resolves offline."""

import json
import subprocess
import sys

import pytest

from colqwen3.evaluation.run import resolve_tasks
from colqwen3.testing.pages import write_beir_folder


def colqwen3(*args):
    result = subprocess.run([sys.executable, "-m", "colqwen3", *args], capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout, result.stderr


def test_eval_on_a_local_folder(tmp_path, tomoro_checkpoint):
    folder = write_beir_folder(tmp_path / "pages")
    status, out, err = colqwen3(
        "eval", str(tomoro_checkpoint), "--data", str(folder), "--output-dir", str(tmp_path / "out"),
        "--batch-size", "3", "--max-visual-tokens", "32", "--json-out", str(tmp_path / "report.json"),
    )  # fmt: skip
    assert status == 0, err[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    (task,) = report["tasks"]
    assert report["settings"]["batch_size"] == 3 and report["settings"]["max_visual_tokens"] == 32
    assert out.startswith(f"### {report['model']} on Pages") and f"**{100 * task['main_score']:.2f}**" in out
    assert "encoding pages" in err and "encoding pages" not in out  # progress on stderr, results on stdout
    assert (tmp_path / "out" / "report.md").read_text() == out


def test_bad_source_is_a_one_line_error(tmp_path, tomoro_checkpoint):
    status, out, err = colqwen3("eval", str(tomoro_checkpoint), "--data", str(tmp_path / "nowhere"))
    assert status == 2 and "is not a folder" in err and "Traceback" not in err, err[-3000:]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"benchmark": "ViDoRe(v9)"}, r"Unknown benchmark 'ViDoRe\(v9\)'; the ViDoRe ones are ViDoRe\(v1\)"),
        ({"tasks": ["VidoreDocVQARetrieval", "NoSuchTask"]}, r"Unknown mteb task\(s\) \['NoSuchTask'\]"),
        (
            {"benchmark": "ViDoRe(v1)", "tasks": ["X"]},
            r"Give exactly one of benchmark, tasks or data; got \['benchmark'",
        ),
        ({}, r"Give exactly one of benchmark, tasks or data; got none"),
    ],
)
def test_bad_sources_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve_tasks(**kwargs)


@pytest.mark.parametrize(
    "benchmark, n_tasks, main_score",
    [("ViDoRe(v1)", 10, "ndcg_at_5"), ("ViDoRe(v2)", 4, "ndcg_at_5"), ("ViDoRe(v3)", 8, "ndcg_at_10")],
)
def test_vidore_benchmarks_resolve_to_their_public_tasks(benchmark, n_tasks, main_score):
    tasks = resolve_tasks(benchmark=benchmark)
    assert len(tasks) == n_tasks and {task.metadata.main_score for task in tasks} == {main_score}
    assert all(task.metadata.is_public and "image" in task.metadata.modalities for task in tasks)


def test_report_table_marks_main_scores_and_compares_with_published():
    from colqwen3.evaluation import PUBLISHED_SCORES, EvaluationReport, TaskScores
    from colqwen3.evaluation.run import METRICS

    tomoro = "TomoroAI/tomoro-colqwen3-embed-4b"
    tasks = [TaskScores(name, "ndcg_at_5", {m: value for m in METRICS}, ["default"], pages=10, page_seconds=2.0)
             for name, value in (("VidoreDocVQARetrieval", 0.9), ("VidoreTatdqaRetrieval", 0.8))]  # fmt: skip
    report = EvaluationReport(tomoro, None, "ViDoRe(v1)", tasks, {}, {}, PUBLISHED_SCORES[tomoro]["ViDoRe(v1)"], tomoro)
    table = report.markdown()
    assert "| VidoreDocVQARetrieval | **90.00** | 90.00 |" in table and "| 5.0 | - |" in table
    assert "| **mean** | **85.00** |" in table and "| 90.57 (-5.57) |" in table
    assert report.mean_main_score == pytest.approx(85.0)
    plain = EvaluationReport("local/x", None, None, tasks, {}, {}).markdown()
    assert "published" not in plain and "| **mean** | **85.00** |" in plain
