"""vLLM subcommands: `vllm-export`, `serve-line`, `vllm-search` and `vllm-check` (the parity harness)."""

import shlex
import sys
from pathlib import Path

from colqwen3.cli.search import add_json_argument, write_hits_json
from colqwen3.remote_code import CHECKPOINT_LAYOUTS
from colqwen3.serving.routes import OFFLINE_CHECK_ENV_DEFAULTS, ROUTES, apply_cpu_env_defaults


def add_parsers(subcommands) -> None:
    export = subcommands.add_parser(
        "vllm-export", help="rewrite a checkpoint so vLLM's native route keeps its head bias"
    )
    export.add_argument("folder", type=Path, help="a saved ColQwen3 checkpoint (config.json + safetensors)")
    export.set_defaults(handler=run_export)

    line = subcommands.add_parser("serve-line", help="print the `vllm serve` command for a checkpoint folder")
    line.add_argument("folder")
    line.add_argument("--route", choices=ROUTES, default="native")
    line.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    line.add_argument("--port", type=int, default=8000)
    line.add_argument("--max-model-len", type=int, default=2048)
    line.add_argument("--no-dtype", action="store_true", help="leave out --dtype float32 (GPU: the checkpoint's bf16)")
    line.add_argument("--enforce-eager", action="store_true", help="add --enforce-eager (CPU, quick start)")
    line.add_argument("--max-pixels", type=int, default=None, help="add --mm-processor-kwargs max_pixels")
    add_channels_argument(line)
    line.add_argument(
        "--template-file",
        type=Path,
        default=None,
        help="write the page chat template to this file and pass its path (default: inline)",
    )
    line.set_defaults(handler=run_serve_line)

    search = subcommands.add_parser("vllm-search", help="rank pages for queries with vLLM (LLM.encode + LLM.score)")
    search.add_argument("--model", type=Path, required=True, help="ColQwen3 checkpoint folder")
    search.add_argument("--pages", type=Path, required=True, help="folder of PNG/JPEG/PDF pages")
    search.add_argument("--query", action="append", default=[], help="a query (repeatable)")
    search.add_argument("--route", choices=ROUTES, default="native")
    search.add_argument("--top-k", type=int, default=3)
    search.add_argument("--pdf-dpi", type=int, default=110)
    search.add_argument("--max-model-len", type=int, default=2048)
    search.add_argument("--dtype", default="auto", help="vLLM dtype (default: the checkpoint's)")
    search.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs / compilation")
    add_channels_argument(search)
    add_json_argument(search)
    add_budget_argument(search)
    search.set_defaults(handler=run_vllm_search)

    add_check_parser(subcommands)


def add_budget_argument(parser) -> None:
    parser.add_argument(
        "--max-visual-tokens",
        type=int,
        default=None,
        help="visual tokens per page, on both sides (vLLM gets max_pixels = N * 32**2); default: the checkpoint's",
    )


def add_channels_argument(parser) -> None:
    parser.add_argument(
        "--no-deepstack-channels",
        dest="deepstack_channels",
        action="store_false",
        default=None,
        help="route transformers: leave out the DeepStack-channel override (narrower rows, but images lose DeepStack)",
    )


