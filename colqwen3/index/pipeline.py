"""Index pages with a loaded model and search the index with text queries: the API under `colqwen3 index|search`."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from colqwen3.index.embedding import embed_pages, embed_queries
from colqwen3.index.page_index import PageIndex, write_index


@dataclass
class Hit:
    """One ranked page for one query."""

    rank: int
    score: float
    page: str


def index_pages(
    model,
    processor,
    pages: list,
    path,
    *,
    model_id: str,
    revision: str = "",
    dtype: str = "bfloat16",
    pool_factor: int = 1,
    batch_size: int = 4,
    device: str = "cpu",
) -> PageIndex:
    """Embed `(name, image)` pages and write them to the index file `path`; returns the opened index."""
    vectors = embed_pages(model, processor, [image for _, image in pages], batch_size=batch_size, device=device)
    names = [name for name, _ in pages]
    write_index(path, vectors, names, model_id, revision, dtype, pool_factor)
    return PageIndex(path)


def check_index_model(index: PageIndex, model_id: str, revision: Optional[str]) -> None:
    """Raise `ValueError` when `index` was built with another model or revision than the one searching it."""
    recorded = (index.metadata["model"], index.metadata["revision"])
    if recorded != (model_id, revision or ""):
        raise ValueError(
            f"--index {index.path} was built with model {recorded[0]!r} revision {recorded[1]!r}, not "
            f"{model_id!r} revision {revision or ''!r}: pass --reindex (with --pages) to rebuild it."
        )


def search_index(
    index: PageIndex, model, processor, queries: list[str], *, top_k: int = 3, batch_size: int = 4, device: str = "cpu"
) -> list[list[Hit]]:
    """The `top_k` best pages of `index` for each query, best first, scored by exact MaxSim."""
    query_vectors = embed_queries(model, processor, queries, batch_size=batch_size, device=device)
    scores, best = index.search(query_vectors, top_k=top_k)
    return [
        [Hit(rank, score, index.names[page]) for rank, (score, page) in enumerate(zip(row_scores, row_pages), start=1)]
        for row_scores, row_pages in zip(scores.tolist(), best.tolist())
    ]


def temporary_index_path() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="colqwen3-index-")) / "index.safetensors"
