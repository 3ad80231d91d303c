"""colqwen3.index.documents: discovery (recursive, every file accounted for), faithful RGB conversion, bad files as
problems, and a bounded process pool that matches in-process rendering."""

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colqwen3.index import documents
from colqwen3.index.documents import Problem, discover, iter_pages, load_pages, render_page, to_rgb
from colqwen3.testing.pages import (
    SAMPLE_PAGES,
    frame_pages,
    grey16_page,
    transparent_page,
    write_format_pages,
    write_problem_files,
    write_sample_pages,
)


def rendered(sources, **kwargs):
    return list(iter_pages(sources, workers=kwargs.pop("workers", 0), **kwargs))


def test_discovery_walks_folders_in_order_and_accounts_for_every_file(tmp_path):
    write_sample_pages(tmp_path / "b")
    write_sample_pages(tmp_path / "a" / "deep", with_pdf=False)
    (tmp_path / "Z.PNG").write_bytes((tmp_path / "b" / "invoice.png").read_bytes())  # suffixes are case-insensitive
    (tmp_path / "readme.txt").write_text("not a page")
    (tmp_path / "b" / "data.csv").write_text("1,2")
    (tmp_path / "b" / "LICENSE").write_text("text")
    (tmp_path / ".cache").mkdir()
    write_sample_pages(tmp_path / ".cache", with_pdf=False)  # hidden folders and files are skipped
    (tmp_path / ".hidden.png").write_bytes(b"")
    os.symlink(tmp_path, tmp_path / "a" / "loop")  # a symlink loop must end

    found = discover(tmp_path)

    names = [source.name for source in found.sources]
    assert names == sorted(names) and names[0] == "Z.PNG" and names[1].startswith("a/deep/")
    assert len(names) == 1 + 4 + 5 and "b/appendix.pdf" in names
    assert found.unsupported == {".txt": 1, ".csv": 1, "(no suffix)": 1}
    assert [p.reason for p in found.problems] == ["folder already visited (symlink loop), skipped"]
    assert found.n_pages == 1 + 4 + 4 + 2
    assert all(source.path.is_absolute() and source.path.is_file() for source in found.sources)


def test_single_files_are_accepted_and_a_missing_path_is_named(tmp_path):
    pdf, png = tmp_path / "appendix.pdf", tmp_path / "invoice.png"
    write_sample_pages(tmp_path)
    found = discover([pdf, str(png)])
    assert [(s.name, s.n_pages) for s in found.sources] == [("appendix.pdf", 2), ("invoice.png", 1)]
    assert [key for key, _ in load_pages(pdf)] == ["appendix.pdf#page=1", "appendix.pdf#page=2"]
    with pytest.raises(ValueError, match="nowhere.pdf does not exist"):
        discover(tmp_path / "nowhere.pdf")
    with pytest.raises(ValueError, match="--pages: .*nowhere does not exist"):
        load_pages(tmp_path / "nowhere")


def test_entries_and_hash(tmp_path):
    paths = write_sample_pages(tmp_path) + list(write_format_pages(tmp_path).values())
    sources = {source.name: source for source in discover(tmp_path).sources}
    for path in paths:
        source = sources[path.name]
        assert source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and source.size == path.stat().st_size
    assert [(e.key, e.page) for e in sources["appendix.pdf"].entries()] == [
        ("appendix.pdf#page=1", 1),
        ("appendix.pdf#page=2", 2),
    ]
    assert [e.key for e in sources["scan.tiff"].entries()] == [f"scan.tiff#page={n}" for n in (1, 2, 3)]
    (entry,) = sources["invoice.png"].entries()
    assert (entry.key, entry.source, entry.page, entry.file_sha256) == (
        "invoice.png",
        "invoice.png",
        1,
        sources["invoice.png"].sha256,
    )


def test_tiff_frames_and_webp_render_as_drawn(tmp_path):
    write_format_pages(tmp_path)
    sources = [s for s in discover(tmp_path).sources if s.name in ("scan.tiff", "photo.webp")]
    pages = rendered(sources)
    keys = [entry.key for entry, _ in pages]
    assert keys == ["photo.webp", "scan.tiff#page=1", "scan.tiff#page=2", "scan.tiff#page=3"]
    drawn = frame_pages(4)
    for (_, image), expected in zip(pages, [drawn[3], *drawn[:3]]):
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), np.asarray(expected))
    frames = [np.asarray(image) for _, image in pages[1:]]
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])


def test_transparent_page_renders_black_on_white(tmp_path):
    page = transparent_page()
    alpha = np.asarray(page)[..., 3]
    old = np.asarray(page.convert("RGB"))  # the old conversion: the hidden colour (black) shows everywhere
    assert (old.max(axis=-1) < 50).mean() > 0.99

    page.save(tmp_path / "t.png")
    (source,) = discover(tmp_path).sources
    new = np.asarray(render_page(source, 1, dpi=110))
    assert (new[alpha == 0] == 255).all() and (new[alpha == 255] < 50).all() and (new.min(axis=-1) == 255).mean() > 0.8
    for mode in ("LA", "PA"):  # the other alpha modes take the same route
        assert np.array_equal(np.asarray(to_rgb(page.convert(mode))), new)


