"""Loading real-world checkpoint layouts through from_pretrained: identical embeddings, loud failures."""

import json

import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from colqwen3.testing import tiny as kit
from colqwen3.testing.cross_tier import ENVIRONMENT_VARIABLE, embed_in_other_tier, other_tier_python
from colqwen3.testing.tiny import embed
from modeling_colqwen3 import ColQwen3


def load(folder):
    return AutoModel.from_pretrained(folder, trust_remote_code=True).eval()


def checkpoint_keys(folder):
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        return set(handle.keys())


@pytest.mark.parametrize("layout", kit.LAYOUTS)
def test_every_layout_gives_identical_embeddings(tmp_path, model, processor, pages, layout):
    folder = kit.write_checkpoint(tmp_path / layout, layout=layout, model=model)
    loaded = load(folder)
    assert type(loaded).__name__ == "ColQwen3"
    for batch in (processor.process_images(pages[:2]), processor.process_queries(["invoice total", "paris"])):
        assert torch.equal(embed(loaded, batch), embed(model, batch))


def test_layouts_on_disk_are_what_they_claim(tmp_path, model):
    tomoro = checkpoint_keys(kit.write_checkpoint(tmp_path / "t", layout="tomoro", model=model))
    colpali = checkpoint_keys(kit.write_checkpoint(tmp_path / "c", layout="colpali", model=model))
    bare = checkpoint_keys(kit.write_checkpoint(tmp_path / "u", layout="unprefixed", model=model))
    assert {k.split(".")[0] for k in tomoro} == {"vlm", "embedding_proj_layer"}
    assert any(k.startswith("vlm.model.visual.") for k in tomoro)
    assert {".".join(k.split(".")[:2]) for k in colpali} >= {
        "model.visual",
        "model.language_model",
        "custom_text_proj.weight",
    }
    assert {k.split(".")[0] for k in bare} == {"visual", "language_model", "custom_text_proj"}


def test_save_pretrained_writes_the_tomoro_layout(tmp_path, model):
    loaded = load(kit.write_checkpoint(tmp_path / "colpali", layout="colpali", model=model))
    loaded.save_pretrained(tmp_path / "resaved")
    keys = checkpoint_keys(tmp_path / "resaved")
    assert "embedding_proj_layer.weight" in keys and "embedding_proj_layer.bias" in keys
    assert all(k.startswith(("vlm.model.", "vlm.lm_head.", "embedding_proj_layer.")) for k in keys)
    config = json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert config["model_type"] == "colqwen3" and config["embed_dim"] == model.config.embed_dim


def _rewrite(folder, edit):
    path = folder / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.pop("vlm.model.language_model.norm.weight"), "missing.*language_model.norm.weight"),
        (lambda s: s.pop("vlm.model.language_model.embed_tokens.weight"), "missing.*embed_tokens"),
        (lambda s: s.pop("embedding_proj_layer.weight"), "missing.*embedding_proj_layer.weight"),
        (lambda s: s.update({"vlm.model.visual.extra.weight": torch.zeros(2)}), "not used.*visual.extra"),
        (lambda s: s.update({"some_other_head.weight": torch.zeros(2)}), "not used.*some_other_head"),
    ],
    ids=["final-norm", "embed-tokens", "head", "unexpected-backbone", "unexpected-head"],
)
def test_missing_or_unexpected_keys_are_errors(tmp_path, model, edit, match):
    folder = kit.write_checkpoint(tmp_path / "broken", model=model)
    _rewrite(folder, edit)
    with pytest.raises(ValueError, match=match):
        load(folder)


def test_wrong_head_width_is_an_error(tmp_path, model):
    folder = kit.write_checkpoint(tmp_path / "wide", model=model)
    config = json.loads((folder / "config.json").read_text())
    config["embed_dim"] = 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="embed_dim"):
        load(folder)


def test_head_without_bias_loads_bias_free_and_exact(tmp_path, processor, pages):
    no_bias = kit.build_model(seed=3, head_bias="none")
    for layout in ("tomoro", "colpali"):
        folder = kit.write_checkpoint(tmp_path / layout, layout=layout, model=no_bias)
        loaded = load(folder)
        assert loaded.embedding_proj_layer.bias is None
        batch = processor.process_images(pages[:1])
        assert torch.equal(embed(loaded, batch), embed(no_bias, batch))
    # a Tomoro-style config (no `embedding_proj_bias` field) over a bias-free head also loads exactly
    config = json.loads((folder / "config.json").read_text())
    config.pop("embedding_proj_bias", None)
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load(folder)
    assert loaded.embedding_proj_layer.bias is None and loaded.config.embedding_proj_bias is False


def test_untied_checkpoint_with_lm_head_loads_it(tmp_path, processor):
    untied = kit.build_model(kit.tiny_config(tie_word_embeddings=False), seed=4)
    folder = kit.write_checkpoint(tmp_path / "untied", model=untied)
    assert "vlm.lm_head.weight" in checkpoint_keys(folder)  # like the 8B checkpoint
    loaded = load(folder)
    assert torch.equal(loaded.vlm.lm_head.weight, untied.vlm.lm_head.weight)
    assert loaded.vlm.lm_head.weight.data_ptr() != loaded.get_input_embeddings().weight.data_ptr()
    batch = processor.process_queries(["q"])
    assert torch.equal(embed(loaded, batch), embed(untied, batch))


def test_tied_checkpoint_ties_the_lm_head(tomoro_checkpoint):
    loaded = load(tomoro_checkpoint)
    assert "vlm.lm_head.weight" not in checkpoint_keys(tomoro_checkpoint)
    assert torch.equal(loaded.vlm.lm_head.weight, loaded.get_input_embeddings().weight)


def test_loading_info_is_still_available(tomoro_checkpoint):
    model, info = ColQwen3.from_pretrained(tomoro_checkpoint, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_dtype_is_the_callers_choice(tomoro_checkpoint, processor):
    try:
        loaded = ColQwen3.from_pretrained(tomoro_checkpoint, dtype=torch.bfloat16)
    except TypeError:  # transformers 4.57 spells it torch_dtype
        loaded = ColQwen3.from_pretrained(tomoro_checkpoint, torch_dtype=torch.bfloat16)
    assert loaded.embedding_proj_layer.weight.dtype == torch.bfloat16
    assert embed(loaded, processor.process_queries(["q"])).dtype == torch.bfloat16
    default = ColQwen3.from_pretrained(tomoro_checkpoint, attn_implementation="eager")
    assert default.config._attn_implementation == "eager"


def test_a_checkpoint_saved_here_loads_on_the_other_transformers_line(tmp_path, model, processor, pages):
    """transformers 5.x writes only `rope_parameters`; the config also writes `rope_scaling`/`rope_theta` for 4.57."""
    if other_tier_python() is None:
        pytest.skip(f"{ENVIRONMENT_VARIABLE} is unset: `bash scripts/dev.sh test` sets it to the other tier's Python")
    kit.write_checkpoint(tmp_path / "saved", model=model)  # save_pretrained + processor files and remote code
    for batch in (processor.process_images(pages[:2]), processor.process_queries(["invoice total", "paris"])):
        theirs, version = embed_in_other_tier(tmp_path / "saved", batch)
        assert version.split(".")[0] != transformers.__version__.split(".")[0], version
        assert (theirs - embed(model, batch)).abs().max().item() <= 1e-5
