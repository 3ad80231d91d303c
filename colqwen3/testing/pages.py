"""Sample document pages drawn offline: four PNG pages and a two-page PDF, for the demo, tests and the vLLM harness."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

SAMPLE_PAGES = {
    "invoice.png": ["INVOICE 2026-114", "Item: solar panel x3", "Total due: 1,240 EUR", "Due date: 30 Dec 2026"],
    "revenue_report.png": ["Q3 REVENUE REPORT", "Revenue grew 12%", "Operating costs fell 4%", "Outlook: stable"],
    "paris_slide.png": ["GEOGRAPHY QUIZ", "Capital of France?", "Answer: Paris", "Population 2.1M"],
    "attention_figure.png": ["FIGURE 2", "Attention map over", "a scanned page", "of a technical report"],
}


def make_page(lines, size=(600, 800), seed: int = 0) -> Image.Image:
    """A white page with a title bar, text lines and a few boxes: structured like a document, made offline."""
    generator = torch.Generator().manual_seed(seed)
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    width, height = size
    draw.rectangle([0, 0, width, height // 10], fill=(30, 60, 120))
    for index, line in enumerate(lines):
        y = height // 10 + 20 + index * (height // 12)
        draw.text((30, y), line, fill=(0, 0, 0) if index else (200, 30, 30))
    for _ in range(3):
        x0, y0 = (torch.randint(20, width // 2, (1,), generator=generator).item() for _ in range(2))
        box_colour = tuple(torch.randint(0, 255, (3,), generator=generator).tolist())
        draw.rectangle([x0, y0 + height // 2, x0 + width // 3, y0 + height // 2 + 40], outline=box_colour, width=3)
    return page


def sample_pages() -> list[Image.Image]:
    """The sample pages as images, in `SAMPLE_PAGES` order (the same images `write_sample_pages` saves)."""
    return [make_page(lines, seed=seed) for seed, lines in enumerate(SAMPLE_PAGES.values())]


def write_sample_pages(folder, with_pdf: bool = True) -> list[Path]:
    """Save the sample pages as PNG files in `folder` (and `appendix.pdf`, two pages, unless `with_pdf=False`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, page in zip(SAMPLE_PAGES, sample_pages()):
        page.save(folder / name)
        paths.append(folder / name)
    if with_pdf:
        first, *rest = [make_page(["APPENDIX A", "Raw survey data", f"Table {i}"], seed=10 + i) for i in (1, 2)]
        first.save(folder / "appendix.pdf", save_all=True, append_images=rest, resolution=72)
        paths.append(folder / "appendix.pdf")
    return paths


COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 210, 40),
    "purple": (130, 50, 160),
    "orange": (240, 140, 30),
    "black": (20, 20, 20),
    "grey": (140, 140, 140),
}


def colour_examples(n: int, seed: int = 0, size: int = 96) -> list[dict]:
    """A learnable retrieval task: page `i` is mostly one colour (with a few small boxes of others), its query names the
    colour. Rows are `{"query", "image"}` (the colpali training format); colours cycle, so every colour recurs."""
    generator = torch.Generator().manual_seed(seed)
    names = list(COLOURS)
    rows = []
    for index in range(n):
        name = names[index % len(names)]
        page = Image.new("RGB", (size, size), COLOURS[name])
        draw = ImageDraw.Draw(page)
        for _ in range(3):
            x, y = (int(v) for v in torch.randint(0, size - 16, (2,), generator=generator))
            other = names[int(torch.randint(len(names), (1,), generator=generator))]
            draw.rectangle([x, y, x + 12, y + 12], fill=COLOURS[other])
        rows.append({"query": f"the {name} page", "image": page})
    return rows


# A small graded retrieval set: each query names one page (relevance 2) and sometimes a related one (relevance 1).
BEIR_PAGES = {
    "invoice": ["INVOICE 2026-114", "Total due: 1,240 EUR", "Due date: 30 Dec 2026"],
    "receipt": ["RECEIPT 7781", "Paid: 86 EUR", "Card ending 4411"],
    "revenue": ["Q3 REVENUE REPORT", "Revenue grew 12%", "Outlook: stable"],
    "costs": ["Q3 COSTS", "Operating costs fell 4%", "Headcount flat"],
    "paris": ["GEOGRAPHY QUIZ", "Capital of France?", "Answer: Paris"],
    "rome": ["GEOGRAPHY QUIZ 2", "Capital of Italy?", "Answer: Rome"],
}
BEIR_QUERIES = {
    "q-total": ("how much is due on the invoice", {"invoice": 2, "receipt": 1}),
    "q-growth": ("quarterly revenue growth", {"revenue": 2, "costs": 1}),
    "q-france": ("what is the capital of France", {"paris": 2}),
    "q-italy": ("capital of Italy", {"rome": 2, "paris": 1, "costs": 0}),
}


