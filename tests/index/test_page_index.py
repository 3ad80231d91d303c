"""colqwen3.index.page_index: write once, memory-map, search chunk by chunk; top-k equals a float64 brute force."""

import json

import pytest
import torch
from safetensors import safe_open

from colqwen3.index.compact import decode_tokens, encode_tokens, pool_tokens
from colqwen3.index.page_index import PageIndex, write_index
from colqwen3.testing.references import maxsim_float64
from colqwen3.testing.references import random_unit_vectors as random_vectors


@pytest.fixture
def corpus():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 40, (23,), generator=generator).tolist()
    return random_vectors(lengths, dim=16, seed=1), [f"page-{i}.png" for i in range(23)]


def test_metadata_and_layout_are_standard(tmp_path, corpus):
    vectors, names = corpus
    path = write_index(tmp_path / "index.safetensors", vectors, names, model="org/model", revision="abc123")
    with safe_open(str(path), framework="pt") as handle:  # a plain safetensors reader sees everything
        meta = handle.metadata()
        offsets = handle.get_tensor("offsets")
        assert handle.get_tensor("tokens.data").dtype == torch.bfloat16
    assert meta["model"] == "org/model" and meta["revision"] == "abc123" and meta["embed_dim"] == "16"
    assert json.loads(meta["names"]) == names and offsets.tolist()[-1] == sum(len(v) for v in vectors)
    index = PageIndex(path)
    assert len(index) == 23 and index.pages(4, 6)[1].equal(vectors[5].bfloat16())


@pytest.mark.parametrize("chunk_pages", [1, 5, 256])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_search_top_k_matches_float64_brute_force(tmp_path, corpus, chunk_pages, dtype):
    vectors, names = corpus
    index = PageIndex(write_index(tmp_path / "i.safetensors", vectors, names, model="m", dtype=dtype))
    queries = random_vectors((4, 9, 1), dim=16, seed=2)
    stored = [v.to(getattr(torch, dtype)) for v in vectors]
    expected = maxsim_float64(queries, stored)
    scores, pages = index.search(queries, top_k=5, chunk_pages=chunk_pages)
    assert scores.shape == pages.shape == (3, 5)
    want_scores, want_pages = expected.topk(5, dim=1)
    assert (scores.double() - want_scores).abs().max().item() < (1e-5 if dtype == "float32" else 2e-2)
    if dtype == "float32":
        assert pages.equal(want_pages)
    assert (expected.gather(1, pages) - want_scores).abs().max().item() < 2e-2  # the pages found score as well


def test_top_k_larger_than_the_corpus(tmp_path, corpus):
    vectors, names = corpus
    index = PageIndex(write_index(tmp_path / "i.safetensors", vectors[:3], names[:3], model="m"))
    scores, pages = index.search(random_vectors((4,), dim=16), top_k=10)
    assert scores.shape == (1, 3) and sorted(pages[0].tolist()) == [0, 1, 2]


def test_bad_input_is_named(tmp_path, corpus):
    vectors, names = corpus
    with pytest.raises(ValueError, match="'float8'"):
        write_index(tmp_path / "i.safetensors", vectors, names, model="m", dtype="float8")
    with pytest.raises(ValueError, match="one name per page"):
        write_index(tmp_path / "i.safetensors", vectors, names[:-1], model="m")
    index = PageIndex(write_index(tmp_path / "i.safetensors", vectors, names, model="m"))
    with pytest.raises(ValueError, match=r"dim\(s\) \[8\].*embed_dim 16"):
        index.search(random_vectors((4,), dim=8), top_k=1)
    with pytest.raises(ValueError, match="top_k.*0"):
        index.search(random_vectors((4,), dim=16), top_k=0)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(other))
    with pytest.raises(ValueError, match="not a ColQwen3 page index"):
        PageIndex(other)


@pytest.mark.parametrize("dtype, pool_factor", [("int8", 1), ("binary", 1), ("bfloat16", 2), ("int8", 3)])
def test_compact_indexes_score_their_stored_values_exactly(tmp_path, corpus, dtype, pool_factor):
    """What is searched is exactly what compact_storage stores (decoded), scored by the float64 definition."""
    vectors, names = corpus
    path = write_index(tmp_path / "i.safetensors", vectors, names, model="m", dtype=dtype, pool_factor=pool_factor)
    stored = [pool_tokens(v, pool_factor) for v in vectors]
    stored = [decode_tokens(encode_tokens(v, dtype), dtype) if dtype != "bfloat16" else v.bfloat16() for v in stored]
    queries = random_vectors((4, 9), dim=16, seed=3)
    expected = maxsim_float64(queries, stored)
    scores, pages = PageIndex(path).search(queries, top_k=4)
    assert (scores.double() - expected.topk(4, dim=1).values).abs().max().item() < (
        2e-2 if dtype == "bfloat16" else 1e-5
    )
    full_bytes = sum(v.numel() * 2 for v in vectors)
    assert path.stat().st_size < full_bytes  # smaller than bf16 pages
