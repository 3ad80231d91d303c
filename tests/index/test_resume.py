"""A killed `colqwen3 index` leaves a valid index; rerunning it finishes the index an uninterrupted run builds."""

import random
import subprocess
import sys
import time

import pytest
import torch

from colqwen3.index.local import LocalIndex
from colqwen3.testing.collection import write_collection

N_PAGES = 24


def command(folder, index, checkpoint) -> list[str]:
    return [sys.executable, "-m", "colqwen3", "index", "--pages", str(folder), "--index", str(index), "--model",
            str(checkpoint), "--workers", "0", "--flush-pages", "2", "--storage-dtype", "float32"]  # fmt: skip


def committed_segments(index) -> int:
    folder = index / "segments"
    return len(list(folder.glob("seg-*.safetensors"))) if folder.is_dir() else 0


def kill_at_random_point(argv, index, rng: random.Random) -> bool:
    """Start the indexer, wait until a random number of segments is on disk, SIGKILL it a moment later; returns
    whether it was still running (on a fast machine it can finish first)."""
    target = rng.randint(1, N_PAGES // 4)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while committed_segments(index) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))  # anywhere in the next commit: mid-embedding, mid-write, mid-rename
        return process.poll() is None
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    write_collection(folder, N_PAGES)
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory, collection, tomoro_checkpoint):
    """The index an uninterrupted run builds."""
    folder = tmp_path_factory.mktemp("reference") / "index"
    subprocess.run(command(collection, folder, tomoro_checkpoint), check=True, capture_output=True)
    return folder


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_killed_run_resumes_to_the_uninterrupted_index(tmp_path, collection, tomoro_checkpoint, reference, seed):
    rng = random.Random(seed)
    for attempt in range(3):
        index = tmp_path / f"resumed-{attempt}"
        if kill_at_random_point(command(collection, index, tomoro_checkpoint), index, rng):
            break
    else:
        pytest.fail("the indexer finished before every kill: make the collection larger")
    with LocalIndex.open(index) as killed:  # whatever was committed is readable; the run is marked unfinished
        assert 0 < len(killed) < N_PAGES and not killed.complete
        killed.search([torch.ones(3, killed.settings.embed_dim)], top_k=1)
    result = subprocess.run(command(collection, index, tomoro_checkpoint), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    with LocalIndex.open(reference) as want, LocalIndex.open(index) as got:
        assert got.complete and got.entries() == want.entries() and len(got) == N_PAGES
        for key in want.entries():  # batches differ after a resume: float32 results agree to rounding
            assert torch.allclose(got.page_vectors(key), want.page_vectors(key), atol=1e-5, rtol=0), key
        assert got.remove_unfinished_writes() == []
