"""colqwen3.index.local: segment files of pre-padded blocks, atomic commits, removal; search equals float64 MaxSim."""

import json

import pytest
import torch
from safetensors import safe_open

from colqwen3.index.compact import decode_tokens, encode_tokens, pool_tokens
from colqwen3.index.local import MANIFEST, IndexFolderError, LocalIndex
from colqwen3.index.store import IndexSettings, ModelIdentity, PageEntry, SettingsMismatchError
from colqwen3.testing.references import maxsim_float64
from colqwen3.testing.references import random_unit_vectors as random_vectors

DIM = 16


def settings(**overrides) -> IndexSettings:
    return IndexSettings(model=ModelIdentity("sha256:abc", "/models/m"), embed_dim=DIM, **overrides)


def entries(n: int, start: int = 0) -> list[PageEntry]:
    return [PageEntry(f"doc-{i:03d}.png", f"doc-{i:03d}.png", 1, f"hash-{i}") for i in range(start, start + n)]


@pytest.fixture
def corpus():
    lengths = torch.randint(3, 40, (23,), generator=torch.Generator().manual_seed(0)).tolist()
    return random_vectors(lengths, dim=DIM, seed=1)


def build(folder, vectors, block_tokens=64, splits=(10,), **overrides) -> LocalIndex:
    index = LocalIndex.open(folder, settings(**overrides), create=True, block_tokens=block_tokens)
    bounds = [0, *splits, len(vectors)]
    rows = entries(len(vectors))
    for start, end in zip(bounds, bounds[1:]):
        index.add(rows[start:end], vectors[start:end])
    return index


def expected_hits(queries, stored: dict, k: int):
    keys = sorted(stored)
    scores = maxsim_float64(queries, [stored[key] for key in keys])
    return [[(keys[i], float(row[i])) for i in row.argsort(descending=True, stable=True)[:k]] for row in scores]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "int8", "binary"])
@pytest.mark.parametrize("block_tokens", [1, 64, 4096])
def test_search_equals_float64_maxsim_of_the_stored_values(tmp_path, corpus, dtype, block_tokens):
    index = build(tmp_path / "index", corpus, block_tokens=block_tokens, splits=(7, 15), dtype=dtype)
    index.remove(["doc-003.png", "doc-020.png"])
    queries = random_vectors((4, 9, 1), dim=DIM, seed=2)
    stored = {e.key: v for e, v in zip(entries(23), corpus) if e.key not in ("doc-003.png", "doc-020.png")}
    stored = {key: decode_tokens(encode_tokens(v, dtype), dtype).double() for key, v in stored.items()}
    hits = index.search(queries, top_k=5)
    # bf16: the bf16 search pass may pick a token that ties within bf16 rounding, scoring lower (see the scorer)
    tolerance = 3e-3 if dtype == "bfloat16" else 1e-5
    for query, got, want in zip(queries, hits, expected_hits(queries, stored, 5)):
        assert [hit.rank for hit in got] == [1, 2, 3, 4, 5]
        if dtype != "bfloat16":
            assert [hit.page for hit in got] == [key for key, _ in want]
        for hit in got:  # every score is the float64 MaxSim of what is stored for that page
            assert abs(hit.score - float(maxsim_float64([query], [stored[hit.page]])[0, 0])) <= tolerance
        assert abs(got[0].score - want[0][1]) <= tolerance  # and the best page scores as the true best does


def test_blocks_are_length_sorted_and_padded_with_a_real_token(tmp_path, corpus):
    build(tmp_path / "index", corpus, block_tokens=64, splits=(), dtype="float32").close()
    (segment,) = (tmp_path / "index" / "segments").iterdir()
    with safe_open(str(segment), framework="pt") as handle:  # a plain safetensors reader sees everything
        keys = [e["key"] for e in json.loads(handle.metadata()["entries"])]
        blocks = sorted({name.split(".")[1] for name in handle.keys()}, key=int)
        row, widths = 0, []
        for block in blocks:
            data, lengths = handle.get_tensor(f"block.{block}.data"), handle.get_tensor(f"block.{block}.lengths")
            assert data.shape[0] * data.shape[1] <= 64 or data.shape[0] == 1  # bounded by block_tokens
            widths.append(data.shape[1])
            for page, length in zip(data, lengths.tolist()):
                vectors = corpus[int(keys[row][4:7])]
                assert length == len(vectors) and page[:length].equal(vectors)
                assert (page[length:] == vectors[0]).all()  # padding repeats the page's first token
                row += 1
    assert widths == sorted(widths) and row == len(corpus)


def test_pooling_is_applied_and_reopening_reads_the_same_index(tmp_path, corpus):
    build(tmp_path / "index", corpus, pool_factor=3, dtype="float32").close()
    index = LocalIndex.open(tmp_path / "index")
    assert len(index) == 23 and index.complete is False and index.settings.pool_factor == 3
    assert torch.allclose(index.page_vectors("doc-004.png"), pool_tokens(corpus[4], 3))
    index.set_complete(True)
    assert LocalIndex.open(tmp_path / "index").complete is True


