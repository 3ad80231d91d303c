"""Offline retrieval with vLLM (0.32): `LLM.encode` (token_embed) embeds queries and pages, MaxSim ranks the pages,
and `LLM.score` scores each query against the page images inside vLLM.

    python scripts/vllm_offline.py --model FOLDER --pages DIR --query "total due" [--route native|transformers]
    python scripts/vllm_offline.py --check [--route native transformers]

`--model` is a ColQwen3 checkpoint folder. Route `native` (vLLM's own ColQwen3Model) is exact; a checkpoint whose
head has a bias must first go through `scripts/vllm_export.py` (the script refuses it otherwise). Route
`transformers` runs our remote code in vLLM's Transformers backend: exact for text, but image tokens lose DeepStack.
`--check` builds a tiny random checkpoint offline and compares every vLLM output with Transformers (exit 1 on a
failure): per-token embeddings, the MaxSim ranking, and `LLM.score` against MaxSim of the `LLM.encode` vectors.
Prompts come from `scripts/vllm_inputs.py`: vLLM adds neither the page prompt nor the query augmentation.
"""

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

for _name, _value in (
    ("VLLM_CPU_KVCACHE_SPACE", "1"),  # GiB of KV cache on CPU; the default (4) is far more than embedding needs
    ("VLLM_ENABLE_V1_MULTIPROCESSING", "0"),  # keep the engine in this process (no fork/spawn guard needed)
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

import torch  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent
for _path in (str(SCRIPTS), str(SCRIPTS.parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from vllm_inputs import page_document, page_input, query_input  # noqa: E402

ROUTES = ("native", "transformers")


def make_llm(
    folder, route: str = "native", max_model_len: int = 2048, dtype: str = "auto", max_pixels: int | None = None, **options
):
    """A pooling `LLM` with per-token (`token_embed`) output for a ColQwen3 folder, on either route.

    `max_pixels` caps the pixels per image inside vLLM (`mm_processor_kwargs`; memory profiling reserves room for that
    many visual tokens too). It must equal the budget the Transformers side uses (`processor.max_num_visual_tokens *
    32**2`) for the vectors to match; None keeps the checkpoint's preprocessor_config.json budget.
    """
    from vllm import LLM
    from vllm.config import PoolerConfig

    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    if route == "native":
        from vllm_export import native_route_problem

        problem = native_route_problem(folder)
        if problem:
            raise ValueError(problem)
    else:
        options.update(
            trust_remote_code=True, hf_overrides={"architectures": ["TransformersMultiModalEmbeddingModel"]}
        )
    if max_pixels is not None:
        options["mm_processor_kwargs"] = {"max_pixels": max_pixels}
    return LLM(
        model=str(folder),
        runner="pooling",
        pooler_config=PoolerConfig(task="token_embed"),  # per-token vectors; the default pools one (CLS) vector
        max_model_len=max_model_len,
        dtype=dtype,
        **options,
    )


def _data(outputs) -> list[torch.Tensor]:
    return [output.outputs.data.float().cpu() for output in outputs]


def encode_queries(llm, processor, queries) -> list[torch.Tensor]:
    """Per-token query embeddings [tokens, dim], as `ColQwen3(**processor.process_queries([q]))` gives them."""
    return _data(llm.encode([query_input(processor, q) for q in queries], pooling_task="token_embed", use_tqdm=False))


def encode_pages(llm, processor, images) -> list[torch.Tensor]:
    """Per-token page embeddings [tokens, dim], as `ColQwen3(**processor.process_images([page]))` gives them."""
    prompts = [page_input(processor, image) for image in images]
    return _data(llm.encode(prompts, pooling_task="token_embed", use_tqdm=False))


def score_pages(llm, processor, query: str, images) -> list[float]:
    """MaxSim of one query against each page, computed inside vLLM (`LLM.score`, late interaction)."""
    documents = [page_document(processor, image) for image in images]
    outputs = llm.score(query_input(processor, query), documents, use_tqdm=False)
    failed = [(index, output.error) for index, output in enumerate(outputs) if getattr(output, "error", None)]
    if failed:  # vLLM reports a failed pair as score 0.0 plus an error; never pass that on as a score
        raise RuntimeError(f"LLM.score failed for pages {failed}")
    return [output.outputs.score for output in outputs]


def set_visual_budget(processor, max_visual_tokens: int | None) -> int | None:
    """Set the processor's visual-token budget; returns the matching vLLM `max_pixels` (None: keep the default)."""
    if max_visual_tokens is None:
        return None
    processor.max_num_visual_tokens = max_visual_tokens
    return max_visual_tokens * processor.tokens_tile**2


# ----- retrieval over a folder of pages -----
def retrieve(args) -> int:
    from retrieve import load_pages
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    max_pixels = set_visual_budget(processor, args.max_visual_tokens)
    pages = load_pages(args.pages, args.pdf_dpi)
    names, images = [name for name, _ in pages], [image for _, image in pages]
    try:
        llm = make_llm(
            args.model, args.route, args.max_model_len, args.dtype, max_pixels, enforce_eager=args.enforce_eager
        )
    except ValueError as error:  # a checkpoint the route would serve wrongly: say so, no traceback
        raise SystemExit(f"error: {error}") from None
    scores = processor.score_multi_vector(encode_queries(llm, processor, args.query), encode_pages(llm, processor, images))
    top_k = min(args.top_k, len(images))
    for query, row in zip(args.query, scores):
        values, indices = row.topk(top_k)
        in_vllm = score_pages(llm, processor, query, [images[i] for i in indices.tolist()])
        print(f"\nquery: {query}")
        for rank, (value, index, served) in enumerate(zip(values.tolist(), indices.tolist(), in_vllm), start=1):
            print(f"  {rank}. {value:8.3f} (LLM.score {served:8.3f})  {names[index]}")
    return 0


# ----- --check: tiny checkpoint, every output against Transformers -----
def check(args) -> int:
    from tiny_colqwen3 import SAMPLE_PAGES, build_model, build_processor, make_page, tiny_config, write_checkpoint
    from vllm_export import prepare_for_vllm_native
    from vllm_parity import compare

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    processor = build_processor()
    max_pixels = set_visual_budget(processor, args.max_visual_tokens)
    pages = [make_page(lines, seed=index) for index, lines in enumerate(SAMPLE_PAGES.values())]
    queries = ["What is the total due on the invoice?", "How much did revenue grow in Q3?", "capital of France"]
    # Untied LM head (saved, must be skipped) and a non-zero head bias: the hardest checkpoint for both routes.
    model = build_model(tiny_config(tie_word_embeddings=False, embedding_proj_bias=True), seed=args.seed)
    # References first: vLLM's Transformers backend patches the Qwen3-VL classes in place once an engine starts.
    with torch.no_grad():
        ref_text = [model(**processor.process_queries([q])).embeddings[0] for q in queries]
        ref_image = [model(**processor.process_images([p])).embeddings[0] for p in pages]
    ref_scores = processor.score_multi_vector(ref_text, ref_image)

    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="colqwen3_vllm_offline_") as work:
        folder = write_checkpoint(Path(work) / "ckpt", layout="tomoro", model=model)
        del model
        gc.collect()
        prepare_for_vllm_native(folder)
        for route in args.route:
            start = time.perf_counter()
            try:
                llm = make_llm(folder, route, args.max_model_len, "float32", max_pixels, enforce_eager=True, seed=0)
                got_text, got_image = encode_queries(llm, processor, queries), encode_pages(llm, processor, pages)
                served = torch.tensor([score_pages(llm, processor, q, pages) for q in queries])
            except Exception as error:  # report, then go on with the other route
                failures.append(f"{route}: {type(error).__name__}: {error}")
                continue
            finally:
                llm = None
                gc.collect()
            seconds = time.perf_counter() - start
            scores = processor.score_multi_vector(got_text, got_image)
            same_ranking = int((scores.argsort(-1) == ref_scores.argsort(-1)).all(-1).sum())
            same_top1 = int((scores.argmax(-1) == ref_scores.argmax(-1)).sum())
            score_vs_encode = (served - scores).abs().max().item()
            text, image = (
                (result["max_abs"], result["min_cos"])
                for result in (compare(got_text, ref_text), compare(got_image, ref_image))
            )
            rows.append((route, text, image, same_ranking, same_top1, score_vs_encode, seconds))
            print(f"{route}: tokens per page {[t.shape[0] for t in got_image]}")
            for query, row in zip(queries, scores):
                print(f"{route}: {query!r} -> pages {row.argsort(descending=True).tolist()}")
            if text[0] > args.tol:
                failures.append(f"{route}: text max |diff| {text[0]:.3e} > {args.tol:g}")
            if route == "native" and (image[0] > args.tol or same_ranking != len(queries)):
                failures.append(f"native: image max |diff| {image[0]:.3e} or ranking {same_ranking}/{len(queries)}")
            if route == "transformers" and not image[0] < float("inf"):
                failures.append("transformers: image token counts differ from Transformers")
            if not score_vs_encode <= args.score_tol:
                failures.append(f"{route}: LLM.score differs from MaxSim of LLM.encode by {score_vs_encode:.3e}")

    print(f"\n{len(queries)} queries x {len(pages)} pages, fp32, tiny checkpoint with untied LM head and head bias")
    print(f"visual-token budget {processor.max_num_visual_tokens} per page (vLLM max_pixels: {max_pixels or 'checkpoint default'})")
    header = (
        f"{'route':13} {'text max abs':>12} {'text min cos':>12} {'image max abs':>13} {'image min cos':>13} "
        f"{'same ranking':>12} {'same top-1':>10} {'score vs encode':>15} {'seconds':>7}"
    )
    print(header)
    print("-" * len(header))
    for route, text, image, same_ranking, same_top1, score_vs_encode, seconds in rows:
        print(
            f"{route:13} {text[0]:12.3e} {text[1]:12.6f} {image[0]:13.3e} {image[1]:13.6f} "
            f"{f'{same_ranking}/{len(queries)}':>12} {f'{same_top1}/{len(queries)}':>10} {score_vs_encode:15.3e} "
            f"{seconds:7.1f}"
        )
    for failure in failures:
        print("FAIL:", failure)
    print("OK" if not failures else "FAILED")
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="tiny random checkpoint: compare vLLM with Transformers")
    parser.add_argument("--model", type=Path, help="ColQwen3 checkpoint folder (not with --check)")
    parser.add_argument("--pages", type=Path, help="folder of PNG/JPEG/PDF pages")
    parser.add_argument("--query", action="append", default=[], help="a query (repeatable)")
    parser.add_argument("--route", nargs="+", choices=ROUTES, default=None)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--pdf-dpi", type=int, default=110)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--dtype", default="auto", help="vLLM dtype (default: the checkpoint's)")
    parser.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs / compilation")
    parser.add_argument(
        "--max-visual-tokens", type=int, default=None,
        help="visual tokens per page, on both sides (vLLM gets max_pixels = N * 32**2); default: the checkpoint's",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-4, help="--check: max |diff| for exact outputs")
    parser.add_argument("--score-tol", type=float, default=1e-3, help="--check: LLM.score vs MaxSim of LLM.encode")
    args = parser.parse_args(argv)
    if args.check:
        args.route = args.route or list(ROUTES)
        return check(args)
    if args.model is None or args.pages is None or not args.query:
        parser.error("give --model, --pages and at least one --query (or --check)")
    if args.route and len(args.route) > 1:
        parser.error("retrieval uses one --route")
    args.route = (args.route or ["native"])[0]
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    return retrieve(args)


if __name__ == "__main__":
    sys.exit(main())
