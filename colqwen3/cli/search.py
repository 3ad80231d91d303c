"""`colqwen3 index` and `colqwen3 search`: keep a page store up to date with documents, rank its pages for queries."""

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from colqwen3.index.backends import STORE_KINDS, delete_store, open_store, stored_settings
from colqwen3.index.local import STORAGE_DTYPES

SEARCH_HELP = """Rank document pages for text queries with ColQwen3 and MaxSim.

    colqwen3 search --pages DIR --query "total due on the invoice" --query "capital of France" --top-k 3

`--pages` takes folders (searched recursively) and single files: PDF, PNG, JPEG, TIFF (every frame) and WebP.
`--model` takes a local checkpoint folder or a Hub id; without it a tiny RANDOM checkpoint is built offline, which
shows the pipeline works but ranks meaninglessly. Pages are embedded into an index (`--index DIR`); a later run with
the same `--index` embeds only pages that are new or whose file changed, and `--pages` can be left out to search the
index as it is.
"""

INDEX_HELP = """Embed a document collection into a page index, streaming, resumable and incremental.

    colqwen3 index --pages reports/ slides.pdf --index my-index --model tomoro-colqwen3-embed-4b

Pages that are new or whose file changed (by content hash) are embedded; pages of removed files are dropped. A run
that is killed resumes where it stopped. `--store qdrant-edge PATH` keeps the pages in Qdrant's embedded engine,
`--store qdrant URL` in a Qdrant server or cluster; `--embed-with URL` sends pages to a running vLLM server instead
of loading the model here. Exits 1 when any file or page was skipped (`--on-error skip`, listed at the end).
"""


def add_json_argument(parser) -> None:
    parser.add_argument("--json-out", type=Path, default=None, help="also write the ranked pages as JSON")


def write_hits_json(path, queries: list[str], results: list, **about) -> None:
    """`{**about, "results": [{"query", "hits": [hit fields]}]}` for ranked pages (`Hit` or `VllmHit` dataclasses)."""
    rows = [{"query": query, "hits": [asdict(hit) for hit in hits]} for query, hits in zip(queries, results)]
    Path(path).write_text(json.dumps({**about, "results": rows}, indent=2) + "\n")


def add_model_arguments(parser) -> None:
    parser.add_argument("--model", help="checkpoint folder or Hub id (default: tiny random offline checkpoint)")
    parser.add_argument("--revision", help="Hub revision of --model")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--embed-with",
        metavar="URL",
        help="embed with a running vLLM server serving --model (native route) instead of loading the model here",
    )
    parser.add_argument("--served-model-name", help="the model name the vLLM server answers to (default: --model)")


def add_store_arguments(parser) -> None:
    parser.add_argument("--index", type=Path, help="local index folder (the default store)")
    parser.add_argument(
        "--store",
        nargs="+",
        metavar=("KIND", "LOCATION"),
        default=["local"],
        help="local (default; uses --index) | qdrant-edge PATH | qdrant URL",
    )
    parser.add_argument("--collection", default="colqwen3-pages", help="Qdrant collection name")
    parser.add_argument("--api-key", default=None, help="Qdrant API key (default: $QDRANT_API_KEY)")


def add_index_arguments(parser) -> None:
    parser.add_argument(
        "--storage-dtype", choices=STORAGE_DTYPES, help="default: the index's, or bfloat16 for a new one"
    )
    parser.add_argument(
        "--pool-factor", type=int, help="hierarchical token pooling factor (default: the index's, or 1)"
    )
    parser.add_argument("--pdf-dpi", type=int, help="PDF rendering resolution (default: the index's, or 110)")
    parser.add_argument("--max-visual-tokens", type=int, help="visual-token budget per page (default: the processor's)")
    parser.add_argument("--workers", type=int, help="page rendering processes (default: up to 4)")
    parser.add_argument("--flush-pages", type=int, default=64, help="commit to the store every N pages (default 64)")
    parser.add_argument("--on-error", choices=("skip", "stop"), default="skip", help="bad files: skip them or stop")
    parser.add_argument("--reindex", action="store_true", help="delete the index (only an index) and rebuild it")


