# Copyright 2026 The ColQwen3 authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""ColQwen3 scoring (torch only): exact MaxSim over ragged or padded multi-vector embeddings, single-vector pooling."""

from functools import lru_cache
from typing import Optional, Union

import torch
from torch import nn

__all__ = [
    "SINGLE_VECTOR_STRATEGIES",
    "check_batch",
    "pool_single_vector",
    "score_multi_vector",
    "score_padded_block",
]

SINGLE_VECTOR_STRATEGIES = ("mean", "max", "first", "last")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def check_batch(values, name: str, kind, kind_name: str) -> list:
    """`values` as a non-empty list whose items are all `kind`; errors name the argument, the item and its type."""
    if values is None:
        raise ValueError(f"`{name}` is None; pass a list of {kind_name}.")
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"`{name}` must be a list of {kind_name}, got {type(values).__name__}.")
    if len(values) == 0:
        raise ValueError(f"`{name}` is an empty list; pass at least one of {kind_name}.")
    for index, value in enumerate(values):
        if not isinstance(value, kind):
            raise TypeError(f"`{name}[{index}]` must be one of {kind_name}, got {type(value).__name__}.")
    return list(values)


def _check_tensor_list(values, name: str) -> list[torch.Tensor]:
    values = check_batch(values, name, torch.Tensor, "[tokens, dim] tensors")
    for index, value in enumerate(values):
        if value.dim() != 2:
            raise ValueError(f"`{name}[{index}]` must be [tokens, dim], got shape {tuple(value.shape)}.")
    return list(values)


def _unpad(embeddings: torch.Tensor, mask: Optional[torch.Tensor], name: str) -> list[torch.Tensor]:
    """Padded `[batch, tokens, dim]` (+ optional mask) -> one `[real tokens, dim]` tensor per row (a view if it can)."""
    if embeddings.dim() != 3:
        raise ValueError(f"`{name}` must be a [batch, tokens, dim] tensor, got shape {tuple(embeddings.shape)}.")
    if mask is None:
        mask = embeddings.ne(0).any(-1)  # the model writes exact zeros at padding
    elif mask.shape != embeddings.shape[:2]:
        raise ValueError(f"`{name}` mask has shape {tuple(mask.shape)}, expected {tuple(embeddings.shape[:2])}.")
    mask = mask.bool().cpu()
    items = []
    for row, row_mask in zip(embeddings, mask):
        real = torch.nonzero(row_mask).flatten()
        contiguous = len(real) > 0 and real[-1] - real[0] + 1 == len(real)
        items.append(row[real[0] : real[-1] + 1] if contiguous else row[row_mask.to(row.device)])
    return items


def _as_token_list(embeddings, mask: Optional[torch.Tensor], name: str) -> list[torch.Tensor]:
    """Ragged list or padded tensor (+ optional mask) -> one non-empty floating `[tokens, dim]` tensor per item."""
    if isinstance(embeddings, torch.Tensor):
        items = _unpad(embeddings, mask, name)
    else:
        if mask is not None:
            raise ValueError(f"`{name}` is a ragged list: it has no padding, so it takes no mask.")
        items = _check_tensor_list(embeddings, name)
    if not items:
        raise ValueError(f"`{name}` is empty.")
    for index, item in enumerate(items):
        if item.shape[0] == 0:
            raise ValueError(f"`{name}[{index}]` has no real tokens to score (empty, or all padding).")
        if not item.is_floating_point():
            raise TypeError(f"`{name}[{index}]` must be a floating-point tensor, got {item.dtype}.")
    return items


def _raise_on_non_finite(items: list[torch.Tensor], name: str) -> None:
    for index, item in enumerate(items):
        if not torch.isfinite(item).all():
            raise ValueError(f"`{name}[{index}]` contains NaN or infinite values.")


def _query_blocks(queries: list[torch.Tensor], max_tokens: int, dtype: torch.dtype, device: torch.device):
    """Groups of whole queries with at most `max_tokens` tokens (one query may exceed it alone):
    (query indices, their tokens concatenated `[q, d]`, the block-local query owning each token `[q]`)."""
    start = 0
    while start < len(queries):
        end, total = start + 1, queries[start].shape[0]
        while end < len(queries) and total + queries[end].shape[0] <= max_tokens:
            total += queries[end].shape[0]
            end += 1
        lengths = torch.tensor([q.shape[0] for q in queries[start:end]], device=device)
        tokens = torch.cat([q.to(device=device, dtype=dtype) for q in queries[start:end]])
        owner = torch.repeat_interleave(torch.arange(end - start, device=device), lengths)
        yield torch.arange(start, end, device=device), tokens, owner
        start = end


