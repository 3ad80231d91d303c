"""Page stores in Qdrant: `QdrantStore` (a Qdrant server or cluster via `qdrant-client`) and `QdrantEdgeStore`
(Qdrant's own engine in-process via `qdrant-edge-py`, a shard in a local folder). Both keep one layout:

- one point per page, its id `uuid5(page key)`, its payload the `PageEntry` (`key`, `source`, `page`, `file_sha256`);
- a named multi-vector `tokens`: the page's token vectors (after `pool_tokens` when `pool_factor > 1`), DOT distance,
  MAX_SIM comparator, HNSW off (`m=0`): an HNSW graph over every page token is far too slow to build (it did not
  finish in 20 CPU-minutes for 200 pages) and MaxSim only needs each candidate scored exactly;
- a named single vector `pooled`: the mean of the page's tokens (before token pooling), L2-normalised
  (`pool_single_vector`), float32, with the default HNSW index: the first stage of a two-stage search;
- one reserved point with no vectors (`SETTINGS_POINT_ID`) whose payload holds the `IndexSettings` (JSON) and the
  `complete` flag, so a store carries its own settings wherever it is copied or snapshotted.

Storage dtype of `tokens`: float16 for `settings.dtype` "bfloat16" (the default) or "float16", float32 for "float32";
other dtypes are refused. float16 holds every bfloat16 value exactly (3 more mantissa bits; only components below
6e-5, far below what matters in a sum of dot products, lose precision), so pages embedded in bfloat16 lose nothing,
at half of float32's memory; Qdrant has no bfloat16 storage (neither edge nor server). Qdrant scores a float16 field
with the query rounded to float16 too, and qdrant-client's local mode ignores the datatype, so both are rounded here
before they are sent: every backend then scores the same values (to float32 summation order; scores differ from
float32 MaxSim of the unrounded vectors by ~1e-4 per query token at worst, see tests/index/test_qdrant.py).

Search: a query's tokens are mean-pooled the same way; the first stage takes the `candidates` pages whose `pooled`
vector is nearest (HNSW once the store has been optimised), then scores those pages exactly with MaxSim on `tokens`
(one Query API request with a prefetch). With `candidates=0`, or at least as many candidates as pages, every page is
scored exactly. Ties are ranked by page key, as in every `PageStore`.

Qdrant's MaxSim does not mask: vectors must arrive without padding rows (a zero row can win a max where every real
similarity is negative). `PageStore.add` already takes unpadded pages.

    store = QdrantEdgeStore.open("pages.qdrant", settings)  # or QdrantStore.open("http://host:6333", "pages", settings)
    store.add(entries, vectors)
    hits = store.search(queries, top_k=10)  # two-stage above 256 pages, exact below
"""

import json
import random
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch

from colqwen3.index.compact import pool_tokens
from colqwen3.index.store import (
    Hit,
    IndexSettings,
    PageEntry,
    PageStore,
    SettingsMismatchError,
    check_new_pages,
    check_queries,
)
from scoring_colqwen3 import pool_single_vector

__all__ = [
    "DEFAULT_CANDIDATES",
    "MissingStoreError",
    "POOLED",
    "SETTINGS_POINT_ID",
    "TOKENS",
    "QdrantEdgeStore",
    "QdrantStore",
]

TOKENS = "tokens"  # the multi-vector field: exact MaxSim
POOLED = "pooled"  # the single-vector field: the HNSW first stage
DEFAULT_CANDIDATES = 256  # first-stage size; Qdrant suggests re-ranking ~100-500 candidates
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://huggingface.co/colqwen3/page-store")
SETTINGS_POINT_ID = str(uuid.uuid5(_NAMESPACE, "settings"))
_SETTINGS_FIELD = "colqwen3_settings"
_STORAGE_DTYPES = {"bfloat16": "float16", "float16": "float16", "float32": "float32"}
_SCROLL_PAGE = 1024


def _point_id(key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"page:{key}"))


