"""Find and render document pages: images frame by frame, PDFs page by page (PDFium via pypdfium2), in worker processes.

`discover` walks files and folders once (hash, page count, a decode check), turning every unreadable file into a
`Problem` rather than an exception; `iter_pages` renders the pages in order with only a few in flight at a time;
`to_rgb` is the one place where page images become 8-bit RGB.
"""

import hashlib
import os
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Iterator, Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from colqwen3.index.store import PageEntry

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Discovery",
    "Problem",
    "SourceFile",
    "discover",
    "iter_pages",
    "load_pages",
    "render_page",
    "to_rgb",
]

PDF_SUFFIX = ".pdf"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
SUPPORTED_SUFFIXES = (PDF_SUFFIX, *IMAGE_SUFFIXES)
NOT_A_FILE = "(not a regular file)"  # key in `Discovery.unsupported` for FIFOs, sockets and devices
NO_SUFFIX = "(no suffix)"

_CHUNK = 1 << 20
_WHITE = (255, 255, 255)
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


@dataclass(frozen=True)
class Problem:
    """A file (or one page of it, `page` 1-based) that could not be used, with a short human reason."""

    path: str
    reason: str
    page: Optional[int] = None

    def __str__(self) -> str:
        where = self.path if self.page is None else f"{self.path} (page {self.page})"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class SourceFile:
    """One usable file: where it is, its name in the collection (POSIX, relative to the root it was found under),
    its content hash and how many pages (PDF pages or image frames) it holds."""

    path: Path
    name: str
    sha256: str
    size: int
    mtime_ns: int
    n_pages: int

    @property
    def is_pdf(self) -> bool:
        return self.path.suffix.lower() == PDF_SUFFIX

    def key(self, number: int) -> str:
        """`name` for a single-frame image, `name#page=N` for every PDF page and every frame of a multi-frame image."""
        return self.name if self.n_pages == 1 and not self.is_pdf else f"{self.name}#page={number}"

    def entries(self) -> list[PageEntry]:
        return [
            PageEntry(key=self.key(number), source=self.name, page=number, file_sha256=self.sha256)
            for number in range(1, self.n_pages + 1)
        ]


