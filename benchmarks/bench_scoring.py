"""Time exact MaxSim scoring on CPU: colpali-engine's algorithm vs `scoring_colqwen3.score_multi_vector`.

    .venvs/tf5/bin/python benchmarks/bench_scoring.py [--json-out results.json]

(defaults: --pages 1000 --queries 1 16 --dim 320 --query-len 42 --repeats 3 --threads 2 --f64-pages 100 --seed 0)

Synthetic data, seeded: pages of 700..1280 tokens (uniform) and queries of `--query-len` tokens, all unit-normalised
random float32 vectors; the bfloat16 pages are the same pages converted before any timing. One table, a group of
rows per query count (`--queries`), every method on the same data:

  colpali-engine (fp32)  colpali-engine's `score_multi_vector` algorithm, re-implemented (not imported): blocks of
                         128 queries x 128 pages, zero-padded with `pad_sequence`, `einsum("bnd,csd->bcns")`, max, sum
                         (zero padding may win the max: that is the baseline's behaviour).
  ours fp32              `scoring_colqwen3.score_multi_vector` on the float32 pages.
  ours bf16 pages        the same on the bfloat16 pages (bf16 search pass, exact float32 re-score of the winner).
  index fp32 / bf16      `colqwen3.index.LocalIndex.score` on an index of the same pages stored as float32 / bfloat16:
                         pages sit on disk in length-sorted blocks pre-padded with copies of a real token, so each
                         block is memory-mapped and scored with one matrix product (no copying pages into blocks).
  float64 brute force    `colqwen3.testing.references.maxsim_float64`, one (query, page) at a time; timed on the first
                         `--f64-pages` pages only (marked with *). It is also the reference, run once on all pages.

Columns: time = best of `--repeats` runs after one warm-up run. pairs/s = n_pages * n_queries / time, the
(query, page) scores produced per second, i.e. pages scored per second per query ("docs/s per query").
GFLOP/s counts useful flops only, the same for every method: 2 * sum over queries of Lq * (page tokens) * dim.
%fp32 / %bf16 = that rate over a square 2048 fp32 / bf16 `a @ b` measured in the same run (before and after the
methods; the higher rate is used). peak RSS = growth of ru_maxrss while the method runs, each method in its own
forked child (the data is built before forking and shared); it includes malloc's arena slack, which varies from run
to run (for the bf16 row seen from ~170 to ~800 MiB; MALLOC_ARENA_MAX=1 steadies it).
max|diff| = largest |score - float64 score of the same stored values| (bf16 values for the bf16 row).
vs colpali = pairs/s over the colpali-engine row's pairs/s.

Exits 1 unless, for every query count: ours fp32 max|diff| <= 1e-3, ours bf16 max|diff| <= 0.02, and ours fp32
ranks pages per query as float64 does, except pages tied at float32 resolution: two pages may swap only where their
float64 scores differ by less than TIE_EPS float32 epsilons of the score (about 1.5e-5 at a score of 8). A float32
score of ~8 has an ulp of ~1e-6, and 1000 random pages do have float64 gaps that small: on the default data an
"exact ties only" check fails for every float32 scorer, colpali-engine's included. Speed targets are printed, not
enforced.
"""

import argparse
import inspect
import json
import multiprocessing
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

import scoring_colqwen3
from colqwen3.index.local import LocalIndex
from colqwen3.index.store import IndexSettings, ModelIdentity, PageEntry
from colqwen3.testing.references import maxsim_float64
from scoring_colqwen3 import score_multi_vector

COLPALI = "colpali-engine (fp32)"
INDEX32, INDEX16 = "index fp32", "index bf16"
TIE_EPS = 16  # float32 epsilons of the score: closer float64 scores are ties at float32 resolution


def colpali_engine_scores(qs, ps, batch_size=128):
    """colpali-engine's `BaseVisualRetrieverProcessor.score_multi_vector` algorithm (CPU, no device moves)."""
    scores_list = []
    for i in range(0, len(qs), batch_size):
        qs_batch = pad_sequence(qs[i : i + batch_size], batch_first=True, padding_value=0)
        scores_batch = []
        for j in range(0, len(ps), batch_size):
            ps_batch = pad_sequence(ps[j : j + batch_size], batch_first=True, padding_value=0)
            scores_batch.append(torch.einsum("bnd,csd->bcns", qs_batch, ps_batch).max(dim=3)[0].sum(dim=2))
        scores_list.append(torch.cat(scores_batch, dim=1))
    return torch.cat(scores_list, dim=0).to(torch.float32)


