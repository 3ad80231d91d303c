"""Bring a page store up to date with a document collection, streaming: the API under `colqwen3 index`.

    discovery = discover(["reports/", "slides.pdf"])
    with LocalIndex.open("my-index", settings, create=True) as store:
        report = update_index(store, LocalEmbedder(model, processor), discovery)

Only pages that are new or whose file changed (by content hash) are embedded; pages of files that were removed or
changed are dropped first. Pages flow through a bounded pipeline: rendered in worker processes a few at a time,
embedded a window at a time (sorted by length inside the window), and committed to the store every `flush_pages`
pages, so memory is bounded by a window and a flush, not by the collection, and a killed run loses at most one flush.
Rerunning after a kill resumes: committed pages are skipped, the rest are embedded.
"""

import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from colqwen3.index.documents import Discovery, Problem, iter_pages
from colqwen3.index.store import PageEntry, PageStore

__all__ = ["ON_ERROR", "IndexingError", "IndexingReport", "update_index"]

ON_ERROR = ("skip", "stop")


class IndexingError(RuntimeError):
    """A bad file or page under `on_error="stop"`; the message names the file and the reason."""


@dataclass
class IndexingReport:
    """What an indexing run did."""

    added: int = 0
    removed: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    unsupported: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def pages_per_second(self) -> Optional[float]:
        return self.added / self.seconds if self.added and self.seconds > 0 else None

    def summary(self) -> str:
        rate = f", {self.pages_per_second:.2f} pages/s" if self.pages_per_second else ""
        lines = [
            f"{self.added} pages embedded, {self.removed} removed, {self.unchanged} unchanged "
            f"in {self.seconds:.1f} s{rate}"
        ]
        if self.unsupported:
            kinds = ", ".join(
                f"{count} {suffix or '(no suffix)'}" for suffix, count in sorted(self.unsupported.items())
            )
            lines.append(f"not page files, left out: {kinds}")
        if self.problems:
            lines.append(f"skipped {len(self.problems)} bad file(s) or page(s):")
            lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def plan(store: PageStore, discovery: Discovery) -> tuple[list[str], list[PageEntry], int]:
    """(keys to remove, pages to embed, pages unchanged): pages whose file hash changed are removed and re-embedded."""
    stored = store.entries()
    wanted = {entry.key: entry for source in discovery.sources for entry in source.entries()}
    stale = [key for key, entry in stored.items() if wanted.get(key) != entry]
    todo = [entry for key, entry in wanted.items() if stored.get(key) != entry]
    return stale, todo, len(wanted) - len(todo)


def update_index(
    store: PageStore,
    embedder,
    discovery: Discovery,
    *,
    pdf_dpi: int = 110,
    workers: Optional[int] = None,
    window: int = 16,
    flush_pages: int = 64,
    on_error: str = "skip",
    progress: bool = True,
) -> IndexingReport:
    """Make `store` hold exactly the pages of `discovery` (see the module docstring); returns what was done.

    `on_error="skip"` reports bad files and pages in the returned report and goes on; `"stop"` raises
    `IndexingError` at the first one (pages committed before it stay committed).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    for name, value in (("window", window), ("flush_pages", flush_pages)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    started = time.perf_counter()
    report = IndexingReport(unsupported=dict(discovery.unsupported))
    for problem in discovery.problems:
        _problem(report, problem, on_error)
    stale, todo, report.unchanged = plan(store, discovery)
    if stale or todo or not store.complete:
        store.set_complete(False)  # an interrupted run leaves this False: search warns until a run finishes
        store.remove(stale)  # before adding: a changed page's old vectors never sit next to its new ones
        report.removed = len(stale)
        report.added = _embed_and_store(
            store, embedder, discovery, todo, report, pdf_dpi, workers, window, flush_pages, on_error, progress
        )
        store.set_complete(True)
    report.seconds = time.perf_counter() - started
    return report


def _problem(report: IndexingReport, problem: Problem, on_error: str) -> None:
    if on_error == "stop":
        raise IndexingError(str(problem))
    report.problems.append(problem)


def _embed_and_store(
    store, embedder, discovery, todo, report, pdf_dpi, workers, window, flush_pages, on_error, progress
) -> int:
    from tqdm.auto import tqdm

    keys = {entry.key for entry in todo}
    sources = [source for source in discovery.sources if any(entry.key in keys for entry in source.entries())]
    bar = tqdm(total=len(todo), unit="page", desc="indexing", disable=not progress, file=sys.stderr, mininterval=0.5)
    pending_entries, pending_vectors, images, added = [], [], [], 0

    def embed_window():
        embedded = _embed(embedder, images, report, on_error)
        for (entry, _), vectors in zip(images, embedded):
            if vectors is not None:
                pending_entries.append(entry)
                pending_vectors.append(vectors)
        bar.update(len(images))
        images.clear()

    def flush(everything: bool = False):
        """Commit `flush_pages` pages at a time (and the remainder at the end): one store write each."""
        nonlocal added
        while len(pending_entries) >= flush_pages or (everything and pending_entries):
            store.add(pending_entries[:flush_pages], pending_vectors[:flush_pages])
            added += len(pending_entries[:flush_pages])
            del pending_entries[:flush_pages], pending_vectors[:flush_pages]

    try:
        for entry, page in iter_pages(sources, dpi=pdf_dpi, workers=workers, only=keys):
            if isinstance(page, Problem):
                _problem(report, page, on_error)
                bar.update(1)
                continue
            images.append((entry, page))
            if len(images) == window:
                embed_window()
                flush()
        if images:
            embed_window()
        flush(everything=True)
    finally:
        bar.close()
    return added


def _embed(embedder, images, report, on_error) -> list[Optional[torch.Tensor]]:
    """Vectors per image; a window that fails is retried page by page so one bad page costs only itself."""
    try:
        return list(embedder.embed_pages([image for _, image in images]))
    except (ValueError, TypeError, RuntimeError) as error:
        if len(images) == 1:
            entry = images[0][0]
            _problem(report, Problem(path=entry.key, reason=f"could not embed: {error}"), on_error)
            return [None]
    return [vectors for item in images for vectors in _embed(embedder, [item], report, on_error)]