def add_check_parser(subcommands) -> None:
    from colqwen3.serving.parity import CASES, DEFAULT_CASES, VIAS, Settings

    defaults = Settings()
    check = subcommands.add_parser("vllm-check", help="vLLM vs Transformers parity on tiny offline checkpoints")
    check.add_argument("--cases", nargs="+", choices=tuple(CASES), default=list(DEFAULT_CASES))
    check.add_argument("--via", choices=VIAS, default="offline", help="offline LLM engines or `vllm serve` over HTTP")
    check.add_argument("--layout", choices=CHECKPOINT_LAYOUTS, default="tomoro")
    check.add_argument("--tie-word-embeddings", action="store_true", help="tied LM head (default: untied, on disk)")
    check.add_argument("--queries", type=int, default=defaults.n_queries, help="how many queries (1-4)")
    check.add_argument("--pages", type=int, default=defaults.n_pages, help="how many sample pages (1-4)")
    check.add_argument("--no-score", action="store_true", help="skip LLM.score / /score / /rerank")
    check.add_argument("--text-atol", type=float, default=defaults.text_atol, help="max |diff| for text, every case")
    check.add_argument("--image-atol", type=float, default=defaults.image_atol, help="max |diff| for exact images")
    check.add_argument("--score-atol", type=float, default=defaults.score_atol, help="vLLM scores vs MaxSim")
    check.add_argument("--max-model-len", type=int, default=defaults.max_model_len)
    check.add_argument(
        "--max-num-batched-tokens",
        type=int,
        default=None,
        help="offline: tokens per engine step; below one page (75 tokens) it forces chunked prefill",
    )
    check.add_argument("--seed", type=int, default=defaults.seed)
    check.add_argument("--keep", type=Path, default=None, help="write the checkpoints here and keep them")
    check.add_argument("--json-out", type=Path, default=None, help="write the report as JSON")
    add_budget_argument(check)
    check.set_defaults(handler=run_check)


def run_export(args, parser) -> int:
    from colqwen3.serving.export import prepare_for_vllm_native

    changed = prepare_for_vllm_native(args.folder)
    print(
        f"{args.folder}: "
        + ("rewritten for vLLM's native ColQwen3 route" if changed else "head has no bias; unchanged")
    )
    return 0


def run_serve_line(args, parser) -> int:
    from colqwen3.serving.client import launch_command, write_page_template
    from colqwen3.serving.inputs import PAGE_TEMPLATE

    argv = launch_command(
        args.folder,
        args.route,
        port=args.port,
        host=args.host,
        max_model_len=args.max_model_len,
        dtype=None if args.no_dtype else "float32",
        max_pixels=args.max_pixels,
        chat_template=write_page_template(args.template_file) if args.template_file else PAGE_TEMPLATE,
        enforce_eager=args.enforce_eager,
        deepstack_channels=args.deepstack_channels,
    )
    print(shlex.join(argv))
    return 0


def run_vllm_search(args, parser) -> int:
    from transformers import AutoProcessor

    from colqwen3.index.documents import load_pages
    from colqwen3.serving.offline import make_llm, search_pages, visual_budget_pixels

    if not args.query or args.top_k < 1:
        parser.error("give at least one --query, and --top-k of at least 1")
    apply_cpu_env_defaults()
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    max_pixels = visual_budget_pixels(processor, args.max_visual_tokens)
    pages = load_pages(args.pages, args.pdf_dpi)
    llm = make_llm(
        args.model,
        args.route,
        max_model_len=args.max_model_len,
        dtype=args.dtype,
        max_pixels=max_pixels,
        enforce_eager=args.enforce_eager,
        deepstack_channels=args.deepstack_channels,
    )
    results = search_pages(llm, processor, args.query, pages, args.top_k)
    for query, hits in zip(args.query, results):
        print(f"\nquery: {query}")
        for hit in hits:
            print(f"  {hit.rank}. {hit.score:8.3f} (LLM.score {hit.llm_score:8.3f})  {hit.page}")
    if args.json_out:
        write_hits_json(args.json_out, args.query, results, model=str(args.model), route=args.route)
    return 0


def run_check(args, parser) -> int:
    from colqwen3.serving.parity import Settings, format_report, run_parity

    apply_cpu_env_defaults(defaults=OFFLINE_CHECK_ENV_DEFAULTS)
    settings = Settings(
        cases=tuple(args.cases),
        via=args.via,
        layout=args.layout,
        tie_word_embeddings=args.tie_word_embeddings,
        max_visual_tokens=args.max_visual_tokens,
        n_queries=args.queries,
        n_pages=args.pages,
        score=not args.no_score,
        text_atol=args.text_atol,
        image_atol=args.image_atol,
        score_atol=args.score_atol,
        max_model_len=args.max_model_len,
        max_num_batched_tokens=args.max_num_batched_tokens,
        seed=args.seed,
    )
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    report = run_parity(settings, args.keep)
    print(format_report(report))
    if args.json_out:
        report.write_json(args.json_out)
        print(f"report written to {args.json_out}", file=sys.stderr)
    return 0 if report.ok else 1
