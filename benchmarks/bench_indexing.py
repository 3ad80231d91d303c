"""Peak memory and speed of `colqwen3 index` as the collection grows: memory must stay flat in the number of pages.

    .venvs/tf5/bin/python benchmarks/bench_indexing.py [--sizes 24 80 200] [--workers 2] [--json-out FILE]

A tiny checkpoint with RANDOM weights and the real 1280-token page budget indexes the first N pages of one synthetic
collection (1024 x 1280 pages, half PNG files in sub-folders, half in 4-page PDFs rendered at 72 dpi, so every page
hits the budget: 1280 visual tokens, 5120 patches of 1536 values, ~31 MB of float32 pixel values per page once
preprocessed). Each size runs `colqwen3 index` in a fresh process; the table shows that process's peak RSS (from
`wait4`; the rendering workers are separate processes holding a page or two each), its wall time, and pages/s over
the whole run (model load included). Exits 1 if peak RSS at the largest size exceeds the smallest by more than 25%.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from colqwen3.testing.collection import write_collection
from colqwen3.testing.tiny import write_checkpoint

BUDGET = 1280
PAGE_SIZE = (1024, 1280)


def files_for(paths: list[Path], n_pages: int, pages_per_pdf: int) -> list[Path]:
    """The first files of the collection holding exactly `n_pages` pages (PNG files first, then whole PDFs)."""
    chosen, count = [], 0
    for path in sorted(paths, key=lambda p: (p.suffix != ".png", str(p))):
        if count >= n_pages:
            break
        chosen.append(path)
        count += 1 if path.suffix == ".png" else pages_per_pdf
    if count != n_pages:
        raise ValueError(f"cannot take exactly {n_pages} pages from the collection (got {count})")
    return chosen


def run_index(files: list[Path], checkpoint: Path, index: Path, workers: int, batch_size: int) -> dict:
    argv = [sys.executable, "-m", "colqwen3", "index", "--pages", *map(str, files), "--index", str(index),
            "--model", str(checkpoint), "--pdf-dpi", "72", "--workers", str(workers), "--batch-size",
            str(batch_size)]  # fmt: skip
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"colqwen3 index failed:\n{stderr[-3000:]}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 80, 200])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    pages_per_pdf = 4
    if any(size % (2 * pages_per_pdf) for size in args.sizes):
        parser.error(f"every size must be a multiple of {2 * pages_per_pdf}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-indexing-") as scratch:
        scratch = Path(scratch)
        print(f"drawing {max(args.sizes)} pages of {PAGE_SIZE[0]}x{PAGE_SIZE[1]} ...", file=sys.stderr)
        paths = write_collection(scratch / "docs", max(args.sizes), pages_per_pdf=pages_per_pdf, size=PAGE_SIZE)
        checkpoint = write_checkpoint(scratch / "ckpt", max_num_visual_tokens=BUDGET)
        for size in args.sizes:
            print(f"indexing {size} pages ...", file=sys.stderr)
            result = run_index(files_for(paths, size, pages_per_pdf), checkpoint, scratch / f"index-{size}",
                               args.workers, args.batch_size)  # fmt: skip
            rows.append({"pages": size, **result, "pages_per_s": size / result["seconds"]})
    print(f"\n{'pages':>6} {'wall s':>8} {'pages/s':>8} {'peak RSS MiB':>13} {'vs smallest':>11}")
    for row in rows:
        ratio = row["peak_rss_mib"] / rows[0]["peak_rss_mib"]
        print(f"{row['pages']:>6} {row['seconds']:>8.1f} {row['pages_per_s']:>8.2f} {row['peak_rss_mib']:>13.0f} "
              f"{ratio:>10.2f}x")  # fmt: skip
    flat = rows[-1]["peak_rss_mib"] <= 1.25 * rows[0]["peak_rss_mib"]
    print(f"\npeak RSS flat in the number of pages (largest <= 1.25x smallest): {'PASS' if flat else 'FAIL'}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"settings": {**vars(args), "json_out": None}, "rows": rows}, indent=2))
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