def add_parsers(subcommands) -> None:
    index = subcommands.add_parser(
        "index",
        help="embed documents into a page index (streaming, resumable, incremental)",
        description=INDEX_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    index.add_argument("--pages", type=Path, nargs="+", required=True, help="folders and files of pages")
    add_store_arguments(index)
    add_model_arguments(index)
    add_index_arguments(index)
    index.set_defaults(handler=run_index)

    search = subcommands.add_parser(
        "search",
        help="rank pages for text queries (indexes --pages first when given)",
        description=SEARCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    search.add_argument("--pages", type=Path, nargs="+", help="folders and files of pages to index before searching")
    search.add_argument("--query", action="append", default=[], help="a query (repeatable)")
    search.add_argument("--queries-file", type=Path, help="a text file with one query per line")
    search.add_argument("--top-k", type=int, default=3)
    search.add_argument("--candidates", type=int, default=256, help="Qdrant stores: first-stage candidates to re-rank")
    add_json_argument(search)
    add_store_arguments(search)
    add_model_arguments(search)
    add_index_arguments(search)
    search.set_defaults(handler=run_search)


# ----- argument checks -----
def _check_counts(parser, args) -> None:
    for flag in ("top_k", "batch_size", "pool_factor", "pdf_dpi", "max_visual_tokens", "candidates", "flush_pages"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers must be at least 0, got {args.workers}")


def _store_location(parser, args) -> tuple[str, object]:
    kind, *rest = args.store
    if kind not in STORE_KINDS or len(rest) > 1:
        parser.error(f"--store takes KIND [LOCATION] with KIND one of {STORE_KINDS}, got {' '.join(args.store)!r}")
    if kind == "local":
        location = Path(rest[0]) if rest else args.index
        if location is None:
            parser.error("--index DIR is needed for the local store")
        return kind, location
    if not rest:
        parser.error(f"--store {kind} needs a location: {'a folder' if kind == 'qdrant-edge' else 'a server URL'}")
    return kind, rest[0]


def _queries(args, parser) -> list[str]:
    queries = list(args.query)
    if args.queries_file:
        try:
            queries += [line.strip() for line in args.queries_file.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"--queries-file {args.queries_file}: {error}")
    if not queries:
        parser.error("give at least one --query or a --queries-file")
    for position, query in enumerate(queries, start=1):
        if not query.strip():
            parser.error(f"query {position} is empty: an empty query scores every page alike")
    return queries


# ----- the pieces the two commands share -----
class _Session:
    """The model side of a run: processor, identity, and an embedder (a local model or a vLLM server)."""

    def __init__(self, args):
        from colqwen3.index.embedders import LocalEmbedder, VllmEmbedder
        from colqwen3.index.embedding import load_model, tiny_checkpoint_for_demo
        from colqwen3.index.identity import model_identity

        if args.embed_with:
            from transformers import AutoConfig, AutoProcessor

            self.model_id = args.model or tiny_checkpoint_for_demo()
            config = AutoConfig.from_pretrained(self.model_id, revision=args.revision, trust_remote_code=True)
            self.processor = AutoProcessor.from_pretrained(
                self.model_id, revision=args.revision, trust_remote_code=True
            )
            served = args.served_model_name or self.model_id
            self.embedder = VllmEmbedder(args.embed_with, served, self.processor, int(config.embed_dim))
        else:
            self.model_id, model, self.processor = load_model(args.model, args.device, args.revision)
            config = model.config
            self.embedder = LocalEmbedder(model, self.processor, batch_size=args.batch_size, device=args.device)
        self.identity = model_identity(self.model_id, args.revision, config)
        self.embed_dim = int(config.embed_dim)

    def settings(self, args, existing):
        from colqwen3.index.store import IndexSettings

        def pick(flag, name, default):
            value = getattr(args, flag)
            return value if value is not None else getattr(existing, name) if existing is not None else default

        return IndexSettings(
            model=self.identity,
            embed_dim=self.embed_dim,
            dtype=pick("storage_dtype", "dtype", "bfloat16"),
            pool_factor=pick("pool_factor", "pool_factor", 1),
            pdf_dpi=pick("pdf_dpi", "pdf_dpi", 110),
            max_visual_tokens=pick("max_visual_tokens", "max_visual_tokens", self.processor.max_num_visual_tokens),
        )


def _where(args) -> dict:
    """The store options besides kind and location: Qdrant's collection and API key."""
    return {"collection": args.collection, "api_key": args.api_key or os.environ.get("QDRANT_API_KEY")}


def _open(args, kind, location, settings=None, create=False):
    return open_store(kind, location, settings, create=create, **_where(args))


def _index(args, session: _Session, kind, location) -> int:
    """Discover, plan and embed `args.pages` into the store; prints the summary; returns the number of problems."""
    from colqwen3.index.documents import discover
    from colqwen3.index.indexer import update_index

    discovery = discover(args.pages, progress=True)
    if not discovery.sources and not discovery.problems:
        raise ValueError(f"--pages {' '.join(map(str, args.pages))}: no PDF, PNG, JPEG, TIFF or WebP pages found")
    if args.reindex:
        delete_store(kind, location, **_where(args))
    existing = stored_settings(kind, location, **_where(args))
    with _open(args, kind, location, session.settings(args, existing), create=True) as store:
        session.processor.max_num_visual_tokens = store.settings.max_visual_tokens  # pages embed as the index's do
        report = update_index(
            store,
            session.embedder,
            discovery,
            pdf_dpi=store.settings.pdf_dpi,
            workers=args.workers,
            flush_pages=args.flush_pages,
            on_error=args.on_error,
        )
        total = len(store)
    print(f"{report.summary()}\nthe index at {location} holds {total} pages", file=sys.stderr)
    return len(report.problems)


def run_index(args, parser) -> int:
    from colqwen3.index.indexer import IndexingError

    _check_counts(parser, args)
    kind, location = _store_location(parser, args)
    session = _Session(args)
    try:
        problems = _index(args, session, kind, location)
    except IndexingError as error:
        print(f"colqwen3 index: stopped (--on-error stop): {error}", file=sys.stderr)
        return 1
    return 1 if problems else 0


def run_search(args, parser) -> int:
    from colqwen3.index.indexer import IndexingError

    queries = _queries(args, parser)
    _check_counts(parser, args)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="colqwen3-index-") as scratch:
        if args.store == ["local"] and args.index is None:
            if not args.pages:
                parser.error("give --pages to search, or --index of an index built before")
            args.index = Path(scratch) / "index"  # a throwaway index, deleted with the folder
        kind, location = _store_location(parser, args)
        existing = None if args.pages else stored_settings(kind, location, **_where(args))
        if not args.pages:
            if existing is None:
                parser.error(f"no index at {location}: give --pages to build it")
            if args.model is None and not args.embed_with:
                parser.error(f"give --model: the index at {location} was built with {existing.model.location}")
        session = _Session(args)
        problems = 0
        if args.pages:
            try:
                problems = _index(args, session, kind, location)
            except IndexingError as error:
                print(f"colqwen3 search: stopped (--on-error stop): {error}", file=sys.stderr)
                return 1
        # After indexing, the store has just been checked against this model and these settings.
        settings = None if args.pages else session.settings(args, existing)
        with _open(args, kind, location, settings) as store:
            if not store.complete:
                print(
                    f"warning: the index at {location} is incomplete: its last indexing run did not finish; "
                    "rerun `colqwen3 index` with the same --pages to complete it",
                    file=sys.stderr,
                )
            query_vectors = session.embedder.embed_queries(queries)
            search_kwargs = {"candidates": args.candidates} if kind != "local" else {}
            results = store.search(query_vectors, top_k=args.top_k, **search_kwargs)
            n_pages = len(store)
    for query, hits in zip(queries, results):
        print(f"\nquery: {query}")
        for hit in hits:
            print(f"  {hit.rank}. {hit.score:8.3f}  {hit.page}")
    if args.json_out:
        write_hits_json(
            args.json_out, queries, results, model=session.identity.location, index=str(location), pages=n_pages
        )
    finite = all(torch.isfinite(torch.tensor([hit.score for hit in hits])).all() for hits in results)
    print(
        f"\n{n_pages} pages, {len(queries)} queries in {time.perf_counter() - started:.1f} s; "
        f"scores are finite: {finite}"
    )
    return 0 if finite and not problems else 1
