"""mteb 2.x evaluation, offline: local BEIR data through `mteb.evaluate` on the tiny checkpoint.

- the scores mteb reports equal nDCG/recall/MRR computed in float64 (`colqwen3.testing.references`) from the same run's
  scores (mteb's predictions file); a perfect, a reversed and a hand-worked ranking give their known values;
- mteb's own reference ColQwen3 wrapper, driving our checkpoint, gives our encoder's embeddings and scores.
"""

import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from mteb.models.model_meta import ScoringFunction
from PIL import Image
from torch.utils.data import DataLoader

from colqwen3.evaluation import RetrievalData, RetrievalEncoder, evaluate
from colqwen3.evaluation.mteb_model import ColQwen3MtebModel
from colqwen3.testing.pages import BEIR_QUERIES, write_beir_folder
from colqwen3.testing.references import retrieval_metrics_float64
from colqwen3.testing.retrieval import FixedScoreEncoder

REPORTED = ("ndcg_at_5", "ndcg_at_10", "recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10")
MTEB_ROUNDING = 5e-6  # mteb rounds every metric to 5 decimals


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory):
    return write_beir_folder(tmp_path_factory.mktemp("beir") / "local-pages")


@pytest.fixture(scope="module")
def run(tomoro_checkpoint, beir_folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("eval")
    report = evaluate(str(tomoro_checkpoint), data=beir_folder, output_dir=output, batch_size=2, show_progress=False)
    return report, output


def test_mteb_scores_equal_float64_metrics_of_the_same_run(run, beir_folder):
    report, output = run
    (predictions,) = (output / "predictions").glob("*.json")
    runs = json.loads(predictions.read_text())["default"]["test"]
    data = RetrievalData.from_beir_folder(beir_folder)
    assert set(runs) == set(BEIR_QUERIES) and all(len(pages) == len(data.corpus) for pages in runs.values())
    expected = retrieval_metrics_float64(runs, data.qrels)
    (task,) = report.tasks
    for metric in REPORTED:
        assert abs(task.metrics[metric] - expected[metric]) <= MTEB_ROUNDING, metric
    assert (
        task.task == "LocalPages" and task.main_metric == "ndcg_at_5" and task.main_score == task.metrics["ndcg_at_5"]
    )


def test_run_scores_are_exact_maxsim_of_the_checkpoint(run, tomoro_checkpoint, beir_folder):
    """The scores mteb ranked by are float64-exact MaxSim of a plain forward of each page and query."""
    from colqwen3.testing.references import maxsim_float64

    report, output = run
    runs = json.loads(next((output / "predictions").glob("*.json")).read_text())["default"]["test"]
    data = RetrievalData.from_beir_folder(beir_folder)
    encoder = RetrievalEncoder.from_pretrained(str(tomoro_checkpoint), device="cpu", batch_size=1)
    queries = encoder.encode_queries(list(data.queries.values()))
    pages = encoder.encode_pages([Image.open(path) for path in data.corpus.values()])
    reference = maxsim_float64(queries, pages)
    for row, query in enumerate(data.queries):
        for column, page in enumerate(data.corpus):
            assert abs(runs[query][page] - reference[row, column].item()) <= 1e-4 * max(1.0, abs(runs[query][page]))


def test_results_json_and_report_are_written(run):
    report, output = run
    (result_file,) = [Path(path) for path in report.result_files if Path(path).name == "LocalPages.json"]
    written = json.loads(result_file.read_text())
    assert written["task_name"] == "LocalPages"
    assert written["scores"]["test"][0]["ndcg_at_5"] == pytest.approx(report.tasks[0].metrics["ndcg_at_5"])
    saved = json.loads((output / "report.json").read_text())
    assert saved["tasks"][0]["pages"] == 6 and saved["tasks"][0]["queries"] == 4
    assert saved["tasks"][0]["pages_per_s"] > 0 and saved["tasks"][0]["queries_per_s"] > 0
    table = (output / "report.md").read_text()
    assert f"| LocalPages | **{100 * report.tasks[0].metrics['ndcg_at_5']:.2f}** |" in table


def fixed_run(scores: torch.Tensor, processor, qrels: dict) -> dict:
    n_queries, n_pages = scores.shape
    data = RetrievalData(
        queries={f"q{i}": f"query {i}" for i in range(n_queries)},
        corpus={f"p{j}": Image.new("RGB", (FixedScoreEncoder.page_width(j), 32)) for j in range(n_pages)},
        qrels=qrels,
        name="FixedScores",
    )
    report = evaluate(FixedScoreEncoder(scores, processor), data=data, show_progress=False)
    return report.tasks[0].metrics


def test_perfect_and_reversed_rankings_give_their_known_values(processor):
    """Graded qrels; scores = relevance (perfect) or -relevance (reversed: every judged page after the 5 others)."""
    relevance = torch.zeros(3, 8)
    relevance[0, 0], relevance[0, 1] = 2, 1
    relevance[1, 2] = 1
    relevance[2, 3], relevance[2, 4] = 1, 1
    qrels = {f"q{i}": {f"p{j}": int(relevance[i, j]) for j in range(8) if relevance[i, j] > 0} for i in range(3)}

    perfect = fixed_run(relevance, processor, qrels)
    assert all(
        perfect[metric] == pytest.approx(1.0, abs=MTEB_ROUNDING) for metric in REPORTED if metric != "recall_at_1"
    )
    assert perfect["recall_at_1"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3, abs=MTEB_ROUNDING)

    reversed_ = fixed_run(-relevance, processor, qrels)
    # ranks after the unjudged pages: q0 -> p1 (grade 1) 7th, p0 (grade 2) 8th; q1 -> p2 8th; q2 -> p3, p4 7th, 8th
    idcg = [2 + 1 / math.log2(3), 1.0, 1 + 1 / math.log2(3)]
    dcg = [1 / math.log2(8) + 2 / math.log2(9), 1 / math.log2(9), 1 / math.log2(8) + 1 / math.log2(9)]
    assert reversed_["ndcg_at_10"] == pytest.approx(sum(d / i for d, i in zip(dcg, idcg)) / 3, abs=MTEB_ROUNDING)
    assert reversed_["ndcg_at_5"] == 0 and reversed_["recall_at_5"] == 0
    assert reversed_["recall_at_10"] == pytest.approx(1.0)
    assert reversed_["mrr_at_10"] == pytest.approx((1 / 7 + 1 / 8 + 1 / 7) / 3, abs=MTEB_ROUNDING)


def test_hand_worked_ranking(processor):
    """Query 0 ranks its page 1st, query 1 3rd, query 2 ties it with page 5 (trec_eval breaks ties by id, descending:
    p5 first, so 2nd), query 3 6th: nDCG@5 = (1 + 1/log2(4) + 1/log2(3) + 0) / 4, recall@5 = 3/4."""
    scores = torch.full((4, 6), -1.0)
    scores[0, 0] = 1.0
    scores[1, 1], scores[1, 0], scores[1, 2] = 0.5, 0.9, 0.7
    scores[2, 2], scores[2, 5] = 0.3, 0.3
    scores[3, 3], scores[3, [0, 1, 2, 4, 5]] = 0.0, 0.5
    metrics = fixed_run(scores, processor, {f"q{i}": {f"p{i}": 1} for i in range(4)})
    assert metrics["ndcg_at_5"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(3)) / 4, abs=MTEB_ROUNDING)
    assert metrics["recall_at_5"] == pytest.approx(0.75)
    assert metrics["mrr_at_10"] == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 6) / 4, abs=MTEB_ROUNDING)


