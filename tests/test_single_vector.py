"""`pool_single_vector`: one unit vector per input, from the real tokens only, whatever the padding."""

import pytest
import torch
from conftest import embed

from modeling_colqwen3 import pool_single_vector


def reference(tokens: torch.Tensor, strategy: str) -> torch.Tensor:
    """The definition on one input's real tokens `[n, d]`, in float64."""
    tokens = tokens.double()
    vector = {
        "mean": lambda: tokens.mean(0),
        "max": lambda: tokens.max(0).values,
        "first": lambda: tokens[0],
        "last": lambda: tokens[-1],
    }[strategy]()
    return vector / vector.norm()


@pytest.mark.parametrize("strategy", ["mean", "max", "first", "last"])
def test_matches_the_definition_with_left_and_right_padding(strategy):
    generator = torch.Generator().manual_seed(0)
    items = [torch.nn.functional.normalize(torch.randn(n, 8, generator=generator), dim=-1) for n in (5, 1, 3)]
    for side in ("left", "right"):
        padded = torch.zeros(3, 5, 8)
        mask = torch.zeros(3, 5, dtype=torch.long)
        for row, item in enumerate(items):
            span = slice(5 - len(item), 5) if side == "left" else slice(0, len(item))
            padded[row, span], mask[row, span] = item, 1
        for got in (pool_single_vector(padded, mask, strategy), pool_single_vector(padded, strategy=strategy)):
            assert got.shape == (3, 8) and got.dtype == torch.float32
            expected = torch.stack([reference(item, strategy) for item in items])
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
