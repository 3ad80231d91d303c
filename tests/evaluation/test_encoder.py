"""RetrievalEncoder: length-bucketed batches give the same embeddings, in input order, as one plain forward per item."""

import pytest
import torch
from PIL import Image

from colqwen3.evaluation import RetrievalEncoder
from colqwen3.testing.pages import make_page

QUERIES = ["a", "a much longer query about the total due on the invoice", "capital of France", "x y z", "revenue"]


@pytest.fixture(scope="module")
def mixed_pages():
    sizes = [(200, 300), (64, 64), (500, 200), (128, 600), (300, 300)]
    return [make_page(["PAGE", f"number {i}"], size=size, seed=i) for i, size in enumerate(sizes)]


def plain(model, batch) -> torch.Tensor:
    with torch.inference_mode():
        return model(**batch).embeddings[0]


@pytest.mark.parametrize("batch_size, window_batches", [(1, 1), (2, 1), (2, 2), (8, 16)])
def test_bucketed_embeddings_equal_one_forward_per_item(model, processor, mixed_pages, batch_size, window_batches):
    encoder = RetrievalEncoder(model, processor, batch_size=batch_size, window_batches=window_batches)
    pages = encoder.encode_pages(mixed_pages)
    queries = encoder.encode_queries(QUERIES)
    for page, got in zip(mixed_pages, pages):
        expected = plain(model, processor.process_images([page]))
        assert got.shape == expected.shape and (got - expected).abs().max() <= 1e-5
    for query, got in zip(QUERIES, queries):
        expected = plain(model, processor.process_queries([query]))
        assert got.dtype == torch.float32 and got.shape == expected.shape and (got - expected).abs().max() <= 1e-5
    assert (encoder.pages.items, encoder.queries.items) == (len(mixed_pages), len(QUERIES))
    assert encoder.pages.per_second > 0 and encoder.queries.per_second > 0


def test_windows_sort_by_length(model, processor, mixed_pages):
    encoder = RetrievalEncoder(model, processor, batch_size=2)
    lengths = [encoder.page_length(page) for page in mixed_pages]
    expected = [int(processor.process_images([page])["image_grid_thw"][0].prod()) // 4 for page in mixed_pages]
    assert lengths == expected
    assert encoder.query_length("x") == len(processor.process_queries(["x"])["input_ids"][0])


def test_training_mode_is_restored(processor, mixed_pages):
    from colqwen3.testing.tiny import build_model

    model = build_model(seed=1).train()
    RetrievalEncoder(model, processor).encode_pages(mixed_pages[:1])
    assert model.training


@pytest.mark.parametrize("name", ["batch_size", "window_batches"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_bad_sizes_are_refused(model, processor, name, value):
    with pytest.raises(ValueError, match=f"`{name}` must be a positive integer, got {value!r}"):
        RetrievalEncoder(model, processor, **{name: value})


def test_bad_items_name_the_problem(model, processor):
    encoder = RetrievalEncoder(model, processor)
    with pytest.raises(TypeError, match="query 1 must be a string, got int"):
        encoder.encode_queries(["ok", 3])
    with pytest.raises(TypeError, match="page 1 must be a PIL image, got str"):
        encoder.encode_pages([Image.new("RGB", (40, 40)), "not an image"])
