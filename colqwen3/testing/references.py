"""Independent reference computations that tests and benchmarks check the fast code against.

Written for clarity, not speed: float64, one pair at a time, no shared code with `scoring_colqwen3`.
"""

import math
from typing import Optional

import torch


def maxsim_float64(queries: list[torch.Tensor], pages: list[torch.Tensor]) -> torch.Tensor:
    """MaxSim by its definition, one (query, page) pair at a time in float64: `[n_queries, n_pages]` float64."""
    scores = torch.zeros(len(queries), len(pages), dtype=torch.float64)
    for i, query in enumerate(queries):
        for j, page in enumerate(pages):
            scores[i, j] = (query.double() @ page.double().T).max(dim=1).values.sum()
    return scores


def random_unit_vectors(lengths, dim: int = 16, seed: int = 0, sign: Optional[int] = None) -> list[torch.Tensor]:
    """One `[n, dim]` float32 tensor of unit vectors per entry of `lengths`, seeded.

    `sign=+1` / `-1` makes every component positive / negative, so similarities across the two signs are all < 0.
    """
    generator = torch.Generator().manual_seed(seed)
    vectors = [torch.randn(n, dim, generator=generator) for n in lengths]
    if sign is not None:
        vectors = [sign * v.abs() for v in vectors]
    return [torch.nn.functional.normalize(v, dim=-1) for v in vectors]


def pad(items: list[torch.Tensor], side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad `[n_i, dim]` tensors to `[len(items), max n_i, dim]` on `side`: (padded, bool mask of real rows)."""
    if side not in ("left", "right"):
        raise ValueError(f"`side` must be 'left' or 'right', got {side!r}.")
    width = max(item.shape[0] for item in items)
    padded = torch.zeros(len(items), width, items[0].shape[1], dtype=items[0].dtype)
    mask = torch.zeros(len(items), width, dtype=torch.bool)
    for row, item in enumerate(items):
        span = slice(width - item.shape[0], width) if side == "left" else slice(0, item.shape[0])
        padded[row, span], mask[row, span] = item, True
    return padded, mask


def pool_single_vector_float64(tokens: torch.Tensor, strategy: str) -> torch.Tensor:
    """Single-vector pooling by its definition on one input's real tokens `[n, d]`: unit float64 `[d]`."""
    tokens = tokens.double()
    vector = {
        "mean": lambda: tokens.mean(0),
        "max": lambda: tokens.max(0).values,
        "first": lambda: tokens[0],
        "last": lambda: tokens[-1],
    }[strategy]()
    return vector / vector.norm()


def infonce_float64(scores: torch.Tensor, temperature: float, offset: int = 0) -> float:
    """InfoNCE by its definition, one query at a time in float64 (log-sum-exp written out)."""
    total = 0.0
    for a, row in enumerate(scores.double().tolist()):
        logits = [value / temperature for value in row]
        top = max(logits)
        total += -logits[offset + a] + top + math.log(sum(math.exp(v - top) for v in logits))
    return total / scores.shape[0]


def pairwise_softplus_float64(scores: torch.Tensor, temperature: float, offset: int = 0) -> float:
    """Softplus against the hardest in-batch negative, one query at a time in float64."""
    total = 0.0
    for a, row in enumerate(scores.double().tolist()):
        positive = row[offset + a]
        hardest = max(value for b, value in enumerate(row) if b != offset + a)
        total += _softplus((hardest - positive) / temperature)
    return total / scores.shape[0]


def hard_negative_float64(scores, negative_scores, temperature, pairwise_temperature, weight, offset=0) -> float:
    """(1 - w) * InfoNCE + w * mean softplus((hard negative - positive) / tau_pair), in float64."""
    terms = []
    for a, row in enumerate(negative_scores.double().tolist()):
        positive = float(scores[a, offset + a])
        terms += [_softplus((value - positive) / pairwise_temperature) for value in row]
    return (1 - weight) * infonce_float64(scores, temperature, offset) + weight * sum(terms) / len(terms)


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _trec_ranking(run: dict) -> list:
    """trec_eval's order: score descending, ties broken by document id descending."""
    return [doc for doc, _ in sorted(run.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def ndcg_float64(run: dict, judged: dict, k: int) -> float:
    """trec_eval's nDCG@k of one query: linear gain (the grade), log2(rank + 1) discount, ideal from all grades."""
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(_trec_ranking(run)[:k]))
    ideal = sorted((grade for grade in judged.values() if grade > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    return dcg / idcg


def recall_float64(run: dict, judged: dict, k: int) -> float:
    relevant = {doc for doc, grade in judged.items() if grade > 0}
    return len(relevant & set(_trec_ranking(run)[:k])) / len(relevant)


def mrr_float64(run: dict, judged: dict, k: int) -> float:
    for rank, doc in enumerate(_trec_ranking(run)[:k]):
        if judged.get(doc, 0) > 0:
            return 1.0 / (rank + 1)
    return 0.0


def retrieval_metrics_float64(runs: dict, qrels: dict, ks=(1, 5, 10)) -> dict:
    """Mean nDCG@k, recall@k and MRR@k over the queries with a relevant page, named as mteb names them."""
    queries = [q for q in runs if any(grade > 0 for grade in qrels.get(q, {}).values())]
    metrics = {}
    for k in ks:
        for name, metric in (("ndcg", ndcg_float64), ("recall", recall_float64), ("mrr", mrr_float64)):
            metrics[f"{name}_at_{k}"] = sum(metric(runs[q], qrels[q], k) for q in queries) / len(queries)
    return metrics


# ----- the model: a stock Qwen3-VL forward plus the linear head -----
def stock_qwen3vl(model):
    """A stock Qwen3VLModel built from a plain Qwen3VLConfig and given `model`'s backbone weights (strict)."""
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    config = model.config
    plain = Qwen3VLConfig(
        text_config=config.text_config.to_dict(),
        vision_config=config.vision_config.to_dict(),
        image_token_id=config.image_token_id,
        video_token_id=config.video_token_id,
        vision_start_token_id=config.vision_start_token_id,
        vision_end_token_id=config.vision_end_token_id,
    )
    reference = Qwen3VLModel(plain).eval()
    prefix = "vlm.model."
    state = {k[len(prefix) :]: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    reference.load_state_dict(state, strict=True)
    return reference


def stock_embeddings(reference, head, batch, index):
    """Sample `index` of a processor batch, unpadded, through stock Qwen3-VL + linear + normalise (no ColQwen3 code)."""
    from modeling_colqwen3 import _INNER_TAKES_MM_TOKEN_TYPES

    keep = batch["attention_mask"][index].bool()
    inputs = {"input_ids": batch["input_ids"][index][keep][None], "attention_mask": torch.ones(1, int(keep.sum()))}
    if "pixel_values" in batch:
        patches = (batch["image_grid_thw"].prod(-1)).tolist()
        start = sum(patches[:index])
        inputs["pixel_values"] = batch["pixel_values"][start : start + patches[index]]
        inputs["image_grid_thw"] = batch["image_grid_thw"][index : index + 1]
    if _INNER_TAKES_MM_TOKEN_TYPES:
        inputs["mm_token_type_ids"] = batch["mm_token_type_ids"][index][keep][None]
    with torch.no_grad():
        hidden = reference(**inputs).last_hidden_state[0]
        projected = torch.nn.functional.linear(hidden, head.weight, head.bias)
    return projected / projected.norm(dim=-1, keepdim=True)