def write_beir_folder(folder, page_sizes=((300, 400), (400, 300), (256, 256))) -> Path:
    """A BEIR-format retrieval folder (`corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`, `images/`) of rendered text
    pages in several sizes, with graded qrels (2 = answers the query, 1 = related, 0 = judged not relevant)."""
    import json

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    corpus_lines = []
    for index, (page_id, lines) in enumerate(BEIR_PAGES.items()):
        make_page(lines, size=page_sizes[index % len(page_sizes)], seed=20 + index).save(
            folder / f"images/{page_id}.png"
        )
        corpus_lines.append(json.dumps({"_id": page_id, "image": f"images/{page_id}.png"}))
    (folder / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n")
    queries = [json.dumps({"_id": query_id, "text": text}) for query_id, (text, _) in BEIR_QUERIES.items()]
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n")
    qrels = ["query-id\tcorpus-id\tscore"]
    qrels += [f"{q}\t{page}\t{grade}" for q, (_, graded) in BEIR_QUERIES.items() for page, grade in graded.items()]
    (folder / "qrels/test.tsv").write_text("\n".join(qrels) + "\n")
    return folder


# Pages in the formats and modes that plain `convert("RGB")` and a one-folder loader got wrong, and broken files.


def transparent_page(size=(300, 400)) -> Image.Image:
    """Black text and boxes on a fully transparent background (RGBA, hidden colour black), as slide exports and
    "remove background" tools write them: `convert("RGB")` shows the whole page black."""
    page = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(page)
    draw.rectangle([20, 20, size[0] - 20, 60], fill=(0, 0, 0, 255))
    for index in range(4):
        draw.text((30, 100 + 40 * index), f"transparent line {index}", fill=(0, 0, 0, 255))
    return page


def grey16_page(size=(256, 64)) -> Image.Image:
    """A 16-bit greyscale ("I;16") page: a left-to-right ramp over the full 0..65535 range with a dark band, as 16-bit
    scanners write them; `convert("RGB")` clips every value above 255 to white."""
    width, height = size
    ramp = np.linspace(0, 65535, width).round().astype(np.uint16)
    values = np.tile(ramp, (height, 1))
    values[height // 3 : height // 2] = 1000  # the "text": dark, but above 255
    return Image.fromarray(values)


def frame_pages(n: int = 3, size=(120, 160)) -> list[Image.Image]:
    """`n` RGB pages that differ everywhere: page i is filled with its own colour, with a numbered title bar."""
    colours = list(COLOURS.values())
    pages = []
    for index in range(n):
        page = Image.new("RGB", size, colours[index % len(colours)])
        ImageDraw.Draw(page).rectangle([0, 0, size[0], 20], fill=(255, 255, 255))
        ImageDraw.Draw(page).text((5, 5), f"frame {index + 1}", fill=(0, 0, 0))
        pages.append(page)
    return pages


def write_format_pages(folder) -> dict[str, Path]:
    """A multi-frame TIFF (`frame_pages(3)`), a lossless WebP, a transparent PNG and a 16-bit PNG in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    first, *rest = frame_pages(3)
    paths = {
        "tiff": folder / "scan.tiff",
        "webp": folder / "photo.webp",
        "transparent": folder / "transparent.png",
        "grey16": folder / "grey16.png",
    }
    first.save(paths["tiff"], save_all=True, append_images=rest)
    frame_pages(4)[3].save(paths["webp"], lossless=True)
    transparent_page().save(paths["transparent"])
    grey16_page().save(paths["grey16"])
    return paths


def write_problem_files(folder) -> dict[str, Path]:
    """Files a loader must report, not crash on: a zero-byte PDF, a text file named .pdf, a PNG cut in half."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"empty": folder / "empty.pdf", "fake": folder / "notes.pdf", "truncated": folder / "cut.png"}
    paths["empty"].write_bytes(b"")
    paths["fake"].write_text("meeting notes, saved with the wrong name\n")
    whole = folder / "whole.png"
    make_page(["TRUNCATED"], seed=3).save(whole)
    data = whole.read_bytes()
    whole.unlink()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    return paths