@pytest.fixture
def mteb_reference_wrapper(tomoro_checkpoint, monkeypatch):
    """mteb's own `ColQwen3Wrapper` (the leaderboard's reference for Tomoro's ColQwen3) on our checkpoint, set up as
    its `__init__` does (fp32 on CPU here). Its encode loop imports torchvision only to convert tensor images; these
    tests pass PIL images, so an empty stand-in module is enough where torchvision is not installed."""
    from mteb.models.model_implementations.colqwen_models import ColQwen3Wrapper
    from transformers import AutoModel, AutoProcessor

    if "torchvision" not in sys.modules:
        functional = types.ModuleType("torchvision.transforms.functional")
        transforms = types.ModuleType("torchvision.transforms")
        transforms.functional = functional
        torchvision = types.ModuleType("torchvision")
        torchvision.transforms = transforms
        for name, module in (("torchvision", torchvision), ("torchvision.transforms", transforms),
                             ("torchvision.transforms.functional", functional)):  # fmt: skip
            monkeypatch.setitem(sys.modules, name, module)
    wrapper = ColQwen3Wrapper.__new__(ColQwen3Wrapper)
    wrapper.device = "cpu"
    wrapper.model = AutoModel.from_pretrained(str(tomoro_checkpoint), trust_remote_code=True).eval()
    wrapper.processor = AutoProcessor.from_pretrained(
        str(tomoro_checkpoint), trust_remote_code=True, max_num_visual_tokens=1280
    )
    return wrapper


def unpad(padded: torch.Tensor) -> list:
    return [item[item.abs().sum(-1) > 0] for item in padded]


def test_mteb_reference_wrapper_equals_our_encoder(mteb_reference_wrapper, tomoro_checkpoint, beir_folder):
    data = RetrievalData.from_beir_folder(beir_folder)
    queries = list(data.queries.values())
    pages = [Image.open(path).convert("RGB") for path in data.corpus.values()]
    collate = lambda rows: {key: [row[key] for row in rows] for key in rows[0]}  # noqa: E731
    text_loader = DataLoader(Dataset.from_dict({"text": queries}), batch_size=3, collate_fn=collate)
    image_loader = DataLoader(Dataset.from_dict({"image": pages}), batch_size=4, collate_fn=collate)
    theirs_q = mteb_reference_wrapper.get_fused_embeddings(text_loader, show_progress_bar=False)
    theirs_p = mteb_reference_wrapper.get_fused_embeddings(image_loader, show_progress_bar=False)

    ours = ColQwen3MtebModel(
        RetrievalEncoder.from_pretrained(str(tomoro_checkpoint), device="cpu", max_visual_tokens=1280), "local/ours"
    )
    ours_q, ours_p = ours.encoder.encode_queries(queries), ours.encoder.encode_pages(pages)
    for theirs, mine in ((unpad(theirs_q), ours_q), (unpad(theirs_p), ours_p)):
        assert [t.shape for t in theirs] == [m.shape for m in mine]  # same tokens: 10 augmentation tokens each query
        assert max((t - m).abs().max().item() for t, m in zip(theirs, mine)) <= 1e-5
    their_scores = mteb_reference_wrapper.similarity(theirs_q, theirs_p)
    assert (their_scores - ours.similarity(ours_q, ours_p)).abs().max() <= 1e-4


def test_mteb_sees_a_late_interaction_maxsim_model(tomoro_checkpoint):
    wrapper = ColQwen3MtebModel.from_pretrained(str(tomoro_checkpoint), device="cpu", name="org/tiny")
    meta = wrapper.mteb_model_meta
    assert meta.model_type == ["late-interaction"] and meta.similarity_fn_name == ScoringFunction.MAX_SIM
    assert set(meta.modalities) == {"image", "text"} and meta.embed_dim == 32 and meta.name == "org/tiny"