def _storage_dtype(settings: IndexSettings) -> str:
    if settings.dtype not in _STORAGE_DTYPES:
        raise ValueError(
            f"Qdrant stores token vectors as float16 or float32 (dtype bfloat16, float16 or float32), "
            f"got dtype {settings.dtype!r}"
        )
    return _STORAGE_DTYPES[settings.dtype]


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _mean_vector(tokens: torch.Tensor) -> list[float]:
    """The mean of all rows, L2-normalised (an explicit mask: a zero row still counts, as it does in MaxSim)."""
    return pool_single_vector(tokens.float()[None], torch.ones(1, len(tokens)))[0].tolist()


class MissingStoreError(ValueError):
    """There is no page store at the location given (and it was not to be created)."""


class _Backend:
    """What the shared store code needs from a Qdrant API; points are (id, {name: vector}, payload) tuples."""

    name: str  # for messages: the collection or folder

    def exists(self) -> bool:
        raise NotImplementedError

    def create(self, dim: int, dtype: str) -> None:
        raise NotImplementedError

    def upsert(self, points: list[tuple]) -> None:
        raise NotImplementedError

    def delete(self, ids: list[str]) -> None:
        raise NotImplementedError

    def payloads(self, ids: list[str]) -> dict[str, dict]:
        """Payloads of those of `ids` that exist, by id."""
        raise NotImplementedError

    def scroll(self, offset) -> tuple[list[tuple[str, dict]], object]:
        """(up to `_SCROLL_PAGE` (id, payload) pairs from `offset` on, the next offset or None)."""
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def query(self, requests: list[tuple]) -> list[list[tuple[str, float]]]:
        """(tokens, pooled or None, candidates, limit) per query -> (key, score) pairs, best first."""
        raise NotImplementedError

    def finish_run(self) -> None:
        """End of an indexing run: a chance to build indexes (edge runs its optimiser here)."""

    def close(self) -> None:
        raise NotImplementedError


