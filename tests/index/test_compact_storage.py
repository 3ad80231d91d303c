"""colqwen3.index.compact: Ward token pooling and compact dtypes, each checked against an independent reference."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from colqwen3.index.compact import COMPACT_DTYPES, bytes_per_token, decode_tokens, encode_tokens, pool_tokens
from colqwen3.testing.references import maxsim_float64, random_unit_vectors


def unit_vectors(n, dim=32, seed=0):
    return random_unit_vectors([n], dim=dim, seed=seed)[0]


def structured_page(n, dim=64, seed=0, n_topics=6):
    """Tokens near a few topic directions (shared by every page and query of that size), plus noise."""
    topics = torch.randn(n_topics, dim, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(
        topics[torch.randint(n_topics, (n,), generator=g)] + 0.15 * torch.randn(n, dim, generator=g), dim=1
    )


def maxsim(query, page):
    return maxsim_float64([query], [page]).item()


def greedy_ward(x: np.ndarray, n_clusters: int) -> list[list[int]]:
    """Textbook O(n^3) Ward: repeatedly merge the pair whose merge least increases the within-cluster squared error."""
    clusters = [[i] for i in range(len(x))]
    while len(clusters) > n_clusters:
        cost = lambda i, j: (  # noqa: E731
            len(clusters[i])
            * len(clusters[j])
            / (len(clusters[i]) + len(clusters[j]))
            * ((x[clusters[i]].mean(0) - x[clusters[j]].mean(0)) ** 2).sum()
        )
        _, i, j = min((cost(i, j), i, j) for i in range(len(clusters)) for j in range(i + 1, len(clusters)))
        clusters[i] += clusters.pop(j)
    return sorted(sorted(c) for c in clusters)


# --- pooling ---------------------------------------------------------------------------------------------------


def test_pool_factor_one_returns_the_tokens_unchanged_as_float32():
    page = unit_vectors(9).to(torch.bfloat16)
    pooled = pool_tokens(page, 1)
    assert pooled.dtype == torch.float32 and torch.equal(pooled, page.float())


@pytest.mark.parametrize("n, factor", [(1, 2), (7, 2), (100, 3), (101, 4), (64, 64), (10, 100)])
def test_pooled_count_is_ceil_n_over_factor_and_rows_are_unit_norm(n, factor):
    pooled = pool_tokens(structured_page(n, seed=n), factor)
    assert pooled.shape == (max(1, math.ceil(n / factor)), 64) and pooled.dtype == torch.float32
    torch.testing.assert_close(pooled.norm(dim=1), torch.ones(len(pooled)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed, factor", [(0, 2), (1, 3), (2, 4), (3, 7), (4, 29), (5, 30)])
def test_pooling_matches_textbook_greedy_ward_clusters(seed, factor):
    page = unit_vectors(30, dim=8, seed=seed)
    clusters = sorted(greedy_ward(page.double().numpy(), math.ceil(30 / factor)), key=min)  # output order: first token
    expected = torch.stack([torch.nn.functional.normalize(page[c].double().mean(0), dim=0) for c in clusters])
    torch.testing.assert_close(pool_tokens(page, factor).double(), expected, atol=1e-6, rtol=0)


def test_pooling_duplicates_returns_exactly_the_distinct_vectors():
    distinct = unit_vectors(12, dim=48, seed=3)
    page = distinct.repeat_interleave(4, dim=0)[torch.randperm(48, generator=torch.Generator().manual_seed(0))]
    pooled = pool_tokens(page, 4)
    assert pooled.shape == (12, 48)
    match = (pooled @ distinct.T).argmax(dim=1)
    assert sorted(match.tolist()) == list(range(12))  # each distinct vector comes back once
    torch.testing.assert_close(pooled, distinct[match], atol=1e-6, rtol=0)


def test_pooling_is_deterministic_for_a_full_page():
    """Its speed is measured by benchmarks/bench_storage.py (`encode ms/page`), not asserted here."""
    page = structured_page(1280, dim=320, seed=5, n_topics=40)
    first = pool_tokens(page, 2)
    assert torch.equal(first, pool_tokens(page.clone(), 2)) and first.shape == (640, 320)


def test_pooled_maxsim_stays_close_to_full_precision():
    pages = [structured_page(400, seed=s) for s in range(4)]
    queries = [structured_page(12, seed=100 + s) for s in range(4)]
    # Measured worst change per query token: 0.0031 (factor 2) and 0.0040 (factor 4); mean vectors of a cluster
    # average its noise away, so pooled scores here come out slightly higher, never lower.
    for factor, bound in ((2, 0.01), (4, 0.01)):
        for page in pages:
            pooled = pool_tokens(page, factor)
            for query in queries:
                assert abs(maxsim(query, pooled) - maxsim(query, page)) / len(query) < bound


@pytest.mark.parametrize(
    "factor, match",
    [
        (0, "pool_factor.*0"),
        (-2, "pool_factor.*-2"),
        (2.0, "pool_factor.*2.0"),
        (True, "True"),
        ("2", "pool_factor.*'2'"),
    ],
)
def test_pool_rejects_bad_pool_factors(factor, match):
    with pytest.raises(ValueError, match=match):
        pool_tokens(unit_vectors(4), factor)


@pytest.mark.parametrize(
    "vectors, match",
    [
        (torch.ones(5), r"2-D.*\(5,\)"),
        (torch.ones(2, 3, 4), r"2-D.*\(2, 3, 4\)"),
        (torch.ones(0, 8), "non-empty"),
        (torch.ones(3, 0), "non-empty"),
        (torch.tensor([[1.0, float("nan")]]), "non-finite"),
        (torch.tensor([[float("inf"), 0.0]]), "non-finite"),
    ],
)
def test_pool_and_encode_reject_bad_tensors(vectors, match):
    with pytest.raises(ValueError, match=match):
        pool_tokens(vectors, 2)
    with pytest.raises(ValueError, match=match):
        encode_tokens(vectors, "int8")


def test_pool_and_encode_reject_non_tensors():
    with pytest.raises(TypeError, match="torch.Tensor.*ndarray"):
        pool_tokens(np.ones((4, 8), np.float32), 2)
    with pytest.raises(TypeError, match="torch.Tensor.*list"):
        encode_tokens([[1.0, 0.0]], "float16")


# --- compact dtypes --------------------------------------------------------------------------------------------


def test_float_round_trips_within_their_rounding():
    x = unit_vectors(50, dim=320)
    assert torch.equal(decode_tokens(encode_tokens(x, "float32"), "float32"), x)
    for dtype, mantissa_bits in (("bfloat16", 8), ("float16", 11)):
        decoded = decode_tokens(encode_tokens(x, dtype), dtype)
        assert decoded.dtype == torch.float32
        # round to nearest: relative error <= 2^-mantissa_bits (float16 subnormals below 6e-5: absolute 3e-8)
        assert ((decoded - x).abs() <= x.abs() * 2.0**-mantissa_bits + 3e-8).all()
    assert (decode_tokens(encode_tokens(x, "float16"), "float16") - x).abs().max() < 1e-3


def test_int8_uses_a_per_token_scale_and_errs_by_at_most_half_a_step():
    x = unit_vectors(50, dim=320) * torch.linspace(0.01, 3.0, 50)[:, None]  # rows of very different size
    payload = encode_tokens(x, "int8")
    assert payload["data"].dtype == torch.int8 and payload["scale"].dtype == torch.float32
    torch.testing.assert_close(payload["scale"], x.abs().amax(dim=1) / 127, rtol=0, atol=0)
    assert payload["data"].abs().max() == 127
    error = (decode_tokens(payload, "int8") - x).abs()
    assert (error <= payload["scale"][:, None] * (0.5 + 1e-4)).all()  # half a step, plus float32 rounding


@pytest.mark.parametrize("dim", [320, 13, 8, 1])
def test_binary_packs_sign_bits_like_numpy_and_decodes_to_unit_rows(dim):
    x = torch.randn(20, dim, generator=torch.Generator().manual_seed(dim))
    x[0, 0] = 0.0  # zero counts as positive
    payload = encode_tokens(x, "binary")
    assert payload["data"].dtype == torch.uint8 and payload["data"].shape == (20, math.ceil(dim / 8))
    assert torch.equal(payload["data"], torch.from_numpy(np.packbits(x.numpy() >= 0, axis=1)))
    decoded = decode_tokens(payload, "binary")
    assert torch.equal(decoded, torch.where(x >= 0, 1.0, -1.0) / math.sqrt(dim))
    torch.testing.assert_close(decoded.norm(dim=1), torch.ones(20))


@pytest.mark.parametrize("dtype", COMPACT_DTYPES)
def test_payloads_save_with_safetensors_and_match_bytes_per_token(dtype, tmp_path):
    x = unit_vectors(33, dim=320)
    payload = encode_tokens(x, dtype)
    assert all(t.is_contiguous() and t.device.type == "cpu" for t in payload.values())
    save_file(payload, tmp_path / "page.safetensors")
    restored = load_file(tmp_path / "page.safetensors")
    assert torch.equal(decode_tokens(restored, dtype), decode_tokens(payload, dtype))
    per_token = sum(t.numel() * t.element_size() for k, t in payload.items() if k != "dim") / 33
    assert per_token == bytes_per_token(dtype, 320)


def test_bytes_per_token_hand_computed():
    expected = {"float32": 1280.0, "bfloat16": 640.0, "float16": 640.0, "int8": 324.0, "binary": 40.0}
    assert {dtype: bytes_per_token(dtype, 320) for dtype in COMPACT_DTYPES} == expected
    assert (bytes_per_token("binary", 13), bytes_per_token("int8", 13), bytes_per_token("float16", 13)) == (2, 17, 26)


def test_unknown_dtypes_and_bad_dims_are_rejected():
    for call in (
        lambda: encode_tokens(unit_vectors(2), "int4"),
        lambda: decode_tokens({}, "int4"),
        lambda: bytes_per_token("int4", 320),
    ):
        with pytest.raises(ValueError, match="unknown dtype 'int4'"):
            call()
    with pytest.raises(ValueError, match="dim.*0"):
        bytes_per_token("int8", 0)


def test_decode_rejects_malformed_payloads():
    payload = encode_tokens(unit_vectors(4, dim=16), "int8")
    with pytest.raises(ValueError, match=r"missing keys \['scale'\]"):
        decode_tokens({"data": payload["data"]}, "int8")
    with pytest.raises(ValueError, match=r"scale.*\(4,\).*\(3,\)"):
        decode_tokens({"data": payload["data"], "scale": payload["scale"][:3]}, "int8")
    with pytest.raises(ValueError, match="2-D torch.float16.*torch.int8"):
        decode_tokens(payload, "float16")
    with pytest.raises(ValueError, match=r"2-D torch.int8.*\(16,\)"):
        decode_tokens({"data": payload["data"][0], "scale": payload["scale"]}, "int8")
    binary = encode_tokens(unit_vectors(4, dim=16), "binary")
    with pytest.raises(ValueError, match="2 bytes per token, dim 24 needs 3"):
        decode_tokens({"data": binary["data"], "dim": torch.tensor([24])}, "binary")
    with pytest.raises(ValueError, match=r"missing keys \['dim'\]"):
        decode_tokens({"data": binary["data"]}, "binary")
