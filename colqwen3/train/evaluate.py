"""Exact retrieval metrics for a held-out split of (query, page) pairs: each query's relevant page is its own row's.

Used by the trainer's periodic evaluation until the mteb evaluator lands.
"""

import math

import torch

from colqwen3.index.embedding import embed_pages, embed_queries
from scoring_colqwen3 import score_multi_vector


def ndcg_at_k(scores: torch.Tensor, k: int = 5) -> float:
    """Mean nDCG@k with one relevant page per query, the page in the query's own column (ties rank pessimistically)."""
    positives = scores.diagonal()[:, None]
    ranks = (scores > positives).sum(dim=1) + (scores == positives).sum(dim=1)  # 1 = best; ties count against
    gains = [1.0 / math.log2(rank + 1) if rank <= k else 0.0 for rank in ranks.tolist()]
    return sum(gains) / len(gains)


def recall_at_k(scores: torch.Tensor, k: int = 5) -> float:
    positives = scores.diagonal()[:, None]
    ranks = (scores > positives).sum(dim=1) + (scores == positives).sum(dim=1)
    return (ranks <= k).float().mean().item()


@torch.no_grad()
def retrieval_metrics(model, processor, examples, batch_size: int = 8, device=None) -> dict:
    """nDCG@5 and recall@5 of `model` on `examples` (rows with `query` and `image`), all pages as the corpus."""
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        queries = embed_queries(model, processor, [row["query"] for row in examples], batch_size, str(device))
        pages = embed_pages(model, processor, [row["image"] for row in examples], batch_size, str(device))
    finally:
        model.train(was_training)
    scores = score_multi_vector(queries, pages)
    return {"ndcg@5": ndcg_at_k(scores, 5), "recall@5": recall_at_k(scores, 5)}