class _QdrantPageStore(PageStore):
    """The layout and the logic shared by both stores; each subclass only supplies a `_Backend`."""

    def __init__(self, backend: _Backend, settings: IndexSettings, complete: bool, batch_size: int, candidates: int):
        self._backend = backend
        self.settings = settings
        self._complete = complete
        self.batch_size = batch_size
        self.candidates = candidates
        self._dtype = getattr(torch, _storage_dtype(settings))

    @classmethod
    def _open(cls, backend: _Backend, settings, create: bool, batch_size: int, candidates: int):
        _check_positive_int("batch_size", batch_size)
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 0:
            raise ValueError(f"candidates must be a non-negative integer (0: score every page), got {candidates!r}")
        if settings is not None and not isinstance(settings, IndexSettings):
            raise TypeError(f"settings must be an IndexSettings, got {type(settings).__name__}")
        if settings is not None:
            _storage_dtype(settings)  # refuse int8 / binary before touching the store
        if not backend.exists():
            if settings is None or not create:
                backend.close()
                raise MissingStoreError(f"no page store at {backend.name}; build it first with `colqwen3 index`")
            backend.create(settings.embed_dim, _storage_dtype(settings))
            backend.upsert([(SETTINGS_POINT_ID, {}, {_SETTINGS_FIELD: settings.to_json(), "complete": False})])
        payload = backend.payloads([SETTINGS_POINT_ID]).get(SETTINGS_POINT_ID)
        if payload is None or _SETTINGS_FIELD not in payload:
            backend.close()
            raise ValueError(f"{backend.name} exists but is not a ColQwen3 page store (it has no settings point)")
        stored = IndexSettings.from_dict(json.loads(payload[_SETTINGS_FIELD]))
        if settings is not None and stored.differences(settings):
            backend.close()
            raise SettingsMismatchError(
                f"page store {backend.name} was built with other settings ({'; '.join(stored.differences(settings))}):"
                " pass --reindex to rebuild it, or leave the storage flags out to keep the store's"
            )
        return cls(backend, stored, bool(payload.get("complete")), batch_size, candidates)

    # ----- reading -----
    def entries(self) -> dict[str, PageEntry]:
        found, offset = {}, None
        while True:
            rows, offset = self._backend.scroll(offset)
            for point_id, payload in rows:
                if point_id != SETTINGS_POINT_ID:
                    entry = PageEntry.from_dict(payload)
                    found[entry.key] = entry
            if offset is None:
                return found

    def __len__(self) -> int:
        return self._backend.count() - 1  # every point but the settings point

    @property
    def complete(self) -> bool:
        return self._complete

    # ----- writing -----
    def set_complete(self, complete: bool) -> None:
        if complete:
            self._backend.finish_run()
        payload = {_SETTINGS_FIELD: self.settings.to_json(), "complete": bool(complete)}
        self._backend.upsert([(SETTINGS_POINT_ID, {}, payload)])
        self._complete = bool(complete)

    def add(self, entries: list[PageEntry], vectors: list[torch.Tensor]) -> None:
        """Store pages; durable on return. Pages are upserted `batch_size` at a time: if a call fails midway, the
        pages it already wrote are deleted again (best effort); a process killed midway may leave some of them live,
        each whole and correct (the run's `complete` flag is False then)."""
        vectors = self._check_new_pages(entries, vectors)
        written = []
        try:
            for start in range(0, len(entries), self.batch_size):
                batch = [
                    self._point(entry, vector)
                    for entry, vector in zip(entries[start : start + self.batch_size], vectors[start:])
                ]
                self._backend.upsert(batch)
                written += [point[0] for point in batch]
        except BaseException:
            if written:
                try:
                    self._backend.delete(written)
                except Exception:
                    pass  # the original error is the one to report
            raise

    def _point(self, entry: PageEntry, vectors: torch.Tensor) -> tuple:
        tokens = vectors if self.settings.pool_factor == 1 else pool_tokens(vectors, self.settings.pool_factor)
        # rounded here: local mode ignores the storage datatype, and a server rounds float16 the same way
        tokens = tokens.to(self._dtype).float().tolist()
        return _point_id(entry.key), {TOKENS: tokens, POOLED: _mean_vector(vectors)}, entry.to_dict()

    def _check_new_pages(self, entries, vectors) -> list[torch.Tensor]:
        vectors = check_new_pages(entries, vectors, self.settings.embed_dim)
        live = self._backend.payloads([_point_id(entry.key) for entry in entries])
        if live:
            keys = sorted(payload.get("key", point_id) for point_id, payload in live.items())
            raise ValueError(f"pages already in the store (remove them first): {keys[:5]}")
        return [vector.float() for vector in vectors]

    def remove(self, keys: Iterable[str]) -> None:
        if isinstance(keys, str):
            raise TypeError(f"keys must be an iterable of page keys, not one string ({keys!r})")
        keys = sorted(set(keys))
        if not keys:
            return
        ids = {_point_id(key): key for key in keys}
        live = self._backend.payloads(list(ids))
        missing = [key for point_id, key in ids.items() if point_id not in live]
        if missing:
            raise ValueError(f"pages not in the store: {sorted(missing)[:5]}")
        for start in range(0, len(keys), self.batch_size):
            self._backend.delete(list(ids)[start : start + self.batch_size])

    # ----- search -----
    def search(self, queries: list[torch.Tensor], top_k: int = 10, candidates: Optional[int] = None) -> list[list[Hit]]:
        """The `top_k` best pages per query by MaxSim, best first, ties by page key.

        `candidates` (default: the store's, 256): how many pages the pooled first stage hands to exact MaxSim
        (raised to `top_k` when smaller). 0, or at least as many as there are pages, scores every page exactly.
        """
        _check_positive_int("top_k", top_k)
        if candidates is None:
            candidates = self.candidates
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 0:
            raise ValueError(f"candidates must be a non-negative integer (0: score every page), got {candidates!r}")
        queries = check_queries(queries, self.settings.embed_dim)
        n_pages = len(self)
        if n_pages == 0:
            return [[] for _ in queries]
        top_k = min(top_k, n_pages)
        two_stage = 0 < candidates and max(candidates, top_k) < n_pages
        pool = max(candidates, top_k) if two_stage else n_pages
        prepared = [
            (query.to(self._dtype).float().tolist(), _mean_vector(query) if two_stage else None) for query in queries
        ]
        return _rank_with_ties(
            lambda limits: self._backend.query(
                [(tokens, pooled, pool, limit) for (tokens, pooled), limit in zip(prepared, limits)]
            ),
            n_queries=len(queries),
            top_k=top_k,
            most=pool,
        )

    def close(self) -> None:
        self._backend.close()


