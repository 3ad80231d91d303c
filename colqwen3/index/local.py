"""The local page index: a folder of immutable segment files plus a small manifest, searched block by block.

Layout of an index folder:

- `index.json`, the manifest: `format` (`colqwen3-page-index/2`), the `IndexSettings`, whether the last indexing run
  finished (`complete`), and the live segments with the rows removed from each (`dead`).
- `segments/seg-NNNNNN.safetensors`, one per `add` call (standard safetensors files). A segment keeps its pages in
  length-sorted blocks, each pre-padded to one `[pages, width, dim]` tensor `block.K.data` (+ `block.K.scale` for int8)
  with `block.K.lengths`; every page is padded with copies of its own first token, so a block is scored with one plain
  matrix product and a max (a duplicate never changes a max). Its header metadata holds the pages' `PageEntry` rows in
  block order.

Writes are atomic: a segment is written under a temporary name, flushed and renamed, and only then named in the
manifest, which is itself replaced atomically. A process killed at any point leaves either the old or the new manifest;
a segment file that no manifest names is an unfinished write and is deleted by the next writer.

Search maps each segment file and scores one block at a time: memory is bounded by a block (at most `block_tokens`
padded rows) plus 4 bytes per page per query for the scores.
"""

import json
import mmap
import os
import struct
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
from safetensors.torch import save_file

from colqwen3.index.compact import COMPACT_DTYPES, decode_tokens, encode_tokens, pool_tokens
from colqwen3.index.store import (
    Hit,
    IndexSettings,
    PageEntry,
    PageStore,
    SettingsMismatchError,
    check_new_pages,
    check_queries,
    rank_hits,
)
from scoring_colqwen3 import score_padded_block

__all__ = ["FORMAT", "MANIFEST", "STORAGE_DTYPES", "IndexFolderError", "LocalIndex"]

FORMAT = "colqwen3-page-index/2"
MANIFEST = "index.json"
SEGMENTS = "segments"
LOCK = "writer.lock"
STORAGE_DTYPES = COMPACT_DTYPES
_FLOAT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# safetensors dtype names -> (numpy dtype of the raw bytes, torch dtype to view them as)
_RAW_DTYPES = {
    "F32": (np.float32, torch.float32),
    "BF16": (np.int16, torch.bfloat16),
    "F16": (np.float16, torch.float16),
    "I8": (np.int8, torch.int8),
    "U8": (np.uint8, torch.uint8),
    "I64": (np.int64, torch.int64),
}


class IndexFolderError(ValueError):
    """`--index` names something that is not a usable index folder (a file, a foreign folder, a damaged index)."""


def _write_atomically(path: Path, write) -> None:
    """`write(temporary path)`, flush it to disk, then rename it over `path`: readers see the old or the new file."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def _is_unfinished_write(path: Path) -> bool:
    """A temporary file `_write_atomically` left behind when its process was killed."""
    return path.name.startswith(".") and ".tmp-" in path.name


def _pad_by_duplication(pages: list[torch.Tensor]) -> torch.Tensor:
    """`[b, width, dim]`: each page followed by copies of its first row up to the longest page's length."""
    width = max(page.shape[0] for page in pages)
    block = pages[0].new_empty(len(pages), width, *pages[0].shape[1:])
    for row, page in enumerate(pages):
        block[row, : page.shape[0]] = page
        block[row, page.shape[0] :] = page[:1]
    return block


