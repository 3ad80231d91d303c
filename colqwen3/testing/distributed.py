"""One rank of a CPU (gloo) check that `contrastive_loss` with pages gathered across processes equals one process on
the whole batch: `python -m colqwen3.testing.distributed --rank R --world W --init file:///tmp/x --out R.pt`.

`run_rank(rank, world, loss)` with `world=1` is the single-process reference. Ranks get unequal batches and unequal
page lengths, so offsets and padding across processes are exercised. Each rank weights its mean loss by its share of
the queries and gradients are summed across ranks, which makes the total the loss of the whole batch.
"""

import argparse

import torch

from colqwen3.train.losses import contrastive_loss

DIM, TOTAL, QUERY_LEN, PAGE_LEN, NEGATIVES = 8, 5, 6, 9, 2


def batch_split(world: int) -> list[tuple[int, int]]:
    """(start, end) query rows per rank: [0, 3) and [3, 5) for two ranks."""
    return [(0, TOTAL)] if world == 1 else [(0, 3), (3, 5)]


def make_data(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    shapes = {"queries": (TOTAL, QUERY_LEN), "pages": (TOTAL, PAGE_LEN), "negatives": (TOTAL * NEGATIVES, PAGE_LEN)}
    inputs = {name: torch.randn(rows, length, DIM, generator=generator) for name, (rows, length) in shapes.items()}
    masks = {}
    for name, tensor in inputs.items():
        lengths = torch.randint(1, tensor.shape[1] + 1, (tensor.shape[0],), generator=generator)
        masks[name] = torch.arange(tensor.shape[1])[None, :] >= (tensor.shape[1] - lengths)[:, None]  # left padding
    return {"inputs": inputs, "masks": masks, "weight": torch.randn(DIM, DIM, generator=generator)}


def run_rank(rank: int, world: int, loss: str) -> dict:
    """This rank's share of the weighted loss and of the encoder's gradient (before summing across ranks)."""
    data = make_data()
    start, end = batch_split(world)[rank]
    encoder = torch.nn.Linear(DIM, DIM, bias=False)
    with torch.no_grad():
        encoder.weight.copy_(data["weight"])

    def encode(name: str, rows: slice):
        tokens, mask = data["inputs"][name][rows], data["masks"][name][rows]
        keep = mask.any(0)  # trim columns that are padding in every row: page lengths differ between ranks
        return torch.nn.functional.normalize(encoder(tokens[:, keep]), dim=-1), mask[:, keep]

    queries, query_mask = encode("queries", slice(start, end))
    pages, page_mask = encode("pages", slice(start, end))
    negatives = encode("negatives", slice(start * NEGATIVES, end * NEGATIVES)) if loss == "hard-negatives" else None
    value = contrastive_loss(queries, query_mask, pages, page_mask, loss=loss, temperature=0.05, negatives=negatives)
    weighted = value * (end - start) / TOTAL
    weighted.backward()
    return {"loss": weighted.detach(), "grad": encoder.weight.grad.detach().clone()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--init", required=True, help="torch.distributed init_method, e.g. file:///tmp/rendezvous")
    parser.add_argument("--loss", default="infonce")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.distributed.init_process_group("gloo", init_method=args.init, rank=args.rank, world_size=args.world)
    try:
        result = run_rank(args.rank, args.world, args.loss)
        for tensor in result.values():
            torch.distributed.all_reduce(tensor)  # sum over ranks
        torch.save(result, args.out)
        # Both ranks leave their collectives before either tears gloo down: a rank that destroys the group while the
        # other is still inside one aborts ("terminate called without an active exception", seen once in CI).
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