@dataclass
class Discovery:
    """What `discover` found: usable files in order, unusable ones, and per suffix how many files had the wrong type."""

    sources: list[SourceFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unsupported: dict[str, int] = field(default_factory=dict)

    @property
    def n_pages(self) -> int:
        return sum(source.n_pages for source in self.sources)


# ---- discovery ----------------------------------------------------------------------------------------------------


def discover(paths, progress: bool = False) -> Discovery:
    """Find every PDF and image under `paths` (files, or folders walked recursively), hash them and count their pages.

    Folders are listed in order of the relative POSIX path; names starting with "." are skipped; a folder reached
    again inside itself (a symlink loop) is reported, not walked again. Unreadable files become `Problem`s; files of
    other types are counted in `unsupported`. A path that does not exist raises `ValueError` naming it.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found, discovery = [], Discovery()
    for given in paths:
        root = Path(given).absolute()
        if not root.exists():
            raise ValueError(f"{given} does not exist")
        if root.is_dir():
            under_root = []
            _walk(root, root, under_root, discovery, visited=set())
            found += sorted(under_root, key=lambda item: item[1])  # by relative POSIX path, whatever the file system
        else:
            _classify(root, root.name, found, discovery)
    from tqdm.auto import tqdm

    seen = {}
    for path, name in tqdm(found, desc="reading files", unit="file", disable=not progress, file=sys.stderr):
        if name in seen:  # page keys must be unique: two roots holding the same relative name
            discovery.problems.append(Problem(str(path), f"duplicate name {name!r} (already found as {seen[name]})"))
            continue
        result = _inspect(path, name)
        if isinstance(result, Problem):
            discovery.problems.append(result)
        else:
            seen[name] = path
            discovery.sources.append(result)
    return discovery


def _walk(root: Path, folder: Path, found: list, discovery: Discovery, visited: set) -> None:
    try:
        stat = folder.stat()
        identity = (stat.st_dev, stat.st_ino)
        children = sorted(entry for entry in os.listdir(folder) if not entry.startswith("."))
    except OSError as error:
        discovery.problems.append(Problem(str(folder), f"cannot list folder: {error.strerror or error}"))
        return
    if identity in visited:  # followed symlinks could otherwise loop forever
        discovery.problems.append(Problem(str(folder), "folder already visited (symlink loop), skipped"))
        return
    visited.add(identity)
    for child in children:
        path = folder / child
        if path.is_dir():
            _walk(root, path, found, discovery, visited)
        else:
            _classify(path, path.relative_to(root).as_posix(), found, discovery)
    visited.discard(identity)  # only ancestors make a loop: one folder linked from two places is walked twice


def _classify(path: Path, name: str, found: list, discovery: Discovery) -> None:
    if path.is_symlink() and not path.exists():
        discovery.problems.append(Problem(str(path), "broken symbolic link"))
    elif not path.is_file():
        discovery.unsupported[NOT_A_FILE] = discovery.unsupported.get(NOT_A_FILE, 0) + 1
    elif path.suffix.lower() in SUPPORTED_SUFFIXES:
        found.append((path, name))
    else:
        suffix = path.suffix.lower() or NO_SUFFIX
        discovery.unsupported[suffix] = discovery.unsupported.get(suffix, 0) + 1


def _inspect(path: Path, name: str) -> Union[SourceFile, Problem]:
    """Open the file once: hash it, count its pages and check that it decodes."""
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            if stat.st_size == 0:
                return Problem(str(path), "empty file (0 bytes)")
            digest = hashlib.sha256()
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
            handle.seek(0)
            count = _count_pdf_pages(handle) if path.suffix.lower() == PDF_SUFFIX else _count_frames(handle)
    except OSError as error:
        return Problem(str(path), f"cannot read file: {error.strerror or error}")
    if isinstance(count, str):
        return Problem(str(path), count)
    if count < 1:
        return Problem(str(path), "no pages")
    return SourceFile(
        path=path, name=name, sha256=digest.hexdigest(), size=stat.st_size, mtime_ns=stat.st_mtime_ns, n_pages=count
    )


def _count_pdf_pages(handle) -> Union[int, str]:
    """The page count, or the reason the file is not a readable PDF."""
    import pypdfium2  # optional dependency: the `pdf` extra

    head = handle.read(1024)
    if b"%PDF-" not in head:  # PDFium only says "Data format error" for any non-PDF; say what the file starts with
        return f"not a PDF: starts with {head[:16]!r}"
    handle.seek(-min(1024, os.fstat(handle.fileno()).st_size), os.SEEK_END)
    has_end = b"%%EOF" in handle.read()
    handle.seek(0)
    try:
        document = pypdfium2.PdfDocument(handle, autoclose=False)
    except pypdfium2.PdfiumError as error:
        if not has_end:
            return f"truncated PDF (no %%EOF marker at the end; PDFium: {error})"
        return f"cannot read PDF: {error}"
    try:
        return len(document)
    finally:
        document.close()


def _count_frames(handle) -> Union[int, str]:
    """The frame count after decoding frame 1 (so a truncated file is found here, not mid-run), or why it failed."""
    try:
        with Image.open(handle) as image:
            frames = getattr(image, "n_frames", 1)
            image.load()
            return frames
    except UnidentifiedImageError:
        return "cannot read image: not a PNG, JPEG, TIFF or WebP file"
    except Image.DecompressionBombError as error:
        return f"cannot read image: {error}"
    except (OSError, SyntaxError, ValueError) as error:  # PIL reports truncation and corrupt data as these
        if "truncated" in str(error).lower():
            return f"truncated image: {error}"
        return f"cannot read image: {error}"


# ---- conversion and rendering -------------------------------------------------------------------------------------


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of `image`, with these rules (plain `convert("RGB")` gets the first two wrong, silently):

    - transparency (RGBA, LA, PA, La, RGBa, and P/L/RGB/1 with a `transparency` entry): composited onto white, so
      black text on a transparent page stays black on white (`convert` drops alpha and shows the hidden colour,
      usually black);
    - integer greyscale is scaled by the range of its type, never by the image's own min/max, so a page keeps its
      contrast: "I;16"/"I;16L"/"I;16B"/"I;16N" as value / 257 rounded (65535 -> 255); "I" (32-bit) is treated as
      16-bit data (Pillow's container for 16-bit PNG/PGM data), values clipped to 0..65535 then / 257;
      `convert` clips them at 255 instead, so most 16-bit pages come out all white;
    - float "F" is taken as 0..255 (Pillow's own convention: `convert("F")` of an "L" image keeps 0..255), clipped and
      rounded; NaN becomes 0;
    - everything else ("1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"): `convert("RGB")`.
    """
    if image.mode.startswith("I") or image.mode == "F":
        return _grey_to_rgb(image)
    if image.mode == "RGB":
        return image.copy()
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*_WHITE, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _grey_to_rgb(image: Image.Image) -> Image.Image:
    values = np.asarray(image)
    if image.mode == "F":
        scaled = np.nan_to_num(values.astype(np.float64), nan=0.0)
    else:  # "I;16*" or "I": see `to_rgb`
        scaled = np.clip(values.astype(np.float64), 0, 65535) / 257
    grey = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))  # 2-D uint8: mode "L"
    transparent = image.info.get("transparency")
    if isinstance(transparent, (int, float)):  # a tRNS grey value in the image's own units: those pixels are white
        grey.paste(255, mask=Image.fromarray((values == transparent).astype(np.uint8) * 255))
    return grey.convert("RGB")


