"""`colqwen3 index` / `colqwen3 search` as a user meets them: incremental, safe with files it did not write, clear
about bad input. Most runs call the command in-process (`cli.main`); the demo runs in a fresh interpreter."""

import json
import os
import re
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from colqwen3.cli import main
from colqwen3.index.local import LocalIndex
from colqwen3.testing import tiny as kit
from colqwen3.testing.pages import SAMPLE_PAGES, make_page, write_sample_pages


def run(capsys, *args) -> tuple[int, str, str]:
    """`colqwen3 ARGS` in this process: (exit status, stdout, stderr); argparse errors exit with status 2."""
    try:
        status = main([str(arg) for arg in args])
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def counts(err: str) -> tuple[int, int, int]:
    embedded, removed, unchanged = re.search(r"(\d+) pages embedded, (\d+) removed, (\d+) unchanged", err).groups()
    return int(embedded), int(removed), int(unchanged)


def ranking(out, query):
    return out.split(f"query: {query}\n")[1].split("\n\n")[0].splitlines()


@pytest.fixture
def page_folder(tmp_path):
    folder = tmp_path / "pages"
    write_sample_pages(folder)
    return folder


def test_demo_search_offline_leaves_no_temporary_files(tmp_path, page_folder):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "colqwen3", "search", "--pages", str(page_folder), "--query", "invoice total",
         "--query", "capital of France", "--top-k", "2"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RANDOM weights" in result.stderr and counts(result.stderr) == (6, 0, 0)
    for query in ("invoice total", "capital of France"):
        block = ranking(result.stdout, query)
        assert [line.split()[0] for line in block] == ["1.", "2."]
    assert "6 pages, 2 queries" in result.stdout and "scores are finite: True" in result.stdout
    assert list(scratch.iterdir()) == []  # the tiny checkpoint and the throwaway index are gone


def test_updates_embed_only_what_changed(tmp_path, capsys, page_folder, tomoro_checkpoint):
    index = tmp_path / "index"
    common = ["--pages", page_folder, "--index", index, "--model", tomoro_checkpoint, "--workers", "0"]
    status, _, err = run(capsys, "index", *common)
    assert status == 0 and counts(err) == (6, 0, 0), err
    keys = sorted(LocalIndex.open(index).entries())
    assert keys == sorted([*SAMPLE_PAGES, "appendix.pdf#page=1", "appendix.pdf#page=2"])

    (page_folder / "nested").mkdir()
    make_page(["NEW PAGE", "added later"], seed=42).save(page_folder / "nested" / "added.png")
    (page_folder / "invoice.png").unlink()
    make_page(["PARIS", "changed"], seed=43).save(page_folder / "paris_slide.png")
    status, _, err = run(capsys, "index", *common)
    assert status == 0 and counts(err) == (2, 2, 4), err  # added + changed embedded; removed + changed dropped
    assert (
        "nested/added.png" in LocalIndex.open(index).entries() and "invoice.png" not in LocalIndex.open(index).entries()
    )

    status, _, err = run(capsys, "index", *common)
    assert status == 0 and counts(err) == (0, 0, 6)

    status, out, err = run(capsys, "search", *common, "--query", "new page", "--top-k", "6")
    assert status == 0 and counts(err) == (0, 0, 6) and "incomplete" not in err
    assert "nested/added.png" in out and "invoice.png" not in out


def test_a_changed_storage_setting_is_refused_until_reindex(tmp_path, capsys, page_folder, tomoro_checkpoint):
    index = tmp_path / "index"
    common = ["--pages", page_folder, "--index", index, "--model", tomoro_checkpoint, "--workers", "0"]
    assert run(capsys, "index", *common)[0] == 0
    status, _, err = run(capsys, "index", *common, "--storage-dtype", "int8", "--pool-factor", "2")
    assert status == 2 and "dtype: 'bfloat16' -> 'int8'" in err and "pool_factor: 1 -> 2" in err and "--reindex" in err
    status, _, err = run(capsys, "index", *common, "--storage-dtype", "int8", "--reindex")
    assert status == 0 and counts(err) == (6, 0, 0)
    assert LocalIndex.open(index).settings.dtype == "int8"
    status, out, _ = run(capsys, "search", "--index", index, "--model", tomoro_checkpoint, "--query", "paris")
    assert status == 0 and len(ranking(out, "paris")) == 3  # the stored settings are used; no flags needed