def rank_check(scores, ref):
    """(no pair ranked against float64 beyond a float32 tie, adjacent swaps against float64's order), all queries."""
    order = ref.argsort(dim=1, descending=True, stable=True)
    r, o = ref.gather(1, order), scores.double().gather(1, order)
    ok = True
    for r_q, o_q in zip(r, o):  # a page must not outscore any page that float64 ranks above it by more than a tie
        above = torch.searchsorted(-r_q, -(r_q + TIE_EPS * torch.finfo(torch.float32).eps * r_q.abs()))
        best_above = torch.cat([o_q.new_full((1,), float("inf")), o_q.cummin(0).values])[above]
        ok &= bool((o_q <= best_above).all())
    return ok, int((o[:, 1:] > o[:, :-1]).sum())


def matmul_ceiling(repeats=5, n=2048):
    """GFLOP/s of a square fp32 and bf16 `a @ b`, and the dtype a CPU bf16 matmul returns.

    Without native bf16 products (AVX512-BF16 / AMX) the scorer upcasts bf16 pages to fp32 (an emulated bf16 product
    is ~30x slower, 60 s for one 2048 product), so the fp32 rate is then the bf16 pages' ceiling too."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    rates = {}
    native_bf16 = scoring_colqwen3._bf16_matmul_is_fast(torch.device("cpu"))
    for dtype in (torch.float32, torch.bfloat16) if native_bf16 else (torch.float32,):
        x, y = a.to(dtype), b.to(dtype)
        out = x @ y
        rates[dtype] = 2 * n**3 / min(_seconds(lambda x=x, y=y: x @ y) for _ in range(repeats)) / 1e9
    if not native_bf16:
        rates[torch.bfloat16] = rates[torch.float32]
    return rates, out.dtype if native_bf16 else "float32 (bf16 pages are upcast: this CPU has no native bf16)"


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def in_child(threads, fn, *args):
    """Run `fn(*args)` in a forked child: (its result, growth of the child's peak RSS in MiB)."""

    def target(queue):
        torch.set_num_threads(threads)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; starts at the RSS at fork
        result = fn(*args)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        queue.put(pickle.dumps((result, grown)))  # plain pickle: no tensor shared-memory handles to a dying child

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(queue,))
    child.start()
    result = pickle.loads(queue.get())
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"benchmark child exited with {child.exitcode}")
    return result


def timed(fn, repeats):
    """One warm-up run, then the best of `repeats`: (seconds, last output)."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--queries", type=int, nargs="+", default=[1, 16], help="query counts, one table each")
    parser.add_argument("--dim", type=int, default=320)
    parser.add_argument("--query-len", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--f64-pages", type=int, default=100, help="pages for the timed float64 row (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ceiling-size", type=int, default=2048, help="n of the n x n matmul ceiling runs")
    parser.add_argument("--json-out", type=Path, default=None, help="write the table and checks as JSON")
    return parser.parse_args(argv)


def make_data(args):
    """(page lengths, fp32 pages, the same pages in bf16, queries): seeded unit vectors."""
    g = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(700, 1281, (args.pages,), generator=g).tolist()
    pages32 = [torch.nn.functional.normalize(torch.randn(n, args.dim, generator=g), dim=-1) for n in lengths]
    queries = [
        torch.nn.functional.normalize(torch.randn(args.query_len, args.dim, generator=g), dim=-1)
        for _ in range(max(args.queries))
    ]
    return lengths, pages32, [p.to(torch.bfloat16) for p in pages32], queries


class IndexScorer:
    """`LocalIndex.score` as a benchmark method: opens the index at its first call (the warm-up), returns the scores
    in the benchmark's page order."""

    def __init__(self, folder):
        self.folder, self.index = folder, None

    def __call__(self, queries, pages):
        if self.index is None:
            self.index = LocalIndex.open(self.folder)
        scores, keys = self.index.score(queries)
        return scores[:, torch.tensor([int(key) for key in keys]).argsort()]


def write_indexes(folder: Path, pages32) -> dict:
    """{dtype: index folder} for the pages stored as float32 and bfloat16, built before any child is forked."""
    folders = {}
    for dtype in ("float32", "bfloat16"):
        settings = IndexSettings(ModelIdentity("benchmark", "synthetic"), embed_dim=pages32[0].shape[1], dtype=dtype)
        with LocalIndex.open(folder / dtype, settings, create=True) as index:
            index.add([PageEntry(f"{i:06d}", f"{i:06d}", 1, "") for i in range(len(pages32))], pages32)
        folders[dtype] = folder / dtype
    return folders


