"""Late-interaction losses against float64 references written independently (`colqwen3.testing.references`), their
invariants, their errors, and pages gathered across two CPU processes equal to one process on the whole batch."""

import math
import subprocess
import sys

import pytest
import torch

from colqwen3.testing import distributed
from colqwen3.testing.references import (
    hard_negative_float64,
    infonce_float64,
    maxsim_float64,
    pad,
    pairwise_softplus_float64,
    random_unit_vectors,
)
from colqwen3.train.losses import (
    contrastive_loss,
    hard_negative_loss,
    infonce_loss,
    masked_maxsim,
    paired_maxsim,
    pairwise_softplus_loss,
)


@pytest.fixture(params=["left", "right"])
def ragged(request):
    """Queries with only positive components, pages with only negative ones: every similarity is < 0, so a padded
    token that was merely zeroed would win every max."""
    queries = random_unit_vectors((3, 7, 1, 5), dim=12, seed=1, sign=1)
    pages = random_unit_vectors((9, 2, 6, 4, 11), dim=12, seed=2, sign=-1)
    return queries, pages, pad(queries, request.param), pad(pages, request.param)


def test_masked_maxsim_matches_float64_and_padding_never_wins(ragged):
    queries, pages, (q, q_mask), (p, p_mask) = ragged
    expected = maxsim_float64(queries, pages)
    assert (expected < 0).all()
    assert (masked_maxsim(q, q_mask, p, p_mask).double() - expected).abs().max().item() < 1e-5
    lengths = torch.tensor([len(x) for x in queries], dtype=torch.float64)[:, None]
    normalized = masked_maxsim(q, q_mask, p, p_mask, normalize=True).double()
    assert (normalized - expected / lengths).abs().max().item() < 1e-6


@pytest.mark.parametrize("offset", [0, 1])
def test_losses_match_their_float64_definitions(ragged, offset):
    queries, pages, (q, q_mask), (p, p_mask) = ragged
    scores = masked_maxsim(q, q_mask, p, p_mask, normalize=True)
    reference = maxsim_float64(queries, pages) / torch.tensor([len(x) for x in queries], dtype=torch.float64)[:, None]
    assert abs(infonce_loss(scores, 0.02, offset).item() - infonce_float64(reference, 0.02, offset)) < 1e-4
    assert (
        abs(pairwise_softplus_loss(scores, 0.5, offset).item() - pairwise_softplus_float64(reference, 0.5, offset))
        < 1e-5
    )
    negatives = random_unit_vectors((4, 8, 3, 6, 2, 5, 7, 1), dim=12, seed=3, sign=-1)  # 2 per query
    n, n_mask = pad(negatives)
    negative_scores = paired_maxsim(q, q_mask, n, n_mask, n_per_query=2, normalize=True)
    lengths = [len(x) for x in queries]
    expected_negative = torch.tensor(
        [[maxsim_float64([queries[a]], [negatives[2 * a + k]]).item() / lengths[a] for k in range(2)] for a in range(4)]
    )
    assert (negative_scores.double() - expected_negative).abs().max().item() < 1e-6
    got = hard_negative_loss(scores, negative_scores, 0.02, 0.5, 0.3, offset).item()
    assert abs(got - hard_negative_float64(reference, expected_negative, 0.02, 0.5, 0.3, offset)) < 1e-4


def test_identical_embeddings_give_log_batch_and_ln2():
    same = torch.nn.functional.normalize(torch.ones(6, 4, 8), dim=-1)
    mask = torch.ones(6, 4, dtype=torch.bool)
    scores = masked_maxsim(same, mask, same, mask, normalize=True)
    assert infonce_loss(scores, 0.02).item() == pytest.approx(math.log(6), abs=1e-6)
    assert pairwise_softplus_loss(scores, 1.0).item() == pytest.approx(math.log(2), abs=1e-6)


def test_padding_gets_no_gradient(ragged):
    _, _, (q, q_mask), (p, p_mask) = ragged
    q, p = q.clone().requires_grad_(), p.clone().requires_grad_()
    infonce_loss(masked_maxsim(q, q_mask, p, p_mask, normalize=True), 0.02).backward()
    assert torch.equal(q.grad[~q_mask], torch.zeros_like(q.grad[~q_mask]))
    assert torch.equal(p.grad[~p_mask], torch.zeros_like(p.grad[~p_mask]))
    assert q.grad[q_mask].abs().sum() > 0 and torch.isfinite(p.grad).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: infonce_loss(s, 0.0), "temperature.*0.0"),
        (lambda s: infonce_loss(s, float("nan")), "temperature"),
        (lambda s: pairwise_softplus_loss(s, -1), "temperature.*-1"),
        (lambda s: infonce_loss(s, 0.02, positive_offset=3), "outside the 5 pages"),
        (lambda s: hard_negative_loss(s, torch.zeros(3, 2), weight=1.5), "weight.*1.5"),
        (lambda s: hard_negative_loss(s, torch.zeros(2, 2)), r"negative_scores.*\[4, N\].*\(2, 2\)"),
        (lambda s: pairwise_softplus_loss(s[:, :1]), "at least two pages"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.randn(4, 5))


def test_bad_embeddings_are_named():
    q, mask = torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"queries.*\[batch, tokens, dim\].*\(3, 4\)"):
        masked_maxsim(q[0], mask, q, mask)
    with pytest.raises(ValueError, match=r"pages.*mask.*\(2, 3\).*\(2, 2\)"):
        masked_maxsim(q, mask, q, mask[:, :2])
    with pytest.raises(ValueError, match=r"pages.*rows \[1\] have no real tokens"):
        masked_maxsim(q, mask, q, torch.tensor([[1, 1, 1], [0, 0, 0]], dtype=torch.bool))
    with pytest.raises(ValueError, match="dim 4.*dim 5"):
        masked_maxsim(q, mask, torch.randn(2, 3, 5), mask)
    with pytest.raises(ValueError, match="'triplet'"):
        contrastive_loss(q, mask, q, mask, loss="triplet")
    with pytest.raises(ValueError, match="needs `negatives`"):
        contrastive_loss(q, mask, q, mask, loss="hard-negatives")


@pytest.mark.parametrize("loss", ["infonce", "pairwise", "hard-negatives"])
def test_two_processes_equal_one_process_on_the_whole_batch(tmp_path, loss):
    """Pages gathered with gradients across 2 gloo processes (unequal batches and page lengths): the summed weighted
    losses and gradients equal one process on all 5 queries."""
    init = f"file://{tmp_path / 'rendezvous'}"
    workers = [
        subprocess.Popen([sys.executable, "-m", "colqwen3.testing.distributed", "--rank", str(rank), "--world", "2",
                          "--init", init, "--loss", loss, "--out", str(tmp_path / f"{rank}.pt")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(2)
    ]  # fmt: skip
    for worker in workers:
        output, _ = worker.communicate(timeout=240)
        assert worker.returncode == 0, output[-3000:]
    single = distributed.run_rank(0, 1, loss)
    for rank in range(2):
        multi = torch.load(tmp_path / f"{rank}.pt")
        assert abs(multi["loss"].item() - single["loss"].item()) < 1e-5
        assert (multi["grad"] - single["grad"]).abs().max().item() < 1e-5
    assert single["grad"].abs().sum() > 0
