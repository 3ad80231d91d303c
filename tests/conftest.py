"""Shared fixtures: every test builds its tiny model, tokenizer and images offline through scripts/tiny_colqwen3.py."""

import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, REPO_ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import tiny_colqwen3 as kit  # noqa: E402


@pytest.fixture(scope="session")
def processor():
    return kit.build_processor()


@pytest.fixture(scope="session")
def model():
    return kit.build_model(seed=0)


@pytest.fixture(scope="session")
def pages():
    return [kit.make_page(lines, seed=i) for i, lines in enumerate(kit.SAMPLE_PAGES.values())]


@pytest.fixture(scope="session")
def tomoro_checkpoint(tmp_path_factory, model):
    return kit.write_checkpoint(tmp_path_factory.mktemp("tomoro"), layout="tomoro", model=model)


def embed(model, batch):
    with torch.no_grad():
        return model(**batch).embeddings
