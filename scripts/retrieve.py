"""Retrieve document pages for text queries with ColQwen3 and MaxSim.

    python scripts/retrieve.py --pages DIR --query "total due on the invoice" --query "capital of France" --top-k 3

`--pages` takes a folder of PNG/JPEG pages (and PDFs, one page image per PDF page, via pypdfium2). `--model` takes a
local checkpoint folder or a Hub id; without it a tiny RANDOM checkpoint is built offline, which shows the pipeline
works but ranks meaninglessly.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def load_pages(folder: Path, pdf_dpi: int) -> list[tuple[str, Image.Image]]:
    """(name, image) for every page image and every page of every PDF in the folder, sorted by file name."""
    if not folder.is_dir():
        raise SystemExit(f"--pages: {folder} is not a folder")
    pages = []
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            with Image.open(path) as image:
                pages.append((path.name, image.convert("RGB")))
        elif suffix == ".pdf":
            import pypdfium2  # PDFium renders pages; optional dependency

            document = pypdfium2.PdfDocument(str(path))
            for index in range(len(document)):
                image = document[index].render(scale=pdf_dpi / 72).to_pil().convert("RGB")
                pages.append((f"{path.name}#page={index + 1}", image))
            document.close()
    if not pages:
        raise SystemExit(f"--pages: no PNG, JPEG or PDF pages in {folder}")
    return pages


def load_model(model_id: str | None, device: str):
    from transformers import AutoModel, AutoProcessor

    if model_id is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import tiny_colqwen3

        print("No --model given: building a tiny checkpoint with RANDOM weights offline; rankings are meaningless.")
        model_id = str(tiny_colqwen3.write_checkpoint(Path(tempfile.mkdtemp(prefix="colqwen3-tiny-")) / "ckpt"))
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    kwargs = {"trust_remote_code": True, "dtype" if _transformers_5() else "torch_dtype": dtype}
    if device.startswith("cuda"):
        try:
            import flash_attn  # noqa: F401

            kwargs["attn_implementation"] = "flash_attention_2"
        except ImportError:
            kwargs["attn_implementation"] = "sdpa"
    model = AutoModel.from_pretrained(model_id, **kwargs).to(device).eval()
    processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=True)
    return model, processor


def _transformers_5() -> bool:
    import transformers

    return int(transformers.__version__.split(".")[0]) >= 5


def embed(model, batches, device: str, description: str) -> list[torch.Tensor]:
    """One [tokens, dim] tensor per input (padding dropped), with a progress bar on long runs."""
    from tqdm.auto import tqdm

    vectors = []
    for batch in tqdm(batches, desc=description, unit="batch", disable=len(batches) < 3, file=sys.stdout):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.inference_mode():
            out = model(**batch).embeddings
        mask = batch["attention_mask"].bool()
        vectors.extend(out[i][mask[i]].float().cpu() for i in range(out.shape[0]))
    return vectors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, required=True, help="folder of PNG/JPEG/PDF pages")
    parser.add_argument("--query", action="append", default=[], help="a query (repeatable)")
    parser.add_argument("--queries-file", type=Path, help="a text file with one query per line")
    parser.add_argument("--model", help="checkpoint folder or Hub id (default: tiny random offline checkpoint)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--pdf-dpi", type=int, default=110)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    queries = list(args.query)
    if args.queries_file:
        queries += [line.strip() for line in args.queries_file.read_text().splitlines() if line.strip()]
    if not queries:
        parser.error("give at least one --query or a --queries-file")
    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be at least 1")

    started = time.perf_counter()
    pages = load_pages(args.pages, args.pdf_dpi)
    model, processor = load_model(args.model, args.device)
    names = [name for name, _ in pages]
    chunks = [pages[i : i + args.batch_size] for i in range(0, len(pages), args.batch_size)]
    page_vectors = embed(model, [processor.process_images([img for _, img in c]) for c in chunks], args.device, "pages")
    query_chunks = [queries[i : i + args.batch_size] for i in range(0, len(queries), args.batch_size)]
    query_vectors = embed(model, [processor.process_queries(c) for c in query_chunks], args.device, "queries")
    scores = processor.score_multi_vector(query_vectors, page_vectors)

    top_k = min(args.top_k, len(pages))
    for query, row in zip(queries, scores):
        print(f"\nquery: {query}")
        values, indices = row.topk(top_k)
        for rank, (score, index) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
            print(f"  {rank}. {score:8.3f}  {names[index]}")
    print(
        f"\nembedded {len(pages)} pages and {len(queries)} queries in {time.perf_counter() - started:.1f} s; "
        f"scores are finite: {bool(torch.isfinite(scores).all())}"
    )
    return 0 if torch.isfinite(scores).all() else 1


if __name__ == "__main__":
    sys.exit(main())
