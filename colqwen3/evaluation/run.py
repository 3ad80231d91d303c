"""Evaluate a ColQwen3 checkpoint with mteb: ViDoRe benchmarks, named tasks, or local BEIR-format data.

`evaluate(...)` is what `colqwen3 eval` runs and what the trainer's periodic evaluation calls; it returns an
`EvaluationReport` (per-task nDCG@5/@10, recall@k, MRR@10, encoding throughput, the published score to compare with)
and, given `output_dir`, writes mteb's own result JSON there plus `report.json` and `report.md`.
"""

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

from colqwen3.evaluation.data import RetrievalData
from colqwen3.evaluation.encoder import RetrievalEncoder

BENCHMARKS = ("ViDoRe(v1)", "ViDoRe(v2)", "ViDoRe(v3)")
# Metrics in the report (mteb's names; values in [0, 1], shown x100 as on the leaderboard).
METRICS = ("ndcg_at_5", "ndcg_at_10", "recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10")
METRIC_LABELS = {
    "ndcg_at_5": "nDCG@5",
    "ndcg_at_10": "nDCG@10",
    "recall_at_1": "R@1",
    "recall_at_5": "R@5",
    "recall_at_10": "R@10",
    "mrr_at_10": "MRR@10",
}
# Published benchmark scores: the mean main score over the benchmark's public tasks (x100).
PUBLISHED_SOURCE = "MTEB results repository, github.com/embeddings-benchmark/results (mteb 2.x leaderboard)"
PUBLISHED_SCORES = {
    "TomoroAI/tomoro-colqwen3-embed-4b": {"ViDoRe(v1)": 90.57, "ViDoRe(v2)": 64.69, "ViDoRe(v3)": 60.16},
    "TomoroAI/tomoro-colqwen3-embed-8b": {"ViDoRe(v1)": 90.76, "ViDoRe(v2)": 65.40, "ViDoRe(v3)": 61.60},
}


@dataclass
class TaskScores:
    task: str
    main_metric: str
    metrics: dict  # mteb metric name -> mean over the task's subsets (languages) and eval splits, in [0, 1]
    subsets: list
    pages: int = 0
    page_seconds: float = 0.0
    queries: int = 0
    query_seconds: float = 0.0

    @property
    def main_score(self) -> float:
        return self.metrics[self.main_metric]

    @property
    def pages_per_s(self) -> Optional[float]:
        return self.pages / self.page_seconds if self.page_seconds > 0 else None

    @property
    def queries_per_s(self) -> Optional[float]:
        return self.queries / self.query_seconds if self.query_seconds > 0 else None


