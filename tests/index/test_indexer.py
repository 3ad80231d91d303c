"""colqwen3.index.indexer.update_index: pages stream through bounded windows into the store, bad pages are isolated,
only changed files are embedded again. The tiny model embeds for real; rendering runs in-process (`workers=0`)."""

import pytest

from colqwen3.index import indexer
from colqwen3.index.documents import discover
from colqwen3.index.embedders import LocalEmbedder
from colqwen3.index.local import LocalIndex
from colqwen3.index.store import IndexSettings, ModelIdentity
from colqwen3.testing.collection import write_collection
from colqwen3.testing.pages import make_page


class RecordingIndex(LocalIndex):
    """A local index that notes, at every commit, how many pages it got and how many the renderer had yielded."""

    commits: list

    def add(self, entries, vectors):
        self.commits.append((len(entries), len(YIELDED)))
        super().add(entries, vectors)


YIELDED: list = []


@pytest.fixture
def counted_rendering(monkeypatch):
    real = indexer.iter_pages

    def counting(*args, **kwargs):
        for item in real(*args, **kwargs):
            YIELDED.append(item[0].key)
            yield item

    YIELDED.clear()
    monkeypatch.setattr(indexer, "iter_pages", counting)


@pytest.fixture
def embedder(model, processor):
    return LocalEmbedder(model, processor, batch_size=2)


def open_store(folder, model) -> RecordingIndex:
    settings = IndexSettings(model=ModelIdentity("sha256:tiny", "tiny"), embed_dim=model.config.embed_dim)
    store = RecordingIndex.open(folder, settings, create=True)
    store.commits = []
    return store


def test_pages_stream_into_the_store_a_flush_at_a_time(tmp_path, model, embedder, counted_rendering):
    write_collection(tmp_path / "docs", 16, size=(96, 128))
    store = open_store(tmp_path / "index", model)
    report = indexer.update_index(store, embedder, discover(tmp_path / "docs"), workers=0, window=4, flush_pages=4,
                                  progress=False)  # fmt: skip
    assert report.added == 16 and report.problems == [] and store.complete
    # each commit happens as soon as its window is embedded: never more than one window rendered ahead
    assert store.commits == [(4, 4), (4, 8), (4, 12), (4, 16)]


def test_changed_removed_and_added_files_are_the_only_work(tmp_path, model, embedder):
    docs = tmp_path / "docs"
    paths = write_collection(docs, 8, size=(96, 128))
    store = open_store(tmp_path / "index", model)
    indexer.update_index(store, embedder, discover(docs), workers=0, progress=False)
    before = {key: store.page_vectors(key) for key in store.entries()}
    pdf = next(path for path in paths if path.suffix == ".pdf")
    pdf.unlink()  # 4 pages gone
    make_page(["CHANGED"], size=(96, 128)).save(paths[0])  # 1 page changed
    make_page(["NEW"], size=(96, 128)).save(docs / "new.png")  # 1 page added
    report = indexer.update_index(store, embedder, discover(docs), workers=0, progress=False)
    assert (report.added, report.removed, report.unchanged) == (2, 5, 3)
    for key in store.entries():  # untouched pages keep their stored vectors
        if key in before and key != paths[0].relative_to(docs).as_posix():
            assert store.page_vectors(key).equal(before[key])


def test_one_bad_page_costs_only_itself(tmp_path, model, embedder, monkeypatch):
    docs = tmp_path / "docs"
    write_collection(docs, 8, size=(96, 128))
    (docs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    real = embedder.embed_pages

    def refuse_page_five(images):  # a page the processor cannot take, inside a window of good ones
        if any(image.size == (97, 128) for image in images):
            raise ValueError("processor refused a page")
        return real(images)

    make_page(["ODD"], size=(97, 128)).save(docs / "odd.png")
    monkeypatch.setattr(embedder, "embed_pages", refuse_page_five)
    store = open_store(tmp_path / "index", model)
    report = indexer.update_index(store, embedder, discover(docs), workers=0, window=4, progress=False)
    assert report.added == 8 and len(store) == 8
    assert sorted(str(problem).split(":")[0].rsplit("/", 1)[-1] for problem in report.problems) == [
        "broken.png",
        "odd.png",
    ]
    with pytest.raises(indexer.IndexingError, match="broken.png"):
        indexer.update_index(open_store(tmp_path / "stop", model), embedder, discover(docs), workers=0,
                             on_error="stop", progress=False)  # fmt: skip
