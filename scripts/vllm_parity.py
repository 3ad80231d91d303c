"""Parity of CPU vLLM (0.32) with our Transformers `ColQwen3`, on tiny random checkpoints built offline by the kit.

Routes (each is one vLLM engine start, run one after the other in this process):

- `native`: vLLM's own `ColQwen3Model` (config `architectures: ["ColQwen3"]`) on a checkpoint whose head has a
  NON-ZERO bias, exported with `scripts/vllm_export.py` (`embedding_dim` instead of `embed_dim`, head bias in the
  last shard). Expected exact for text and images.
- `native-nobias`: the native model on a checkpoint whose head has no bias, config.json unchanged (`embed_dim`
  present). Expected exact.
- `transformers`: vLLM's Transformers backend running our remote code (`TransformersMultiModalEmbeddingModel`) on the
  same exported checkpoint as `native`. Text expected exact; image tokens differ because that backend drops
  DeepStack, so images are also compared with an HF forward without DeepStack (row "vs hf-no-deepstack").
- `native-zerobias` (not run by default): like `native-nobias`, but the head has a bias of zeros.
- `native-asis` (not run by default): the native model on the biased checkpoint exactly as `save_pretrained` wrote it
  (`embed_dim`, one file): shows vLLM 0.32 silently dropping the bias. Reported, never checked.

All Transformers references are computed BEFORE the first engine starts: vLLM's Transformers backend patches the
Qwen3-VL classes in place. Every prompt runs unpadded, one sequence per request, as vLLM does.
The last lines check: text max |diff| <= --text-tol on every route, image max |diff| <= --image-tol on the exact
routes and against the DeepStack-free reference on the `transformers` route, identical token counts, and identical
MaxSim rankings on the exact routes; the exit status is 1 when any check fails.

Run (vLLM venv prepared with scripts/install_vllm_cpu_shim.sh):
    .venvs/vllm/bin/python scripts/vllm_parity.py
"""

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

