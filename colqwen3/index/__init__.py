"""Page storage and search: documents to page images, page embeddings, compact token storage, the on-disk index."""

from colqwen3.index.compact import COMPACT_DTYPES, bytes_per_token, decode_tokens, encode_tokens, pool_tokens
from colqwen3.index.documents import load_pages
from colqwen3.index.embedding import embed_pages, embed_queries, load_model
from colqwen3.index.page_index import STORAGE_DTYPES, PageIndex, write_index

__all__ = [
    "COMPACT_DTYPES",
    "STORAGE_DTYPES",
    "PageIndex",
    "bytes_per_token",
    "decode_tokens",
    "embed_pages",
    "embed_queries",
    "encode_tokens",
    "load_model",
    "load_pages",
    "pool_tokens",
    "write_index",
]
