"""The Qdrant page stores (edge shard and qdrant-client local mode) against float64 MaxSim, on a synthetic corpus."""

import pytest
import torch

from colqwen3.index.compact import pool_tokens
from colqwen3.index.store import IndexSettings, ModelIdentity, PageEntry, SettingsMismatchError
from colqwen3.testing.references import maxsim_float64, pool_single_vector_float64, random_unit_vectors

DIM = 32
N_PAGES = 60
MODEL = ModelIdentity(fingerprint="0" * 40, location="tiny-test-model")


def settings(**overrides) -> IndexSettings:
    return IndexSettings(**{"model": MODEL, "embed_dim": DIM, "dtype": "float32", **overrides})


def entry(i: int) -> PageEntry:
    source = f"doc{i // 4:02d}.pdf"
    return PageEntry(key=f"{source}#page={i % 4 + 1}", source=source, page=i % 4 + 1, file_sha256=f"{i // 4:064x}")


ENTRIES = [entry(i) for i in range(N_PAGES)]
KEYS = [e.key for e in ENTRIES]
PAGES = random_unit_vectors(torch.randint(5, 41, (N_PAGES,), generator=torch.Generator().manual_seed(0)).tolist(), DIM)
QUERIES = random_unit_vectors([3, 5, 8, 4, 6, 7], DIM, seed=1)
EXACT = maxsim_float64(QUERIES, PAGES)


def open_store(backend: str, where, store_settings=None, **kwargs):
    """An edge shard in folder `where`, or a local-mode collection in `where` (a QdrantClient)."""
    if backend == "edge":
        from colqwen3.index.qdrant import QdrantEdgeStore

        return QdrantEdgeStore.open(where, store_settings, **kwargs)
    from colqwen3.index.qdrant import QdrantStore

    return QdrantStore.open(where, "pages", store_settings, **kwargs)


@pytest.fixture(params=["edge", "client"])
def backend(request):
    module = {"edge": "qdrant_edge", "client": "qdrant_client"}[request.param]
    pytest.importorskip(module, reason=f"{module} is not installed (pip install colqwen3[qdrant])")
    return request.param


@pytest.fixture
def place(backend, tmp_path):
    """Where a fresh store lives: a folder for edge, an in-memory local-mode client for qdrant-client."""
    if backend == "edge":
        yield tmp_path / "shard"
        return
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    yield client
    client.close()


@pytest.fixture(scope="module")
def filled():
    """One float32 and one bfloat16 (float16-stored) store per installed backend, holding the whole corpus."""
    import tempfile

    stores, folder = {}, tempfile.TemporaryDirectory()
    for backend in ("edge", "client"):
        try:
            __import__({"edge": "qdrant_edge", "client": "qdrant_client"}[backend])
        except ImportError:
            continue
        for dtype in ("float32", "bfloat16"):
            if backend == "edge":
                where = f"{folder.name}/{dtype}"
            else:
                from qdrant_client import QdrantClient

                where = QdrantClient(":memory:")
            store = open_store(backend, where, settings(dtype=dtype))
            store.add(ENTRIES, PAGES)
            stores[backend, dtype] = store
    yield stores
    for store in stores.values():
        store.close()
    folder.cleanup()


