"""What every page store offers the indexer and the search command: the local folder index and the Qdrant stores.

A store holds, per page, its token vectors and a `PageEntry` (key, source file, page number, file hash), plus the
`IndexSettings` it was built with. The indexer only ever calls `add` (durable when it returns), `remove`,
`set_complete` and `entries`; search calls `search`. Stores never embed anything themselves.
"""

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:  # torch is imported where it is used: page-rendering workers import this module
    import torch

__all__ = [
    "Hit",
    "IndexSettings",
    "ModelIdentity",
    "PageEntry",
    "PageStore",
    "SettingsMismatchError",
    "check_new_pages",
    "check_queries",
    "rank_hits",
]


@dataclass(frozen=True)
class PageEntry:
    """One stored page. `key` is unique in a store: `source` for a single-page image, `source#page=N` otherwise."""

    key: str
    source: str  # the file's path relative to the indexed root, POSIX separators
    page: int  # 1-based page (PDF) or frame (TIFF) number
    file_sha256: str  # hash of the whole source file: a changed file re-embeds all its pages

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> "PageEntry":
        return cls(
            key=str(row["key"]), source=str(row["source"]), page=int(row["page"]), file_sha256=str(row["file_sha256"])
        )


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights embedded the pages: a content fingerprint (config + weights, or the Hub commit), and where from.

    Two identities match when their fingerprints do; `location` (the resolved path or Hub id) is only shown to users.
    """

    fingerprint: str
    location: str

    def matches(self, other: "ModelIdentity") -> bool:
        return self.fingerprint == other.fingerprint


@dataclass(frozen=True)
class IndexSettings:
    """Everything that changes the stored vectors: a store refuses pages embedded under other settings."""

    model: ModelIdentity
    embed_dim: int
    dtype: str = "bfloat16"
    pool_factor: int = 1
    pdf_dpi: int = 110
    max_visual_tokens: Optional[int] = None
    extra: dict = field(default_factory=dict)  # backend-specific settings (e.g. Qdrant's first-stage vector)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, row: dict) -> "IndexSettings":
        row = dict(row)
        row["model"] = ModelIdentity(**row["model"])
        return cls(**row)

    def differences(self, other: "IndexSettings") -> list[str]:
        """Human-readable `name: stored -> requested` lines for every setting that differs (empty when compatible)."""
        lines = []
        if not self.model.matches(other.model):
            lines.append(
                f"model: {self.model.location} ({self.model.fingerprint[:12]}) -> "
                f"{other.model.location} ({other.model.fingerprint[:12]})"
            )
        for name in ("embed_dim", "dtype", "pool_factor", "pdf_dpi", "max_visual_tokens", "extra"):
            if getattr(self, name) != getattr(other, name):
                lines.append(f"{name}: {getattr(self, name)!r} -> {getattr(other, name)!r}")
        return lines


class SettingsMismatchError(ValueError):
    """Raised when a store built under some settings is asked to take pages embedded under others."""


@dataclass(frozen=True)
class Hit:
    """One ranked page for one query."""

    rank: int
    score: float
    page: str  # the page key


def check_queries(queries, embed_dim: int) -> "list[torch.Tensor]":
    """`queries` as a non-empty list of finite `[tokens, embed_dim]` tensors; errors name the offending query."""
    import torch

    if not isinstance(queries, (list, tuple)) or not queries:
        raise ValueError(f"queries must be a non-empty list of [tokens, {embed_dim}] tensors, got {queries!r:.80}")
    for position, query in enumerate(queries):
        if not isinstance(query, torch.Tensor) or query.ndim != 2 or query.shape[0] == 0:
            got = tuple(query.shape) if isinstance(query, torch.Tensor) else type(query).__name__
            raise ValueError(f"query {position} must be a non-empty [tokens, {embed_dim}] tensor, got {got}")
        if query.shape[1] != embed_dim:
            raise ValueError(f"query {position} has dim {query.shape[1]}, the index stores dim {embed_dim}")
        if not torch.isfinite(query).all():
            raise ValueError(f"query {position} contains NaN or infinite values")
    return list(queries)


def check_new_pages(entries, vectors, embed_dim: int) -> "list[torch.Tensor]":
    """`vectors` as detached CPU tensors after checking what every store's `add` needs: one `PageEntry` per page,
    keys unique within the call, non-empty finite `[tokens, embed_dim]` tensors. Errors name the page."""
    import torch

    if not isinstance(entries, (list, tuple)) or not isinstance(vectors, (list, tuple)):
        raise TypeError(f"entries and vectors must be lists, got {type(entries).__name__}, {type(vectors).__name__}")
    if len(entries) != len(vectors) or not entries:
        raise ValueError(f"need one entry per page and at least one page, got {len(entries)} and {len(vectors)}")
    seen = set()
    for entry, vector in zip(entries, vectors):
        if not isinstance(entry, PageEntry):
            raise TypeError(f"entries must be PageEntry objects, got {type(entry).__name__}")
        if entry.key in seen:
            raise ValueError(f"page {entry.key!r} appears twice in one add")
        seen.add(entry.key)
        if not isinstance(vector, torch.Tensor) or vector.ndim != 2 or vector.shape[0] == 0:
            got = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__
            raise ValueError(f"page {entry.key!r}: vectors must be a non-empty [tokens, dim] tensor, got {got}")
        if vector.shape[1] != embed_dim:
            raise ValueError(f"page {entry.key!r} has dim {vector.shape[1]}, the store holds dim {embed_dim}")
        if not torch.isfinite(vector).all():
            raise ValueError(f"page {entry.key!r} has NaN or infinite values")
    return [vector.detach().cpu() for vector in vectors]


class PageStore(ABC):
    """A place that keeps page token vectors and searches them by exact (or two-stage) MaxSim."""

    settings: IndexSettings

    @abstractmethod
    def entries(self) -> dict[str, PageEntry]:
        """Every live page, by key."""

    @abstractmethod
    def add(self, entries: list[PageEntry], vectors: "list[torch.Tensor]") -> None:
        """Store pages (`[tokens, embed_dim]` each, padding already dropped; keys not yet live). Durable on return:
        a process killed afterwards keeps them, one killed before leaves the store as it was."""

    @abstractmethod
    def remove(self, keys: Iterable[str]) -> None:
        """Drop pages by key (unknown keys are an error); durable on return."""

    @abstractmethod
    def search(self, queries: "list[torch.Tensor]", top_k: int = 10) -> list[list[Hit]]:
        """The `top_k` best pages per query, best first; ties broken by page key."""

    @property
    @abstractmethod
    def complete(self) -> bool:
        """False while an indexing run that changes the store has not finished (interrupted runs leave it False)."""

    @abstractmethod
    def set_complete(self, complete: bool) -> None:
        """Mark the start (False) and the successful end (True) of an indexing run; durable on return."""

    def close(self) -> None:  # noqa: B027 -- optional hook: stores without open resources need not override it
        """Release files and connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self) -> int:
        return len(self.entries())


def rank_hits(scores: "torch.Tensor", keys: list[str], top_k: int) -> list[list[Hit]]:
    """`[n_queries, n_pages]` scores -> the `top_k` best `Hit`s per query, ordered by score then key (ties included
    exactly: every page scoring at least the k-th best score competes on its key)."""
    import torch

    k = min(top_k, len(keys))
    hits = []
    for row in scores.double():
        threshold = row.topk(k).values[-1]
        candidates = torch.nonzero(row >= threshold).flatten().tolist()
        best = sorted(candidates, key=lambda column: (-float(row[column]), keys[column]))[:k]
        hits.append([Hit(rank, float(row[column]), keys[column]) for rank, column in enumerate(best, start=1)])
    return hits
