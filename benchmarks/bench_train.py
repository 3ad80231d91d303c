"""Training cost: measured samples/s and peak memory on the tiny checkpoint (CPU, or CUDA when present), and the
computed GPU memory of the 4B recipe per batch size (from the shipped config.json).

    .venvs/tf5/bin/python benchmarks/bench_train.py [--steps 20] [--batch-sizes 4 8] [--json-out F]

Measured part: full training steps (forward, backward, AdamW on every weight) of the tiny random checkpoint on the
synthetic colour task (96x96 pages, 16 visual tokens per page), `--steps` steps per batch size after one warm-up
step; samples/s = batch x steps / time; peak memory = growth of ru_maxrss (CPU) or torch.cuda.max_memory_allocated
(CUDA).

Computed part (bf16 weights, LoRA r 32 on the 7 language-model projections, head trained, gradient checkpointing,
FlashAttention 2, `--page-tokens` tokens per page incl. the prompt, `--query-tokens` per query):
  weights = 2 B x all parameters; trainable = LoRA + head, with bf16 grads and two bf16 AdamW moments (3 x 2 B);
  checkpointed activations = layers x (pages + queries) x tokens x hidden x 2 B (the vision tower gets no gradient,
  so it stores nothing); one layer recomputed = the MLP's 3 intermediate tensors of the batch (x 2 B);
  loss = MaxSim similarities [queries, pages x processes, query tokens, page tokens] in fp32, x 3 (masked copy,
  gradient). Estimates, not measurements: allow ~10-20% for the CUDA context, allocator slack and buffers.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from colqwen3.testing import tiny
from colqwen3.testing.pages import colour_examples

ROOT = Path(__file__).resolve().parents[1]
GiB = 2**30


def lora_parameters(text: dict, rank: int) -> int:
    hidden, inner = text["hidden_size"], text["intermediate_size"]
    q_out = text["num_attention_heads"] * text["head_dim"]
    kv_out = text["num_key_value_heads"] * text["head_dim"]
    shapes = [(hidden, q_out), (hidden, kv_out), (hidden, kv_out), (q_out, hidden)] + [(hidden, inner)] * 2
    shapes.append((inner, hidden))
    return text["num_hidden_layers"] * sum(rank * (a + b) for a, b in shapes)


def memory_estimate(batch: int, processes: int, page_tokens: int, query_tokens: int, rank: int = 32) -> dict:
    """GiB per GPU for the 4B recipe at `batch` pairs per GPU (see the module docstring for the terms)."""
    from configuration_colqwen3 import ColQwen3Config
    from modeling_colqwen3 import ColQwen3

    config = ColQwen3Config.from_pretrained(ROOT)
    with torch.device("meta"):
        n_params = sum(p.numel() for p in ColQwen3(config).parameters())
    text = config.text_config.to_dict()
    trainable = lora_parameters(text, rank) + text["hidden_size"] * config.embed_dim
    tokens = batch * (page_tokens + query_tokens)
    terms = {
        "weights": 2 * n_params,
        "trainable + grads + AdamW": 2 * trainable * 4,
        "checkpointed activations": text["num_hidden_layers"] * tokens * text["hidden_size"] * 2,
        "one layer recomputed": 3 * tokens * text["intermediate_size"] * 2,
        "loss": 3 * batch * batch * processes * query_tokens * page_tokens * 4,
    }
    return {name: value / GiB for name, value in terms.items()} | {"total": sum(terms.values()) / GiB}


def measure(batch: int, steps: int, device: str) -> dict:
    from colqwen3.train.losses import contrastive_loss

    model = tiny.build_model(seed=0).to(device).train()
    processor = tiny.build_processor(max_num_visual_tokens=16)
    rows = colour_examples(batch, seed=0)
    queries = processor.process_queries([row["query"] for row in rows]).to(device)
    pages = processor.process_images([row["image"] for row in rows]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = contrastive_loss(model(**queries).embeddings, queries["attention_mask"], model(**pages).embeddings,
                                pages["attention_mask"])  # fmt: skip
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return {"batch": batch, "samples_per_s": batch * steps / seconds, "peak_mib": peak, "device": device}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--page-tokens", type=int, default=783, help="768 visual + 15 prompt tokens")
    parser.add_argument("--query-tokens", type=int, default=30, help="query + 10 augmentation tokens")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    measured = [measure(batch, args.steps, device) for batch in args.batch_sizes]
    print(f"tiny checkpoint, full training step (forward + backward + AdamW), {device}:")
    for row in measured:
        print(f"  batch {row['batch']:>3}: {row['samples_per_s']:8.1f} pairs/s, peak memory +{row['peak_mib']:.0f} MiB")
    computed = [{"batch": b, "processes": p, **memory_estimate(b, p, args.page_tokens, args.query_tokens)}
                for p in (1, 8) for b in (8, 16, 32, 64)]  # fmt: skip
    print("\n4B recipe, computed GiB per GPU (bf16 weights, LoRA r 32, checkpointing, FlashAttention 2):")
    print(
        f"  {'GPUs':>4} {'batch/GPU':>9} {'weights':>8} {'activations':>11} {'recompute':>9} {'loss':>6} {'total':>6}"
    )
    for row in computed:
        activations, recompute = row["checkpointed activations"], row["one layer recomputed"]
        print(f"  {row['processes']:>4} {row['batch']:>9} {row['weights']:8.1f} {activations:11.1f} "
              f"{recompute:9.1f} {row['loss']:6.1f} {row['total']:6.1f}")  # fmt: skip
    if args.json_out:
        args.json_out.write_text(json.dumps({"measured": measured, "computed": computed}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