class _Segment:
    """One segment file, memory-mapped: its pages' entries and zero-copy views of its blocks."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as handle:
            try:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
                (header_size,) = struct.unpack("<Q", self._map[:8])
                header = json.loads(self._map[8 : 8 + header_size])
            except (ValueError, OSError, struct.error) as error:  # empty, truncated or not safetensors
                raise IndexFolderError(f"index segment {path} is damaged ({error}); rebuild with --reindex") from None
        self._start = 8 + header_size
        self._header = header
        metadata = header.pop("__metadata__", {})
        self.entries = [PageEntry.from_dict(row) for row in json.loads(metadata["entries"])]
        self.n_blocks = int(metadata["n_blocks"])
        if self._start + max((info["data_offsets"][1] for info in header.values()), default=0) > len(self._map):
            raise IndexFolderError(f"index segment {path} is truncated; rebuild with --reindex")

    def tensor(self, name: str) -> torch.Tensor:
        info = self._header[name]
        numpy_dtype, torch_dtype = _RAW_DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        array = np.frombuffer(
            self._map,
            dtype=numpy_dtype,
            count=(end - begin) // np.dtype(numpy_dtype).itemsize,
            offset=self._start + begin,
        )
        # A copy-on-write view of the mapped file: nothing is read into memory until used, nothing copied.
        return torch.from_numpy(array).view(torch_dtype).view(info["shape"])

    def block(self, index: int, dtype: str) -> tuple[torch.Tensor, int]:
        """(`[b, width, dim]` block as stored, or decoded to float32 for int8/binary; its number of pages)."""
        data = self.tensor(f"block.{index}.data")
        if dtype in _FLOAT_DTYPES:
            return data, data.shape[0]
        payload = {"data": data.reshape(-1, data.shape[-1])}
        if dtype == "int8":
            payload["scale"] = self.tensor(f"block.{index}.scale").reshape(-1)
        else:
            payload["dim"] = self.tensor("dim")
        decoded = decode_tokens(payload, dtype)
        return decoded.view(data.shape[0], data.shape[1], -1), data.shape[0]

    def page_vectors(self, row: int, dtype: str) -> torch.Tensor:
        """The stored `[tokens, dim]` vectors of row `row` (decoded to float32 for int8/binary)."""
        for index in range(self.n_blocks):
            lengths = self.tensor(f"block.{index}.lengths")
            if row < len(lengths):
                block, _ = self.block(index, dtype)
                return block[row, : int(lengths[row])].clone()
            row -= len(lengths)
        raise IndexError(row)

    def release(self, index: int) -> None:
        """Drop block `index`'s pages from this process's memory (they stay in the OS page cache): mapped pages
        count as resident once read, and without this a search would end holding the whole index."""
        spans = [self._header[name]["data_offsets"] for name in self._header if name.startswith(f"block.{index}.")]
        begin = (self._start + min(b for b, _ in spans)) // mmap.PAGESIZE * mmap.PAGESIZE
        end = self._start + max(e for _, e in spans)
        self._map.madvise(mmap.MADV_DONTNEED, begin, end - begin)  # never written: re-read from the file if needed

    def close(self) -> None:
        self._map.close()


class LocalIndex(PageStore):
    """A page index in a local folder (see the module docstring). Open or create with `LocalIndex.open`."""

    def __init__(self, folder: Path, manifest: dict, block_tokens: int):
        self.folder = folder
        self._manifest = manifest
        self.settings = IndexSettings.from_dict(manifest["settings"])
        self.block_tokens = block_tokens
        self._segments: dict[str, _Segment] = {}
        self._lock = None  # taken at the first write: one writer at a time, any number of readers
        self._live_keys: Optional[set] = None  # built at the first add, kept up to date: adds stay O(pages added)
        for record in manifest["segments"]:
            self._segments[record["file"]] = _Segment(folder / SEGMENTS / record["file"])

    # ----- opening -----
    @classmethod
    def open(
        cls, folder, settings: Optional[IndexSettings] = None, *, create: bool = False, block_tokens: int = 4096
    ) -> "LocalIndex":
        """Open the index in `folder`; with `create=True` make it (with `settings`) when `folder` is absent or empty.

        Given `settings`, an existing index built under other settings raises `SettingsMismatchError` naming each
        difference. Anything at `folder` that is not an index (a file, a folder with other files, a damaged manifest)
        raises `IndexFolderError`: the index never writes over files it did not write.
        """
        folder = Path(folder)
        if isinstance(block_tokens, bool) or not isinstance(block_tokens, int) or block_tokens < 1:
            raise ValueError(f"block_tokens must be a positive integer, got {block_tokens!r}")
        manifest_path = folder / MANIFEST
        if not manifest_path.exists():
            cls.check_creatable(folder)
            if not create:
                raise IndexFolderError(f"--index {folder} does not exist; build it first with `colqwen3 index`")
            if settings is None:
                raise ValueError("settings are needed to create an index")
            folder.mkdir(parents=True, exist_ok=True)
            manifest = {"format": FORMAT, "settings": json.loads(settings.to_json()), "complete": False, "segments": []}
            _write_atomically(manifest_path, lambda path: path.write_text(json.dumps(manifest, indent=1)))
            (folder / SEGMENTS).mkdir(exist_ok=True)
        manifest = cls._read_manifest(manifest_path)
        index = cls(folder, manifest, block_tokens)
        if settings is not None and index.settings.differences(settings):
            index.close()
            raise SettingsMismatchError(
                f"--index {folder} was built with other settings ({'; '.join(index.settings.differences(settings))}):"
                " pass --reindex to rebuild it, or leave the storage flags out to keep the index's"
            )
        return index

    @staticmethod
    def check_creatable(folder: Path) -> None:
        """Raise `IndexFolderError` unless an index could be created at `folder` (absent, or an empty folder)."""
        if folder.exists() and not folder.is_dir():
            raise IndexFolderError(f"--index {folder} is a file, not an index folder; choose a new folder name")
        if folder.is_dir() and any(not _is_unfinished_write(path) for path in folder.iterdir()):
            raise IndexFolderError(f"--index {folder} is a folder with other files in it, not a ColQwen3 index")

    @staticmethod
    def _read_manifest(path: Path) -> dict:
        try:
            manifest = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise IndexFolderError(f"{path} is not a readable index manifest ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise IndexFolderError(f"{path} is not a ColQwen3 page index manifest (format {found!r}, need {FORMAT!r})")
        try:
            IndexSettings.from_dict(manifest["settings"])
            [(record["file"], list(record["dead"])) for record in manifest["segments"]]
        except (KeyError, TypeError) as error:
            raise IndexFolderError(f"{path} is a damaged index manifest (missing {error})") from None
        return manifest

    @staticmethod
    def delete(folder) -> None:
        """Remove an index folder, refusing anything that is not one (the `--reindex` path)."""
        folder = Path(folder)
        if not folder.exists():
            return
        if not folder.is_dir():
            raise IndexFolderError(f"--index {folder} is a file, not an index folder; it is left untouched")
        if not (folder / MANIFEST).exists():
            LocalIndex.check_creatable(folder)  # an empty folder is fine; anything else is not ours to delete
            return
        LocalIndex._read_manifest(folder / MANIFEST)  # raises unless this folder is an index
        segments = folder / SEGMENTS
        if segments.is_dir():
            for path in segments.iterdir():
                path.unlink()
            segments.rmdir()
        (folder / MANIFEST).unlink()
        (folder / LOCK).unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()

    def close(self) -> None:
        for segment in self._segments.values():
            segment.close()
        self._segments = {}
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    # ----- reading -----
    def _live(self):
        """(segment, row, entry) for every live page, in segment order."""
        for record in self._manifest["segments"]:
            segment, dead = self._segments[record["file"]], set(record["dead"])
            for row, entry in enumerate(segment.entries):
                if row not in dead:
                    yield segment, row, entry

    def entries(self) -> dict[str, PageEntry]:
        return {entry.key: entry for _, _, entry in self._live()}

    @property
    def complete(self) -> bool:
        return bool(self._manifest["complete"])

    def page_vectors(self, key: str) -> torch.Tensor:
        """The stored vectors of one page (float32 for int8/binary storage, else the stored dtype)."""
        for segment, row, entry in self._live():
            if entry.key == key:
                return segment.page_vectors(row, self.settings.dtype)
        raise KeyError(f"no page {key!r} in {self.folder}")

    # ----- writing -----
    def _become_writer(self) -> None:
        """Lock the index for writing (another writer gets a clear error) and clear what a killed writer left."""
        if self._lock is not None:
            return
        import fcntl

        lock = open(self.folder / LOCK, "a")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise IndexFolderError(f"another process is writing the index at {self.folder}; wait for it") from None
        self._lock = lock
        self.remove_unfinished_writes()

    def _commit(self, manifest: dict) -> None:
        self._become_writer()
        _write_atomically(self.folder / MANIFEST, lambda path: path.write_text(json.dumps(manifest, indent=1)))
        self._manifest = manifest

    def set_complete(self, complete: bool) -> None:
        if self.complete != complete:
            self._commit({**self._manifest, "complete": bool(complete)})

    def remove_unfinished_writes(self) -> list[Path]:
        """Delete segment files no manifest names (left by a killed writer); returns what was deleted."""
        named = {record["file"] for record in self._manifest["segments"]}
        stray = [path for path in (self.folder / SEGMENTS).iterdir() if path.name not in named]
        stray += [path for path in self.folder.iterdir() if _is_unfinished_write(path)]
        for path in stray:
            path.unlink()
        return stray

    def add(self, entries: list[PageEntry], vectors: list[torch.Tensor]) -> None:
        self._become_writer()
        vectors = self._check_new_pages(entries, vectors)
        if self.settings.pool_factor > 1:
            vectors = [pool_tokens(v.float(), self.settings.pool_factor) for v in vectors]
        order = sorted(range(len(vectors)), key=lambda i: (vectors[i].shape[0], entries[i].key))
        tensors, block_entries, n_blocks, start = {}, [], 0, 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * vectors[order[end]].shape[0] <= self.block_tokens:
                end += 1
            rows = order[start:end]
            block = _pad_by_duplication([vectors[i].float() for i in rows])
            payload = encode_tokens(block.reshape(-1, block.shape[-1]), self.settings.dtype)
            for key, value in payload.items():
                if key == "dim":
                    tensors["dim"] = value
                else:  # data [b * width, d'] -> [b, width, d']; scale [b * width] -> [b, width]
                    tensors[f"block.{n_blocks}.{key}"] = value.view(len(rows), -1, *value.shape[1:]).contiguous()
            tensors[f"block.{n_blocks}.lengths"] = torch.tensor([vectors[i].shape[0] for i in rows])
            block_entries += [entries[i].to_dict() for i in rows]
            n_blocks, start = n_blocks + 1, end
        name = f"seg-{self._next_segment_number():06d}.safetensors"
        metadata = {"format": FORMAT, "entries": json.dumps(block_entries), "n_blocks": str(n_blocks)}
        _write_atomically(self.folder / SEGMENTS / name, lambda path: save_file(tensors, str(path), metadata))
        self._segments[name] = _Segment(self.folder / SEGMENTS / name)
        self._commit({**self._manifest, "segments": [*self._manifest["segments"], {"file": name, "dead": []}]})
        self._live_keys.update(entry.key for entry in entries)

    def _next_segment_number(self) -> int:
        existing = [int(path.stem.split("-")[1]) for path in (self.folder / SEGMENTS).glob("seg-*.safetensors")]
        return max(existing, default=0) + 1

    def _check_new_pages(self, entries, vectors) -> list[torch.Tensor]:
        vectors = check_new_pages(entries, vectors, self.settings.embed_dim)
        if self._live_keys is None:
            self._live_keys = {entry.key for _, _, entry in self._live()}
        for entry in entries:
            if entry.key in self._live_keys:
                raise ValueError(f"page {entry.key!r} is already in the index; remove it first")
        return vectors

    def remove(self, keys: Iterable[str]) -> None:
        keys = set(keys)
        if not keys:
            return
        found = set()
        segments = []
        for record in self._manifest["segments"]:
            dead = set(record["dead"])
            for row, entry in enumerate(self._segments[record["file"]].entries):
                if entry.key in keys and row not in dead:
                    dead.add(row)
                    found.add(entry.key)
            segments.append({"file": record["file"], "dead": sorted(dead)})
        if keys - found:
            raise ValueError(f"pages not in the index: {sorted(keys - found)[:5]}")
        emptied = [r["file"] for r in segments if len(r["dead"]) == len(self._segments[r["file"]].entries)]
        self._commit({**self._manifest, "segments": [r for r in segments if r["file"] not in emptied]})
        if self._live_keys is not None:
            self._live_keys -= keys
        for name in emptied:  # after the commit: the manifest never names a missing file
            self._segments.pop(name).close()
            (self.folder / SEGMENTS / name).unlink()

    # ----- search -----
    def score(self, queries: list[torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        """Exact MaxSim of every live page: (`[n_queries, n_pages]` float32 scores, the page keys of the columns)."""
        queries = check_queries(queries, self.settings.embed_dim)
        tokens = torch.cat([query.float() for query in queries])
        owner = torch.repeat_interleave(torch.arange(len(queries)), torch.tensor([len(q) for q in queries]))
        columns, keys = [], []
        for record in self._manifest["segments"]:
            segment, dead = self._segments[record["file"]], set(record["dead"])
            row = 0
            for index in range(segment.n_blocks):
                block, n_pages = segment.block(index, self.settings.dtype)
                scores = score_padded_block(tokens, owner, len(queries), block)
                del block
                segment.release(index)
                live = [r for r in range(n_pages) if row + r not in dead]
                columns.append(scores[:, live] if len(live) < n_pages else scores)
                keys += [segment.entries[row + r].key for r in live]
                row += n_pages
        scores = torch.cat(columns, dim=1) if columns else torch.zeros(len(queries), 0)
        return scores, keys

    def search(self, queries: list[torch.Tensor], top_k: int = 10) -> list[list[Hit]]:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        scores, keys = self.score(queries)
        return rank_hits(scores, keys, top_k) if keys else [[] for _ in queries]
