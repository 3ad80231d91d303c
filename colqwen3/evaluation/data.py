"""Local retrieval data: queries, page images and graded qrels, checked, from a BEIR-format folder or training rows.

A BEIR-format folder holds:

    corpus.jsonl    one page per line: {"_id": "p1", "image": "images/p1.png"}   (or "corpus-id"; path relative)
    queries.jsonl   one query per line: {"_id": "q1", "text": "total due?"}      (or "query-id" / "query")
    qrels/test.tsv  header, then query-id <TAB> corpus-id <TAB> score           (or qrels.tsv; score: int >= 0)

Every mistake is reported with the file, the line and what was expected.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from PIL import Image

ID_COLUMNS = {"corpus": ("_id", "corpus-id", "id"), "queries": ("_id", "query-id", "id")}
TEXT_COLUMNS = ("text", "query")
QRELS_FILES = ("qrels/test.tsv", "qrels.tsv")

PageSource = Union[Image.Image, Path]


@dataclass
class RetrievalData:
    """One retrieval task: `queries` (id -> text), `corpus` (id -> page image or image path), `qrels` (query id ->
    {page id: relevance}, graded, 0 = judged not relevant). Checked on construction."""

    queries: dict
    corpus: dict
    qrels: dict
    name: str = "LocalRetrieval"
    source: str = field(default="in memory")

    def __post_init__(self):
        where = f"{self.name} ({self.source})"
        if not self.corpus:
            raise ValueError(f"{where}: the corpus is empty; a retrieval task needs at least one page.")
        if not self.queries:
            raise ValueError(f"{where}: there are no queries.")
        for query_id, text in self.queries.items():
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{where}: query {query_id!r} has no text (got {text!r}).")
        for page_id, page in self.corpus.items():
            if not isinstance(page, (Image.Image, Path)):
                raise TypeError(f"{where}: page {page_id!r} must be a PIL image or a path, got {type(page).__name__}.")
        unknown_queries = sorted(set(self.qrels) - set(self.queries))
        unknown_pages = sorted({page for judged in self.qrels.values() for page in judged} - set(self.corpus))
        if unknown_queries or unknown_pages:
            raise ValueError(
                f"{where}: qrels name ids that are not in the data: queries {unknown_queries[:5]}"
                f"{' ...' if len(unknown_queries) > 5 else ''}, pages {unknown_pages[:5]}"
                f"{' ...' if len(unknown_pages) > 5 else ''}."
            )
        for query_id, judged in self.qrels.items():
            for page_id, relevance in judged.items():
                if isinstance(relevance, bool) or not isinstance(relevance, int) or relevance < 0:
                    raise ValueError(
                        f"{where}: qrels[{query_id!r}][{page_id!r}] must be an integer >= 0, got {relevance!r}."
                    )
        if not any(relevance > 0 for judged in self.qrels.values() for relevance in judged.values()):
            raise ValueError(f"{where}: no query has a relevant page (relevance > 0); nothing can be scored.")

    @property
    def judged_queries(self) -> list:
        """Queries with at least one relevant page: the ones a retrieval metric averages over."""
        return [query for query in self.queries if any(r > 0 for r in self.qrels.get(query, {}).values())]

    @classmethod
    def from_examples(cls, rows, name: str = "HeldOut") -> "RetrievalData":
        """Training rows (`query`, `image`): each query's one relevant page is its own row's, all pages the corpus."""
        rows = list(rows)
        return cls(
            queries={f"q{index}": row["query"] for index, row in enumerate(rows)},
            corpus={f"p{index}": row["image"] for index, row in enumerate(rows)},
            qrels={f"q{index}": {f"p{index}": 1} for index in range(len(rows))},
            name=name,
        )

    @classmethod
    def from_beir_folder(cls, folder, name: Optional[str] = None) -> "RetrievalData":
        """Read a BEIR-format folder (see the module docstring); page paths are checked, images opened lazily."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(
                f"{folder} is not a folder; a BEIR-format folder holds corpus.jsonl, queries.jsonl, qrels."
            )
        corpus = {}
        for line_number, row in _jsonl(folder / "corpus.jsonl"):
            page_id = _column(row, ID_COLUMNS["corpus"], folder / "corpus.jsonl", line_number)
            path = folder / _column(row, ("image",), folder / "corpus.jsonl", line_number)
            if not path.is_file():
                raise ValueError(f"{folder / 'corpus.jsonl'} line {line_number}: image {path} does not exist.")
            corpus[str(page_id)] = path
        queries = {}
        for line_number, row in _jsonl(folder / "queries.jsonl"):
            query_id = _column(row, ID_COLUMNS["queries"], folder / "queries.jsonl", line_number)
            queries[str(query_id)] = _column(row, TEXT_COLUMNS, folder / "queries.jsonl", line_number)
        return cls(queries, corpus, _qrels(folder), name=name or _task_name(folder), source=str(folder))


def _jsonl(path: Path):
    if not path.is_file():
        raise ValueError(f"{path} is missing; a BEIR-format folder holds corpus.jsonl, queries.jsonl and qrels.")
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {line_number}: not JSON ({error.msg}).") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {line_number}: expected a JSON object, got {type(row).__name__}.")
            yield line_number, row


def _column(row: dict, names: tuple, path: Path, line_number: int):
    for name in names:
        if name in row:
            return row[name]
    raise ValueError(f"{path} line {line_number}: missing column {' / '.join(names)} (has {sorted(row)}).")


def _qrels(folder: Path) -> dict:
    path = next((folder / name for name in QRELS_FILES if (folder / name).is_file()), None)
    if path is None:
        raise ValueError(f"{folder}: no qrels file; expected one of {', '.join(QRELS_FILES)}.")
    qrels: dict = {}
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, 1):
            fields = line.rstrip("\n").split("\t")
            if line_number == 1 and fields[:2] == ["query-id", "corpus-id"]:
                continue
            if not line.strip():
                continue
            if len(fields) != 3:
                raise ValueError(f"{path} line {line_number}: expected query-id, corpus-id, score (tab-separated).")
            try:
                relevance = int(fields[2])
            except ValueError:
                raise ValueError(f"{path} line {line_number}: score {fields[2]!r} is not an integer.") from None
            qrels.setdefault(fields[0], {})[fields[1]] = relevance
    return qrels


def _task_name(folder: Path) -> str:
    words = [word for word in folder.resolve().name.replace("-", " ").replace("_", " ").split() if word]
    return "".join(word[:1].upper() + word[1:] for word in words) or "LocalRetrieval"
