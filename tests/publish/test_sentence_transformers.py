"""sentence-transformers 6.x: `MultiVectorEncoder(repo, trust_remote_code=True)` on a published folder gives our
model's per-token embeddings (queries with their 10 augmentation tokens, pages with the page prompt) and MaxSim
scores, with nothing randomly initialised. Runs where sentence-transformers has `MultiVectorEncoder` (6.x, which
needs transformers 5.x: the tf5 tier)."""

import logging
import sys
import warnings

import pytest
import torch
from transformers import AutoModel, AutoProcessor

from colqwen3.publish import publish
from colqwen3.testing.pages import sample_pages

st = pytest.importorskip(
    "sentence_transformers", minversion="6.0", reason="MultiVectorEncoder needs sentence-transformers 6.x"
)

QUERIES = ["total due on the invoice", "capital of France", "x", "built" + "<|endoftext|>" * 10]


@pytest.fixture(scope="module")
def published(tomoro_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("published") / "repo"
    return publish(str(tomoro_checkpoint), out, dtype="float32", verify_pythons=[sys.executable]).folder


def unpadded(model, batch) -> list:
    with torch.inference_mode():
        out = model(**batch).embeddings
    return [row[mask.bool()] for row, mask in zip(out, batch["attention_mask"])]


def test_multi_vector_encoder_equals_our_model(published, caplog):
    pages = sample_pages()
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")  # e.g. "newly initialized" weights
        encoder = st.MultiVectorEncoder(str(published), trust_remote_code=True, model_kwargs={"dtype": torch.float32})
        got_queries = encoder.encode_query(QUERIES, batch_size=2)
        got_pages = encoder.encode_document(pages, batch_size=2)
    assert not [r for r in caplog.records if "initializ" in r.getMessage().lower()], caplog.text
    assert [type(module).__name__ for module in encoder] == ["Transformer"]  # no Dense / Normalize appended

    model = AutoModel.from_pretrained(published, trust_remote_code=True, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(published, trust_remote_code=True)
    want_queries = [unpadded(model, processor.process_queries([q]))[0] for q in QUERIES]
    want_pages = [unpadded(model, processor.process_images([p]))[0] for p in pages]
    for got, want in ((got_queries, want_queries), (got_pages, want_pages)):
        assert [tuple(g.shape) for g in got] == [tuple(w.shape) for w in want]  # 10 augmentation tokens, page prompt
        assert max((torch.as_tensor(g) - w).abs().max().item() for g, w in zip(got, want)) <= 1e-5
    scores = encoder.similarity(got_queries, got_pages)
    assert (torch.as_tensor(scores) - processor.score_multi_vector(want_queries, want_pages)).abs().max() <= 1e-4
