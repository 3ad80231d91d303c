"""Publishing: every source layout becomes a complete repository folder that loads under both transformers lines with
the source's embeddings; the upload hands `huggingface_hub` exactly the repository's files, and only after
verification; bad input is refused without touching the source."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModel, AutoProcessor

from colqwen3.evaluation import EvaluationReport, TaskScores
from colqwen3.publish import PublishError, default_pythons, publish
from colqwen3.remote_code import REMOTE_CODE_FILES, SENTENCE_TRANSFORMERS_FILES, repository_file_kind
from colqwen3.testing import tiny as kit
from colqwen3.testing.tiny import embed

REPOSITORY = {*REMOTE_CODE_FILES, *SENTENCE_TRANSFORMERS_FILES, "config.json", "preprocessor_config.json",
              "processor_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors",
              "README.md"}  # fmt: skip
# transformers 4.57 also writes the slow tokenizer's files beside tokenizer.json
LEGACY_TOKENIZER_FILES = {"vocab.json", "merges.txt", "special_tokens_map.json"}
# Publishing verifies under both transformers lines (`default_pythons`) where a test is about loading; tests about
# the card, the upload or the output folder verify under this interpreter only, to keep the suite short.
THIS_PYTHON = [sys.executable]


class RecordingApi:
    """Stands in for `huggingface_hub.HfApi`: records what would be sent."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", repo_id, {"operations": list(operations), **kwargs}))


def repository_files(folder: Path) -> set:
    """The folder's files, less the tokenizer files only 4.57 writes."""
    return {path.name for path in folder.iterdir()} - LEGACY_TOKENIZER_FILES


def digest(folder: Path) -> dict:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def tiny_batches(processor, pages):
    return [processor.process_queries(["total due", "capital of France"]), processor.process_images(pages[:2])]


@pytest.mark.parametrize("layout", ["tomoro", "colpali", "unprefixed"])
def test_every_layout_publishes_a_complete_repository(tmp_path, layout, model, processor, pages):
    source = kit.write_checkpoint(tmp_path / "source", layout=layout, model=model)
    before = digest(source)
    result = publish(str(source), tmp_path / "out", dtype="float32")
    assert digest(source) == before  # the source is never modified
    assert repository_files(result.folder) == REPOSITORY
    assert result.verification.ok and len(result.verification.loads) == len(default_pythons())
    assert all(max(row["max_abs_diff"].values()) <= 1e-5 for row in result.verification.loads)
    published = AutoModel.from_pretrained(result.folder, trust_remote_code=True).eval()
    for batch in tiny_batches(processor, pages):
        assert (embed(published, batch) - embed(model, batch)).abs().max().item() <= 1e-5


