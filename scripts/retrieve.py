"""Retrieve document pages for text queries with ColQwen3 and MaxSim.

    python scripts/retrieve.py --pages DIR --query "total due on the invoice" --query "capital of France" --top-k 3

`--pages` takes a folder of PNG/JPEG pages (and PDFs, one page image per PDF page, via pypdfium2). `--model` takes a
local checkpoint folder or a Hub id; without it a tiny RANDOM checkpoint is built offline, which shows the pipeline
works but ranks meaninglessly.

Pages are embedded once into a page index (`--index FILE`, see scripts/page_index.py); a later run with the same
`--index` and model searches it without embedding again (`--reindex` rebuilds it).
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


def load_model(model_id: str | None, device: str, revision: str | None = None):
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
    if revision:
        kwargs["revision"] = revision
    model = AutoModel.from_pretrained(model_id, **kwargs).to(device).eval()
    processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=True, revision=revision)
    return model_id, model, processor


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
    from page_index import STORAGE_DTYPES, PageIndex, write_index

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, help="folder of PNG/JPEG/PDF pages (needed to build the index)")
    parser.add_argument("--query", action="append", default=[], help="a query (repeatable)")
    parser.add_argument("--queries-file", type=Path, help="a text file with one query per line")
    parser.add_argument("--model", help="checkpoint folder or Hub id (default: tiny random offline checkpoint)")
    parser.add_argument("--revision", help="Hub revision of --model (recorded in the index)")
    parser.add_argument("--index", type=Path, help="page index file to build once and reuse (default: a temporary one)")
    parser.add_argument("--reindex", action="store_true", help="rebuild --index even if it exists")
    parser.add_argument("--storage-dtype", choices=STORAGE_DTYPES, default="bfloat16")
    parser.add_argument("--pool-factor", type=int, default=1, help="hierarchical token pooling factor (1: none)")
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
    if args.top_k < 1 or args.batch_size < 1 or args.pool_factor < 1:
        parser.error("--top-k, --batch-size and --pool-factor must be at least 1")
    reuse = args.index is not None and args.index.exists() and not args.reindex
    if not reuse and args.pages is None:
        parser.error("--pages is needed to build the index")
    if reuse and args.model is None:
        parser.error("--model is needed to search an existing --index (the same model that built it)")

    started = time.perf_counter()
    model_id, model, processor = load_model(args.model, args.device, args.revision)
    if reuse:
        index = PageIndex(args.index)
        recorded = (index.metadata["model"], index.metadata["revision"])
        if recorded != (model_id, args.revision or ""):
            raise SystemExit(
                f"--index {args.index} was built with model {recorded[0]!r} revision {recorded[1]!r}, not "
                f"{model_id!r} revision {args.revision or ''!r}: pass --reindex (with --pages) to rebuild it."
            )
        print(f"searching {args.index}: {len(index)} pages, {index.metadata['dtype']}, pool factor {index.metadata['pool_factor']}")
    else:
        pages = load_pages(args.pages, args.pdf_dpi)
        chunks = [pages[i : i + args.batch_size] for i in range(0, len(pages), args.batch_size)]
        batches = [processor.process_images([img for _, img in c]) for c in chunks]
        page_vectors = embed(model, batches, args.device, "pages")
        path = args.index or Path(tempfile.mkdtemp(prefix="colqwen3-index-")) / "index.safetensors"
        write_index(
            path, page_vectors, [name for name, _ in pages], model_id, args.revision or "", args.storage_dtype,
            args.pool_factor,
        )
        index = PageIndex(path)
        print(f"indexed {len(index)} pages into {path} ({path.stat().st_size / 1024:.0f} KiB)")
    query_chunks = [queries[i : i + args.batch_size] for i in range(0, len(queries), args.batch_size)]
    query_vectors = embed(model, [processor.process_queries(c) for c in query_chunks], args.device, "queries")
    scores, best = index.search(query_vectors, top_k=args.top_k)

    for query, row_scores, row_pages in zip(queries, scores.tolist(), best.tolist()):
        print(f"\nquery: {query}")
        for rank, (score, page) in enumerate(zip(row_scores, row_pages), start=1):
            print(f"  {rank}. {score:8.3f}  {index.names[page]}")
    finite = bool(torch.isfinite(scores).all())
    print(f"\n{len(index)} pages, {len(queries)} queries in {time.perf_counter() - started:.1f} s; scores are finite: {finite}")
    return 0 if finite else 1


if __name__ == "__main__":
    sys.exit(main())
