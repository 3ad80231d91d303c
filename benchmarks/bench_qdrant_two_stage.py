"""Recall and speed of two-stage search in the Qdrant page stores: pooled-vector first stage, exact MaxSim re-rank.

    .venvs/tf5/bin/python benchmarks/bench_qdrant_two_stage.py [--client] [--json-out results.json]

(defaults: --pages 2000 --topics 40 --tokens 48 160 --dim 128 --queries 64 --query-len 16
 --candidates 10 50 100 200 500 --top-k 10 --threads 2 --seed 0)

Synthetic corpus, seeded, structured so that a page's mean vector says something about it without saying everything:
each of `--topics` topics has 24 "concept" unit vectors; a page picks a topic and builds each token from one of 8
concepts of that topic (chosen per page) plus Gaussian noise, so pages of one topic share their mean direction and
differ in which concepts they hold. A query is written for one page: some of its tokens are noisy copies of that
page's tokens, the rest noisy draws from its topic's concepts. All vectors are unit-normalised float32.

The reference is the exact MaxSim top-`--top-k` (`scoring_colqwen3.score_multi_vector` in torch, float32). For each
first-stage size (`--candidates`) the edge store (`QdrantEdgeStore`, dtype float32 so that only the first stage
differs) answers every query with that many candidates; the row "all" scores every page exactly (`candidates=0`).
The "torch (reference)" row times that reference itself (all pages in memory, no store).
With `--client` the same runs on qdrant-client's local mode (`QdrantStore(":memory:")`, exact brute force, slow).

Columns: recall@k = mean over queries of |two-stage top-k & exact top-k| / k; target@1 = share of queries whose
own page ranks first; ms/query = wall time of one batched `search` over all queries / number of queries (best of
`--repeats`, after one warm-up). The store is optimised (`set_complete(True)`: segments merged, the "pooled" HNSW
graph built) before timing; the add and optimise times are printed too. Progress goes to stderr.

Exits 1 unless the "all" row has recall 1.0 (the store's exact search is the reference's ranking).
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from colqwen3.index.store import IndexSettings, ModelIdentity, PageEntry
from scoring_colqwen3 import score_multi_vector

CONCEPTS_PER_TOPIC = 24
CONCEPTS_PER_PAGE = 8


@dataclass
class Row:
    store: str
    candidates: str  # a number, or "all"
    recall_at_k: float
    target_at_1: float
    ms_per_query: float


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--topics", type=int, default=40)
    parser.add_argument("--tokens", type=int, nargs=2, default=[48, 160], help="page lengths, min and max")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--query-len", type=int, default=16)
    parser.add_argument("--noise", type=float, default=0.6, help="noise norm relative to a concept vector")
    parser.add_argument("--candidates", type=int, nargs="+", default=[10, 50, 100, 200, 500])
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--client", action="store_true", help="also run qdrant-client's local mode (slow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None)
    return parser.parse_args(argv)


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def make_corpus(args) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int]]:
    """(pages, queries, the page each query was written for); see the module docstring."""
    g = torch.Generator().manual_seed(args.seed)
    concepts = unit(torch.randn(args.topics, CONCEPTS_PER_TOPIC, args.dim, generator=g))
    noise = args.noise / args.dim**0.5

    def tokens_from(pool: torch.Tensor, n: int) -> torch.Tensor:
        picks = pool[torch.randint(len(pool), (n,), generator=g)]
        return unit(picks + noise * torch.randn(n, args.dim, generator=g))

    pages, topics = [], torch.randint(args.topics, (args.pages,), generator=g).tolist()
    for topic in topics:
        held = concepts[topic][torch.randperm(CONCEPTS_PER_TOPIC, generator=g)[:CONCEPTS_PER_PAGE]]
        n = int(torch.randint(args.tokens[0], args.tokens[1] + 1, (1,), generator=g))
        pages.append(tokens_from(held, n))
    targets = torch.randint(args.pages, (args.queries,), generator=g).tolist()
    queries = []
    for target in targets:
        own = args.query_len // 2
        copied = tokens_from(pages[target], own)
        queries.append(torch.cat([copied, tokens_from(concepts[topics[target]], args.query_len - own)]))
    return pages, queries, targets


def exact_top_k(queries, pages, k: int, repeats: int) -> tuple[list[list[int]], float]:
    """(exact MaxSim top-k page indices per query, ties by index; best seconds of `score_multi_vector`)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        scores = score_multi_vector(queries, pages)
        best = min(best, time.perf_counter() - start)
    return [sorted(range(len(pages)), key=lambda j, row=row: (-float(row[j]), j))[:k] for row in scores], best