def measure(args, methods, queries) -> dict:
    """{n_queries: {method: row}}, every method in its own forked child on the same data."""
    tables = {}
    for n_q in args.queries:
        rows = tables[n_q] = {}
        for name, fn, ps, ref in methods:
            run = lambda fn=fn, ps=ps, n_q=n_q: timed(lambda: fn(queries[:n_q], ps), args.repeats)  # noqa: E731
            (seconds, scores), rss = in_child(args.threads, run)
            flops = 2 * args.query_len * n_q * sum(p.shape[0] for p in ps) * args.dim
            rows[name] = dict(
                seconds=seconds,
                pairs=len(ps) * n_q / seconds,
                gflops=flops / seconds / 1e9,
                rss=rss,
                diff=(scores.double() - ref[:n_q, : len(ps)]).abs().max().item(),
                scores=scores,
            )
    return tables


def print_table(tables, fp32_peak, bf16_peak) -> None:
    header = (
        f"{'method':<22} {'n_queries':>9} {'time (s)':>9} {'pairs/s':>9} {'GFLOP/s':>8} {'%fp32':>6} "
        f"{'%bf16':>6} {'peak RSS MiB':>12} {'max|diff| f64':>13} {'vs colpali':>10}"
    )
    print("\n" + header)
    for n_q, rows in tables.items():
        print("-" * len(header))
        base = rows[COLPALI]["pairs"]
        for name, r in rows.items():
            print(
                f"{name:<22} {n_q:>9} {r['seconds']:>9.3f} {r['pairs']:>9.0f} {r['gflops']:>8.1f} "
                f"{100 * r['gflops'] / fp32_peak:>5.0f}% {100 * r['gflops'] / bf16_peak:>5.0f}% {r['rss']:>12.0f} "
                f"{r['diff']:>13.2e} {r['pairs'] / base:>9.2f}x"
            )
    print("-" * len(header))


def index_targets(rows, n_q, fp32_peak, bf16_peak) -> list:
    """The index's exactness checks, and its speed targets: >= 80% of the matmul ceiling of its dtype at 16+ queries,
    >= 2x colpali-engine's algorithm at 1 query."""
    index32, index16, base = rows[INDEX32], rows[INDEX16], rows[COLPALI]["pairs"]
    results = [
        ("check", n_q, f"index fp32 max|diff| {index32['diff']:.2e} <= 1e-3", index32["diff"] <= 1e-3),
        ("check", n_q, f"index bf16 max|diff| {index16['diff']:.2e} <= 0.02", index16["diff"] <= 0.02),
    ]
    if n_q >= 16:
        for name, row, peak, dtype in ((INDEX32, index32, fp32_peak, "fp32"), (INDEX16, index16, bf16_peak, "bf16")):
            share = row["gflops"] / peak
            text = f"{name} at {100 * share:.0f}% of the {dtype} matmul rate (target >= 80%)"
            results.append(("target", n_q, text, share >= 0.8))
    if n_q == 1:
        for name, row in ((INDEX32, index32), (INDEX16, index16)):
            speedup = row["pairs"] / base
            results.append(("target", n_q, f"{name} {speedup:.2f}x colpali-engine (target >= 2x)", speedup >= 2))
    return results


def checks_and_targets(tables, ref32, fp32_peak, bf16_peak) -> list:
    """[(kind, n_queries, text, ok)]: kind "check" (exactness, fails the run) or "target" (speed, printed only)."""
    results = []
    for n_q, rows in tables.items():
        ours32, ours16, base = rows["ours fp32"], rows["ours bf16 pages"], rows[COLPALI]["pairs"]
        rank_ok, swaps = rank_check(ours32["scores"], ref32[:n_q])
        _, colpali_swaps = rank_check(rows[COLPALI]["scores"], ref32[:n_q])
        share, speedup = ours32["gflops"] / fp32_peak, ours16["pairs"] / base
        results += [
            ("check", n_q, f"ours fp32 max|diff| {ours32['diff']:.2e} <= 1e-3", ours32["diff"] <= 1e-3),
            ("check", n_q, f"ours bf16 pages max|diff| {ours16['diff']:.2e} <= 0.02", ours16["diff"] <= 0.02),
            (
                "check",
                n_q,
                f"ours fp32 ranking == float64 ranking up to float32 ties (< {TIE_EPS} eps of the score; "
                f"{swaps} adjacent swaps, colpali-engine fp32 has {colpali_swaps})",
                rank_ok,
            ),
            ("target", n_q, f"ours fp32 at {100 * share:.0f}% of the fp32 matmul rate (target >= 80%)", share >= 0.8),
            *index_targets(rows, n_q, fp32_peak, bf16_peak),
            (
                "target",
                n_q,
                f"ours bf16 pages {speedup:.2f}x the colpali-engine fp32 baseline (target >= 2x)",
                speedup >= 2,
            ),
        ]
    return results