def test_default_is_bf16_weights_verified_at_that_precision(tmp_path, tomoro_checkpoint):
    result = publish(str(tomoro_checkpoint), tmp_path / "out")
    config = json.loads((result.folder / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    assert result.verification.ok, result.verification.problems


def test_a_peft_adapter_is_merged_into_its_base(tmp_path, tomoro_checkpoint, processor, pages):
    from peft import LoraConfig, get_peft_model

    from colqwen3.train.config import LORA_TARGETS
    from modeling_colqwen3 import ColQwen3

    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=list(LORA_TARGETS), init_lora_weights=False,
                      modules_to_save=["embedding_proj_layer"])  # fmt: skip
    adapter_model = get_peft_model(ColQwen3.from_pretrained(tomoro_checkpoint), lora).eval()
    adapter_model.save_pretrained(tmp_path / "adapter")
    result = publish(str(tmp_path / "adapter"), tmp_path / "out", base=str(tomoro_checkpoint), dtype="float32")
    published = AutoModel.from_pretrained(result.folder, trust_remote_code=True).eval()
    for batch in tiny_batches(processor, pages):
        reference = embed(adapter_model, batch)
        assert (embed(published, batch) - reference).abs().max().item() <= 1e-5
        assert (reference - embed(ColQwen3.from_pretrained(tomoro_checkpoint), batch)).abs().max() > 1e-3  # LoRA acts


def test_upload_sends_exactly_the_repository_files_once(tmp_path, tomoro_checkpoint):
    api = RecordingApi()
    result = publish(str(tomoro_checkpoint), tmp_path / "out", repo_id="my-org/colqwen3-tiny", private=True,
                     revision="v1", commit_message="first", api=api, verify_pythons=THIS_PYTHON)  # fmt: skip
    names = [call[0] for call in api.calls]
    assert names == ["create_repo", "create_branch", "create_commit"]
    assert api.calls[0][2]["private"] is True and api.calls[1][2]["branch"] == "v1"
    commit = api.calls[2][2]
    paths = [operation.path_in_repo for operation in commit["operations"]]
    assert sorted(paths) == sorted(set(paths)) == sorted(result.uploaded)
    assert (
        set(paths) == {path.name for path in result.folder.iterdir()} and repository_files(result.folder) == REPOSITORY
    )
    assert all(Path(op.path_or_fileobj) == result.folder / op.path_in_repo for op in commit["operations"])
    assert commit["revision"] == "v1" and commit["commit_message"] == "first"


def test_large_weights_are_sharded_with_an_index(tmp_path, tomoro_checkpoint):
    """`save_pretrained`'s sharding (5 GB in real use; 300 KB here on the 1 MB tiny model) loads and uploads whole."""
    api = RecordingApi()
    result = publish(str(tomoro_checkpoint), tmp_path / "out", dtype="float32", max_shard_size="300KB",
                     repo_id="my-org/x", api=api, verify_pythons=THIS_PYTHON)  # fmt: skip
    index = json.loads((result.folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and not (result.folder / "model.safetensors").exists()
    assert result.verification.ok and set(shards) | {"model.safetensors.index.json"} <= set(result.uploaded)


def test_a_failed_verification_uploads_nothing(tmp_path, tomoro_checkpoint):
    api = RecordingApi()
    with pytest.raises(PublishError, match="failed verification; nothing was uploaded"):
        publish(str(tomoro_checkpoint), tmp_path / "out", repo_id="my-org/x", api=api, verify_pythons=["/bin/false"])
    assert api.calls == []


def test_the_card_carries_metadata_and_eval_results(tmp_path, tomoro_checkpoint):
    report = EvaluationReport(
        model="local/x", revision=None, benchmark="ViDoRe(v1)", settings={}, versions={"mteb": "2.26.24"},
        tasks=[TaskScores("VidoreDocVQARetrieval", "ndcg_at_5", {m: 0.5 for m in
               ("ndcg_at_5", "ndcg_at_10", "recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10")}, ["default"])],
    )  # fmt: skip
    report.write_json(tmp_path / "report.json")
    result = publish(str(tomoro_checkpoint), tmp_path / "out", repo_id="my-org/x", dry_run=True,
                     eval_report=tmp_path / "report.json", datasets=["vidore/colpali_train_set"],
                     base_model="Qwen/Qwen3-VL-4B-Instruct", verify_pythons=THIS_PYTHON)  # fmt: skip
    card = ModelCard.load(result.folder / "README.md")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "visual-document-retrieval" and data["library_name"] == "transformers"
    assert data["base_model"] == "Qwen/Qwen3-VL-4B-Instruct" and data["datasets"] == ["vidore/colpali_train_set"]
    results = data["model-index"][0]["results"]
    assert {metric["type"] for entry in results for metric in entry["metrics"]} >= {"ndcg_at_5", "mrr_at_10"}
    assert "max_pixels" in card.text and "| VidoreDocVQARetrieval | 50.00 |" in card.text


def test_push_to_hub_writes_a_complete_repository(tmp_path, tomoro_checkpoint):
    """`push_to_hub` uploads what `save_pretrained` writes: model and processor together carry every code file."""
    model = AutoModel.from_pretrained(tomoro_checkpoint, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(tomoro_checkpoint, trust_remote_code=True)
    model.save_pretrained(tmp_path / "pushed")
    processor.save_pretrained(tmp_path / "pushed")
    names = {path.name for path in (tmp_path / "pushed").iterdir()}
    assert set(REMOTE_CODE_FILES) | {"config.json", "preprocessor_config.json", "processor_config.json"} <= names
    assert all(repository_file_kind(name) is not None for name in names), names


@pytest.mark.parametrize(
    "setup, kwargs, error, match",
    [
        (lambda d: (d / "empty").mkdir() or d / "empty", {}, ValueError, "holds no weights"),
        (lambda d: d / "source", {"repo_id": "not a repo"}, ValueError, "--repo-id must be ORG/NAME"),
        (lambda d: d / "source", {"repo_id": "org/bad name!"}, ValueError, "is not a valid Hub repository id"),
        (lambda d: d / "source", {"base": "x"}, ValueError, "--base is for PEFT adapters"),
        (lambda d: d / "source" / "config.json", {}, ValueError, "is a file"),
        (
            lambda d: kit.write_launch_override(d / "source"),
            {},
            ValueError,
            "text_config.projection_dim = 192: that is the launch-time",
        ),
    ],
    ids=["no-weights", "repo-id-shape", "repo-id-chars", "base-without-adapter", "file-source", "vllm-override"],
)
def test_bad_input_is_refused(tmp_path, model, setup, kwargs, error, match):
    kit.write_checkpoint(tmp_path / "source", model=model)
    with pytest.raises(error, match=match):
        publish(str(setup(tmp_path)), tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_an_adapter_without_its_base_is_refused(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "./gone"}))
    with pytest.raises(ValueError, match="is a PEFT adapter but its base './gone' is not a checkpoint folder"):
        publish(str(tmp_path / "adapter"), tmp_path / "out")


def test_a_non_empty_output_needs_overwrite(tmp_path, tomoro_checkpoint):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty; pass --overwrite"):
        publish(str(tomoro_checkpoint), tmp_path / "out")
    with pytest.raises(PublishError, match=r"should not hold: \['notes.txt'\]"):  # kept, and then refused
        publish(str(tomoro_checkpoint), tmp_path / "out", overwrite=True, verify_pythons=THIS_PYTHON)
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_publish_command_dry_run(tmp_path, tomoro_checkpoint):
    command = [sys.executable, "-m", "colqwen3", "publish", str(tomoro_checkpoint), str(tmp_path / "out"),
               "--repo-id", "my-org/x", "--dry-run", "--json-out", str(tmp_path / "publish.json")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "add model.safetensors" in done.stdout and "not uploaded" in done.stdout
    report = json.loads((tmp_path / "publish.json").read_text())
    assert report["verification"]["ok"] and set(report["uploaded"]) - LEGACY_TOKENIZER_FILES == REPOSITORY
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "is not empty; pass --overwrite" in again.stderr
    assert "Traceback" not in again.stderr
