"""Find and render document pages: page images as they are, PDFs one image per page (PDFium via pypdfium2)."""

from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PDF_SUFFIX = ".pdf"


def render_pdf(path: Path, dpi: int) -> list[tuple[str, Image.Image]]:
    """(`name.pdf#page=N`, RGB image) for every page of a PDF, rendered at `dpi`."""
    import pypdfium2  # optional dependency: the `pdf` extra

    document = pypdfium2.PdfDocument(str(path))
    try:
        return [
            (f"{path.name}#page={index + 1}", document[index].render(scale=dpi / 72).to_pil().convert("RGB"))
            for index in range(len(document))
        ]
    finally:
        document.close()


def load_pages(folder, pdf_dpi: int = 110) -> list[tuple[str, Image.Image]]:
    """(name, image) for every page image and every page of every PDF in `folder`, sorted by file name.

    Raises `ValueError` naming the folder when it is not a folder or holds no pages.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--pages: {folder} is not a folder")
    pages = []
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            with Image.open(path) as image:
                pages.append((path.name, image.convert("RGB")))
        elif suffix == PDF_SUFFIX:
            pages.extend(render_pdf(path, pdf_dpi))
    if not pages:
        raise ValueError(f"--pages: no PNG, JPEG or PDF pages in {folder}")
    return pages
