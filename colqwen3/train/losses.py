"""Late-interaction training losses on masked MaxSim, accumulated in float32.

Notation, for a batch of queries `q` (`[n_q, L_q, d]`, mask `m_q`) and pages `p` (`[n_p, L_p, d]`, mask `m_p`):

    S[a, b] = sum_{i: m_q[a, i]} max_{j: m_p[b, j]} <q[a, i], p[b, j]>            (MaxSim over real tokens only)

A padded page token never wins a max (it is excluded, not zeroed: with every real similarity negative a zero would
win), a padded query token adds nothing; the same semantics as `scoring_colqwen3.score_multi_vector`. With
`normalize=True`, `S[a, b]` is divided by `n_a`, the number of real tokens of query `a` (augmentation included).
Query `a`'s positive page is column `t_a` (its own page; with several processes, offset by the pages before this
process's, see `gather_pages`).
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = [
    "contrastive_loss",
    "gather_pages",
    "hard_negative_loss",
    "infonce_loss",
    "masked_maxsim",
    "paired_maxsim",
    "pairwise_softplus_loss",
]


def _check_padded(embeddings: torch.Tensor, mask: torch.Tensor, name: str) -> None:
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 3:
        got = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"`{name}` must be a [batch, tokens, dim] tensor, got {got}.")
    if mask is None or tuple(mask.shape) != tuple(embeddings.shape[:2]):
        got = None if mask is None else tuple(mask.shape)
        raise ValueError(f"`{name}` mask must have shape {tuple(embeddings.shape[:2])}, got {got}.")
    empty = (~mask.bool().any(-1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"`{name}` rows {empty} have no real tokens.")


def _reduce(sims: torch.Tensor, query_mask: torch.Tensor, page_mask: torch.Tensor, normalize: bool) -> torch.Tensor:
    """`sims` `[n_q, X, L_q, L_p]` and `page_mask` `[1 or n_q, X, L_p]` -> MaxSim scores `[n_q, X]`."""
    best = sims.masked_fill(~page_mask[:, :, None, :], float("-inf")).amax(dim=-1)  # [n_q, X, L_q]; every page is real
    scores = best.masked_fill(~query_mask[:, None, :], 0.0).sum(dim=-1)  # masked_fill, not a multiply: -inf * 0
    if normalize:
        scores = scores / query_mask.sum(dim=-1, keepdim=True).float()
    return scores


def masked_maxsim(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    pages: torch.Tensor,
    page_mask: torch.Tensor,
    normalize: bool = False,
) -> torch.Tensor:
    """`S` of the module docstring: `[n_q, n_p]` float32 scores, differentiable in both inputs."""
    _check_padded(queries, query_mask, "queries")
    _check_padded(pages, page_mask, "pages")
    if queries.shape[-1] != pages.shape[-1]:
        raise ValueError(f"queries have dim {queries.shape[-1]} but pages have dim {pages.shape[-1]}.")
    sims = torch.einsum("aid,bjd->abij", queries.float(), pages.float())  # [n_q, n_p, L_q, L_p]
    return _reduce(sims, query_mask.bool(), page_mask.to(pages.device).bool()[None], normalize)


def paired_maxsim(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    pages: torch.Tensor,
    page_mask: torch.Tensor,
    n_per_query: int,
    normalize: bool = False,
) -> torch.Tensor:
    """`H[a, n]`: MaxSim of query `a` with page `a * n_per_query + n` only (its own hard negatives), `[n_q, N]`."""
    _check_padded(queries, query_mask, "queries")
    _check_padded(pages, page_mask, "negative pages")
    n_q = queries.shape[0]
    pages = pages.view(n_q, n_per_query, *pages.shape[1:])  # [n_q, N, L_p, d]
    page_mask = page_mask.to(pages.device).bool().view(n_q, n_per_query, -1)  # [n_q, N, L_p]
    sims = torch.einsum("aid,anjd->anij", queries.float(), pages.float())  # [n_q, N, L_q, L_p]
    return _reduce(sims, query_mask.bool(), page_mask, normalize)


def _targets(n_queries: int, offset: int, n_pages: int, device) -> torch.Tensor:
    if offset < 0 or offset + n_queries > n_pages:
        raise ValueError(f"positives {offset}..{offset + n_queries - 1} fall outside the {n_pages} pages.")
    return torch.arange(offset, offset + n_queries, device=device)


def infonce_loss(scores: torch.Tensor, temperature: float = 0.02, positive_offset: int = 0) -> torch.Tensor:
    """InfoNCE over in-batch negatives: `mean_a [ -S[a, t_a] / tau + log sum_b exp(S[a, b] / tau) ]`.

    `scores` is `masked_maxsim(...)` (`[n_q, n_p]`, `n_p >= n_q`), `t_a = positive_offset + a`. Identical embeddings
    everywhere give `log(n_p)`.
    """
    _check_temperature(temperature)
    targets = _targets(scores.shape[0], positive_offset, scores.shape[1], scores.device)
    return F.cross_entropy(scores.float() / temperature, targets)


def pairwise_softplus_loss(scores: torch.Tensor, temperature: float = 1.0, positive_offset: int = 0) -> torch.Tensor:
    """Pairwise loss against the hardest in-batch negative:

        mean_a softplus((max_{b != t_a} S[a, b] - S[a, t_a]) / tau)


    Identical embeddings give `ln 2`. Needs at least two pages.
    """
    _check_temperature(temperature)
    if scores.shape[1] < 2:
        raise ValueError("the pairwise loss needs at least two pages (a positive and a negative).")
    targets = _targets(scores.shape[0], positive_offset, scores.shape[1], scores.device)
    positives = scores.gather(1, targets[:, None]).squeeze(1)
    is_positive = F.one_hot(targets, scores.shape[1]).bool()
    hardest = scores.masked_fill(is_positive, float("-inf")).amax(dim=1)
    return F.softplus((hardest - positives).float() / temperature).mean()


def hard_negative_loss(
    scores: torch.Tensor,
    negative_scores: torch.Tensor,
    temperature: float = 0.02,
    pairwise_temperature: float = 1.0,
    weight: float = 0.5,
    positive_offset: int = 0,
) -> torch.Tensor:
    """Explicit hard negatives mixed with in-batch InfoNCE:

        (1 - w) * InfoNCE(S, tau) + w * mean_a mean_n softplus((H[a, n] - S[a, t_a]) / tau_pair)

    where `H[a, n]` (`negative_scores`, `[n_q, N]`) is the MaxSim of query `a` with its own `n`-th hard negative page.
    """
    _check_temperature(pairwise_temperature)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"`weight` must be in [0, 1], got {weight!r}.")
    if negative_scores.dim() != 2 or negative_scores.shape[0] != scores.shape[0]:
        raise ValueError(
            f"`negative_scores` must be [{scores.shape[0]}, N] (one row per query), got {tuple(negative_scores.shape)}."
        )
    in_batch = infonce_loss(scores, temperature, positive_offset)
    targets = _targets(scores.shape[0], positive_offset, scores.shape[1], scores.device)
    positives = scores.gather(1, targets[:, None]).float()
    hard = F.softplus((negative_scores.float() - positives) / pairwise_temperature).mean()
    return (1.0 - weight) * in_batch + weight * hard


def _check_temperature(temperature: float) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"a temperature must be a positive number, got {temperature!r}.")
    if not math.isfinite(temperature):
        raise ValueError(f"a temperature must be finite, got {temperature!r}.")


def gather_pages(pages: torch.Tensor, page_mask: torch.Tensor, group=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every process's pages, with gradients flowing back to the process that made them.

    Returns `(pages [sum of batches, L_max, d], mask, offset)` where `offset` is the number of pages of the processes
    before this one: this process's query `a` has its positive at column `offset + a`. Without an initialised process
    group this is the identity (offset 0). Batches and page lengths may differ between processes (pages are padded to
    the longest, with the padding masked out). Call it on every micro-step: each micro-step's loss then sees all
    processes' pages of that micro-step, also under gradient accumulation.
    """
    distributed = torch.distributed
    if not (distributed.is_available() and distributed.is_initialized()):
        return pages, page_mask, 0
    from torch.distributed.nn.functional import all_gather  # autograd-aware: backward sums gradients to the source

    rank, world = distributed.get_rank(group), distributed.get_world_size(group)
    shape = torch.tensor([pages.shape[0], pages.shape[1]], device=pages.device)
    shapes = [torch.zeros_like(shape) for _ in range(world)]
    distributed.all_gather(shapes, shape, group=group)
    batches, lengths = [int(s[0]) for s in shapes], [int(s[1]) for s in shapes]
    max_batch, max_length = max(batches), max(lengths)
    padded = F.pad(pages, (0, 0, 0, max_length - pages.shape[1], 0, max_batch - pages.shape[0]))
    mask = F.pad(page_mask.bool(), (0, max_length - pages.shape[1], 0, max_batch - pages.shape[0]))
    gathered = all_gather(padded, group=group)
    masks = [torch.zeros_like(mask) for _ in range(world)]
    distributed.all_gather(masks, mask, group=group)
    all_pages = torch.cat([chunk[:n] for chunk, n in zip(gathered, batches)])
    all_masks = torch.cat([chunk[:n] for chunk, n in zip(masks, batches)])
    return all_pages, all_masks, sum(batches[:rank])