def fill(store, pages) -> tuple[float, float]:
    """Add every page and finish the run: (add seconds, optimise seconds)."""
    entries = [PageEntry(key=f"{i:06d}", source=f"{i:06d}.png", page=1, file_sha256="") for i in range(len(pages))]
    start = time.perf_counter()
    for begin in range(0, len(pages), 256):
        store.add(entries[begin : begin + 256], pages[begin : begin + 256])
        print(f"  added {min(begin + 256, len(pages))}/{len(pages)} pages", file=sys.stderr)
    added = time.perf_counter()
    store.set_complete(True)
    return added - start, time.perf_counter() - added


def measure(name, store, queries, targets, reference, args) -> list[Row]:
    rows = []
    for candidates in [*args.candidates, 0]:
        print(f"  {name}: candidates={candidates or 'all'}", file=sys.stderr)
        search = lambda c=candidates: store.search(queries, top_k=args.top_k, candidates=c)  # noqa: E731
        hits = search()
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            hits = search()
            best = min(best, time.perf_counter() - start)
        recall = [
            len({int(hit.page) for hit in row} & set(expected)) / args.top_k for row, expected in zip(hits, reference)
        ]
        first = [bool(row) and int(row[0].page) == target for row, target in zip(hits, targets)]
        rows.append(
            Row(
                store=name,
                candidates=str(candidates or "all"),
                recall_at_k=sum(recall) / len(recall),
                target_at_1=sum(first) / len(first),
                ms_per_query=1000 * best / len(queries),
            )
        )
    return rows


def print_table(rows: list[Row], k: int) -> None:
    header = f"{'store':<20} {'candidates':>10} {f'recall@{k}':>10} {'target@1':>9} {'ms/query':>9}"
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        print(
            f"{row.store:<20} {row.candidates:>10} {row.recall_at_k:>10.3f} {row.target_at_1:>9.3f} "
            f"{row.ms_per_query:>9.2f}"
        )
    print("-" * len(header))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from colqwen3.index.qdrant import QdrantEdgeStore, QdrantStore

    pages, queries, targets = make_corpus(args)
    n_tokens = sum(len(page) for page in pages)
    print(
        f"torch {torch.__version__}, {args.threads} threads; {args.pages} pages of {args.tokens[0]}..{args.tokens[1]} "
        f"tokens ({n_tokens} in all) in {args.topics} topics, dim {args.dim}; {args.queries} queries of "
        f"{args.query_len} tokens; float32 storage"
    )
    print("torch: exact MaxSim reference", file=sys.stderr)
    reference, torch_s = exact_top_k(queries, pages, args.top_k, args.repeats)
    settings = IndexSettings(ModelIdentity("benchmark", "synthetic"), embed_dim=args.dim, dtype="float32")
    scratch = tempfile.TemporaryDirectory(prefix="bench-qdrant-")
    stores = {"edge": lambda: QdrantEdgeStore.open(Path(scratch.name) / "edge", settings)}
    if args.client:
        stores["client local mode"] = lambda: QdrantStore.open(":memory:", "pages", settings)
    torch_first = sum(top[0] == target for top, target in zip(reference, targets)) / len(targets)
    rows, timings = [Row("torch (reference)", "all", 1.0, torch_first, 1000 * torch_s / len(queries))], {}
    for name, open_store in stores.items():
        print(f"{name}: filling", file=sys.stderr)
        with open_store() as store:
            add_s, optimise_s = fill(store, pages)
            timings[name] = {"add_s": add_s, "optimise_s": optimise_s}
            print(f"{name}: add {add_s:.1f} s ({args.pages / add_s:.0f} pages/s), optimise {optimise_s:.1f} s")
            rows += measure(name, store, queries, targets, reference, args)
    scratch.cleanup()
    print_table(rows, args.top_k)
    exact_ok = all(row.recall_at_k == 1.0 for row in rows if row.candidates == "all")  # torch's row is 1 by definition
    print(f"check: exact rows (candidates=all) have recall@{args.top_k} 1.0: {'ok' if exact_ok else 'FAILED'}")
    if args.json_out:
        data = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
        data |= {"timings": timings, "rows": [asdict(row) for row in rows], "exact_ok": exact_ok}
        args.json_out.write_text(json.dumps(data, indent=2) + "\n")
    return 0 if exact_ok else 1


if __name__ == "__main__":
    sys.exit(main())
