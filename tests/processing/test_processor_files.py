"""`ColQwen3Processor.save_pretrained` writes every file vLLM and both transformers lines read, and a processor saved
on one line loads on the other with identical outputs."""

import json
import shutil

import pytest
import transformers
from transformers import AutoProcessor

from colqwen3.remote_code import copy_remote_code
from colqwen3.testing.cross_tier import ENVIRONMENT_VARIABLE, other_tier_python, process_in_other_tier, processor_inputs


@pytest.fixture
def saved(tmp_path, tomoro_checkpoint):
    processor = AutoProcessor.from_pretrained(tomoro_checkpoint, trust_remote_code=True)
    processor.save_pretrained(tmp_path / "saved")
    return processor, tmp_path / "saved"


def test_save_writes_every_config_file(saved):
    processor, folder = saved
    names = {path.name for path in folder.iterdir()}
    assert {"processor_config.json", "preprocessor_config.json", "tokenizer_config.json", "tokenizer.json"} <= names
    image_config = json.loads((folder / "preprocessor_config.json").read_text())
    size = processor.image_processor.size
    assert image_config["size"] == size  # 5.x reads `size`
    assert (image_config["min_pixels"], image_config["max_pixels"]) == (size["shortest_edge"], size["longest_edge"])
    assert image_config["processor_class"] == "ColQwen3Processor"
    for name in ("processor_config.json", "preprocessor_config.json"):
        config = json.loads((folder / name).read_text())
        assert config["auto_map"]["AutoProcessor"] == "processing_colqwen3.ColQwen3Processor", name
    assert json.loads((folder / "processor_config.json").read_text())["max_num_visual_tokens"] == 64


def test_a_processor_saved_here_loads_on_the_other_transformers_line(saved, tomoro_checkpoint):
    if other_tier_python() is None:
        pytest.skip(f"{ENVIRONMENT_VARIABLE} is unset: `bash scripts/dev.sh test` sets it to the other tier's Python")
    processor, folder = saved
    shutil.copy(tomoro_checkpoint / "config.json", folder)
    copy_remote_code(folder)
    theirs, version = process_in_other_tier(folder)
    assert version.split(".")[0] != transformers.__version__.split(".")[0], version
    ours = processor_inputs(processor)
    assert theirs.keys() == ours.keys()
    for key in ours:
        assert theirs[key].shape == ours[key].shape and (theirs[key] == ours[key]).all(), key
