"""ColQwen3Config: fields, validation, round trip, and the shipped 4B config files."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

from colqwen3.testing import tiny as kit
from configuration_colqwen3 import ColQwen3Config

REPO_ROOT = Path(__file__).resolve().parents[2]  # the shipped 4B config files


def test_round_trip_is_exact(tmp_path):
    config = kit.tiny_config(embed_dim=48)
    config.save_pretrained(tmp_path)
    loaded = ColQwen3Config.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.embed_dim == 48 and loaded.embedding_dim == 48
    assert json.loads((tmp_path / "config.json").read_text())["embed_dim"] == 48


def test_sub_configs_accept_none_dict_and_object():
    default = ColQwen3Config()
    assert default.embed_dim == 320 and default.model_type == "colqwen3"
    tiny = kit.tiny_config()
    ids = {
        k: getattr(tiny, k)
        for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    }
    from_dicts = ColQwen3Config(
        text_config=tiny.text_config.to_dict(), vision_config=tiny.vision_config.to_dict(), **ids
    )
    from_objects = ColQwen3Config(text_config=tiny.text_config, vision_config=tiny.vision_config, **ids)
    assert from_objects.text_config is tiny.text_config
    assert from_dicts.text_config.to_dict() == from_objects.text_config.to_dict()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"embed_dim": 0}, ValueError, "embed_dim.*0"),
        ({"embed_dim": "320"}, ValueError, "embed_dim.*'320'"),
        ({"embed_dim": True}, ValueError, "embed_dim"),
        ({"embedding_proj_bias": "yes"}, ValueError, "embedding_proj_bias"),
        ({"text_config": "big"}, TypeError, "text_config.*str"),
        ({"vision_config": 3}, TypeError, "vision_config.*int"),
        ({"image_token_id": -1}, ValueError, "image_token_id.*-1"),
        ({"text_config": {"hidden_size": 0}}, ValueError, "hidden_size.*0"),
    ],
)
def test_invalid_values_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ColQwen3Config(**kwargs)


def test_shipped_config_describes_the_4b_checkpoint():
    config = AutoConfig.from_pretrained(REPO_ROOT, trust_remote_code=True)
    assert type(config).__name__ == "ColQwen3Config"
    raw = json.loads((REPO_ROOT / "config.json").read_text())
    assert raw["architectures"] == ["ColQwen3"]
    assert set(raw["auto_map"]) == {"AutoConfig", "AutoModel", "AutoProcessor"}
    assert config.embed_dim == 320 and config.text_config.hidden_size == 2560
    assert config.text_config.num_hidden_layers == 36 and config.vision_config.out_hidden_size == 2560
    assert config.get_text_config().tie_word_embeddings


def test_shipped_config_builds_a_4b_model_on_the_meta_device():
    from modeling_colqwen3 import ColQwen3

    config = ColQwen3Config.from_pretrained(REPO_ROOT)
    with torch.device("meta"):
        model = ColQwen3(config)
    n_params = sum(p.numel() for p in model.parameters())  # tied LM head counted once
    assert 4.3e9 < n_params < 4.6e9
    assert model.embedding_proj_layer.out_features == 320


def test_shipped_preprocessor_config_has_the_1280_token_budget():
    preprocessor = json.loads((REPO_ROOT / "preprocessor_config.json").read_text())
    assert preprocessor["size"]["longest_edge"] == 1280 * 32 * 32 == 1_310_720
    assert preprocessor["patch_size"] == 16 and preprocessor["merge_size"] == 2
    processor_config = json.loads((REPO_ROOT / "processor_config.json").read_text())
    assert processor_config["max_num_visual_tokens"] == 1280
