"""`pool_single_vector`: one unit vector per input, from the real tokens only, whatever the padding."""

import pytest
import torch

import scoring_colqwen3
from colqwen3.testing.references import pad, pool_single_vector_float64, random_unit_vectors
from colqwen3.testing.tiny import embed
from modeling_colqwen3 import SINGLE_VECTOR_STRATEGIES, pool_single_vector


@pytest.mark.parametrize("strategy", ["mean", "max", "first", "last"])
def test_matches_the_definition_with_left_and_right_padding(strategy):
    items = random_unit_vectors((5, 1, 3), dim=8, seed=0)
    for side in ("left", "right"):
        padded, mask = pad(items, side)
        mask = mask.long()
        for got in (pool_single_vector(padded, mask, strategy), pool_single_vector(padded, strategy=strategy)):
            assert got.shape == (3, 8) and got.dtype == torch.float32
            expected = torch.stack([pool_single_vector_float64(item, strategy) for item in items])
            assert (got.double() - expected).abs().max().item() < 1e-6


@pytest.mark.parametrize("strategy", ["mean", "max", "first", "last"])
def test_batch_equals_one_at_a_time_through_the_model(model, processor, strategy):
    texts = ["total due", "how much did revenue grow in the third quarter of the year"]
    batch = processor.process_queries(texts)
    pooled = pool_single_vector(embed(model, batch), batch["attention_mask"], strategy)
    for row, text in enumerate(texts):
        alone = processor.process_queries([text])
        expected = pool_single_vector(embed(model, alone), alone["attention_mask"], strategy)[0]
        assert (pooled[row] - expected).abs().max().item() < 1e-5
    assert torch.allclose(pooled.norm(dim=-1), torch.ones(2))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="'cls'"):
        pool_single_vector(torch.ones(1, 2, 4), strategy="cls")
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        pool_single_vector(torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"Inputs \[1\] have no real tokens"):
        pool_single_vector(torch.ones(2, 3, 4), torch.tensor([[1, 1, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="attention_mask"):
        pool_single_vector(torch.ones(2, 3, 4), torch.ones(2, 2))


def test_modeling_exports_the_scoring_implementation():
    """`from modeling_colqwen3 import pool_single_vector` keeps working; the code lives in scoring_colqwen3.py."""
    assert pool_single_vector is scoring_colqwen3.pool_single_vector
    assert SINGLE_VECTOR_STRATEGIES == ("mean", "max", "first", "last")
