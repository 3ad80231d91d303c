"""mteb 2.x glue: our model as an mteb `AbsEncoder` (late interaction, MaxSim), and local data as an mteb task.

Queries go through `process_queries`, pages through `process_images`, in length-bucketed batches
(`RetrievalEncoder`); embeddings stay ragged (one `[tokens, dim]` tensor per item, never one padded corpus tensor)
and similarity is our exact, memory-bounded MaxSim on the encoder's device.
"""

from collections import defaultdict
from typing import Any, Optional

import torch
from datasets import Dataset, Features, Value
from datasets import Image as ImageFeature
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType
from PIL import Image

from colqwen3.evaluation.data import RetrievalData
from colqwen3.evaluation.encoder import RetrievalEncoder, Throughput


def model_meta(name: str, revision: Optional[str], model=None) -> ModelMeta:
    """mteb metadata for a ColQwen3 checkpoint: late interaction, MaxSim, image and text, bf16 outputs on GPU."""
    if "/" not in name:
        name = f"local/{name}"  # mteb names results folders `org__name`
    config = getattr(model, "config", None)
    return ModelMeta(
        loader=None,
        name=name,
        revision=revision or "local",
        release_date=None,
        languages=None,
        n_parameters=sum(p.numel() for p in model.parameters()) if model is not None else None,
        memory_usage_mb=None,
        max_tokens=None,
        embed_dim=getattr(config, "embed_dim", None),
        license=None,
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=["PyTorch", "Transformers", "safetensors"],
        similarity_fn_name=ScoringFunction.MAX_SIM,
        use_instructions=False,
        training_datasets=None,
        modalities=["image", "text"],
        model_type=["late-interaction"],
    )


class ColQwen3MtebModel(AbsEncoder):
    """A ColQwen3 retriever for `mteb.evaluate`. Build it from a loaded `RetrievalEncoder`, or with
    `ColQwen3MtebModel.from_pretrained(model_id, ...)` (same arguments as `RetrievalEncoder.from_pretrained`).

    `throughput[task_name]` holds the pages and queries encoded for each task and the time they took.
    """

    def __init__(self, encoder: RetrievalEncoder, name: str, revision: Optional[str] = None):
        self.encoder = encoder
        self.model = encoder.model
        self.mteb_model_meta = model_meta(name, revision, encoder.model)
        self.throughput: dict = defaultdict(lambda: {"pages": Throughput(), "queries": Throughput()})

    @classmethod
    def from_pretrained(cls, model_id: str, *, name: Optional[str] = None, **kwargs) -> "ColQwen3MtebModel":
        encoder = RetrievalEncoder.from_pretrained(model_id, **kwargs)
        return cls(encoder, name or model_id, kwargs.get("revision"))

    def encode(
        self,
        inputs,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: Optional[PromptType] = None,
        **kwargs: Any,
    ) -> list[torch.Tensor]:
        columns = set(inputs.dataset.column_names)
        show = kwargs.get("show_progress_bar", True)
        counters = self.throughput[task_metadata.name]
        if "image" in columns and prompt_type != PromptType.query:
            before = (self.encoder.pages.items, self.encoder.pages.seconds)
            pages = self.encoder.encode_pages((_as_pil(image) for batch in inputs for image in batch["image"]), show)
            _add(counters["pages"], self.encoder.pages, before)
            return pages
        if "text" in columns:
            before = (self.encoder.queries.items, self.encoder.queries.seconds)
            queries = self.encoder.encode_queries((text for batch in inputs for text in batch["text"]), show)
            _add(counters["queries"], self.encoder.queries, before)
            return queries
        raise ValueError(
            f"{task_metadata.name}: inputs have neither an `image` nor a `text` column ({sorted(columns)})."
        )

    def similarity(self, embeddings1, embeddings2) -> torch.Tensor:
        return self.encoder.score(_ragged(embeddings1), _ragged(embeddings2))

    def similarity_pairwise(self, embeddings1, embeddings2) -> torch.Tensor:
        first, second = _ragged(embeddings1), _ragged(embeddings2)
        if len(first) != len(second):
            raise ValueError(
                f"Pairwise similarity needs as many items on each side, got {len(first)} and {len(second)}."
            )
        return torch.stack([self.encoder.score([a], [b])[0, 0] for a, b in zip(first, second)])


def _add(total: Throughput, counter: Throughput, before: tuple) -> None:
    total.items += counter.items - before[0]
    total.seconds += counter.seconds - before[1]


def _ragged(embeddings) -> list:
    """mteb hands back what `encode` returned, or a stacked slice of it for one query: a list of 2-D tensors."""
    if isinstance(embeddings, torch.Tensor):
        return list(embeddings.unsqueeze(0) if embeddings.dim() == 2 else embeddings)
    return [torch.as_tensor(item) for item in embeddings]


def _as_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor) and image.dim() == 3:  # a (channels, height, width) uint8 tensor
        return Image.fromarray(image.permute(1, 2, 0).to(torch.uint8).numpy())
    raise TypeError(f"A page must be a PIL image or a (C, H, W) tensor, got {type(image).__name__}.")


def mteb_task(data: RetrievalData, main_score: str = "ndcg_at_5") -> AbsTaskRetrieval:
    """`data` as an in-memory mteb retrieval task (text to image, one `test` split); nothing is downloaded."""
    metadata = TaskMetadata(
        name=data.name,
        description=f"Local page retrieval from {data.source}.",
        dataset={"path": str(data.source), "revision": "local"},
        type="DocumentUnderstanding",
        category="t2i",
        modalities=["text", "image"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=main_score,
        reference=None,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation="",
    )

    class LocalTask(AbsTaskRetrieval):
        def load_data(self, num_proc: Optional[int] = None, **kwargs: Any) -> None:
            # paths stay paths: datasets decodes each image when a batch reads it
            images = [page if isinstance(page, Image.Image) else str(page) for page in data.corpus.values()]
            features = Features({"id": Value("string"), "image": ImageFeature()})
            corpus = Dataset.from_dict({"id": list(data.corpus), "image": images}, features=features)
            split = RetrievalSplitData(
                queries=Dataset.from_dict({"id": list(data.queries), "text": list(data.queries.values())}),
                corpus=corpus,
                relevant_docs={query: dict(judged) for query, judged in data.qrels.items()},
                top_ranked=None,
            )
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    LocalTask.metadata = metadata
    LocalTask.__name__ = data.name
    return LocalTask()