@dataclass
class EvaluationReport:
    model: str
    revision: Optional[str]
    benchmark: Optional[str]
    tasks: list
    settings: dict
    versions: dict
    published: Optional[float] = None  # the published score of `compare_to` on `benchmark` (x100)
    compare_to: Optional[str] = None
    result_files: list = field(default_factory=list)

    @property
    def mean_main_score(self) -> float:
        """The benchmark score: the mean of the tasks' main scores (x100), as the leaderboard computes it."""
        return 100 * sum(task.main_score for task in self.tasks) / len(self.tasks)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean_main_score"] = self.mean_main_score
        for task, row in zip(self.tasks, data["tasks"]):
            row.update(main_score=task.main_score, pages_per_s=task.pages_per_s, queries_per_s=task.queries_per_s)
        return data

    def write_json(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def markdown(self) -> str:
        """Per-task table (x100; the task's main score in bold), a mean row with the published score beside it when
        known (column `published (this run -)`), then settings and versions."""
        title = self.benchmark or ", ".join(task.task for task in self.tasks)
        compare = self.published is not None
        header = ["task", *(METRIC_LABELS[m] for m in METRICS), "pages/s", "queries/s"]
        header += [f"published ({self.compare_to})"] if compare else []
        lines = [
            f"### {self.model} on {title}",
            "",
            "| " + " | ".join(header) + " |",
            "|---|" + "---:|" * (len(header) - 1),
        ]
        for task in self.tasks:
            cells = [
                f"**{100 * task.metrics[m]:.2f}**" if m == task.main_metric else f"{100 * task.metrics[m]:.2f}"
                for m in METRICS
            ]
            cells += [f"{rate:.1f}" if rate is not None else "-" for rate in (task.pages_per_s, task.queries_per_s)]
            lines.append(f"| {task.task} | " + " | ".join(cells + ([""] if compare else [])) + " |")
        mains = sorted({task.main_metric for task in self.tasks})
        if len(mains) == 1:  # a benchmark has one main metric: its mean goes in that column
            cells = [f"**{self.mean_main_score:.2f}**" if m == mains[0] else "" for m in METRICS] + ["", ""]
            if compare:
                cells.append(f"{self.published:.2f} ({self.mean_main_score - self.published:+.2f})")
            lines.append("| **mean** | " + " | ".join(cells) + " |")
        labels = ", ".join(METRIC_LABELS.get(m, m) for m in mains)
        lines += ["", f"Bold: each task's main score ({labels}). Mean main score: {self.mean_main_score:.2f}"]
        if compare:
            lines.append(f"Published score of {self.compare_to} on {self.benchmark}; source: {PUBLISHED_SOURCE}")
        settings = ", ".join(f"{key} {value}" for key, value in self.settings.items())
        versions = ", ".join(f"{key} {value}" for key, value in self.versions.items())
        lines += [f"Settings: {settings}", f"Versions: {versions}"]
        return "\n".join(lines) + "\n"


def default_name(model_id: str) -> str:
    """The results name of a model: its Hub id, or `local/<folder name>` for a folder on disk."""
    return f"local/{Path(model_id).resolve().name}" if Path(model_id).exists() else model_id


def resolve_tasks(benchmark: Optional[str] = None, tasks=None, data=None, include_private: bool = False) -> list:
    """mteb task objects for exactly one of: a benchmark name, task names, local data (`RetrievalData` objects or
    BEIR-format folders). A benchmark's private tasks are left out unless `include_private`."""
    import mteb

    from colqwen3.evaluation.mteb_model import mteb_task

    given = [name for name, value in (("benchmark", benchmark), ("tasks", tasks), ("data", data)) if value]
    if len(given) != 1:
        raise ValueError(f"Give exactly one of benchmark, tasks or data; got {given or 'none'}.")
    if benchmark:
        try:
            found = list(mteb.get_benchmark(benchmark).tasks)
        except (KeyError, ValueError):
            raise ValueError(f"Unknown benchmark {benchmark!r}; the ViDoRe ones are {', '.join(BENCHMARKS)}.") from None
        return [task for task in found if include_private or task.metadata.is_public]
    if tasks:
        names = [tasks] if isinstance(tasks, str) else list(tasks)
        found, unknown = [], []
        for name in names:
            try:
                found.append(mteb.get_task(name))
            except KeyError:
                unknown.append(name)
        if unknown:
            raise ValueError(f"Unknown mteb task(s) {unknown}; ViDoRe tasks are named like VidoreDocVQARetrieval.")
        return found
    items = data if isinstance(data, (list, tuple)) else [data]
    loaded = [item if isinstance(item, RetrievalData) else RetrievalData.from_beir_folder(item) for item in items]
    names = [item.name for item in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"Local tasks need distinct names, got {names}.")
    return [mteb_task(item) for item in loaded]


def evaluate(
    model: Union[str, RetrievalEncoder],
    *,
    benchmark: Optional[str] = None,
    tasks=None,
    data=None,
    output_dir=None,
    batch_size: Optional[int] = None,
    max_visual_tokens: Optional[int] = None,
    device: Optional[str] = None,
    revision: Optional[str] = None,
    name: Optional[str] = None,
    compare_to: Optional[str] = None,
    include_private: bool = False,
    show_progress: bool = True,
) -> EvaluationReport:
    """Run mteb on `model` (a checkpoint folder, a Hub id or a loaded `RetrievalEncoder`) and report.

    `batch_size` (default 8, or a given encoder's own) and `max_visual_tokens` (default: the processor's) set how
    pages are encoded; `name` (default: the id, or `local/<folder>`) names the results folder; `compare_to` (default:
    the id when its published scores are known, see `PUBLISHED_SCORES`) picks the published score shown next to a
    benchmark's mean.
    """
    import mteb

    from colqwen3.evaluation.mteb_model import ColQwen3MtebModel

    task_objects = resolve_tasks(benchmark, tasks, data, include_private)
    if isinstance(model, RetrievalEncoder):
        encoder, model_id = model, name or "local/in-memory"
    else:
        model_id = str(model)
        encoder = RetrievalEncoder.from_pretrained(model_id, revision=revision, device=device)
    if max_visual_tokens is not None:
        encoder.processor.max_num_visual_tokens = max_visual_tokens
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        encoder.batch_size = batch_size
    name = name or default_name(model_id)
    wrapper = ColQwen3MtebModel(encoder, name, revision)

    output_dir = Path(output_dir) if output_dir is not None else None
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
    result = mteb.evaluate(
        wrapper,
        task_objects,
        cache=mteb.ResultCache(output_dir) if output_dir is not None else None,
        overwrite_strategy="always",
        encode_kwargs={"batch_size": encoder.batch_size, "show_progress_bar": show_progress},
        prediction_folder=output_dir / "predictions" if output_dir is not None else None,
        show_progress_bar=show_progress,
    )

    main_metrics = {task.metadata.name: task.metadata.main_score for task in task_objects}
    rows = []
    for task_result in result.task_results:
        subsets = [row for split in task_result.scores.values() for row in split]
        metrics = {metric: sum(float(row[metric]) for row in subsets) / len(subsets) for metric in METRICS}
        main_metric = main_metrics[task_result.task_name]
        if main_metric not in metrics:
            metrics[main_metric] = sum(float(row[main_metric]) for row in subsets) / len(subsets)
        counted = wrapper.throughput[task_result.task_name]
        rows.append(
            TaskScores(
                task=task_result.task_name,
                main_metric=main_metric,
                metrics=metrics,
                subsets=[row["hf_subset"] for row in subsets],
                pages=counted["pages"].items,
                page_seconds=counted["pages"].seconds,
                queries=counted["queries"].items,
                query_seconds=counted["queries"].seconds,
            )
        )
    compare_to = compare_to or (model_id if model_id in PUBLISHED_SCORES else None)
    report = EvaluationReport(
        model=name,
        revision=revision,
        benchmark=benchmark,
        tasks=rows,
        settings={
            "batch_size": encoder.batch_size,
            "max_visual_tokens": encoder.processor.max_num_visual_tokens,
            "dtype": str(next(encoder.model.parameters()).dtype).replace("torch.", ""),
            "attention": getattr(getattr(encoder.model, "config", None), "_attn_implementation", None),
            "device": str(encoder.device),
        },
        versions=_versions(),
        published=PUBLISHED_SCORES.get(compare_to, {}).get(benchmark) if compare_to and benchmark else None,
        compare_to=compare_to,
    )
    if output_dir is not None:
        report.result_files = sorted(str(path) for path in (output_dir / "results").rglob("*.json"))
        report.write_json(output_dir / "report.json")
        (output_dir / "report.md").write_text(report.markdown())
        print(f"mteb results and report written to {output_dir}", file=sys.stderr)
    return report


def _versions() -> dict:
    import mteb
    import torch
    import transformers

    return {"mteb": mteb.__version__, "transformers": transformers.__version__, "torch": torch.__version__}
