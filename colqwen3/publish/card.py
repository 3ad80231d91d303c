"""The model card of a published repository: Hub YAML metadata (with `model-index` results from a `colqwen3 eval`
report when given), usage with Transformers and vLLM, and the visual-token budget."""

import json
from pathlib import Path
from typing import Optional

TAGS = ["colpali", "colqwen3", "late-interaction", "multi-vector", "document-retrieval", "qwen3-vl", "vllm"]

USAGE = """## Usage with Transformers

```python
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True, dtype=torch.bfloat16,
                                  attn_implementation="flash_attention_2").to("cuda").eval()  # or "sdpa"
processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)

pages = [Image.open("page1.png"), Image.open("page2.png")]
queries = ["What was the revenue growth in Q3?"]
with torch.inference_mode():
    page_embeddings = model(**processor.process_images(pages).to(model.device)).embeddings
    query_embeddings = model(**processor.process_queries(queries).to(model.device)).embeddings
scores = processor.score_multi_vector(query_embeddings, page_embeddings)  # MaxSim, [n_queries, n_pages]
```

transformers 4.57 spells `dtype` as `torch_dtype`. Every token becomes a unit-norm {embed_dim}-dimensional vector.

## Usage with vLLM

```bash
vllm serve {repo_id} --runner pooling --pooler-config '{{"task": "token_embed"}}' \\
  --mm-processor-kwargs '{{"max_pixels": {max_pixels}}}'
```

vLLM adds neither the page prompt nor the query augmentation: send queries as `query + "<|endoftext|>" * {n_aug}`
and pages with the prompt `{page_prompt}`. The `colqwen3` toolkit's client does both, and `colqwen3 serve-line`
prints the complete launch line (chat template for `/score`, the Transformers-backend route).{native_note}

## Visual-token budget

Pages are resized to at most **{budget} visual tokens** (one token per 32x32 pixel tile, {max_pixels} pixels);
`AutoProcessor.from_pretrained(..., max_num_visual_tokens=N)` changes it. Queries get {n_aug} augmentation tokens.
"""


def model_card(
    repo_id: str,
    processor,
    embed_dim: int,
    *,
    base_model: Optional[str] = None,
    license: str = "apache-2.0",
    datasets: Optional[list] = None,
    eval_report: Optional[Path] = None,
    vllm_native: bool = False,
    description: str = "",
) -> str:
    """The README.md text: YAML front matter in the Hub's format, then the card body."""
    from huggingface_hub import ModelCard, ModelCardData

    eval_results, table = _eval_results(eval_report) if eval_report is not None else (None, "")
    data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag="visual-document-retrieval",
        base_model=base_model,
        tags=TAGS,
        datasets=datasets or None,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results,
    )
    budget = processor.max_num_visual_tokens
    native_note = (
        "\n\nThis repository was written for vLLM's native ColQwen3 model (the head bias sits in a shard of its own "
        "and config.json names the width `embedding_dim`), so both vLLM routes serve it exactly."
        if vllm_native
        else ""
    )
    body = USAGE.format(
        repo_id=repo_id,
        embed_dim=embed_dim,
        budget=budget,
        max_pixels=budget * processor.tokens_tile**2,
        n_aug=processor.num_query_augmentation_tokens,
        page_prompt=processor.page_prompt().replace("\n", "\\n"),
        native_note=native_note,
    )
    intro = (
        f"# {repo_id.split('/')[-1]}\n\nA ColPali-style late-interaction retriever on Qwen3-VL (ColQwen3): every "
        f"token of a page image or a query becomes a {embed_dim}-dimensional vector and pages are ranked by MaxSim. "
        f"Remote code: load with `trust_remote_code=True` (transformers 4.57.x and 5.x).{description}\n\n"
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{intro}{body}{table}").content


def _eval_results(path: Path):
    """`EvalResult`s (the Hub's model-index) and a markdown section, from a `colqwen3 eval --json-out` report."""
    from huggingface_hub import EvalResult

    report = json.loads(Path(path).read_text())
    if not report.get("tasks"):
        raise ValueError(f"{path} is not a `colqwen3 eval` report (no `tasks`).")
    results = []
    for task in report["tasks"]:
        for metric, value in task["metrics"].items():
            results.append(
                EvalResult(
                    task_type="visual-document-retrieval",
                    dataset_type=task["task"],
                    dataset_name=task["task"],
                    metric_type=metric,
                    metric_value=round(100 * value, 2),
                    metric_name=f"{metric}{' (main)' if metric == task['main_metric'] else ''}",
                )
            )
    title = report.get("benchmark") or "evaluation"
    table = f"\n## Evaluation: {title}\n\n" + _markdown_table(report)
    return results, table


def _markdown_table(report: dict) -> str:
    from colqwen3.evaluation.run import METRIC_LABELS, METRICS

    lines = ["| task | " + " | ".join(METRIC_LABELS[m] for m in METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for task in report["tasks"]:
        lines.append(f"| {task['task']} | " + " | ".join(f"{100 * task['metrics'][m]:.2f}" for m in METRICS) + " |")
    mean = report.get("mean_main_score")
    lines.append(f"\nMean main score: {mean:.2f} (mteb {report.get('versions', {}).get('mteb', '?')}).\n")
    return "\n".join(lines)