def write_json(path, args, tables, ceilings, results) -> None:
    rows = [
        {"method": name, "n_queries": n_q, **{k: v for k, v in row.items() if k != "scores"}}
        for n_q, table in tables.items()
        for name, row in table.items()
    ]
    data = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "matmul_ceiling_gflops": ceilings,
        "rows": rows,
        "checks": [{"kind": kind, "n_queries": n_q, "text": text, "ok": ok} for kind, n_q, text, ok in results],
    }
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    # The parent must not start OpenMP threads: a child forked after that hangs. All heavy work runs in children.
    torch.set_num_threads(1)
    lengths, pages32, pages16, queries = make_data(args)
    n_f64 = min(args.f64_pages or args.pages, args.pages)
    defaults = {k: v.default for k, v in inspect.signature(score_multi_vector).parameters.items()}
    print(
        f"torch {torch.__version__}, {args.threads} threads; {args.pages} pages of {min(lengths)}..{max(lengths)} "
        f"tokens ({sum(lengths)} in all), dim {args.dim}, queries of {args.query_len} tokens; our scorer's defaults: "
        f"batch_size={defaults['batch_size']}, chunk_tokens={defaults['chunk_tokens']}, "
        f"query_chunk_tokens={defaults['query_chunk_tokens']}"
    )
    (ref32, ref16), _ = in_child(
        args.threads, lambda: (maxsim_float64(queries, pages32), maxsim_float64(queries, pages16))
    )
    scratch = tempfile.TemporaryDirectory(prefix="bench-scoring-")
    indexes, _ = in_child(args.threads, write_indexes, Path(scratch.name), pages32)  # no torch work in the parent
    methods = [  # name, scorer, pages, reference
        (COLPALI, colpali_engine_scores, pages32, ref32),
        ("ours fp32", score_multi_vector, pages32, ref32),
        ("ours bf16 pages", score_multi_vector, pages16, ref16),
        (INDEX32, IndexScorer(indexes["float32"]), pages32, ref32),
        (INDEX16, IndexScorer(indexes["bfloat16"]), pages16, ref16),
        ("float64 brute force" + ("*" if n_f64 < args.pages else ""), maxsim_float64, pages32[:n_f64], ref32),
    ]
    # The matmul ceiling is measured before and after the methods and the higher rate kept: another process on the
    # machine can only lower a measurement, so the percentages are not flattered by a slow ceiling run.
    ceilings = [in_child(args.threads, matmul_ceiling, 5, args.ceiling_size)[0]]
    tables = measure(args, methods, queries)
    ceilings.append(in_child(args.threads, matmul_ceiling, 5, args.ceiling_size)[0])
    fp32_peak, bf16_peak = (max(c[0][dtype] for c in ceilings) for dtype in (torch.float32, torch.bfloat16))
    print(
        f"matmul ceiling ({args.ceiling_size}x{args.ceiling_size} a @ b, best of before/after): "
        f"fp32 {fp32_peak:.1f} GFLOP/s, "
        f"bf16 {bf16_peak:.1f} GFLOP/s; a CPU bf16 matmul returns {ceilings[0][1]}"
    )
    print_table(tables, fp32_peak, bf16_peak)
    if n_f64 < args.pages:
        print(f"* timed on the first {n_f64} of {args.pages} pages")
    results = checks_and_targets(tables, ref32, fp32_peak, bf16_peak)
    for kind, n_q, text, ok in results:
        label = ("PASS" if ok else "FAIL") if kind == "check" else f"target {'met' if ok else 'not met'}"
        print(f"  [{label}] n_queries={n_q}: {text}")
    failures = [text for kind, _, text, ok in results if kind == "check" and not ok]
    if args.json_out:
        write_json(args.json_out, args, tables, {"fp32": fp32_peak, "bf16": bf16_peak}, results)
    print("FAILED: " + "; ".join(failures) if failures else "all exactness checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