class _DocumentCache:
    """The last opened PDF, kept open so consecutive pages of one file do not reopen (and reparse) it."""

    def __init__(self):
        self._source: Optional[SourceFile] = None
        self._document = None

    def get(self, source: SourceFile):
        if self._source != source:
            import pypdfium2  # optional dependency: the `pdf` extra

            self.close()
            _check_unchanged(source)
            self._document = pypdfium2.PdfDocument(str(source.path))
            self._source = source
        return self._document

    def close(self) -> None:
        if self._document is not None:
            self._document.close()
        self._source, self._document = None, None


def _check_unchanged(source: SourceFile) -> None:
    """Refuse a file edited since discovery: its pages would be stored under the old hash."""
    stat = source.path.stat()
    if (stat.st_size, stat.st_mtime_ns) != (source.size, source.mtime_ns):
        raise ValueError("file changed since it was discovered (size or modification time differ)")


def render_page(source: SourceFile, number: int, dpi: int) -> Image.Image:
    """Page `number` (1-based) of `source` as an RGB image (`to_rgb`): PDF pages rendered at `dpi` on white, image
    frames as stored (EXIF orientation applied, `dpi` unused)."""
    cache = _DocumentCache()
    try:
        return _render(source, number, dpi, cache)
    finally:
        cache.close()


def _render(source: SourceFile, number: int, dpi: int, cache: _DocumentCache) -> Image.Image:
    if not 1 <= number <= source.n_pages:
        raise ValueError(f"page {number} out of range: {source.name} has {source.n_pages}")
    if source.is_pdf:
        page = cache.get(source)[number - 1]
        try:  # an opaque white fill (pypdfium2's default too, made explicit): transparent PDF content lands on white
            return to_rgb(page.render(scale=dpi / 72, fill_color=(*_WHITE, 255)).to_pil())
        finally:
            page.close()
    _check_unchanged(source)
    with Image.open(source.path) as image:
        image.seek(number - 1)
        return to_rgb(ImageOps.exif_transpose(image))


# ---- page iteration -----------------------------------------------------------------------------------------------

_worker_cache: Optional[_DocumentCache] = None  # one per worker process, set by `_start_worker`


def _start_worker() -> None:
    from multiprocessing.util import Finalize

    global _worker_cache
    _worker_cache = _DocumentCache()
    # workers end through os._exit, skipping atexit: this hook closes the cached PDF (pypdfium2 warns otherwise)
    Finalize(None, _worker_cache.close, exitpriority=10)


def _render_in_worker(source: SourceFile, number: int, dpi: int) -> Union[Image.Image, str]:
    """Runs in a worker: the image, or the failure as text (an exception object might not pickle back)."""
    try:
        return _render(source, number, dpi, _worker_cache)
    except Exception as error:  # any failure is this page's problem, never the run's
        return _reason(error)


def _reason(error: Exception) -> str:
    return f"cannot render: {error}" if str(error) else f"cannot render: {type(error).__name__}"


def iter_pages(
    sources: Iterable[SourceFile],
    dpi: int = 110,
    workers: Optional[int] = None,
    prefetch: Optional[int] = None,
    only: Optional[Collection[str]] = None,
) -> Iterator[tuple[PageEntry, Union[Image.Image, Problem]]]:
    """(entry, RGB image) for every page of every source, in order; a page that fails yields (entry, `Problem`).

    Pages render in `workers` processes (default min(4, CPU count); spawned, since the caller may hold torch;
    `workers=0` renders in this process), with at most `prefetch` pages (default 2 * workers, at least 2) submitted
    and not yet yielded, so memory holds a few pages, not the collection. A worker that dies (a crash inside a
    decoder) costs only the page that killed it: the pages in flight with it are rendered again one at a time.
    Stopping the iteration early shuts the workers down. `only` (page keys) restricts the pages to those keys, for
    an update that re-embeds only what changed.
    """
    tasks = ((entry, source) for source in sources for entry in source.entries() if only is None or entry.key in only)
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    if workers < 0:
        raise ValueError(f"workers must be 0 (render in this process) or more, got {workers}")
    if workers == 0:
        yield from _iter_in_process(tasks, dpi)
    else:
        yield from _iter_in_pool(tasks, dpi, workers, max(2, 2 * workers) if prefetch is None else max(1, prefetch))