def _rank_with_ties(fetch: Callable, n_queries: int, top_k: int, most: int) -> list[list[Hit]]:
    """Top-k per query, ties at the k-th score broken by key: Qdrant cuts ties arbitrarily, so fetch `top_k + 1` and
    fetch again with twice the limit while the last result still ties the k-th (at most `most` results exist)."""
    limits = [min(top_k + 1, most)] * n_queries
    results = fetch(limits)
    while True:
        again = [
            i
            for i, rows in enumerate(results)
            if len(rows) == limits[i] < most and len(rows) > top_k and rows[-1][1] == rows[top_k - 1][1]
        ]
        if not again:
            break
        for i in again:
            limits[i] = min(2 * limits[i], most)
        refetched = fetch(limits)  # every query again: the backends batch them, and ties are rare
        results = [refetched[i] if i in again else rows for i, rows in enumerate(results)]
    ranked = []
    for rows in results:
        best = sorted(rows, key=lambda row: (-row[1], row[0]))[:top_k]
        ranked.append([Hit(rank, float(score), key) for rank, (key, score) in enumerate(best, start=1)])
    return ranked


# ---------------------------------------------------------------- qdrant-client: a server, a cluster, local mode


def _import_client():
    try:
        from qdrant_client import QdrantClient, models
    except ImportError as error:
        raise ImportError("QdrantStore needs qdrant-client: pip install qdrant-client (or colqwen3[qdrant])") from error
    return QdrantClient, models


