"""Page storage and search: documents to page images, page embeddings, compact token storage, page stores.

    discovery = discover(["reports/"])
    embedder = LocalEmbedder(model, processor)
    with LocalIndex.open("my-index", settings, create=True) as store:
        update_index(store, embedder, discovery)
        hits = store.search(embedder.embed_queries(["total due"]), top_k=5)

Names are imported on first use: the page-rendering worker processes import `colqwen3.index.documents`, and must not
pay for torch and transformers.
"""

import importlib

_EXPORTS = {
    "backends": ("STORE_KINDS", "delete_store", "open_store", "stored_settings"),
    "compact": ("COMPACT_DTYPES", "bytes_per_token", "decode_tokens", "encode_tokens", "pool_tokens"),
    "documents": ("Discovery", "Problem", "SourceFile", "discover", "iter_pages", "load_pages", "to_rgb"),
    "embedders": ("LocalEmbedder", "VllmEmbedder"),
    "embedding": ("load_model",),
    "identity": ("model_identity",),
    "indexer": ("IndexingError", "IndexingReport", "update_index"),
    "local": ("STORAGE_DTYPES", "IndexFolderError", "LocalIndex"),
    "qdrant": ("QdrantEdgeStore", "QdrantStore"),
    "store": ("Hit", "IndexSettings", "ModelIdentity", "PageEntry", "PageStore", "SettingsMismatchError"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'colqwen3.index' has no attribute {name!r}")
    return getattr(importlib.import_module(f"colqwen3.index.{_MODULE_OF[name]}"), name)