def _page_blocks(pages: list[torch.Tensor], max_pages: int, max_tokens: int, dtype: torch.dtype, device: torch.device):
    """Pages in order of length, in blocks of at most `max_pages` pages and about `max_tokens` padded tokens:
    (page indices, `[b, L, d]` block). Each page is padded to the block's longest page with copies of its own first
    token: a duplicate never changes a max, so no mask or -inf fill is needed, and sorting keeps padding small."""
    lengths = torch.tensor([p.shape[0] for p in pages])
    order = torch.argsort(lengths, stable=True).tolist()
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < max_pages and (end - start + 1) * lengths[order[end]] <= max_tokens:
            end += 1
        ids = order[start:end]
        width = int(lengths[ids[-1]])
        block = torch.empty(len(ids), width, pages[0].shape[-1], dtype=dtype, device=device)
        for row, index in enumerate(ids):
            page = pages[index]
            block[row, : page.shape[0]] = page
            block[row, page.shape[0] :] = page[:1]
        yield torch.tensor(ids, device=device), block
        start = end


@lru_cache(maxsize=None)
def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them a CPU bf16 matrix product is emulated, ~30x slower than float32 (a 4096 x 320
    by 320 x 672 product took 0.91 s in bf16 and 0.03 s in fp32 on an AVX2-only EPYC, torch 2.13)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:  # not Linux: assume no native bf16 and take the float32 path, which is always exact
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _bf16_matmul_is_fast(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and _cpu_has_native_bf16())


def _score_dtypes(queries: list[torch.Tensor], pages: list[torch.Tensor], device) -> tuple[torch.dtype, bool]:
    """(accumulation dtype, whether bf16 pages take the bf16 search pass + fp32 re-score)."""
    score_dtype = torch.float64 if any(t.dtype == torch.float64 for t in queries + pages) else torch.float32
    fast_bf16 = all(t.dtype == torch.bfloat16 for t in pages) and score_dtype == torch.float32
    return score_dtype, fast_bf16 and _bf16_matmul_is_fast(device)


def _best_similarities(query_tokens: torch.Tensor, block: torch.Tensor, fast_bf16: bool) -> torch.Tensor:
    """`[q, b]`: for each query token, its best similarity within each page of `block` (`[b, L, d]`)."""
    if not fast_bf16:
        sims = query_tokens @ block.flatten(0, 1).T  # [q, b * L]
        return sims.view(len(query_tokens), *block.shape[:2]).amax(-1)
    sims = query_tokens.to(torch.bfloat16) @ block.flatten(0, 1).T  # [q, b * L]
    best = sims.view(len(query_tokens), *block.shape[:2]).max(-1).indices  # [q, b]; faster than argmax
    winners = block[torch.arange(block.shape[0], device=block.device), best]  # [q, b, d]
    return torch.einsum("qbd,qd->qb", winners.to(query_tokens.dtype), query_tokens)


def score_padded_block(
    query_tokens: torch.Tensor, query_owner: torch.Tensor, n_queries: int, block: torch.Tensor
) -> torch.Tensor:
    """MaxSim of queries against one block of pages padded by duplication: `[n_queries, b]`.

    `query_tokens` `[q, d]` are the queries' tokens concatenated and `query_owner` `[q]` the query each belongs to;
    `block` `[b, L, d]` holds `b` pages, each padded to `L` rows with copies of its own tokens (a duplicate never
    changes a max, so no mask is needed and the whole block is one matrix product). bfloat16 blocks against float32
    queries take the bf16 search pass + exact float32 re-score of `score_multi_vector`; other dtypes are cast to the
    queries' dtype.
    """
    fast_bf16 = block.dtype == torch.bfloat16 and query_tokens.dtype == torch.float32
    fast_bf16 = fast_bf16 and _bf16_matmul_is_fast(block.device)
    if not fast_bf16 and block.dtype != query_tokens.dtype:
        block = block.to(query_tokens.dtype)
    scores = torch.zeros(n_queries, block.shape[0], dtype=query_tokens.dtype, device=query_tokens.device)
    return scores.index_add_(0, query_owner, _best_similarities(query_tokens, block, fast_bf16))