def _is_transient(error: Exception) -> bool:
    """Errors worth retrying: the connection failed or timed out, or the server said it is busy or briefly down."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(error, ResponseHandlingException):  # transport errors (refused, reset, timed out)
        return True
    if isinstance(error, UnexpectedResponse):
        return error.status_code in (429, 500, 502, 503, 504)
    try:
        import grpc
    except ImportError:
        return False
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return error.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
    return False


class _ClientBackend(_Backend):
    def __init__(self, client, collection: str, owns_client: bool, retries: int, backoff: float):
        _, self.models = _import_client()
        self.client = client
        self.collection = collection
        self.name = f"Qdrant collection {collection!r}"
        self.owns_client = owns_client
        self.retries = retries
        self.backoff = backoff

    def _call(self, method: str, *args, **kwargs):
        """`client.method(...)`, retried with exponential backoff (and jitter) on transient errors. Every call made
        here is idempotent: upserts write fixed ids, deletes of deleted points are no-ops."""
        for attempt in range(self.retries + 1):
            try:
                return getattr(self.client, method)(*args, **kwargs)
            except Exception as error:
                if attempt == self.retries or not _is_transient(error):
                    raise
                time.sleep(self.backoff * 2**attempt * (1 + random.random()))

    def exists(self) -> bool:
        return self._call("collection_exists", self.collection)

    def create(self, dim: int, dtype: str) -> None:
        models = self.models
        datatype = models.Datatype.FLOAT16 if dtype == "float16" else models.Datatype.FLOAT32
        self._call(
            "create_collection",
            self.collection,
            vectors_config={
                TOKENS: models.VectorParams(
                    size=dim,
                    distance=models.Distance.DOT,
                    multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
                    hnsw_config=models.HnswConfigDiff(m=0),
                    datatype=datatype,
                ),
                POOLED: models.VectorParams(size=dim, distance=models.Distance.DOT),
            },
        )

    def upsert(self, points: list[tuple]) -> None:
        structs = [self.models.PointStruct(id=i, vector=v, payload=p) for i, v, p in points]
        self._call("upsert", self.collection, points=structs, wait=True)

    def delete(self, ids: list[str]) -> None:
        self._call("delete", self.collection, points_selector=self.models.PointIdsList(points=ids), wait=True)

    def payloads(self, ids: list[str]) -> dict[str, dict]:
        records = self._call("retrieve", self.collection, ids=ids, with_payload=True, with_vectors=False)
        return {str(record.id): record.payload or {} for record in records}

    def scroll(self, offset):
        records, offset = self._call(
            "scroll", self.collection, limit=_SCROLL_PAGE, offset=offset, with_payload=True, with_vectors=False
        )
        return [(str(record.id), record.payload or {}) for record in records], offset

    def count(self) -> int:
        return self._call("count", self.collection, exact=True).count

    def query(self, requests):
        models = self.models
        batch = []
        for tokens, pooled, candidates, limit in requests:
            # No `exact` flag: "tokens" has no HNSW graph (m=0), so Qdrant scans it (or the prefetched candidates)
            # exactly anyway, and local mode warns on any search params.
            prefetch = None if pooled is None else models.Prefetch(query=pooled, using=POOLED, limit=candidates)
            batch.append(
                models.QueryRequest(query=tokens, using=TOKENS, prefetch=prefetch, limit=limit, with_payload=["key"])
            )
        responses = self._call("query_batch_points", self.collection, requests=batch)
        return [[(point.payload["key"], point.score) for point in response.points] for response in responses]

    def close(self) -> None:
        if self.owns_client:
            self.client.close()


class QdrantStore(_QdrantPageStore):
    """A page store in a collection of a Qdrant server or cluster (or qdrant-client's local mode, for tests: it is
    exact but ~60x slower than torch and warns above 20,000 points). Open or create with `QdrantStore.open`."""

    @classmethod
    def open(
        cls,
        url_or_client,
        collection: str,
        settings: Optional[IndexSettings] = None,
        *,
        api_key: Optional[str] = None,
        create: bool = True,
        batch_size: int = 64,
        candidates: int = DEFAULT_CANDIDATES,
        retries: int = 3,
        backoff: float = 0.5,
        timeout: Optional[int] = None,
    ) -> "QdrantStore":
        """Open `collection`, creating it with `settings` when it is missing (unless `create=False`).

        `url_or_client`: a server URL (`http://localhost:6333`, `https://xyz.cloud.qdrant.io`), `":memory:"`, or a
        `qdrant_client.QdrantClient` you made (e.g. `QdrantClient(path=...)` for local mode on disk; `close` leaves
        a client you passed open). Given `settings`, a collection built under other settings raises
        `SettingsMismatchError` naming each difference. Transient errors (connection, timeout, HTTP 429/5xx) are
        retried `retries` times with exponential backoff starting at `backoff` seconds.
        """
        client_class, _ = _import_client()
        if not isinstance(collection, str) or not collection:
            raise ValueError(f"collection must be a non-empty string, got {collection!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        if isinstance(url_or_client, client_class):
            client, owns = url_or_client, False
        elif isinstance(url_or_client, str) and url_or_client == ":memory:":
            client, owns = client_class(":memory:"), True
        elif isinstance(url_or_client, str) and url_or_client.startswith(("http://", "https://")):
            client, owns = client_class(url=url_or_client, api_key=api_key, timeout=timeout), True
        else:
            raise ValueError(
                f"url_or_client must be an http(s) URL, ':memory:' or a QdrantClient, got {url_or_client!r} "
                "(for local mode on disk pass QdrantClient(path=...); for an in-process engine use QdrantEdgeStore)"
            )
        backend = _ClientBackend(client, collection, owns, retries, backoff)
        return cls._open(backend, settings, create, batch_size, candidates)

    @property
    def client(self):
        return self._backend.client

    @staticmethod
    def delete(url_or_client, collection: str, *, api_key: Optional[str] = None) -> None:
        """Drop `collection` if it is a page store (the rebuild path); anything else is refused, left untouched."""
        store = QdrantStore.open(url_or_client, collection, api_key=api_key, create=False)
        try:
            store._backend._call("delete_collection", collection)
        finally:
            store.close()


# ---------------------------------------------------------------- qdrant-edge-py: Qdrant's engine in-process


def _import_edge():
    try:
        import qdrant_edge
    except ImportError as error:
        raise ImportError(
            "QdrantEdgeStore needs qdrant-edge-py: pip install qdrant-edge-py (or colqwen3[qdrant])"
        ) from error
    return qdrant_edge


class _EdgeBackend(_Backend):
    # A shard folder holds these (qdrant-edge-py 0.9); any other non-empty folder is not ours to write into.
    CONFIG_FILE = "edge_config.json"

    def __init__(self, path: Path):
        self.edge = _import_edge()
        self.path = path
        self.name = f"Qdrant edge shard {str(path)!r}"
        self.shard = None
        if (path / self.CONFIG_FILE).is_file():
            self.shard = self.edge.EdgeShard.load(str(path))
        elif path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(f"{path} exists and is not a Qdrant edge shard; choose a new folder")

    def exists(self) -> bool:
        return self.shard is not None

    def create(self, dim: int, dtype: str) -> None:
        edge = self.edge
        datatype = edge.VectorStorageDatatype.Float16 if dtype == "float16" else edge.VectorStorageDatatype.Float32
        config = edge.EdgeConfig(
            vectors={
                TOKENS: edge.EdgeVectorParams(
                    size=dim,
                    distance=edge.Distance.Dot,
                    multivector_config=edge.MultiVectorConfig(edge.MultiVectorComparator.MaxSim),
                    datatype=datatype,
                    # m=0: no graph; the other two numbers are required by the constructor and unused without one
                    hnsw_config=edge.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
                ),
                POOLED: edge.EdgeVectorParams(size=dim, distance=edge.Distance.Dot),
            }
        )
        self.shard = self.edge.EdgeShard.create(str(self.path), config)

    def _update(self, operation) -> None:
        self.shard.update(operation)
        self.shard.flush()  # the WAL already has it; flushing also persists the segments before we return

    def upsert(self, points: list[tuple]) -> None:
        self._update(self.edge.UpdateOperation.upsert_points([self.edge.Point(i, v, p) for i, v, p in points]))

    def delete(self, ids: list[str]) -> None:
        self._update(self.edge.UpdateOperation.delete_points(ids))

    def payloads(self, ids: list[str]) -> dict[str, dict]:
        records = self.shard.retrieve(ids, with_payload=True, with_vector=False)
        return {str(record.id): record.payload or {} for record in records}

    def scroll(self, offset):
        request = self.edge.ScrollRequest(offset=offset, limit=_SCROLL_PAGE, with_payload=True, with_vector=False)
        records, offset = self.shard.scroll(request)
        return [(str(record.id), record.payload or {}) for record in records], offset

    def count(self) -> int:
        return self.shard.count(self.edge.CountRequest(exact=True))

    def query(self, requests):
        edge = self.edge
        batch = []
        for tokens, pooled, candidates, limit in requests:
            prefetches = None
            if pooled is not None:
                prefetches = [edge.Prefetch(limit=candidates, query=edge.Query.Nearest(pooled, using=POOLED))]
            batch.append(
                edge.QueryRequest(
                    limit=limit,
                    query=edge.Query.Nearest(tokens, using=TOKENS),
                    prefetches=prefetches,
                    with_payload=["key"],
                    params=edge.SearchParams(exact=True),  # applies to the MaxSim stage only, not the prefetch
                )
            )
        results = self.shard.query_batch(edge.QueryBatchRequest(batch))
        return [[(point.payload["key"], point.score) for point in points] for points in results]

    def finish_run(self) -> None:
        # Merges the run's small appendable segments and builds the "pooled" HNSW graph (not "tokens": m=0).
        self.shard.optimize()

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None


class QdrantEdgeStore(_QdrantPageStore):
    """A page store in a local folder, run by Qdrant's own engine in this process (`qdrant-edge-py`). One process
    at a time: a second open of the same folder fails while the first is open. Open or create with `.open`.
    `set_complete(True)` runs the shard's optimiser, which builds the first-stage HNSW graph."""

    @classmethod
    def open(
        cls,
        path,
        settings: Optional[IndexSettings] = None,
        *,
        create: bool = True,
        batch_size: int = 64,
        candidates: int = DEFAULT_CANDIDATES,
    ) -> "QdrantEdgeStore":
        """Open the shard in folder `path`, creating it with `settings` when the folder is missing or empty (unless
        `create=False`). Given `settings`, a shard built under other settings raises `SettingsMismatchError`."""
        if not isinstance(path, (str, Path)):
            raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
        return cls._open(_EdgeBackend(Path(path)), settings, create, batch_size, candidates)

    @property
    def path(self) -> Path:
        return self._backend.path

    @staticmethod
    def delete(path) -> None:
        """Delete the shard folder `path` if it is a page store (the rebuild path); anything else is left untouched."""
        import shutil

        QdrantEdgeStore.open(path, create=False).close()  # raises unless `path` is a page store
        shutil.rmtree(path)