def contrastive_loss(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    pages: torch.Tensor,
    page_mask: torch.Tensor,
    *,
    loss: str = "infonce",
    temperature: float = 0.02,
    pairwise_temperature: float = 1.0,
    normalize: bool = True,
    negatives: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    negative_weight: float = 0.5,
) -> torch.Tensor:
    """The training loss of one (micro-)batch: pages gathered from every process, then `loss`.

    `loss` is "infonce", "pairwise" or "hard-negatives" (then `negatives = (pages [n_q * N, L, d], mask)`, the N hard
    negatives of each query in query order).
    """
    all_pages, all_mask, offset = gather_pages(pages, page_mask)
    scores = masked_maxsim(queries, query_mask, all_pages, all_mask, normalize=normalize)
    if loss == "infonce":
        return infonce_loss(scores, temperature, offset)
    if loss == "pairwise":
        return pairwise_softplus_loss(scores, pairwise_temperature, offset)
    if loss == "hard-negatives":
        if negatives is None:
            raise ValueError("loss 'hard-negatives' needs `negatives` (the hard negative pages and their mask).")
        negative_pages, negative_mask = negatives
        n_per_query = negative_pages.shape[0] // queries.shape[0]
        if n_per_query < 1 or n_per_query * queries.shape[0] != negative_pages.shape[0]:
            raise ValueError(
                f"{negative_pages.shape[0]} hard negative pages for {queries.shape[0]} queries: need N per query."
            )
        negative_scores = paired_maxsim(
            queries, query_mask, negative_pages, negative_mask, n_per_query=n_per_query, normalize=normalize
        )
        return hard_negative_loss(scores, negative_scores, temperature, pairwise_temperature, negative_weight, offset)
    raise ValueError(f"`loss` must be 'infonce', 'pairwise' or 'hard-negatives', got {loss!r}.")
