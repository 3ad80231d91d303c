"""A repository written by `colqwen3 publish --vllm-native` is served exactly by vLLM's native route (CPU vLLM 0.32),
head bias included."""

import subprocess
import sys

import pytest
import torch
from transformers import AutoModel

from colqwen3.serving.parity import Settings, reference_embeddings, run_offline, vector_agreement
from colqwen3.serving.routes import OFFLINE_CHECK_ENV_DEFAULTS
from colqwen3.testing import tiny as kit
from colqwen3.testing.pages import sample_pages

pytestmark = pytest.mark.vllm


def test_published_vllm_native_folder_is_served_exactly(tmp_path, monkeypatch):
    for name, value in OFFLINE_CHECK_ENV_DEFAULTS.items():  # what `colqwen3 vllm-check` sets: in-process, small cache
        monkeypatch.setenv(name, value)
    source = kit.write_checkpoint(tmp_path / "source")  # a random, non-zero head bias: vLLM would drop it as is
    out = tmp_path / "snapshots" / "0-published"
    command = [
        sys.executable,
        "-m",
        "colqwen3",
        "publish",
        str(source),
        str(out),
        "--vllm-native",
        "--dtype",
        "float32",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (out / "model.safetensors.index.json").exists()  # the head bias moved to a shard of its own

    processor = kit.build_processor()
    queries, pages = ["total due", "capital of France"], sample_pages()[:2]
    model = AutoModel.from_pretrained(out, trust_remote_code=True, dtype=torch.float32).eval()
    reference = reference_embeddings(model, processor, queries, pages)
    max_pixels = processor.max_num_visual_tokens * processor.tokens_tile**2
    got, _, _ = run_offline("native", out, processor, queries, pages, Settings(score=False), max_pixels)
    for served, expected in ((got.text, reference.text), (got.image, reference.image)):
        max_abs, min_cos, same_counts = vector_agreement(served, expected)
        assert same_counts and max_abs < 1e-4 and min_cos > 0.9999, (max_abs, min_cos)