def test_sixteen_bit_grey_page_keeps_its_values(tmp_path):
    page = grey16_page()
    values = np.asarray(page).astype(np.int64)
    assert (np.asarray(page.convert("RGB")) == 255).mean() > 0.95  # the old conversion: almost all white

    page.save(tmp_path / "g.png")
    (source,) = discover(tmp_path).sources
    image = np.asarray(render_page(source, 1, dpi=110)).astype(np.int64)
    assert (np.abs(image - (values / 257).round()[..., None]) <= 1).all()
    assert image[..., 0].min() == 0 and image[..., 0].max() == 255 and image[30, :, 0].max() == 4  # 1000 / 257
    big_endian = Image.fromarray(values.astype(">u2"))
    assert big_endian.mode == "I;16B" and np.array_equal(np.asarray(to_rgb(big_endian)), image)
    assert np.array_equal(np.asarray(to_rgb(page.convert("I"))), image)


def test_float_grey_is_taken_as_0_to_255_and_palette_transparency_is_white():
    grey = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert np.array_equal(np.asarray(to_rgb(grey.convert("F")))[..., 1], np.asarray(grey))
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 0, 0, 0])  # both entries black; entry 0 is the transparent one
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert np.asarray(to_rgb(palette)).tolist() == [[[255, 255, 255], [0, 0, 0]]]


def test_bad_files_are_problems_and_the_good_ones_still_load(tmp_path, capsys):
    write_sample_pages(tmp_path, with_pdf=False)
    bad = write_problem_files(tmp_path)

    found = discover(tmp_path)

    assert [s.name for s in found.sources] == sorted(SAMPLE_PAGES)
    reasons = {Path(p.path).name: p.reason for p in found.problems}
    assert set(reasons) == {path.name for path in bad.values()}
    assert reasons["empty.pdf"] == "empty file (0 bytes)"
    assert reasons["notes.pdf"].startswith("not a PDF: starts with b'meeting notes")
    assert reasons["cut.png"].startswith("truncated image")
    assert all(str(problem).startswith(f"{problem.path}: ") for problem in found.problems)

    pages = load_pages(tmp_path)
    assert len(pages) == 4 and "skipped" in capsys.readouterr().err


def test_a_page_that_fails_to_render_is_a_problem_and_iteration_goes_on(tmp_path):
    write_sample_pages(tmp_path)
    sources = discover(tmp_path).sources
    pdf = next(s for s in sources if s.is_pdf)
    (tmp_path / "appendix.pdf").write_bytes(b"%PDF-1.4 edited since")  # changed after discovery
    results = rendered(sources)
    assert len(results) == 6
    problems = [result for _, result in results if isinstance(result, Problem)]
    assert [(p.path, p.page) for p in problems] == [(str(pdf.path), 1), (str(pdf.path), 2)]
    assert "changed since it was discovered" in problems[0].reason and "(page 1)" in str(problems[0])


def test_only_renders_the_pages_asked_for(tmp_path):
    write_sample_pages(tmp_path)
    keys = {"paris_slide.png", "appendix.pdf#page=2"}
    assert [entry.key for entry, _ in rendered(discover(tmp_path).sources, only=keys)] == sorted(keys)


def test_empty_folder_message_names_the_folder_and_formats(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no PNG, JPEG or PDF pages \(nor TIFF or WebP\) in .*skipped: 1 \.txt"):
        load_pages(tmp_path)


@pytest.fixture
def submitted(monkeypatch):
    """Every page handed to a worker pool, in order: the pool's bound is checked from outside."""
    pages, real_submit = [], ProcessPoolExecutor.submit

    def counting_submit(self, function, source, number, *args):
        pages.append((source.name, number))
        return real_submit(self, function, source, number, *args)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", counting_submit)
    return pages


def test_process_pool_matches_in_process_with_bounded_prefetch(tmp_path, submitted):
    write_sample_pages(tmp_path)
    write_format_pages(tmp_path)
    sources = discover(tmp_path).sources
    reference = rendered(sources)

    pooled, most_ahead = [], 0
    for entry, image in iter_pages(sources, workers=2, prefetch=3):
        pooled.append((entry, image))
        most_ahead = max(most_ahead, len(submitted) - len(pooled))  # submitted, not yet handed to this consumer

    assert [entry for entry, _ in pooled] == [entry for entry, _ in reference] and len(pooled) == 12
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (_, a), (_, b) in zip(pooled, reference))
    assert len(submitted) == 12 and most_ahead == 2  # 3 in flight, counting the page the consumer holds
    assert not multiprocessing.active_children()


def test_pool_survives_a_killed_worker_and_shuts_down_when_abandoned(tmp_path, submitted):
    write_sample_pages(tmp_path)
    sources = discover(tmp_path).sources
    reference = rendered(sources)

    pages = iter_pages(sources, workers=1)  # default prefetch: 2; one worker starts faster than two
    first = next(pages)
    for child in multiprocessing.active_children():  # a worker killed from outside (say, the OOM killer) ...
        child.kill()
    more = [next(pages) for _ in range(5)]  # ... costs nothing: its pages are rendered again in a new pool
    assert len(submitted) > 2 + 5  # pages were submitted again, to a new pool
    pages.close()  # the consumer stops early: the workers go too

    assert not multiprocessing.active_children()
    assert [entry for entry, _ in [first, *more]] == [entry for entry, _ in reference]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (_, a), (_, b) in zip([first, *more], reference))
    assert documents.SUPPORTED_SUFFIXES == (".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
