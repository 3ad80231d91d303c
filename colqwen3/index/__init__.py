"""Page storage and search: documents to page images, page embeddings, compact token storage, page stores.

discovery = discover(["reports/"])
with LocalIndex.open("my-index", settings, create=True) as store:
    update_index(store, LocalEmbedder(model, processor), discovery)
    hits = store.search(LocalEmbedder(model, processor).embed_queries(["total due"]), top_k=5)
"""

from colqwen3.index.backends import STORE_KINDS, delete_store, open_store, stored_settings
from colqwen3.index.compact import COMPACT_DTYPES, bytes_per_token, decode_tokens, encode_tokens, pool_tokens
from colqwen3.index.embedders import LocalEmbedder, VllmEmbedder
from colqwen3.index.embedding import embed_pages, embed_queries, load_model
from colqwen3.index.identity import model_identity
from colqwen3.index.local import STORAGE_DTYPES, LocalIndex
from colqwen3.index.store import Hit, IndexSettings, ModelIdentity, PageEntry, PageStore

__all__ = [
    "COMPACT_DTYPES",
    "STORAGE_DTYPES",
    "STORE_KINDS",
    "Hit",
    "IndexSettings",
    "LocalEmbedder",
    "LocalIndex",
    "ModelIdentity",
    "PageEntry",
    "PageStore",
    "VllmEmbedder",
    "bytes_per_token",
    "decode_tokens",
    "delete_store",
    "embed_pages",
    "embed_queries",
    "encode_tokens",
    "load_model",
    "model_identity",
    "open_store",
    "pool_tokens",
    "stored_settings",
]
