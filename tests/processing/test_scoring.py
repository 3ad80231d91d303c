"""MaxSim scoring (`scoring_colqwen3.score_multi_vector`, also `ColQwen3Processor.score_multi_vector`) against the
float64 brute force of `colqwen3.testing.references`."""

import inspect

import pytest
import torch

import scoring_colqwen3
from colqwen3.testing.references import maxsim_float64, pad
from colqwen3.testing.references import random_unit_vectors as random_vectors
from colqwen3.testing.tiny import embed
from processing_colqwen3 import ColQwen3Processor
from scoring_colqwen3 import score_multi_vector as score

DEFAULT_BLOCKS = tuple(
    inspect.signature(score).parameters[name].default for name in ("batch_size", "chunk_tokens", "query_chunk_tokens")
)


@pytest.mark.parametrize("chunk", [DEFAULT_BLOCKS, (1, 1, 1), (3, 50, 8)], ids=["defaults", "tiniest", "small"])
def test_ragged_random_inputs_match_float64(chunk):
    batch_size, chunk_tokens, query_chunk_tokens = chunk
    queries = random_vectors((3, 7, 1, 12), seed=1)
    docs = random_vectors((5, 40, 2, 9, 33, 1), seed=2)
    got = score(queries, docs, batch_size=batch_size, chunk_tokens=chunk_tokens, query_chunk_tokens=query_chunk_tokens)
    assert got.shape == (4, 6) and got.dtype == torch.float32 and got.device.type == "cpu"
    assert (got.double() - maxsim_float64(queries, docs)).abs().max().item() < 1e-5


def test_padding_never_wins_when_every_similarity_is_negative():
    queries = random_vectors((4, 6), seed=3, sign=1)
    docs = random_vectors((3, 11, 7), seed=4, sign=-1)
    expected = maxsim_float64(queries, docs)
    assert (expected < 0).all()  # a zero padding row would win every max here
    for side in ("left", "right"):
        q, q_mask = pad(queries, side)
        d, d_mask = pad(docs, side)
        for got in (score(q, d), score(q, d, query_mask=q_mask, page_mask=d_mask)):
            assert (got.double() - expected).abs().max().item() < 1e-5


def test_explicit_masks_with_holes_and_nonzero_padding():
    """A mask is the truth: padding rows need not be zero, and real tokens need not be contiguous."""
    queries = random_vectors((5,), seed=5)
    docs = random_vectors((8, 6), seed=6)
    d, d_mask = pad(docs, "right")
    d[~d_mask] = 1.0  # garbage in the padding must be ignored
    d_mask[0, 2] = False  # a hole: token 2 of page 0 does not count
    expected = maxsim_float64(queries, [docs[0][[0, 1, 3, 4, 5, 6, 7]], docs[1]])
    assert (score(queries, d, page_mask=d_mask).double() - expected).abs().max().item() < 1e-5


def test_padded_tensors_score_like_ragged_lists(model, processor, pages):
    query_batch = processor.process_queries(["revenue", "what is the capital of france"])
    page_batch = processor.process_images([pages[0], pages[1].resize((200, 200))])
    q, p = embed(model, query_batch), embed(model, page_batch)
    ragged_q = [q[i][query_batch["attention_mask"][i].bool()] for i in range(2)]
    ragged_p = [p[i][page_batch["attention_mask"][i].bool()] for i in range(2)]
    expected = maxsim_float64(ragged_q, ragged_p)
    assert (processor.score_multi_vector(q, p).double() - expected).abs().max().item() < 1e-5
    masked = processor.score_multi_vector(
        q, p, query_mask=query_batch["attention_mask"], page_mask=page_batch["attention_mask"]
    )
    assert (masked.double() - expected).abs().max().item() < 1e-5


