"""Training data: (query, page image[, hard negative pages]) examples from the colpali training format or a BEIR
folder, checked before training, and the collator that builds the exact inference formats.

- colpali format: rows with `query` (str) and `image` (PIL image), optionally `negatives` (list of PIL images); a
  `datasets` table, a Hub id or local path `datasets.load_dataset` reads, or any list of dicts.
- BEIR folder (as ViDoRe v2/v3 ship, flattened to files): `queries.jsonl` (`_id`, `text`), `corpus.jsonl` (`_id`,
  `image`: a path relative to the folder), `qrels/<split>.tsv` (`query-id`, `corpus-id`, `score`; header line), and
  optionally `hard_negatives.jsonl` (`query-id`, `corpus-ids`). One example per qrel with a score > 0.
"""

import json
from pathlib import Path
from typing import Optional

from PIL import Image

REQUIRED_COLUMNS = ("query", "image")


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON line ({error.msg})") from None
    return rows


def _open_image(path: Path, where: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, ValueError) as error:
        raise ValueError(f"{where}: cannot read image {path} ({type(error).__name__}: {error})") from None


def load_beir_folder(folder, split: str = "train", hard_negatives: int = 0) -> list[dict]:
    """Examples from a BEIR folder (see the module docstring); `hard_negatives` per query from its list, in order."""
    folder = Path(folder)
    queries = {str(row["_id"]): row["text"] for row in _read_jsonl(folder / "queries.jsonl")}
    corpus = {str(row["_id"]): folder / row["image"] for row in _read_jsonl(folder / "corpus.jsonl")}
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        raise ValueError(f"{folder}: no qrels for split {split!r} (expected {qrels_path})")
    negatives = {}
    if hard_negatives and (folder / "hard_negatives.jsonl").exists():
        rows = _read_jsonl(folder / "hard_negatives.jsonl")
        negatives = {str(row["query-id"]): [str(page) for page in row["corpus-ids"]] for row in rows}
    examples = []
    for number, line in enumerate(qrels_path.read_text().splitlines()[1:], start=2):
        query_id, corpus_id, score = line.split("\t")
        where = f"{qrels_path}:{number}"
        if query_id not in queries:
            raise ValueError(f"{where}: query {query_id!r} is not in queries.jsonl")
        for page_id in [corpus_id, *negatives.get(query_id, [])[:hard_negatives]]:
            if page_id not in corpus:
                raise ValueError(f"{where}: page {page_id!r} is not in corpus.jsonl")
        if float(score) <= 0:
            continue
        example = {"query": queries[query_id], "image": _open_image(corpus[corpus_id], where)}
        if hard_negatives:
            ids = negatives.get(query_id, [])[:hard_negatives]
            if len(ids) < hard_negatives:
                raise ValueError(f"{where}: query {query_id!r} has {len(ids)} hard negatives, {hard_negatives} needed")
            example["negatives"] = [_open_image(corpus[page_id], where) for page_id in ids]
        examples.append(example)
    return examples


def load_examples(source, split: str = "train", hard_negatives: int = 0) -> list:
    """Training examples from a BEIR folder, a `datasets` table (or its `save_to_disk` folder), a list of dicts, or a
    `datasets.load_dataset` id/path."""
    if isinstance(source, (str, Path)) and (Path(source) / "queries.jsonl").exists():
        return load_beir_folder(source, split, hard_negatives)
    if isinstance(source, (str, Path)):
        import datasets  # the `train` extra

        if (Path(source) / "dataset_info.json").exists() or (Path(source) / "dataset_dict.json").exists():
            table = datasets.load_from_disk(str(source))  # a `save_to_disk` folder
            return table[split] if isinstance(table, datasets.DatasetDict) else table
        return datasets.load_dataset(str(source), split=split)
    return source


def check_examples(examples, hard_negatives: int = 0, limit: Optional[int] = None) -> None:
    """Fail before training, naming the row: missing columns, empty queries, pages that are not readable images."""
    if len(examples) == 0:
        raise ValueError("the training data has no rows")
    for index in range(min(len(examples), limit or len(examples))):
        row = examples[index]
        missing = [column for column in REQUIRED_COLUMNS if column not in row]
        if missing:
            raise ValueError(f"row {index}: missing column(s) {missing}; got {sorted(row)}")
        if not isinstance(row["query"], str) or not row["query"].strip():
            raise ValueError(f"row {index}: empty or non-text query {row['query']!r}")
        pages = [row["image"], *(row.get("negatives") or [])]
        for page in pages:
            if not isinstance(page, Image.Image) or page.width < 1 or page.height < 1:
                raise ValueError(f"row {index}: page is not a readable image ({type(page).__name__})")
        if hard_negatives and len(pages) - 1 < hard_negatives:
            raise ValueError(f"row {index}: {len(pages) - 1} hard negatives, {hard_negatives} needed")


class ColQwen3Collator:
    """Rows -> `{"queries": process_queries(...), "pages": process_images(...)[, "negatives": ...]}`.

    Queries get exactly the inference query format; pages the page prompt, at `max_visual_tokens` per page (the
    training cap, separate from the processor's inference budget, which is left unchanged).
    """

    def __init__(self, processor, max_visual_tokens: int = 768, hard_negatives: int = 0):
        import copy

        self.processor = copy.deepcopy(processor)  # the caller's processor keeps its inference budget
        self.processor.max_num_visual_tokens = max_visual_tokens
        self.hard_negatives = hard_negatives

    def __call__(self, rows: list) -> dict:
        batch = {
            "queries": self.processor.process_queries([row["query"] for row in rows]),
            "pages": self.processor.process_images([row["image"] for row in rows]),
        }
        if self.hard_negatives:
            negatives = [page for row in rows for page in row["negatives"][: self.hard_negatives]]
            batch["negatives"] = self.processor.process_images(negatives)
        return batch
