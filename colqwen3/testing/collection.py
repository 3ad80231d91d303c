"""A document collection of any size drawn offline: pages in nested folders and multi-page PDFs, for indexing tests
and the indexing benchmark."""

from pathlib import Path

from colqwen3.testing.pages import make_page

__all__ = ["write_collection"]


def write_collection(folder, n_pages: int, pages_per_pdf: int = 4, size=(300, 400), seed: int = 0) -> list[Path]:
    """`n_pages` pages under `folder`: about half as PNG files spread over two sub-folders, the rest as PDFs of
    `pages_per_pdf` pages; every page has its own text, so every page embeds differently. Returns the files written."""
    folder = Path(folder)
    paths = []
    n_png = n_pages // 2
    for index in range(n_png):
        path = folder / f"part-{index % 2}" / f"page-{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_page([f"PAGE {index}", f"seed {seed}", f"line {index * 7 % 13}"], size=size, seed=seed + index).save(path)
        paths.append(path)
    first = n_png
    while first < n_pages:
        count = min(pages_per_pdf, n_pages - first)
        pages = [
            make_page([f"REPORT PAGE {i}", f"seed {seed}"], size=size, seed=seed + i)
            for i in range(first, first + count)
        ]
        path = folder / f"report-{first:05d}.pdf"
        folder.mkdir(parents=True, exist_ok=True)
        pages[0].save(path, save_all=True, append_images=pages[1:], resolution=72)
        paths.append(path)
        first += count
    return paths
