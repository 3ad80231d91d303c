"""The trainer's periodic retrieval evaluation: the same mteb evaluation as `colqwen3 eval`, on held-out rows."""

from colqwen3.evaluation import RetrievalData, RetrievalEncoder, evaluate


def retrieval_metrics(model, processor, examples, batch_size: int = 8, device=None) -> dict:
    """nDCG@5/@10, recall@5 and MRR@10 of `model` on `examples` (rows with `query` and `image`): each query's relevant
    page is its own row's, all the rows' pages are the corpus. The model's train/eval mode is restored afterwards."""
    encoder = RetrievalEncoder(model, processor, batch_size=batch_size, device=device)
    report = evaluate(encoder, data=RetrievalData.from_examples(examples), show_progress=False)
    metrics = report.tasks[0].metrics
    return {
        "ndcg@5": metrics["ndcg_at_5"],
        "ndcg@10": metrics["ndcg_at_10"],
        "recall@5": metrics["recall_at_5"],
        "mrr@10": metrics["mrr_at_10"],
    }
