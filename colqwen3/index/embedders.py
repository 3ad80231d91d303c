"""Where page and query vectors come from while indexing: a model loaded in this process, or a running vLLM server.

Both take a list of RGB page images (one window of the indexing stream) and return one `[tokens, dim]` CPU tensor per
image, padding dropped, in input order.
"""

from typing import Protocol

import torch
from PIL import Image

__all__ = ["LocalEmbedder", "PageEmbedder", "VllmEmbedder"]


class PageEmbedder(Protocol):
    embed_dim: int

    def embed_pages(self, images: list[Image.Image]) -> list[torch.Tensor]: ...

    def embed_queries(self, queries: list[str]) -> list[torch.Tensor]: ...


class LocalEmbedder:
    """A loaded ColQwen3 model: each window is sorted by token count and cut into batches of similar length."""

    def __init__(self, model, processor, batch_size: int = 4, device=None):
        from colqwen3.evaluation.encoder import RetrievalEncoder

        self.encoder = RetrievalEncoder(model, processor, batch_size=batch_size, device=device)
        self.embed_dim = int(model.config.embed_dim)

    def embed_pages(self, images: list[Image.Image]) -> list[torch.Tensor]:
        return self.encoder.encode_pages(images)

    def embed_queries(self, queries: list[str]) -> list[torch.Tensor]:
        return self.encoder.encode_queries(queries)


class VllmEmbedder:
    """A vLLM server running the same checkpoint (native route, `/pooling`). Pages go out as `concurrency` requests in
    flight, so the server batches them and vLLM's data parallelism spreads them over its GPUs."""

    def __init__(self, base_url: str, served_model: str, processor, embed_dim: int, concurrency: int = 16):
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.base_url, self.served_model, self.processor = base_url, served_model, processor
        self.embed_dim, self.concurrency = embed_dim, concurrency

    def _map(self, function, items: list) -> list:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(self.concurrency, len(items)) or 1) as pool:
            return list(pool.map(function, items))  # results in input order

    def embed_pages(self, images: list[Image.Image]) -> list[torch.Tensor]:
        from colqwen3.serving.client import embed_pages

        return self._map(
            lambda image: embed_pages(self.base_url, self.served_model, self.processor, [image])[0], images
        )

    def embed_queries(self, queries: list[str]) -> list[torch.Tensor]:
        from colqwen3.serving.client import embed_queries

        return self._map(
            lambda query: embed_queries(self.base_url, self.served_model, self.processor, [query])[0], queries
        )
