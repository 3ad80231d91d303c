"""Offline retrieval with vLLM (0.32): `LLM.encode` (token_embed) embeds queries and pages, MaxSim ranks the pages,
and `LLM.score` scores a query against page images inside vLLM.

Route `native` (vLLM's own ColQwen3Model) is exact; a checkpoint whose head has a bias must first go through
`colqwen3 vllm-export` (`make_llm` refuses it otherwise). Route `transformers` runs our remote code in vLLM's
Transformers backend, exact too with the DeepStack-channel override `make_llm` passes by default (without it, image
tokens lose DeepStack). Prompts come from `colqwen3.serving.inputs`:
vLLM adds neither the page prompt nor the query augmentation. Command line: `colqwen3 vllm-search`.
"""

from dataclasses import dataclass
from typing import Optional

import torch

from colqwen3.serving.export import native_route_problem
from colqwen3.serving.inputs import page_document, page_input, query_input
from colqwen3.serving.routes import POOLING_TASK, check_route, route_options
from scoring_colqwen3 import score_multi_vector


def make_llm(
    folder,
    route: str = "native",
    *,
    max_model_len: int = 2048,
    dtype: str = "auto",
    max_pixels: Optional[int] = None,
    refuse_known_problems: bool = True,
    deepstack_channels: Optional[bool] = None,
    **options,
):
    """A pooling `LLM` with per-token (`token_embed`) output for a ColQwen3 folder, on either route.

    `max_pixels` caps the pixels per image inside vLLM (`mm_processor_kwargs`; memory profiling reserves room for that
    many visual tokens too). It must equal the budget the Transformers side uses (`visual_budget_pixels`) for the
    vectors to match; None keeps the checkpoint's preprocessor_config.json budget. Raises `ValueError` for a folder
    the native route would serve wrongly, unless `refuse_known_problems=False` (the parity harness shows the bug).
    `deepstack_channels` (Transformers backend; default on there): see `colqwen3.serving.routes.route_options`, which
    also merges any `hf_overrides` given here.
    """
    if check_route(route) == "native" and refuse_known_problems:
        problem = native_route_problem(folder)
        if problem:
            raise ValueError(problem)
    options.update(route_options(route, folder, deepstack_channels, options.pop("hf_overrides", None)))
    from vllm import LLM  # after the checks: a refused folder never costs a vLLM import
    from vllm.config import PoolerConfig

    if max_pixels is not None:
        options["mm_processor_kwargs"] = {"max_pixels": max_pixels}
    return LLM(
        model=str(folder),
        runner="pooling",
        pooler_config=PoolerConfig(task=POOLING_TASK),
        max_model_len=max_model_len,
        dtype=dtype,
        **options,
    )


def visual_budget_pixels(processor, max_visual_tokens: Optional[int]) -> Optional[int]:
    """Set the processor's visual-token budget; returns the matching vLLM `max_pixels` (None: keep the default)."""
    if max_visual_tokens is None:
        return None
    processor.max_num_visual_tokens = max_visual_tokens
    return max_visual_tokens * processor.tokens_tile**2


def _data(outputs) -> list[torch.Tensor]:
    return [output.outputs.data.float().cpu() for output in outputs]


def encode_queries(llm, processor, queries) -> list[torch.Tensor]:
    """Per-token query embeddings [tokens, dim], as `ColQwen3(**processor.process_queries([q]))` gives them."""
    prompts = [query_input(processor, query) for query in queries]
    return _data(llm.encode(prompts, pooling_task=POOLING_TASK, use_tqdm=False))


def encode_pages(llm, processor, images) -> list[torch.Tensor]:
    """Per-token page embeddings [tokens, dim], as `ColQwen3(**processor.process_images([page]))` gives them."""
    prompts = [page_input(processor, image) for image in images]
    return _data(llm.encode(prompts, pooling_task=POOLING_TASK, use_tqdm=False))


def score_pages_with_llm(llm, processor, query: str, images) -> list[float]:
    """MaxSim of one query against each page, computed inside vLLM (`LLM.score`, late interaction)."""
    documents = [page_document(processor, image) for image in images]
    outputs = llm.score(query_input(processor, query), documents, use_tqdm=False)
    failed = [(index, output.error) for index, output in enumerate(outputs) if getattr(output, "error", None)]
    if failed:  # vLLM reports a failed pair as score 0.0 plus an error; never pass that on as a score
        raise RuntimeError(f"LLM.score failed for pages {failed}")
    return [output.outputs.score for output in outputs]


@dataclass
class VllmHit:
    """One ranked page: MaxSim of the `LLM.encode` vectors, and the score `LLM.score` computes for the same pair."""

    rank: int
    score: float
    llm_score: float
    page: str


def search_pages(llm, processor, queries: list[str], pages: list, top_k: int = 3) -> list[list[VllmHit]]:
    """Rank `(name, image)` pages for each query with MaxSim over vLLM vectors; `LLM.score` re-scores each hit."""
    names, images = [name for name, _ in pages], [image for _, image in pages]
    scores = score_multi_vector(encode_queries(llm, processor, queries), encode_pages(llm, processor, images))
    results = []
    for query, row in zip(queries, scores):
        values, indices = row.topk(min(top_k, len(images)))
        served = score_pages_with_llm(llm, processor, query, [images[i] for i in indices.tolist()])
        results.append(
            [
                VllmHit(rank, value, llm_score, names[index])
                for rank, (value, index, llm_score) in enumerate(
                    zip(values.tolist(), indices.tolist(), served), start=1
                )
            ]
        )
    return results
