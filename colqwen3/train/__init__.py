"""Fine-tuning ColQwen3: late-interaction losses (`losses`), with in-batch negatives gathered across processes."""