def test_the_index_never_writes_over_files_it_did_not_write(tmp_path, capsys, page_folder, tomoro_checkpoint):
    picture = page_folder / "invoice.png"
    before = picture.read_bytes()
    for extra in ([], ["--reindex"]):
        status, _, err = run(capsys, "index", "--pages", page_folder, "--index", picture, "--model",
                             tomoro_checkpoint, "--workers", "0", *extra)  # fmt: skip
        assert status == 2 and "invoice.png is a file" in err and "Traceback" not in err
    assert picture.read_bytes() == before
    status, _, err = run(capsys, "index", "--pages", page_folder, "--index", page_folder, "--model",
                         tomoro_checkpoint, "--reindex")  # fmt: skip
    assert status == 2 and "folder with other files in it" in err
    assert sorted(path.name for path in page_folder.iterdir()) == sorted([*SAMPLE_PAGES, "appendix.pdf"])


def test_bad_files_are_named_skipped_and_fail_the_run(tmp_path, capsys, page_folder, tomoro_checkpoint):
    (page_folder / "empty.pdf").write_bytes(b"")
    (page_folder / "notes.pdf").write_text("not a pdf at all")
    (page_folder / "cut.png").write_bytes((page_folder / "invoice.png").read_bytes()[:300])
    (page_folder / "readme.txt").write_text("hello")
    index = tmp_path / "index"
    common = ["--pages", page_folder, "--index", index, "--model", tomoro_checkpoint, "--workers", "0"]
    status, _, err = run(capsys, "index", *common)
    assert status == 1 and counts(err)[0] == 6 and "skipped 3" in err and "1 .txt" in err
    for name in ("empty.pdf", "notes.pdf", "cut.png"):
        assert re.search(rf"{name}: \S", err), err  # the file, then its reason
    assert len(LocalIndex.open(index)) == 6 and LocalIndex.open(index).complete

    status, _, err = run(capsys, "index", *common, "--index", tmp_path / "stop", "--on-error", "stop")
    assert status == 1 and "stopped (--on-error stop)" in err and "cut.png" in err and "Traceback" not in err


def test_bad_indexes_and_queries_get_one_line_errors(tmp_path, capsys, page_folder, tomoro_checkpoint):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    broken = tmp_path / "broken"
    assert run(capsys, "index", "--pages", page_folder, "--index", broken, "--model", tomoro_checkpoint,
               "--workers", "0")[0] == 0  # fmt: skip
    (broken / "index.json").write_text((broken / "index.json").read_text()[:40])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.bin").write_bytes(b"x")
    for location, message in ((notes, "is a file"), (broken, "not a readable index manifest"),
                              (foreign, "folder with other files"), (tmp_path / "absent", "no index at")):  # fmt: skip
        status, _, err = run(capsys, "search", "--index", location, "--model", tomoro_checkpoint, "--query", "q")
        assert status == 2 and message in err and "Traceback" not in err, err
        assert len([line for line in err.splitlines() if "error" in line]) == 1
    status, _, err = run(
        capsys, "index", "--pages", page_folder, "--index", tmp_path / "i", "--model", tmp_path / "nope"
    )
    assert status == 2 and "nope" in err and "Traceback" not in err  # a model folder that is not there
    for queries in (["--query", ""], ["--query", "fine", "--query", "   "]):
        status, _, err = run(capsys, "search", "--pages", page_folder, "--model", tomoro_checkpoint, *queries)
        assert status == 2 and "is empty" in err


def test_the_model_is_identified_by_its_weights_not_its_path(tmp_path, capsys, page_folder, tomoro_checkpoint):
    index = tmp_path / "index"
    assert run(capsys, "index", "--pages", page_folder, "--index", index, "--model", tomoro_checkpoint,
               "--workers", "0")[0] == 0  # fmt: skip
    for spelling in (f"{tomoro_checkpoint}/", os.path.relpath(tomoro_checkpoint)):
        status, out, err = run(capsys, "search", "--index", index, "--model", spelling, "--query", "paris")
        assert status == 0 and len(ranking(out, "paris")) == 3, err
    retrained = kit.write_checkpoint(tmp_path / "retrained", seed=1)
    status, _, err = run(capsys, "search", "--index", index, "--model", retrained, "--query", "paris")
    assert status == 2 and "model:" in err and "--reindex" in err