for _name, _value in (
    ("VLLM_CPU_KVCACHE_SPACE", "1"),
    ("VLLM_ENABLE_V1_MULTIPROCESSING", "0"),
    ("HF_HUB_OFFLINE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

import torch  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

from tiny_colqwen3 import SAMPLE_PAGES, build_model, build_processor, make_page, tiny_config, write_checkpoint  # noqa: E402
from vllm_export import prepare_for_vllm_native  # noqa: E402

ROUTES = ("native", "native-nobias", "transformers", "native-zerobias", "native-asis")
DEFAULT_ROUTES = ("native", "native-nobias", "transformers")
EXACT_ROUTES = ("native", "native-nobias", "native-zerobias")
QUERIES = (
    "What is the total due on the invoice?",
    "How much did revenue grow in Q3?",
    "What is the capital of France?",
    "attention map over a scanned technical report",
)


def parse_args():
    parser = argparse.ArgumentParser(description="vLLM (CPU) vs Transformers parity for ColQwen3 on tiny checkpoints.")
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(DEFAULT_ROUTES))
    parser.add_argument("--layout", choices=("tomoro", "colpali", "unprefixed"), default="tomoro")
    parser.add_argument(
        "--tie-word-embeddings",
        action="store_true",
        help="tied LM head (not saved); default untied, so a `vlm.lm_head.weight` is on disk and must be skipped",
    )
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--text-tol", type=float, default=1e-4, help="max |diff| allowed for text, every route")
    parser.add_argument("--image-tol", type=float, default=1e-4, help="max |diff| allowed for images, exact routes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="write the checkpoints here and keep them")
    return parser.parse_args()


# ----- references (Transformers) -----
def hf_embeddings(model, processor, queries, pages) -> dict:
    """Per-item unpadded embeddings: {"text": [..], "image": [..]}, as vLLM serves one sequence per request."""
    out = {"text": [], "image": []}
    with torch.no_grad():
        for query in queries:
            out["text"].append(model(**processor.process_queries([query])).embeddings[0])
        for page in pages:
            out["image"].append(model(**processor.process_images([page])).embeddings[0])
    return out


def without_deepstack(model):
    """Context manager: the vision tower returns no DeepStack features (what vLLM's Transformers backend serves)."""

    class _Off:
        def __enter__(self):
            visual = model.vlm.model.visual
            self.saved = visual.deepstack_visual_indexes
            visual.deepstack_visual_indexes = []

        def __exit__(self, *exc):
            model.vlm.model.visual.deepstack_visual_indexes = self.saved

    return _Off()


# ----- vLLM -----
def vllm_embeddings(route: str, folder: Path, processor, queries, pages, max_model_len: int) -> tuple[dict, dict]:
    from vllm import LLM
    from vllm.config import PoolerConfig

    options = dict(
        model=str(folder),
        runner="pooling",
        pooler_config=PoolerConfig(task="token_embed"),
        enforce_eager=True,
        max_model_len=max_model_len,
        dtype="float32",
        seed=0,
    )
    if route == "transformers":
        options.update(
            trust_remote_code=True, hf_overrides={"architectures": ["TransformersMultiModalEmbeddingModel"]}
        )
    start = time.perf_counter()
    llm = LLM(**options)
    info = {"engine_s": time.perf_counter() - start}
    try:
        from vllm.multimodal import MULTIMODAL_REGISTRY

        processing = MULTIMODAL_REGISTRY.get_processing_info(llm.model_config)
        size = processing.get_image_size_with_most_features()
        info["profile_image"] = f"{size.width}x{size.height}, {processing.get_max_image_tokens()} tokens"
    except Exception as error:  # informational only
        info["profile_image"] = f"unknown ({type(error).__name__}: {error})"
    prompts = [processor.query_prompt(query) for query in queries]
    prompts += [{"prompt": processor.page_prompt(), "multi_modal_data": {"image": page}} for page in pages]
    outputs = llm.encode(prompts, pooling_task="token_embed", use_tqdm=False)
    data = [output.outputs.data.float().cpu() for output in outputs]
    del llm, outputs
    gc.collect()
    return {"text": data[: len(queries)], "image": data[len(queries) :]}, info


# ----- comparison -----
def compare(got: list, ref: list) -> dict:
    """max |diff| and min per-token cosine over all items; inf / -1 when token counts differ."""
    max_abs, min_cos, shapes_ok = 0.0, 1.0, True
    for a, b in zip(got, ref):
        if a.shape != b.shape:
            shapes_ok = False
            max_abs, min_cos = float("inf"), -1.0
            continue
        max_abs = max(max_abs, (a - b).abs().max().item())
        min_cos = min(min_cos, torch.nn.functional.cosine_similarity(a, b, dim=-1).min().item())
    return {"max_abs": max_abs, "min_cos": min_cos, "shapes_ok": shapes_ok and len(got) == len(ref)}


def ranking(processor, embeddings: dict) -> torch.Tensor:
    return processor.score_multi_vector(embeddings["text"], embeddings["image"])


def main() -> int:
    args = parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="colqwen3_vllm_parity_") as work:
        return run(args, Path(work))


def run(args, work: Path) -> int:
    processor = build_processor()
    pages = [make_page(lines, seed=index) for index, lines in enumerate(SAMPLE_PAGES.values())]
    queries = list(QUERIES)

    # 1. Checkpoints and Transformers references, before any vLLM engine exists.
    tie = args.tie_word_embeddings
    biased = build_model(tiny_config(tie_word_embeddings=tie, embedding_proj_bias=True), seed=args.seed)
    unbiased = build_model(
        tiny_config(tie_word_embeddings=tie, embedding_proj_bias=False), seed=args.seed, head_bias="none"
    )
    bias_norm = biased.embedding_proj_layer.bias.norm().item()
    folders, references = {}, {}
    needs_biased = {"native", "transformers", "native-asis"} & set(args.routes)
    if needs_biased:
        references["biased"] = hf_embeddings(biased, processor, queries, pages)
    if "transformers" in args.routes:
        with without_deepstack(biased):
            references["biased-no-deepstack"] = hf_embeddings(biased, processor, queries, pages)
    if {"native", "transformers"} & set(args.routes):
        folders["exported"] = write_checkpoint(work / "exported", layout=args.layout, model=biased)
        prepare_for_vllm_native(folders["exported"])
    if "native-asis" in args.routes:
        folders["asis"] = write_checkpoint(work / "asis", layout=args.layout, model=biased)
    if "native-nobias" in args.routes:
        folders["nobias"] = write_checkpoint(work / "nobias", layout=args.layout, model=unbiased, head_bias="none")
        references["nobias"] = hf_embeddings(unbiased, processor, queries, pages)
    if "native-zerobias" in args.routes:
        zero = build_model(tiny_config(tie_word_embeddings=tie, embedding_proj_bias=True), seed=args.seed, head_bias="zero")
        folders["zerobias"] = write_checkpoint(work / "zerobias", layout=args.layout, model=zero, head_bias="zero")
        references["zerobias"] = hf_embeddings(zero, processor, queries, pages)
        del zero
    del biased, unbiased
    gc.collect()

    # 2. One engine per route.
    plan = {
        "native": ("exported", "biased"),
        "native-nobias": ("nobias", "nobias"),
        "native-zerobias": ("zerobias", "zerobias"),
        "transformers": ("exported", "biased"),
        "native-asis": ("asis", "biased"),
    }
    rows, failures, infos = [], [], {}
    for route in args.routes:
        folder_key, reference_key = plan[route]
        try:
            got, info = vllm_embeddings(route, folders[folder_key], processor, queries, pages, args.max_model_len)
        except Exception as error:  # report and go on with the other routes
            failures.append(f"{route}: engine or request failed: {type(error).__name__}: {error}")
            continue
        infos[route] = info
        references_to_compare = [(route, reference_key)]
        if route == "transformers":
            references_to_compare.append(("transformers vs hf-no-deepstack", "biased-no-deepstack"))
        for label, key in references_to_compare:
            reference = references[key]
            ref_scores, got_scores = ranking(processor, reference), ranking(processor, got)
            same_order = int((ref_scores.argsort(dim=-1) == got_scores.argsort(dim=-1)).all(dim=-1).sum())
            same_top1 = int((ref_scores.argmax(dim=-1) == got_scores.argmax(dim=-1)).sum())
            score_diff = (ref_scores - got_scores).abs().max().item()
            for modality in ("text", "image"):
                if label != route and modality == "text":
                    continue
                result = compare(got[modality], reference[modality])
                rows.append((label, modality, result, same_order, same_top1, score_diff))
                if not result["shapes_ok"]:
                    failures.append(f"{label} {modality}: token counts differ from Transformers")
                if route == "native-asis":
                    continue
                if modality == "text" and result["max_abs"] > args.text_tol:
                    failures.append(f"{label} text: max |diff| {result['max_abs']:.3e} > {args.text_tol:g}")
                exact_images = route in EXACT_ROUTES or label != route  # the DeepStack-free comparison is exact too
                if modality == "image" and exact_images and result["max_abs"] > args.image_tol:
                    failures.append(f"{label} image: max |diff| {result['max_abs']:.3e} > {args.image_tol:g}")
            if route in EXACT_ROUTES and label == route and same_order != len(queries):
                failures.append(f"{label}: MaxSim ranking differs from Transformers")

    # 3. Report.
    print()
    print(f"checkpoints {'kept in ' + str(work) if args.keep else 'in a temporary folder'} (layout {args.layout}, {'tied' if tie else 'untied'} LM head, head bias norm {bias_norm:.2f})")
    print(
        f"{len(queries)} queries x {len(pages)} pages; MaxSim columns compare the {len(queries)}x{len(pages)} score "
        "matrices (queries whose page ranking / top-1 page is the same, largest score difference)"
    )
    header = f"{'route':34} {'modality':8} {'max abs diff':>12} {'min cosine':>11} {'same ranking':>12} {'same top-1':>10} {'max score diff':>14}"
    print(header)
    print("-" * len(header))
    for label, modality, result, same_order, same_top1, score_diff in rows:
        print(
            f"{label:34} {modality:8} {result['max_abs']:12.3e} {result['min_cos']:11.6f} "
            f"{f'{same_order}/{len(queries)}':>12} {f'{same_top1}/{len(queries)}':>10} {score_diff:14.3e}"
        )
    for route, info in infos.items():
        print(f"{route}: engine start {info['engine_s']:.1f} s; image profiled at {info['profile_image']}")
    print(f"processor budget: {processor.max_num_visual_tokens} visual tokens per image")
    if failures:
        print("FAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("OK: text exact on every route, images exact on the native routes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
