"""The evaluation encoder: queries and pages -> ragged multi-vector embeddings in length-bucketed batches.

Used by the mteb model (`colqwen3.evaluation.mteb_model`), `colqwen3 eval` and the trainer's periodic evaluation.
It needs no mteb.
"""

import sys
import time
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
from PIL import Image

from scoring_colqwen3 import score_multi_vector


@dataclass
class Throughput:
    """Items encoded and the wall time spent on them (model forward, preprocessing and copies)."""

    items: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> Optional[float]:
        return self.items / self.seconds if self.seconds > 0 else None


class RetrievalEncoder:
    """Embeds queries (`process_queries`) and pages (`process_images`) with a loaded ColQwen3 model.

    Inputs are read `batch_size * window_batches` at a time; each window is sorted by token count and cut into batches
    of similar length, so little compute goes to padding, then the embeddings are put back in input order. Memory is
    bounded by one window of inputs plus the embeddings themselves.

    Embeddings come back as a list of `[tokens, dim]` CPU tensors (padding dropped): queries in float32, pages in the
    model's dtype (bf16 on GPU halves the memory of a corpus; `score_multi_vector` scores bf16 pages exactly against
    float32 queries, see its docstring).
    """

    def __init__(self, model, processor, batch_size: int = 8, device=None, window_batches: int = 16):
        for name, value in (("batch_size", batch_size), ("window_batches", window_batches)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        self.model, self.processor = model, processor
        self.batch_size, self.window_batches = batch_size, window_batches
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.queries, self.pages = Throughput(), Throughput()

    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        *,
        revision: Optional[str] = None,
        device: Optional[str] = None,
        max_visual_tokens: Optional[int] = None,
        batch_size: int = 8,
        bf16: Optional[bool] = None,
        attn_implementation: Optional[str] = None,
    ) -> "RetrievalEncoder":
        """Load a checkpoint folder or Hub id: bf16 + FlashAttention 2 on CUDA (sdpa without flash-attn), float32 +
        sdpa on CPU; `max_visual_tokens` sets the page budget (default: the processor's, 1280 for Tomoro)."""
        from transformers import AutoModel, AutoProcessor

        from colqwen3.index.embedding import loading_kwargs

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        loading = loading_kwargs(device.startswith("cuda"), bf16, attn_implementation)
        model = AutoModel.from_pretrained(model_id, revision=revision, trust_remote_code=True, **loading)
        processor = AutoProcessor.from_pretrained(model_id, revision=revision, trust_remote_code=True)
        if max_visual_tokens is not None:
            processor.max_num_visual_tokens = max_visual_tokens
        return cls(model.to(device).eval(), processor, batch_size=batch_size, device=device)

    # ----- lengths -----
    def query_length(self, text: str) -> int:
        return len(self.processor.tokenizer(self.processor.query_prompt(text), add_special_tokens=False)["input_ids"])

    def page_length(self, image: Image.Image) -> int:
        """Visual tokens of a page (text tokens of the page prompt are the same for every page)."""
        width, height = image.size
        columns, rows = self.processor.get_n_patches((max(height, 1), max(width, 1)))
        return columns * rows

    # ----- encoding -----
    def encode_queries(self, texts: Iterable[str], progress: bool = False) -> list[torch.Tensor]:
        """Query strings -> one float32 `[tokens, dim]` tensor each, in input order."""
        return self._encode(texts, self.query_length, self.processor.process_queries, self.queries, "query", progress)

    def encode_pages(self, images: Iterable[Image.Image], progress: bool = False) -> list[torch.Tensor]:
        """Page images -> one `[tokens, dim]` tensor each (the model's dtype), in input order."""
        return self._encode(images, self.page_length, self.processor.process_images, self.pages, "page", progress)

    def score(self, queries: list[torch.Tensor], pages: list[torch.Tensor]) -> torch.Tensor:
        """Exact MaxSim `[n_queries, n_pages]` (float32, CPU), computed on this encoder's device, memory bounded."""
        return score_multi_vector(queries, pages, device=self.device)

    def _encode(self, items, length, prepare, counter: Throughput, unit: str, progress: bool) -> list[torch.Tensor]:
        from tqdm.auto import tqdm

        window_size = self.batch_size * self.window_batches
        embeddings: list[torch.Tensor] = []
        bar = tqdm(
            desc=f"encoding {unit}s" if unit != "query" else "encoding queries",
            unit=unit,
            disable=not progress,
            file=sys.stderr,
        )
        keep_dtype = unit == "page"  # pages stay in the model's dtype; queries (few, short) become float32
        kind, kind_name = (Image.Image, "PIL image") if keep_dtype else (str, "string")
        window: list = []
        for position, item in enumerate(items):
            if not isinstance(item, kind):
                raise TypeError(f"{unit} {position} must be a {kind_name}, got {type(item).__name__}.")
            window.append(item)
            if len(window) == window_size:
                embeddings += self._encode_window(window, length, prepare, counter, bar, keep_dtype)
                window = []
        if window:
            embeddings += self._encode_window(window, length, prepare, counter, bar, keep_dtype)
        bar.close()
        return embeddings

    @torch.inference_mode()
    def _encode_window(self, window: list, length, prepare, counter: Throughput, bar, keep_dtype: bool) -> list:
        start = time.perf_counter()
        order = sorted(range(len(window)), key=lambda index: -length(window[index]))  # longest first: OOM shows early
        out: list[Optional[torch.Tensor]] = [None] * len(window)
        was_training = self.model.training
        self.model.eval()
        try:
            for begin in range(0, len(order), self.batch_size):
                indices = order[begin : begin + self.batch_size]
                batch = prepare([window[index] for index in indices])
                batch = {key: value.to(self.device) for key, value in batch.items()}
                vectors = self.model(**batch).embeddings
                mask = batch["attention_mask"].bool()
                for row, index in enumerate(indices):
                    tokens = vectors[row][mask[row]]
                    out[index] = tokens.cpu() if keep_dtype else tokens.float().cpu()
                bar.update(len(indices))
        finally:
            self.model.train(was_training)
        counter.items += len(window)
        counter.seconds += time.perf_counter() - start
        return out