def test_hand_computed_maxsim():
    query = [torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    page = [torch.tensor([[0.6, 0.8], [-1.0, 0.0]])]  # maxima 0.6 and 0.8
    assert score(query, page).item() == pytest.approx(1.4)
    negative_page = torch.tensor([[[-0.6, -0.8], [0.0, 0.0]]])  # second row is padding
    assert score(query, negative_page).item() == pytest.approx(-1.4)


@pytest.mark.parametrize("native_bf16", [True, False], ids=["bf16-pass", "upcast"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_pages_are_accumulated_in_float32(dtype, native_bf16, monkeypatch):
    # Both bf16 paths run on any CPU: the bf16 pass is only chosen on hardware with native bf16 products.
    monkeypatch.setattr(scoring_colqwen3, "_bf16_matmul_is_fast", lambda device: native_bf16)
    queries = random_vectors((20, 9), dim=64, seed=7)
    docs = [d.to(dtype) for d in random_vectors((300, 120, 5), dim=64, seed=8)]
    got = score(queries, docs)
    assert got.dtype == torch.float32
    # the reference: float64 MaxSim of exactly the stored low-precision values
    assert (got.double() - maxsim_float64(queries, docs)).abs().max().item() < 2e-2
    if dtype == torch.float16 or not native_bf16:  # upcast, no fast pass: exact
        assert (got.double() - maxsim_float64(queries, docs)).abs().max().item() < 1e-5


def test_float64_inputs_are_scored_in_float64():
    queries = [q.double() for q in random_vectors((4,), seed=9)]
    docs = [d.double() for d in random_vectors((6, 3), seed=10)]
    assert (score(queries, docs).double() - maxsim_float64(queries, docs)).abs().max().item() < 1e-6


def test_device_is_explicit():
    queries, docs = random_vectors((2,), seed=11), random_vectors((3,), seed=12)
    assert score(queries, docs, device="cpu").device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            score(queries, docs, device="cuda")


@pytest.mark.parametrize(
    "qs, ps, kwargs, error, match",
    [
        ([], [torch.ones(2, 4)], {}, ValueError, "`qs` is an empty list"),
        ([torch.ones(2, 4)], [torch.ones(2, 5)], {}, ValueError, "dims"),
        ([torch.full((2, 4), float("nan"))], [torch.ones(2, 4)], {}, ValueError, r"qs\[0\].*NaN"),
        (
            [torch.ones(2, 4)],
            [torch.ones(2, 4), torch.full((1, 4), float("inf"))],
            {},
            ValueError,
            r"ps\[1\].*infinite",
        ),
        ([[1.0, 2.0]], [torch.ones(2, 4)], {}, TypeError, "tensors"),
        ([torch.ones(2, 4)], [torch.ones(0, 4)], {}, ValueError, r"ps\[0\].*no real tokens"),
        ([torch.ones(2, 4)], torch.zeros(2, 3, 4), {}, ValueError, r"ps\[0\].*no real tokens"),
        ([torch.ones(2, 4)], torch.ones(1, 3, 4), {"page_mask": torch.zeros(1, 3)}, ValueError, "all padding"),
        ([torch.ones(2, 4)], torch.ones(1, 3, 4), {"page_mask": torch.ones(1, 2)}, ValueError, "mask has shape"),
        ([torch.ones(2, 4)], [torch.ones(3, 4)], {"page_mask": torch.ones(1, 3)}, ValueError, "takes no mask"),
        ([torch.ones(2, 4)], torch.ones(3, 4), {}, ValueError, r"\[batch, tokens, dim\]"),
        ([torch.ones(2, 4, dtype=torch.int64)], [torch.ones(3, 4)], {}, TypeError, "floating-point"),
        ([torch.ones(2, 4)], [torch.ones(3, 4)], {"chunk_tokens": 0}, ValueError, "chunk_tokens.*0"),
    ],
)
def test_bad_input_is_named(qs, ps, kwargs, error, match):
    with pytest.raises(error, match=match):
        score(qs, ps, **kwargs)


def test_processor_delegates_to_the_scoring_module():
    """`ColQwen3Processor.score_multi_vector` is the public name; it must be exactly the scoring module's engine."""
    queries, docs = random_vectors((3, 5), seed=13), random_vectors((4, 2, 7), seed=14)
    for kwargs in ({}, {"batch_size": 1, "chunk_tokens": 3, "query_chunk_tokens": 2}):
        assert torch.equal(
            ColQwen3Processor.score_multi_vector(queries, docs, **kwargs), score(queries, docs, **kwargs)
        )
