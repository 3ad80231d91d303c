"""The main job: `colqwen3 search` / `colqwen3 index` on the sample pages (PNG + PDF), offline tiny checkpoint."""

import json
import subprocess
import sys

import pytest

from colqwen3.index.page_index import PageIndex
from colqwen3.testing import tiny as kit
from colqwen3.testing.pages import SAMPLE_PAGES, write_sample_pages


def colqwen3(*args, check=True):
    """Run the command line in a fresh interpreter: (exit status, stdout, stderr)."""
    result = subprocess.run([sys.executable, "-m", "colqwen3", *args], capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def page_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    write_sample_pages(folder)
    return folder


def ranking(out, query):
    return out.split(f"query: {query}\n")[1].split("\n\n")[0].splitlines()


def test_search_ranks_sample_pages_offline(tmp_path, page_folder):
    index = tmp_path / "index.safetensors"
    _, out, err = colqwen3(
        "search",
        "--pages",
        str(page_folder),
        "--query",
        "invoice total",
        "--query",
        "capital of France",
        "--top-k",
        "2",
        "--batch-size",
        "2",
        "--index",
        str(index),
    )
    assert "RANDOM weights" in err and "indexed 6 pages" in err
    for query in ("invoice total", "capital of France"):
        block = ranking(out, query)
        assert len(block) == 2 and block[0].lstrip().startswith("1.") and block[1].lstrip().startswith("2.")
    assert "6 pages, 2 queries" in out and "scores are finite: True" in out
    names = PageIndex(index).names  # every PNG page, and each PDF page named by its page number
    assert sorted(names) == sorted([*SAMPLE_PAGES, "appendix.pdf#page=1", "appendix.pdf#page=2"])


def test_search_reuses_its_index(tmp_path, page_folder, tomoro_checkpoint):
    index = tmp_path / "index.safetensors"
    common = ["search", "--model", str(tomoro_checkpoint), "--index", str(index), "--query", "total due"]
    _, _, built_err = colqwen3(*common, "--pages", str(page_folder), "--json-out", str(tmp_path / "built.json"))
    _, _, reused_err = colqwen3(*common, "--json-out", str(tmp_path / "reused.json"))  # no --pages: no embedding
    assert "indexed 6 pages" in built_err and f"searching {index}: 6 pages" in reused_err
    built, reused = (json.loads((tmp_path / name).read_text()) for name in ("built.json", "reused.json"))
    assert built["results"] == reused["results"] and built["pages"] == reused["pages"] == 6
    assert [hit["rank"] for hit in built["results"][0]["hits"]] == [1, 2, 3]
    other_model = kit.write_checkpoint(tmp_path / "other")
    status, _, err = colqwen3("search", "--model", str(other_model), "--index", str(index), "--query", "q", check=False)
    assert status != 0 and "--reindex" in err, err[-2000:]


def test_index_then_search(tmp_path, page_folder, tomoro_checkpoint):
    index = tmp_path / "pages.safetensors"
    colqwen3(
        "index",
        "--pages",
        str(page_folder),
        "--index",
        str(index),
        "--model",
        str(tomoro_checkpoint),
        "--storage-dtype",
        "int8",
    )
    assert len(PageIndex(index)) == 6 and PageIndex(index).dtype == "int8"
    _, out, _ = colqwen3("search", "--index", str(index), "--model", str(tomoro_checkpoint), "--query", "paris")
    assert len(ranking(out, "paris")) == 3


def test_search_rejects_an_empty_folder(tmp_path):
    status, _, err = colqwen3("search", "--pages", str(tmp_path), "--query", "q", check=False)
    assert status != 0 and "no PNG, JPEG or PDF pages" in err
