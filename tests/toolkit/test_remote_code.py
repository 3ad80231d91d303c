"""The Hub payload: one list of remote-code files, and a checkpoint folder with exactly those files loading through
`trust_remote_code` from a folder whose name is not a Python identifier (Hub caches use hashes and dashes)."""

import json
import re
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoModel, AutoProcessor

from colqwen3.remote_code import (
    AUTO_MAP,
    REMOTE_CODE_FILES,
    SENTENCE_TRANSFORMERS_FILES,
    copy_remote_code,
    remote_code_dir,
    repository_file_kind,
)
from colqwen3.testing import tiny as kit
from colqwen3.testing.tiny import embed

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_one_list_of_remote_code_files():
    on_disk = sorted(path.name for path in REPO_ROOT.glob("*_colqwen3.py"))
    assert sorted(REMOTE_CODE_FILES) == on_disk
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    packaged = re.findall(r'"(\w+_colqwen3)"', re.search(r"^py-modules = \[(.*)\]$", pyproject, flags=re.M).group(1))
    assert sorted(f"{module}.py" for module in packaged) == on_disk
    assert remote_code_dir() == REPO_ROOT  # the editable install serves the files this checkout holds
    shipped = json.loads((REPO_ROOT / "config.json").read_text())["auto_map"]
    assert shipped == AUTO_MAP and {value.split(".")[0] + ".py" for value in AUTO_MAP.values()} <= set(on_disk)


def test_root_holds_only_repository_files_and_the_sentence_transformers_files_of_the_list():
    tracked = {path.name for path in REPO_ROOT.iterdir() if path.is_file() and not path.name.startswith(".")}
    payload = {name for name in tracked if repository_file_kind(name) is not None}
    assert {*REMOTE_CODE_FILES, "config.json", "preprocessor_config.json", "processor_config.json"} <= payload
    for name, content in SENTENCE_TRANSFORMERS_FILES.items():
        assert json.loads((REPO_ROOT / name).read_text()) == content, name
    assert tracked - payload <= {"pyproject.toml"}  # the toolkit's packaging, not part of a model repository


def test_copy_remote_code_copies_exactly_the_list(tmp_path):
    written = copy_remote_code(tmp_path / "payload")
    assert sorted(path.name for path in written) == sorted(REMOTE_CODE_FILES)
    assert all(
        (tmp_path / "payload" / name).read_bytes() == (REPO_ROOT / name).read_bytes() for name in REMOTE_CODE_FILES
    )


def test_hub_cache_like_folder_loads_and_scores_through_its_own_modules(tmp_path, model, processor, pages):
    folder = tmp_path / "models--org--colqwen3-tiny" / "snapshots" / "0a1b2c3-d4e5"
    assert not folder.name.isidentifier()
    kit.write_checkpoint(folder, model=model)
    assert sorted(path.name for path in folder.glob("*.py")) == sorted(REMOTE_CODE_FILES)
    loaded = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    loaded_processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    for obj in (loaded, loaded_processor):  # the classes come from the folder's own copies, not from this checkout
        assert type(obj).__module__.startswith("transformers_modules."), type(obj).__module__
    scorer = sys.modules[type(loaded_processor).__module__].score_multi_vector
    assert scorer.__module__.startswith("transformers_modules.") and scorer.__module__.endswith("scoring_colqwen3")
    pooling = sys.modules[type(loaded).__module__].pool_single_vector
    assert pooling.__module__.startswith("transformers_modules.") and pooling.__module__.endswith("scoring_colqwen3")

    query_batch, page_batch = loaded_processor.process_queries(["total due"]), loaded_processor.process_images(pages)
    queries, page_vectors = embed(loaded, query_batch), embed(loaded, page_batch)
    assert torch.equal(queries, embed(model, processor.process_queries(["total due"])))
    scores = loaded_processor.score_multi_vector(queries, page_vectors)
    assert torch.equal(scores, processor.score_multi_vector(queries, page_vectors)) and scores.shape == (1, len(pages))
    assert pooling(page_vectors, page_batch["attention_mask"]).shape == (len(pages), model.config.embed_dim)


def test_a_folder_missing_the_scoring_file_fails_loudly(tmp_path, model):
    """transformers follows the processor's relative import: without scoring_colqwen3.py the load must fail, not
    silently fall back to some other installed copy."""
    folder = kit.write_checkpoint(tmp_path / "incomplete-ckpt", model=model)
    (folder / "scoring_colqwen3.py").unlink()
    try:
        AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    except (ImportError, OSError, FileNotFoundError) as error:
        assert "scoring_colqwen3" in str(error)
    else:
        raise AssertionError("loading a folder without scoring_colqwen3.py succeeded")
    shutil.rmtree(folder)
