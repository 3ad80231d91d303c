"""Open, inspect and delete page stores by kind: the local folder index, Qdrant's embedded engine, a Qdrant server."""

from pathlib import Path
from typing import Optional

from colqwen3.index.store import IndexSettings, PageStore

__all__ = ["STORE_KINDS", "delete_store", "open_store", "stored_settings"]

STORE_KINDS = ("local", "qdrant-edge", "qdrant")


def _check_kind(kind: str) -> None:
    if kind not in STORE_KINDS:
        raise ValueError(f"store kind must be one of {STORE_KINDS}, got {kind!r}")


def open_store(
    kind: str,
    location,
    settings: Optional[IndexSettings] = None,
    *,
    create: bool = False,
    collection: str = "colqwen3-pages",
    api_key: Optional[str] = None,
) -> PageStore:
    """The store of `kind` at `location` (folder, edge path or server URL); see each store's `open`."""
    _check_kind(kind)
    if kind == "local":
        from colqwen3.index.local import LocalIndex

        return LocalIndex.open(Path(location), settings, create=create)
    from colqwen3.index.qdrant import QdrantEdgeStore, QdrantStore

    if kind == "qdrant-edge":
        return QdrantEdgeStore.open(location, settings, create=create)
    return QdrantStore.open(location, collection, settings, api_key=api_key, create=create)


def stored_settings(kind: str, location, *, collection: str = "colqwen3-pages", api_key: Optional[str] = None):
    """The settings an existing store was built with, or None when there is no store there yet."""
    _check_kind(kind)
    if kind == "local":
        from colqwen3.index.local import MANIFEST, LocalIndex

        folder = Path(location)
        if not (folder / MANIFEST).exists():
            LocalIndex.check_creatable(folder)
            return None
        with LocalIndex.open(folder) as store:
            return store.settings
    from colqwen3.index.qdrant import MissingStoreError

    try:
        with open_store(kind, location, collection=collection, api_key=api_key) as store:
            return store.settings
    except MissingStoreError:
        return None


def delete_store(kind: str, location, *, collection: str = "colqwen3-pages", api_key: Optional[str] = None) -> None:
    """Delete a store (`--reindex`); refuses to touch anything that is not one."""
    _check_kind(kind)
    if kind == "local":
        from colqwen3.index.local import LocalIndex

        return LocalIndex.delete(Path(location))
    from colqwen3.index.qdrant import MissingStoreError, QdrantEdgeStore, QdrantStore

    try:
        if kind == "qdrant-edge":
            QdrantEdgeStore.delete(location)
        else:
            QdrantStore.delete(location, collection, api_key=api_key)
    except MissingStoreError:
        pass  # nothing to delete
