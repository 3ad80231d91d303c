"""Evaluate ColQwen3 retrievers: ViDoRe v1/v2/v3 through mteb 2.x, or local BEIR-format data.

- `RetrievalEncoder`: queries and pages -> ragged multi-vector embeddings, length-bucketed batches (needs no mteb).
- `RetrievalData`: queries, pages and graded qrels, checked; from a BEIR-format folder or training rows.
- `evaluate(...)`: runs mteb and returns an `EvaluationReport` (what `colqwen3 eval` prints and writes).
- `colqwen3.evaluation.mteb_model`: `ColQwen3MtebModel`, our model as an mteb encoder (late interaction, MaxSim).
"""

from colqwen3.evaluation.data import RetrievalData
from colqwen3.evaluation.encoder import RetrievalEncoder, Throughput
from colqwen3.evaluation.run import BENCHMARKS, PUBLISHED_SCORES, EvaluationReport, TaskScores, evaluate

__all__ = [
    "BENCHMARKS",
    "PUBLISHED_SCORES",
    "EvaluationReport",
    "RetrievalData",
    "RetrievalEncoder",
    "TaskScores",
    "Throughput",
    "evaluate",
]