def test_single_files_and_every_page_format_are_indexed(tmp_path, capsys, tomoro_checkpoint):
    folder = tmp_path / "docs"
    write_sample_pages(folder)
    frames = [make_page([f"FRAME {i}"], seed=i).convert("L") for i in range(3)]
    frames[0].save(folder / "scan.tiff", save_all=True, append_images=frames[1:])
    make_page(["WEBP PAGE"]).save(folder / "slide.webp")
    transparent = Image.new("RGBA", (300, 400), (0, 0, 0, 0))
    ImageDraw.Draw(transparent).text((20, 20), "INK ON A TRANSPARENT PAGE", fill=(0, 0, 0, 255))
    transparent.save(folder / "clear.png")
    index = tmp_path / "index"
    status, _, err = run(
        capsys,
        "index",
        "--pages",
        folder / "appendix.pdf",
        folder / "scan.tiff",
        folder / "slide.webp",
        folder / "clear.png",
        "--index",
        index,
        "--model",
        tomoro_checkpoint,
    )  # fmt: skip  (default workers: the process pool)
    assert status == 0 and counts(err) == (7, 0, 0), err
    assert sorted(LocalIndex.open(index).entries()) == [
        "appendix.pdf#page=1", "appendix.pdf#page=2", "clear.png",
        "scan.tiff#page=1", "scan.tiff#page=2", "scan.tiff#page=3", "slide.webp",
    ]  # fmt: skip


def test_an_interrupted_index_is_reported_incomplete(tmp_path, capsys, page_folder, tomoro_checkpoint):
    index = tmp_path / "index"
    assert run(capsys, "index", "--pages", page_folder, "--index", index, "--model", tomoro_checkpoint,
               "--workers", "0")[0] == 0  # fmt: skip
    with LocalIndex.open(index) as store:
        store.set_complete(False)  # what a killed run leaves behind
    status, out, err = run(capsys, "search", "--index", index, "--model", tomoro_checkpoint, "--query", "q",
                           "--json-out", tmp_path / "hits.json")  # fmt: skip
    assert status == 0 and "index at" in err and "is incomplete" in err
    assert json.loads((tmp_path / "hits.json").read_text())["pages"] == 6


def test_empty_collection_is_refused(tmp_path, capsys, tomoro_checkpoint):
    (tmp_path / "empty").mkdir()
    status, _, err = run(capsys, "search", "--pages", tmp_path / "empty", "--model", tomoro_checkpoint, "--query", "q")
    assert status == 2 and "no PDF, PNG, JPEG, TIFF or WebP pages" in err
    status, _, err = run(capsys, "search", "--pages", tmp_path / "absent", "--model", tomoro_checkpoint, "--query", "q")
    assert status == 2 and "absent" in err and "Traceback" not in err


def test_qdrant_edge_store_ranks_as_the_local_index(tmp_path, capsys, page_folder, tomoro_checkpoint):
    pytest.importorskip("qdrant_edge", reason="qdrant-edge-py is not installed (the qdrant extra)")
    common = ["--pages", page_folder, "--model", tomoro_checkpoint, "--workers", "0", "--storage-dtype", "float32"]
    query = ["--query", "invoice total", "--top-k", "6", "--json-out"]
    status, _, err = run(capsys, "search", *common, "--index", tmp_path / "local", *query, tmp_path / "local.json")
    assert status == 0, err
    edge = ["--store", "qdrant-edge", tmp_path / "edge"]
    status, _, err = run(capsys, "search", *common, *edge, *query, tmp_path / "edge.json")
    assert status == 0 and counts(err) == (6, 0, 0), err
    local, engine = (
        json.loads((tmp_path / f"{name}.json").read_text())["results"][0]["hits"] for name in ("local", "edge")
    )
    assert [hit["page"] for hit in engine] == [hit["page"] for hit in local]  # fewer pages than candidates: exact
    assert max(abs(a["score"] - b["score"]) for a, b in zip(engine, local)) < 1e-4
    status, _, err = run(capsys, "index", *common, *edge)  # up to date: nothing embedded again
    assert status == 0 and counts(err) == (0, 0, 6)
    status, _, err = run(capsys, "index", *common, *edge, "--storage-dtype", "bfloat16")
    assert status == 2 and "dtype: 'float32' -> 'bfloat16'" in err and "--reindex" in err


def test_searching_an_index_needs_the_model_that_built_it(tmp_path, capsys, page_folder, tomoro_checkpoint):
    index = tmp_path / "index"
    assert run(capsys, "index", "--pages", page_folder, "--index", index, "--model", tomoro_checkpoint,
               "--workers", "0")[0] == 0  # fmt: skip
    status, _, err = run(capsys, "search", "--index", index, "--query", "q")
    assert status == 2 and f"give --model: the index at {index} was built with {tomoro_checkpoint.resolve()}" in err
