"""Session fixtures: every test builds its tiny model, tokenizer and images offline through `colqwen3.testing`.

Helpers live in the package (`colqwen3.testing.tiny`, `.pages`, `.references`); tests import them from there, never
from this file or from another test module.
"""

import pytest

from colqwen3.testing import tiny
from colqwen3.testing.pages import sample_pages


@pytest.fixture(scope="session")
def processor():
    return tiny.build_processor()


@pytest.fixture(scope="session")
def model():
    return tiny.build_model(seed=0)


@pytest.fixture(scope="session")
def pages():
    return sample_pages()


@pytest.fixture(scope="session")
def tomoro_checkpoint(tmp_path_factory, model):
    return tiny.write_checkpoint(tmp_path_factory.mktemp("tomoro"), layout="tomoro", model=model)
