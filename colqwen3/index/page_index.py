"""A page index on disk: every page's multi-vector embedding in one safetensors file, searched chunk by chunk.

Layout of `index.safetensors` (a standard safetensors file; any safetensors reader opens it):
- `tokens.*`: all pages' token vectors stacked, `[total tokens, dim]` (`tokens.data`, plus `tokens.scale` for int8);
  page `i` is rows `offsets[i]:offsets[i + 1]`;
- `offsets`: int64 `[n_pages + 1]`;
- header metadata (strings): `format` (`colqwen3-page-index/1`), `model`, `revision`, `embed_dim`, `dtype`,
  `pool_factor`, `n_pages`, and `names` (a JSON list of page names).

Search memory-maps the file and scores `chunk_pages` pages at a time with `scoring_colqwen3.score_multi_vector`,
keeping a running top-k per query, so memory does not grow with the corpus and nothing is padded to one tensor.
"""

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from colqwen3.index.compact import COMPACT_DTYPES, decode_tokens, encode_tokens, pool_tokens
from scoring_colqwen3 import score_multi_vector

__all__ = ["FORMAT", "STORAGE_DTYPES", "PageIndex", "write_index"]

FORMAT = "colqwen3-page-index/1"
STORAGE_DTYPES = COMPACT_DTYPES
_FLOAT_DTYPES = ("float32", "bfloat16", "float16")


def _decode(payload: dict[str, torch.Tensor], dtype: str) -> torch.Tensor:
    if dtype in _FLOAT_DTYPES:
        return payload["data"]  # bfloat16 stays bfloat16: the scorer's fast path
    return decode_tokens(payload, dtype)


def write_index(
    path,
    vectors: list[torch.Tensor],
    names: list[str],
    model: str,
    revision: str = "",
    dtype: str = "bfloat16",
    pool_factor: int = 1,
) -> Path:
    """Write pages' `[tokens, dim]` embeddings (padding already removed) to `path` (see the module docstring)."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"`dtype` must be one of {STORAGE_DTYPES}, got {dtype!r}.")
    if len(vectors) != len(names) or not vectors:
        raise ValueError(f"Need one name per page and at least one page, got {len(vectors)} pages, {len(names)} names.")
    dims = {v.shape[-1] for v in vectors}
    if len(dims) != 1 or any(v.dim() != 2 or v.shape[0] == 0 for v in vectors):
        raise ValueError(f"Pages must be non-empty [tokens, dim] tensors of one dim, got dims {sorted(dims)}.")
    if pool_factor != 1:
        vectors = [pool_tokens(v, pool_factor) for v in vectors]
    lengths = torch.tensor([0] + [v.shape[0] for v in vectors])
    tensors = {
        f"tokens.{key}": value for key, value in encode_tokens(torch.cat([v.float() for v in vectors]), dtype).items()
    }
    tensors["offsets"] = torch.cumsum(lengths, 0)
    metadata = {
        "format": FORMAT,
        "model": str(model),
        "revision": str(revision),
        "embed_dim": str(dims.pop()),
        "dtype": dtype,
        "pool_factor": str(pool_factor),
        "n_pages": str(len(vectors)),
        "names": json.dumps(list(names)),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


class PageIndex:
    """A read-only, memory-mapped page index written by `write_index`."""

    def __init__(self, path):
        self.path = Path(path)
        self._file = safe_open(str(self.path), framework="pt")
        self.metadata = self._file.metadata() or {}
        if self.metadata.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a ColQwen3 page index (format {self.metadata.get('format')!r}).")
        self.names = json.loads(self.metadata["names"])
        self.dtype = self.metadata["dtype"]
        self.embed_dim = int(self.metadata["embed_dim"])
        self.offsets = self._file.get_tensor("offsets")
        self._keys = [key for key in self._file.keys() if key.startswith("tokens.")]

    def __len__(self) -> int:
        return len(self.names)

    def pages(self, start: int, end: int) -> list[torch.Tensor]:
        """Pages `start:end` as `[tokens, dim]` tensors (read from disk now; only these rows)."""
        first, last = int(self.offsets[start]), int(self.offsets[end])
        payload = {key.removeprefix("tokens."): self._file.get_slice(key)[first:last] for key in self._keys}
        tokens = _decode(payload, self.dtype)
        return [
            tokens[int(a) - first : int(b) - first]
            for a, b in zip(self.offsets[start:end], self.offsets[start + 1 : end + 1])
        ]

    def search(self, queries: list[torch.Tensor], top_k: int = 10, chunk_pages: int = 256, device=None):
        """Top-k pages per query: `(scores [n_queries, k], page indices [n_queries, k])`, best first."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"`top_k` must be a positive integer, got {top_k!r}.")
        if isinstance(chunk_pages, bool) or not isinstance(chunk_pages, int) or chunk_pages < 1:
            raise ValueError(f"`chunk_pages` must be a positive integer, got {chunk_pages!r}.")
        dims = {q.shape[-1] for q in queries}
        if dims != {self.embed_dim}:
            raise ValueError(f"Query dim(s) {sorted(dims)} do not match the index's embed_dim {self.embed_dim}.")
        k = min(top_k, len(self))
        best_scores = torch.full((len(queries), 0), float("-inf"))
        best_pages = torch.zeros((len(queries), 0), dtype=torch.long)
        for start in range(0, len(self), chunk_pages):
            end = min(start + chunk_pages, len(self))
            scores = score_multi_vector(queries, self.pages(start, end), device=device)
            best_scores = torch.cat([best_scores, scores], 1)
            best_pages = torch.cat([best_pages, torch.arange(start, end).expand(len(queries), -1)], 1)
            best_scores, order = best_scores.topk(min(k, best_scores.shape[1]), dim=1)
            best_pages = best_pages.gather(1, order)
        return best_scores, best_pages