def top(scores: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
    """Reference top-k per query by score, ties by key."""
    return [sorted(zip(KEYS, row.tolist()), key=by_score)[:k] for row in scores]


def by_score(pair: tuple[str, float]) -> tuple[float, str]:
    return -pair[1], pair[0]


def as_pairs(hits) -> list[list[tuple[str, float]]]:
    return [[(hit.page, hit.score) for hit in row] for row in hits]


def assert_same_ranking(got, expected, atol):
    for got_row, expected_row in zip(got, expected):
        assert [key for key, _ in got_row] == [key for key, _ in expected_row]
        got_scores = torch.tensor([score for _, score in got_row], dtype=torch.float64)
        expected_scores = torch.tensor([score for _, score in expected_row], dtype=torch.float64)
        assert torch.allclose(got_scores, expected_scores, atol=atol, rtol=0), (
            (got_scores - expected_scores).abs().max()
        )


# ----- exact search -----


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_exact_search_equals_float64_maxsim(filled, backend, dtype):
    hits = filled[backend, dtype].search(QUERIES, top_k=10, candidates=0)
    assert [[hit.rank for hit in row] for row in hits] == [list(range(1, 11))] * len(QUERIES)
    if dtype == "float32":
        assert_same_ranking(as_pairs(hits), top(EXACT, 10), atol=1e-4)
    else:
        # bfloat16 settings store float16, and Qdrant rounds the query to float16 as well: exact on those values,
        # and within ~1e-4 per query token of the unrounded float32 vectors' MaxSim.
        rounded = maxsim_float64([q.half() for q in QUERIES], [p.half() for p in PAGES])
        assert_same_ranking(as_pairs(hits), top(rounded, 10), atol=1e-4)
        for row, query, unrounded_row in zip(hits, QUERIES, EXACT):
            for hit in row:
                assert abs(hit.score - float(unrounded_row[KEYS.index(hit.page)])) < 2e-4 * len(query)


def test_edge_and_client_local_mode_agree(filled):
    pytest.importorskip("qdrant_edge", reason="qdrant-edge-py is not installed")
    pytest.importorskip("qdrant_client", reason="qdrant-client is not installed")
    for dtype in ("float32", "bfloat16"):
        edge = as_pairs(filled["edge", dtype].search(QUERIES, top_k=N_PAGES, candidates=0))
        client = as_pairs(filled["client", dtype].search(QUERIES, top_k=N_PAGES, candidates=0))
        assert_same_ranking(edge, client, atol=1e-5)


def test_as_many_candidates_as_pages_is_exact(filled, backend):
    store = filled[backend, "float32"]
    exact = as_pairs(store.search(QUERIES, top_k=7, candidates=0))
    assert as_pairs(store.search(QUERIES, top_k=7, candidates=N_PAGES)) == exact


def test_two_stage_reranks_the_pooled_first_stage_exactly(filled, backend):
    candidates = 8
    hits = filled[backend, "float32"].search(QUERIES, top_k=5, candidates=candidates)
    pooled_pages = torch.stack([pool_single_vector_float64(page, "mean") for page in PAGES])
    for row, query, exact_row in zip(hits, QUERIES, EXACT):
        first_stage = pooled_pages @ pool_single_vector_float64(query, "mean")
        allowed = {KEYS[i] for i in first_stage.topk(candidates).indices.tolist()}  # no ties in random data
        expected = sorted(((KEYS[i], float(exact_row[i])) for i in range(N_PAGES) if KEYS[i] in allowed), key=by_score)
        assert_same_ranking(as_pairs([row]), [expected[:5]], atol=1e-4)


def test_candidates_below_top_k_still_return_top_k(filled, backend):
    hits = filled[backend, "float32"].search(QUERIES[:1], top_k=10, candidates=3)
    assert len(hits[0]) == 10


def test_ties_are_ranked_by_key(place, backend):
    store = open_store(backend, place, settings())
    twins = [PageEntry(key=k, source=k, page=1, file_sha256="0") for k in ("e", "c", "a", "d", "b")]
    store.add(twins + ENTRIES[:10], [PAGES[0]] * 5 + PAGES[:10])  # five identical pages, and ENTRIES[0] as a sixth
    hits = store.search([PAGES[0][:3]], top_k=4, candidates=0)
    assert [hit.page for hit in hits[0]] == ["a", "b", "c", "d"]
    assert len({hit.score for hit in hits[0]}) == 1
    store.close()


def test_search_refuses_bad_arguments(filled, backend):
    store = filled[backend, "float32"]
    with pytest.raises(ValueError, match="query 1 has dim 16"):
        store.search([QUERIES[0], torch.ones(2, 16)])
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        store.search(QUERIES, top_k=0)
    with pytest.raises(ValueError, match="candidates must be a non-negative integer"):
        store.search(QUERIES, candidates=-1)


# ----- writing, persistence, settings -----


def test_add_remove_entries_round_trip(place, backend):
    store = open_store(backend, place, settings())
    assert store.entries() == {} and len(store) == 0 and store.search(QUERIES[:1]) == [[]]
    store.add(ENTRIES[:20], PAGES[:20])
    store.add(ENTRIES[20:30], PAGES[20:30])
    assert store.entries() == {e.key: e for e in ENTRIES[:30]} and len(store) == 30
    store.remove([KEYS[3], KEYS[25]])
    assert set(store.entries()) == set(KEYS[:30]) - {KEYS[3], KEYS[25]}
    with pytest.raises(ValueError, match="pages not in the store: \\['nope'\\]"):
        store.remove([KEYS[4], "nope"])
    assert KEYS[4] in store.entries()  # a refused remove removes nothing
    with pytest.raises(TypeError, match="not one string"):
        store.remove(KEYS[4])
    hits = store.search(QUERIES, top_k=30, candidates=0)
    assert all(hit.page not in (KEYS[3], KEYS[25]) for row in hits for hit in row)
    store.close()


def test_duplicate_and_bad_pages_are_refused(place, backend):
    store = open_store(backend, place, settings())
    store.add(ENTRIES[:2], PAGES[:2])
    with pytest.raises(ValueError, match=f"already in the store .*{KEYS[1]}"):
        store.add([ENTRIES[5], ENTRIES[1]], [PAGES[5], PAGES[1]])
    with pytest.raises(ValueError, match=f"page '{KEYS[5]}' appears twice"):
        store.add([ENTRIES[5], ENTRIES[5]], [PAGES[5], PAGES[5]])
    bad = {
        "non-empty \\[tokens, dim\\] tensor, got \\(32,\\)": torch.ones(DIM),
        "non-empty \\[tokens, dim\\] tensor, got \\(0, 32\\)": torch.ones(0, DIM),
        "has dim 16, the store holds dim 32": torch.ones(3, 16),
        "NaN or infinite": torch.full((3, DIM), float("nan")),
    }
    for message, vectors in bad.items():
        with pytest.raises(ValueError, match=message):
            store.add([ENTRIES[6]], [vectors])
    with pytest.raises(ValueError, match="one entry per page"):
        store.add(ENTRIES[6:8], PAGES[6:7])
    with pytest.raises(TypeError, match="PageEntry"):
        store.add(["key"], PAGES[:1])
    assert set(store.entries()) == set(KEYS[:2])  # nothing refused was written
    store.close()


def test_pool_factor_pools_stored_tokens(place, backend):
    store = open_store(backend, place, settings(pool_factor=2))
    store.add(ENTRIES[:12], PAGES[:12])
    hits = store.search(QUERIES, top_k=12, candidates=0)
    pooled = maxsim_float64(QUERIES, [pool_tokens(page, 2) for page in PAGES[:12]])
    expected = [sorted(zip(KEYS, row.tolist()), key=by_score) for row in pooled]
    assert_same_ranking(as_pairs(hits), expected, atol=1e-4)
    store.close()


def reopenable(backend, tmp_path):
    """A (open place, close place) pair that survives a reopen: a folder, or a local-mode client on disk."""
    if backend == "edge":
        return lambda: tmp_path / "shard", lambda where: None
    from qdrant_client import QdrantClient

    return lambda: QdrantClient(path=str(tmp_path / "local")), lambda client: client.close()


def test_persists_across_reopen(backend, tmp_path):
    make, release = reopenable(backend, tmp_path)
    where = make()
    store = open_store(backend, where, settings(dtype="bfloat16"))
    assert not store.complete  # a new store has not finished an indexing run
    store.add(ENTRIES[:15], PAGES[:15])
    store.remove([KEYS[0]])
    store.set_complete(True)
    before = as_pairs(store.search(QUERIES, top_k=5, candidates=0))
    store.close()
    release(where)

    where = make()
    store = open_store(backend, where)  # no settings: read them from the store
    assert store.settings == settings(dtype="bfloat16")
    assert store.complete
    assert store.entries() == {e.key: e for e in ENTRIES[1:15]}
    assert as_pairs(store.search(QUERIES, top_k=5, candidates=0)) == before
    store.set_complete(False)
    store.close()
    release(where)

    where = make()
    store = open_store(backend, where, settings(dtype="bfloat16"))
    assert not store.complete
    store.close()
    release(where)


def test_settings_mismatch_and_missing_store_are_refused(place, backend):
    with pytest.raises(ValueError, match="no page store at .*(shard|'pages')"):
        open_store(backend, place)
    open_store(backend, place, settings()).close()
    with pytest.raises(SettingsMismatchError, match="pool_factor: 1 -> 2"):
        open_store(backend, place, settings(pool_factor=2))
    with pytest.raises(ValueError, match="float16 or float32 .* got dtype 'int8'"):
        open_store(backend, place, settings(dtype="int8"))


def test_edge_refuses_a_foreign_folder(tmp_path):
    pytest.importorskip("qdrant_edge", reason="qdrant-edge-py is not installed")
    from colqwen3.index.qdrant import QdrantEdgeStore

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not a Qdrant edge shard"):
        QdrantEdgeStore.open(tmp_path, settings())
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_client_refuses_a_foreign_collection_and_bad_locations():
    pytest.importorskip("qdrant_client", reason="qdrant-client is not installed")
    from qdrant_client import QdrantClient, models

    from colqwen3.index.qdrant import QdrantStore

    client = QdrantClient(":memory:")
    client.create_collection("theirs", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    with pytest.raises(ValueError, match="'theirs' exists but is not a ColQwen3 page store"):
        QdrantStore.open(client, "theirs", settings())
    with pytest.raises(ValueError, match="must be an http\\(s\\) URL.*'some/folder'"):
        QdrantStore.open("some/folder", "pages", settings())
    client.close()


def test_client_retries_transient_errors(monkeypatch):
    pytest.importorskip("qdrant_client", reason="qdrant-client is not installed")
    from qdrant_client import QdrantClient
    from qdrant_client.http.exceptions import ResponseHandlingException

    place = QdrantClient(":memory:")
    store = open_store("client", place, settings(), backoff=0.0)
    real_upsert, failures = place.upsert, []

    def flaky_upsert(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise ResponseHandlingException(ConnectionError("connection reset"))
        return real_upsert(*args, **kwargs)

    monkeypatch.setattr(place, "upsert", flaky_upsert)
    store.add(ENTRIES[:3], PAGES[:3])
    assert len(failures) == 2 and len(store) == 3

    monkeypatch.setattr(place, "upsert", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("schema error")))
    with pytest.raises(RuntimeError, match="schema error"):  # not transient: raised at once
        store.add(ENTRIES[3:4], PAGES[3:4])
    place.close()


def test_missing_packages_name_the_install(monkeypatch, tmp_path):
    import sys

    from colqwen3.index.qdrant import QdrantEdgeStore, QdrantStore

    monkeypatch.setitem(sys.modules, "qdrant_edge", None)
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    with pytest.raises(ImportError, match="pip install qdrant-edge-py"):
        QdrantEdgeStore.open(tmp_path / "shard", settings())
    with pytest.raises(ImportError, match="pip install qdrant-client"):
        QdrantStore.open(":memory:", "pages", settings())