def _iter_in_process(tasks, dpi: int):
    cache = _DocumentCache()
    try:
        for entry, source in tasks:
            try:
                yield entry, _render(source, entry.page, dpi, cache)
            except Exception as error:  # any failure is this page's problem, never the run's
                yield entry, _page_problem(source, entry, _reason(error))
    finally:
        cache.close()


def _page_problem(source: SourceFile, entry: PageEntry, reason: str) -> Problem:
    return Problem(str(source.path), reason, page=entry.page)


class _WorkerPool:
    """Spawned render workers that can be replaced when one dies; refuses to go on when fresh ones keep dying."""

    max_failed_starts = 3  # pools in a row that died before returning anything: the workers cannot start at all

    def __init__(self, workers: int):
        import multiprocessing

        self.workers, self.context = workers, multiprocessing.get_context("spawn")
        self.failed_starts = 0
        self._start()

    def _start(self) -> None:
        self.executor = ProcessPoolExecutor(self.workers, mp_context=self.context, initializer=_start_worker)
        self.delivered = 0

    def submit(self, source: SourceFile, number: int, dpi: int):
        try:
            return self.executor.submit(_render_in_worker, source, number, dpi)
        except BrokenProcessPool:  # a worker died after the last result came back: resolved when this page is reached
            return None

    def result(self, future):
        """The worker's answer, or None when the pool broke (a worker died) before answering."""
        try:
            result = None if future is None else future.result()
        except BrokenProcessPool:
            result = None
        self.delivered += result is not None
        return result

    def restart(self) -> None:
        self.failed_starts = 0 if self.delivered else self.failed_starts + 1
        self.close()
        if self.failed_starts >= self.max_failed_starts:
            raise RuntimeError(
                f"page-rendering worker processes died {self.failed_starts} times in a row before rendering anything; "
                "in a script, start work under `if __name__ == '__main__':` (workers are spawned and re-import the "
                "main module), or pass workers=0 to render in this process"
            )
        self._start()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def _iter_in_pool(tasks, dpi: int, workers: int, prefetch: int):
    pool = _WorkerPool(workers)
    pending = deque()  # (entry, source, future) submitted and not yet yielded, in page order
    retry = deque()  # pages in flight when a worker died: rendered again one at a time, so the culprit is known
    try:
        while True:
            limit = 1 if retry else prefetch
            while len(pending) < limit and (item := retry.popleft() if retry else next(tasks, None)):
                pending.append((*item, pool.submit(item[1], item[0].page, dpi)))
            if not pending:
                return
            entry, source, future = pending.popleft()
            result = pool.result(future)
            if result is None:
                pool.restart()
                if future is not None and limit == 1:  # it was alone in the pool: this page killed the worker
                    yield entry, _page_problem(source, entry, "the renderer crashed (its worker process died)")
                else:
                    retry.extendleft(reversed([(entry, source), *((e, s) for e, s, _ in pending)]))
                    pending.clear()
            else:
                yield entry, _page_problem(source, entry, result) if isinstance(result, str) else result
    finally:
        for *_, future in pending:
            if future is not None:
                future.cancel()
        pool.close()


# ---- the CLI's entry point ----------------------------------------------------------------------------------------


def load_pages(folder, pdf_dpi: int = 110) -> list[tuple[str, Image.Image]]:
    """(key, RGB image) for every page under `folder` (a folder, searched recursively, or one PDF or image file).

    Unusable files and pages are listed on stderr and skipped. Raises `ValueError` naming `folder` when it does not
    exist or holds no usable page.
    """
    try:
        discovery = discover([folder])
    except ValueError as error:
        raise ValueError(f"--pages: {error}") from None
    pages, problems = [], list(discovery.problems)
    for entry, result in iter_pages(discovery.sources, dpi=pdf_dpi, workers=0):
        if isinstance(result, Problem):
            problems.append(result)
        else:
            pages.append((entry.key, result))
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    if not pages:
        skipped = [f"{len(problems)} unusable"] if problems else []
        skipped += [f"{count} {suffix}" for suffix, count in sorted(discovery.unsupported.items())]
        detail = f" (skipped: {', '.join(skipped)})" if skipped else ""
        raise ValueError(f"--pages: no PNG, JPEG or PDF pages (nor TIFF or WebP) in {folder}{detail}")
    return pages