def test_removal_drops_pages_and_deletes_emptied_segments(tmp_path, corpus):
    index = build(tmp_path / "index", corpus, splits=(5,))
    index.remove([f"doc-{i:03d}.png" for i in range(5)])  # all of the first segment
    assert sorted(path.name for path in (tmp_path / "index" / "segments").iterdir()) == ["seg-000002.safetensors"]
    assert len(index) == 18 and all(hit.page >= "doc-005" for hit in index.search(corpus[:2], top_k=18)[0])
    with pytest.raises(ValueError, match="not in the index.*doc-000.png"):
        index.remove(["doc-000.png"])
    with pytest.raises(ValueError, match="doc-007.png.*already in the index"):
        index.add(entries(1, start=7), corpus[7:8])


def test_an_unfinished_write_is_invisible_and_cleaned_up(tmp_path, corpus):
    build(tmp_path / "index", corpus, splits=()).close()
    stray = tmp_path / "index" / "segments" / "seg-000009.safetensors"
    stray.write_bytes(b"half a segment")  # a writer killed after its rename but before the manifest commit
    (tmp_path / "index" / "segments" / ".seg-000010.safetensors.tmp-1").write_bytes(b"")  # ... or before it
    reopened = LocalIndex.open(tmp_path / "index")
    assert len(reopened) == 23
    assert sorted(path.name for path in reopened.remove_unfinished_writes()) == [
        ".seg-000010.safetensors.tmp-1",
        "seg-000009.safetensors",
    ]
    reopened.add(entries(1, start=30), corpus[:1])
    assert len(LocalIndex.open(tmp_path / "index")) == 24


def test_bad_index_locations_are_named(tmp_path, corpus):
    picture = tmp_path / "page.png"
    picture.write_bytes(b"\x89PNG not really")
    with pytest.raises(IndexFolderError, match="page.png is a file, not an index folder"):
        LocalIndex.open(picture, settings(), create=True)
    with pytest.raises(IndexFolderError, match="page.png is a file.*left untouched"):
        LocalIndex.delete(picture)
    assert picture.read_bytes() == b"\x89PNG not really"
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    with pytest.raises(IndexFolderError, match="photos is a folder with other files"):
        LocalIndex.open(foreign, settings(), create=True)
    with pytest.raises(IndexFolderError, match="does not exist"):
        LocalIndex.open(tmp_path / "missing")
    build(tmp_path / "index", corpus).close()
    manifest = tmp_path / "index" / MANIFEST
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])  # truncated
    with pytest.raises(IndexFolderError, match="not a readable index manifest"):
        LocalIndex.open(tmp_path / "index")
    with pytest.raises(IndexFolderError, match="not a readable index manifest"):
        LocalIndex.delete(tmp_path / "index")  # --reindex does not delete what it cannot recognise
    manifest.write_text(json.dumps({"format": "colqwen3-page-index/1"}))
    with pytest.raises(IndexFolderError, match="format 'colqwen3-page-index/1'"):
        LocalIndex.open(tmp_path / "index")
    manifest.write_text(text)
    segment = next((tmp_path / "index" / "segments").iterdir())
    segment.write_bytes(segment.read_bytes()[:-100])
    with pytest.raises(IndexFolderError, match="truncated"):
        LocalIndex.open(tmp_path / "index")


def test_other_settings_are_refused_with_each_difference(tmp_path, corpus):
    build(tmp_path / "index", corpus).close()
    other = settings(dtype="int8", pool_factor=2)
    with pytest.raises(SettingsMismatchError, match=r"dtype: 'bfloat16' -> 'int8'[\s\S]*pool_factor: 1 -> 2"):
        LocalIndex.open(tmp_path / "index", other)
    retrained = IndexSettings(model=ModelIdentity("sha256:def", "/models/m"), embed_dim=DIM)
    with pytest.raises(SettingsMismatchError, match="model: /models/m"):
        LocalIndex.open(tmp_path / "index", retrained)
    same_weights_elsewhere = IndexSettings(model=ModelIdentity("sha256:abc", "/copies/m/"), embed_dim=DIM)
    LocalIndex.open(tmp_path / "index", same_weights_elsewhere).close()


def test_bad_pages_and_queries_are_named(tmp_path, corpus):
    index = build(tmp_path / "index", corpus)
    with pytest.raises(ValueError, match="doc-050.png.*dim 8"):
        index.add(entries(1, start=50), random_vectors((4,), dim=8))
    with pytest.raises(ValueError, match="doc-050.png.*NaN"):
        index.add(entries(1, start=50), [torch.full((3, DIM), float("nan"))])
    with pytest.raises(ValueError, match="query 0 has dim 8"):
        index.search(random_vectors((4,), dim=8))
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        index.search(corpus[:1], top_k=0)
    with pytest.raises(ValueError, match="query 1 must be a non-empty"):
        index.search([corpus[0], torch.zeros(0, DIM)])


def test_ties_are_ordered_by_page_key(tmp_path):
    page = random_vectors((5,), dim=DIM, seed=4)[0]
    index = LocalIndex.open(tmp_path / "index", settings(dtype="float32"), create=True)
    rows = entries(6)
    index.add(rows[3:], [page] * 3)
    index.add(rows[:3], [page] * 3)
    assert [hit.page for hit in index.search([page], top_k=4)[0]] == [row.key for row in rows[:4]]


def test_one_writer_at_a_time(tmp_path, corpus):
    writer = build(tmp_path / "index", corpus)
    other = LocalIndex.open(tmp_path / "index")
    assert len(other) == 23  # readers are never blocked
    with pytest.raises(IndexFolderError, match="another process is writing the index"):
        other.add(entries(1, start=40), corpus[:1])
    writer.close()
    other.add(entries(1, start=40), corpus[:1])
    assert len(other) == 24
