"""Page-encoding throughput of the evaluation encoder against the plain loop, side by side in one run.

    .venvs/tf5/bin/python benchmarks/bench_eval_encoder.py [--pages 48] [--batch-size 4] [--size tiny|4b] [--json-out F]

Both methods embed the same pages at the same batch size, on the same model, device and dtype:
- plain loop: `model(**processor.process_images(chunk))` over the pages in their given order (what mteb's reference
  wrappers do);
- eval encoder: `colqwen3.evaluation.RetrievalEncoder.encode_pages` (length-bucketed windows, order restored).
Pages mix shapes as a real collection does (A4 portrait, 16:9 slides, receipts, small scans), in a shuffled order, so
batches of the plain loop mix lengths. Reported: pages/s (best of `--repeats`), the speed-up ratio, the share of
computed tokens that are padding, and the largest difference between the two methods' embeddings (checked).

`--size tiny` (default): the tiny random checkpoint, fp32 + sdpa on CPU. `--size 4b`: the 4B architecture from this
repository's config.json with random weights, bf16 + FlashAttention 2 (sdpa without flash-attn); for a GPU.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from colqwen3.evaluation import RetrievalEncoder
from colqwen3.testing import tiny
from colqwen3.testing.pages import make_page

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(595, 842), (842, 595), (1280, 720), (300, 900), (400, 400), (800, 1000)]  # pixels (width, height)


def mixed_pages(n: int, scale: float, seed: int = 0) -> list:
    rng = random.Random(seed)
    pages = []
    for index in range(n):
        width, height = SHAPES[index % len(SHAPES)]
        pages.append(make_page([f"PAGE {index}", "Total due", "Revenue"], (int(width * scale), int(height * scale)),
                               seed=index))  # fmt: skip
    rng.shuffle(pages)
    return pages


def load(size: str, device: str):
    processor = tiny.build_processor(max_num_visual_tokens=256 if size == "tiny" else 1280)
    if size == "tiny":
        return tiny.build_model(seed=0).to(device).eval(), processor
    from colqwen3.index.embedding import has_flash_attn
    from configuration_colqwen3 import ColQwen3Config
    from modeling_colqwen3 import ColQwen3

    config = ColQwen3Config.from_pretrained(ROOT)
    config._attn_implementation = "flash_attention_2" if device == "cuda" and has_flash_attn() else "sdpa"
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = ColQwen3(config)  # random weights: throughput does not depend on their values
    finally:
        torch.set_default_dtype(torch.float32)
    return model.eval(), processor


def plain_loop(model, processor, pages, batch_size: int, device) -> list:
    out = []
    with torch.inference_mode():
        for start in range(0, len(pages), batch_size):
            batch = processor.process_images(pages[start : start + batch_size]).to(device)
            vectors = model(**batch).embeddings
            mask = batch["attention_mask"].bool()
            out += [vectors[row][mask[row]].cpu() for row in range(len(vectors))]
    return out


def padding_share(lengths: list, batch_size: int) -> float:
    computed = sum(
        max(lengths[i : i + batch_size]) * len(lengths[i : i + batch_size]) for i in range(0, len(lengths), batch_size)
    )
    return 1 - sum(lengths) / computed


def timed(run, device: str, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = run()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", choices=("tiny", "4b"), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = load(args.size, args.device)
    pages = mixed_pages(args.pages, scale=0.5 if args.size == "tiny" else 1.5)
    encoder = RetrievalEncoder(model, processor, batch_size=args.batch_size, device=args.device)
    lengths = [encoder.page_length(page) for page in pages]
    window = encoder.batch_size * encoder.window_batches  # the encoder sorts each window by length
    bucketed = [n for start in range(0, len(lengths), window) for n in sorted(lengths[start : start + window])[::-1]]
    encoder.encode_pages(pages[: args.batch_size])  # warm-up (kernels, allocator)

    plain_s, plain = timed(lambda: plain_loop(model, processor, pages, args.batch_size, args.device), args.device,
                           args.repeats)  # fmt: skip
    ours_s, ours = timed(lambda: encoder.encode_pages(pages), args.device, args.repeats)
    diff = max((a.float() - b.float()).abs().max().item() for a, b in zip(plain, ours))
    tolerance = 1e-5 if next(model.parameters()).dtype == torch.float32 else 5e-2  # bf16: padding changes rounding
    rows = [
        {"method": name, "pages_per_s": len(pages) / seconds, "padding": padding_share(order, args.batch_size)}
        for name, seconds, order in (("plain loop", plain_s, lengths), ("eval encoder", ours_s, bucketed))
    ]
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    attention = getattr(model.config, "_attn_implementation", None)
    print(f"{len(pages)} mixed pages ({min(lengths)}-{max(lengths)} visual tokens), batch {args.batch_size}, "
          f"{args.size} model, {dtype} + {attention} on {args.device}, best of {args.repeats}")  # fmt: skip
    print(f"{'method':14} {'pages/s':>9} {'x plain':>8} {'padding':>8}")
    for row in rows:
        print(f"{row['method']:14} {row['pages_per_s']:9.2f} {row['pages_per_s'] / rows[0]['pages_per_s']:8.2f} "
              f"{row['padding']:8.1%}")  # fmt: skip
    ok = len(plain) == len(ours) and all(a.shape == b.shape for a, b in zip(plain, ours)) and diff <= tolerance
    print(f"embeddings of the two methods: max |diff| {diff:.2e} (tolerance {tolerance:g}): {'OK' if ok else 'FAILED'}")
    if args.json_out:
        settings = {"pages": len(pages), "batch_size": args.batch_size, "size": args.size, "device": args.device,
                    "dtype": dtype, "attention": attention}  # fmt: skip
        args.json_out.write_text(json.dumps({"settings": settings, "rows": rows, "max_diff": diff, "ok": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
