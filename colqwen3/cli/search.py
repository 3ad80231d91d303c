"""`colqwen3 index` and `colqwen3 search`: embed pages into a page index once, rank its pages for text queries."""

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from colqwen3.index.documents import load_pages
from colqwen3.index.embedding import load_model
from colqwen3.index.page_index import STORAGE_DTYPES, PageIndex
from colqwen3.index.pipeline import check_index_model, index_pages, search_index, temporary_index_path

SEARCH_HELP = """Rank document pages for text queries with ColQwen3 and MaxSim.

    colqwen3 search --pages DIR --query "total due on the invoice" --query "capital of France" --top-k 3

`--pages` takes a folder of PNG/JPEG pages (and PDFs, one page image per PDF page, via pypdfium2). `--model` takes a
local checkpoint folder or a Hub id; without it a tiny RANDOM checkpoint is built offline, which shows the pipeline
works but ranks meaninglessly. Pages are embedded once into a page index (`--index FILE`); a later run with the same
`--index` and model searches it without embedding again (`--reindex` rebuilds it).
"""


def add_json_argument(parser) -> None:
    parser.add_argument("--json-out", type=Path, default=None, help="also write the ranked pages as JSON")


def write_hits_json(path, queries: list[str], results: list, **about) -> None:
    """`{**about, "results": [{"query", "hits": [hit fields]}]}` for ranked pages (`Hit` or `VllmHit` dataclasses)."""
    rows = [{"query": query, "hits": [asdict(hit) for hit in hits]} for query, hits in zip(queries, results)]
    Path(path).write_text(json.dumps({**about, "results": rows}, indent=2) + "\n")


def add_model_arguments(parser) -> None:
    parser.add_argument("--model", help="checkpoint folder or Hub id (default: tiny random offline checkpoint)")
    parser.add_argument("--revision", help="Hub revision of --model (recorded in the index)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def add_index_arguments(parser) -> None:
    parser.add_argument("--storage-dtype", choices=STORAGE_DTYPES, default="bfloat16")
    parser.add_argument("--pool-factor", type=int, default=1, help="hierarchical token pooling factor (1: none)")
    parser.add_argument("--pdf-dpi", type=int, default=110)


def add_parsers(subcommands) -> None:
    index = subcommands.add_parser("index", help="embed a folder of pages into a page index file")
    index.add_argument("--pages", type=Path, required=True, help="folder of PNG/JPEG/PDF pages")
    index.add_argument("--index", type=Path, required=True, help="page index file to write")
    add_model_arguments(index)
    add_index_arguments(index)
    index.set_defaults(handler=run_index)

    search = subcommands.add_parser(
        "search",
        help="rank pages for text queries (builds the index when needed)",
        description=SEARCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    search.add_argument("--pages", type=Path, help="folder of PNG/JPEG/PDF pages (needed to build the index)")
    search.add_argument("--query", action="append", default=[], help="a query (repeatable)")
    search.add_argument("--queries-file", type=Path, help="a text file with one query per line")
    search.add_argument("--index", type=Path, help="page index file to build once and reuse (default: a temporary one)")
    search.add_argument("--reindex", action="store_true", help="rebuild --index even if it exists")
    search.add_argument("--top-k", type=int, default=3)
    add_json_argument(search)
    add_model_arguments(search)
    add_index_arguments(search)
    search.set_defaults(handler=run_search)


def _check_counts(parser, args) -> None:
    for flag in ("top_k", "batch_size", "pool_factor"):
        if getattr(args, flag, 1) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")


def _build(args, model_id, model, processor, path) -> PageIndex:
    index = index_pages(
        model,
        processor,
        load_pages(args.pages, args.pdf_dpi),
        path,
        model_id=model_id,
        revision=args.revision or "",
        dtype=args.storage_dtype,
        pool_factor=args.pool_factor,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(f"indexed {len(index)} pages into {path} ({path.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)
    return index


def run_index(args, parser) -> int:
    _check_counts(parser, args)
    model_id, model, processor = load_model(args.model, args.device, args.revision)
    _build(args, model_id, model, processor, args.index)
    return 0


def _queries(args, parser) -> list[str]:
    queries = list(args.query)
    if args.queries_file:
        queries += [line.strip() for line in args.queries_file.read_text().splitlines() if line.strip()]
    if not queries:
        parser.error("give at least one --query or a --queries-file")
    return queries


def run_search(args, parser) -> int:
    queries = _queries(args, parser)
    _check_counts(parser, args)
    reuse = args.index is not None and args.index.exists() and not args.reindex
    if not reuse and args.pages is None:
        parser.error("--pages is needed to build the index")
    if reuse and args.model is None:
        parser.error("--model is needed to search an existing --index (the same model that built it)")

    started = time.perf_counter()
    model_id, model, processor = load_model(args.model, args.device, args.revision)
    if reuse:
        index = PageIndex(args.index)
        check_index_model(index, model_id, args.revision)
        print(
            f"searching {args.index}: {len(index)} pages, {index.metadata['dtype']}, "
            f"pool factor {index.metadata['pool_factor']}",
            file=sys.stderr,
        )
    else:
        index = _build(args, model_id, model, processor, args.index or temporary_index_path())
    results = search_index(
        index, model, processor, queries, top_k=args.top_k, batch_size=args.batch_size, device=args.device
    )
    for query, hits in zip(queries, results):
        print(f"\nquery: {query}")
        for hit in hits:
            print(f"  {hit.rank}. {hit.score:8.3f}  {hit.page}")
    if args.json_out:
        write_hits_json(args.json_out, queries, results, model=model_id, index=str(index.path), pages=len(index))
    finite = all(torch.isfinite(torch.tensor([hit.score for hit in hits])).all() for hits in results)
    print(
        f"\n{len(index)} pages, {len(queries)} queries in {time.perf_counter() - started:.1f} s; "
        f"scores are finite: {finite}"
    )
    return 0 if finite else 1
