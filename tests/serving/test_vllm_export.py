"""colqwen3.serving.export rewrites a checkpoint for vLLM's native route; Transformers must load it unchanged."""

import json

import pytest
import torch
from transformers import AutoModel

from colqwen3.serving.export import native_route_problem, prepare_for_vllm_native
from colqwen3.testing import tiny as kit
from colqwen3.testing.tiny import embed


@pytest.mark.parametrize("layout", kit.LAYOUTS)
def test_export_keeps_transformers_output_identical(tmp_path, model, processor, pages, layout):
    folder = kit.write_checkpoint(tmp_path / layout, layout=layout, model=model)
    assert prepare_for_vllm_native(folder) is True
    config = json.loads((folder / "config.json").read_text())
    assert "embed_dim" not in config and config["embedding_dim"] == model.config.embed_dim
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    bias_key = next(k for k in index if k.endswith("proj_layer.bias") or k.endswith("text_proj.bias"))
    assert index[bias_key] == max(set(index.values()))  # the bias shard sorts last
    loaded = AutoModel.from_pretrained(folder, trust_remote_code=True)
    batch = processor.process_images(pages[:1])
    assert torch.equal(embed(loaded, batch), embed(model, batch))


def test_export_leaves_a_bias_free_head_alone(tmp_path, processor):
    folder = kit.write_checkpoint(tmp_path / "nobias", model=kit.build_model(seed=2, head_bias="none"))
    before = (folder / "config.json").read_text()
    assert prepare_for_vllm_native(folder) is False
    assert (folder / "config.json").read_text() == before


def test_native_route_problem_names_the_fix(tmp_path):
    """A biased head with `embed_dim` is refused (with the command that fixes it); after the export it is not."""
    folder = kit.write_checkpoint(tmp_path / "biased", model=kit.build_model(seed=1))
    problem = native_route_problem(folder)
    assert problem is not None and "drop the bias" in problem and f"colqwen3 vllm-export {folder}" in problem
    prepare_for_vllm_native(folder)
    assert native_route_problem(folder) is None
    assert (
        native_route_problem(kit.write_checkpoint(tmp_path / "nobias", model=kit.build_model(head_bias="none"))) is None
    )