def score_multi_vector(
    qs: Union[torch.Tensor, list[torch.Tensor]],
    ps: Union[torch.Tensor, list[torch.Tensor]],
    batch_size: int = 128,
    device: Optional[Union[str, torch.device]] = None,
    query_mask: Optional[torch.Tensor] = None,
    page_mask: Optional[torch.Tensor] = None,
    chunk_tokens: int = 4096,
    query_chunk_tokens: int = 2048,
) -> torch.Tensor:
    r"""
    Exact MaxSim late-interaction scores, `[n_queries, n_pages]` float32 on CPU:
    `scores[i, j] = sum over the real tokens q of query i of max over the real tokens p of page j of <q, p>`.

    Args:
        qs, ps: ragged lists of `[tokens, dim]` tensors, or padded `[n, tokens, dim]` tensors. Padding is found
            from `query_mask` / `page_mask` (`[n, tokens]`, true on real tokens) or, without a mask, from all-zero
            rows (what `ColQwen3` writes at padding). Padding never wins a max and adds nothing to a sum.
        batch_size: at most this many pages per block.
        device: where to compute (default: where `ps` lives). Nothing moves to a GPU unless you say so.
        chunk_tokens, query_chunk_tokens: page and query tokens per block; peak extra memory is about
            `chunk_tokens * (query_chunk_tokens + dim) * 4` bytes, whatever the corpus size.

    float32 (and float64) inputs are scored in their precision. bfloat16 pages are scored in two passes: a
    bfloat16 matrix product finds each query token's best page token, then that token is re-scored exactly in
    float32 against the full-precision query; a score can only differ from the float32 score of the same values
    where two page tokens tie to within bfloat16 rounding, and only downwards (measured max 2.6e-3 on scores of ~8
    for 16 queries x 1000 pages, see benchmarks/bench_scoring.py). That pass runs on CUDA and on CPUs with native
    bf16 products (AVX512-BF16, AMX); elsewhere bf16 emulation is ~30x slower than float32, so bf16 pages are upcast
    block by block and scored exactly in float32. float16 pages are upcast to float32.
    """
    for name, value in (
        ("batch_size", batch_size),
        ("chunk_tokens", chunk_tokens),
        ("query_chunk_tokens", query_chunk_tokens),
    ):
        _check_positive_int(name, value)
    queries, pages = _as_token_list(qs, query_mask, "qs"), _as_token_list(ps, page_mask, "ps")
    dims = {item.shape[-1] for item in queries} | {item.shape[-1] for item in pages}
    if len(dims) != 1:
        raise ValueError(f"Query and page embeddings must share one dim, got dims {sorted(dims)}.")
    device = torch.device(device) if device is not None else pages[0].device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device` is {device}, but CUDA is not available.")
    score_dtype, fast_bf16 = _score_dtypes(queries, pages, device)
    block_dtype = torch.bfloat16 if fast_bf16 else score_dtype

    scores = torch.zeros(len(queries), len(pages), dtype=score_dtype, device=device)
    for query_ids, query_tokens, owner in _query_blocks(queries, query_chunk_tokens, score_dtype, device):
        for page_ids, block in _page_blocks(pages, batch_size, chunk_tokens, block_dtype, device):
            # block: [b, L, d], each page padded with copies of its own first token, so no mask is needed.
            per_query = score_padded_block(query_tokens, owner, len(query_ids), block)
            scores[query_ids[:, None], page_ids[None, :]] = per_query
    if not torch.isfinite(scores).all():  # checked once here rather than by an extra pass over the corpus
        _raise_on_non_finite(queries, "qs")
        _raise_on_non_finite(pages, "ps")
    return scores.float().cpu()


def pool_single_vector(
    embeddings: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, strategy: str = "mean"
) -> torch.Tensor:
    """
    One L2-normalised vector per input from ColQwen3's per-token embeddings, for a plain vector index.

    Args:
        embeddings (`torch.Tensor` of shape `(batch_size, sequence_length, embed_dim)`): `ColQwen3(...).embeddings`.
        attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*): 1 on real tokens.
            Without it, real tokens are the non-zero rows (the model writes exact zeros at padding).
        strategy (`str`): over the real tokens only, whatever the padding side:
            `"mean"` (average), `"max"` (per-dimension maximum), `"first"` (the first real token, CLS-style) or
            `"last"` (the last real token, the usual choice for a causal backbone).

    Returns:
        `torch.Tensor` of shape `(batch_size, embed_dim)`, float32, unit norm.
    """
    if strategy not in SINGLE_VECTOR_STRATEGIES:
        raise ValueError(f"`strategy` must be one of {SINGLE_VECTOR_STRATEGIES}, got {strategy!r}.")
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 3:
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"`embeddings` must be a (batch, tokens, dim) tensor, got {shape}.")
    mask = embeddings.ne(0).any(-1) if attention_mask is None else attention_mask.to(embeddings.device).bool()
    if mask.shape != embeddings.shape[:2]:
        raise ValueError(f"`attention_mask` has shape {tuple(mask.shape)}, expected {tuple(embeddings.shape[:2])}.")
    empty = (~mask.any(-1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"Inputs {empty} have no real tokens to pool.")
    vectors = embeddings.float()
    if strategy == "mean":
        pooled = (vectors * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    elif strategy == "max":
        pooled = vectors.masked_fill(~mask[..., None], float("-inf")).amax(1)
    else:
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        if strategy == "first":
            index = positions.masked_fill(~mask, mask.shape[1]).amin(1)
        else:
            index = positions.masked_fill(~mask, -1).amax(1)
        pooled = vectors[torch.arange(len(vectors), device=vectors.device), index]
    return nn.functional.normalize(pooled, dim=-1, eps=1e-12)
