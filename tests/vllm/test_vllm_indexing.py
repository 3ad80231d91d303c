"""`colqwen3 index --embed-with URL`: a running vLLM server (native route, CPU vLLM 0.32) embeds the pages and queries;
the index equals the one the model loaded in-process builds, and search through the server ranks the same."""

import subprocess
import sys

import pytest
import torch
from transformers import AutoProcessor

from colqwen3.index.local import LocalIndex
from colqwen3.serving import client
from colqwen3.testing import tiny as kit
from colqwen3.testing.pages import write_sample_pages

pytestmark = pytest.mark.vllm


def colqwen3(*args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "colqwen3", *map(str, args)], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def test_indexing_through_a_vllm_server_equals_the_local_model(tmp_path):
    checkpoint = kit.write_checkpoint(tmp_path / "snapshots" / "0-ckpt", head_bias="none")  # native-servable as is
    pages = tmp_path / "pages"
    write_sample_pages(pages)
    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    common = ["--pages", pages, "--model", checkpoint, "--storage-dtype", "float32", "--workers", "0"]
    colqwen3("index", *common, "--index", tmp_path / "local")
    local_hits = colqwen3("search", "--index", tmp_path / "local", "--model", checkpoint, "--query", "invoice total")

    server = client.VllmServer(
        checkpoint,
        "native",
        log_path=tmp_path / "serve.log",
        max_pixels=processor.max_num_visual_tokens * processor.tokens_tile**2,  # the Transformers-side budget
        chat_template=client.write_page_template(tmp_path / "page_template.jinja"),
        enforce_eager=True,
        offline=True,
    )
    with server:
        served = colqwen3("index", *common, "--index", tmp_path / "served", "--embed-with", server.base_url)
        served_hits = colqwen3("search", "--index", tmp_path / "served", "--model", checkpoint, "--embed-with",
                               server.base_url, "--query", "invoice total")  # fmt: skip
    assert "6 pages embedded" in served.stderr
    with LocalIndex.open(tmp_path / "local") as want, LocalIndex.open(tmp_path / "served") as got:
        assert got.entries() == want.entries() and got.settings == want.settings  # same model identity
        for key in want.entries():
            assert torch.allclose(got.page_vectors(key), want.page_vectors(key), atol=1e-4, rtol=0), key
    ranked = [[line.split()[-1] for line in out.stdout.splitlines() if line.startswith("  ")]
              for out in (local_hits, served_hits)]  # fmt: skip
    assert ranked[0] == ranked[1] and len(ranked[0]) == 3
