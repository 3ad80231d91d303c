"""Training end to end on the tiny checkpoint (CPU): it learns a synthetic task, changes only LoRA and head weights,
writes a merged checkpoint equal to the PEFT model, resumes exactly, and names bad data and bad settings."""

import json
import subprocess
import sys

import pytest
import torch
import transformers
from PIL import Image
from safetensors import safe_open
from transformers import AutoModel, TrainerCallback

from colqwen3.checkpoints import load_processor
from colqwen3.serving.export import native_route_problem, prepare_for_vllm_native
from colqwen3.testing import tiny
from colqwen3.testing.cross_tier import ENVIRONMENT_VARIABLE, embed_in_other_tier, other_tier_python
from colqwen3.testing.pages import colour_examples
from colqwen3.testing.tiny import embed
from colqwen3.train.config import TrainConfig
from colqwen3.train.data import check_examples, load_beir_folder
from colqwen3.train.evaluate import retrieval_metrics
from colqwen3.train.trainer import train


@pytest.fixture(scope="module", autouse=True)
def _needs_train_extra():
    """The tf4 and tf5 environments install the `train` extra; elsewhere, say why these tests cannot run."""
    pytest.importorskip("peft", reason="the train extra is not installed (pip install -e '.[train]')")


FAST = dict(batch_size=8, warmup_steps=0, learning_rate=2e-3, max_visual_tokens=16, lora_r=8, lora_alpha=16,
            lora_dropout=0.0, logging_steps=5, save_steps=10)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny.write_checkpoint(tmp_path_factory.mktemp("base") / "ckpt")


@pytest.fixture(scope="module")
def held_out():
    return colour_examples(16, seed=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory, checkpoint, held_out):
    output = tmp_path_factory.mktemp("run")
    config = TrainConfig(model=str(checkpoint), data=colour_examples(32, seed=0), eval_data=held_out,
                         output_dir=str(output), max_steps=40, eval_steps=20, **FAST)  # fmt: skip
    return train(config), output


def loaded(folder):
    return AutoModel.from_pretrained(folder, trust_remote_code=True).eval()


def test_a_short_run_learns_the_task(run, checkpoint, held_out):
    result, output = run
    processor = load_processor(str(checkpoint))
    before = retrieval_metrics(loaded(checkpoint), processor, held_out)["ndcg@5"]
    after = retrieval_metrics(loaded(result.merged_dir), processor, held_out)["ndcg@5"]
    # measured: 0.41 -> 0.82 (8 colours x 2 pages: two pages tie, so 0.82 is the best nDCG@5 possible here)
    assert after > before + 0.25, (before, after)
    assert result.eval_metrics["eval_ndcg@5"] == pytest.approx(after, abs=1e-6)
    history = json.loads(
        sorted((output / "checkpoints").glob("checkpoint-*"))[-1].joinpath("trainer_state.json").read_text()
    )
    losses = [entry["loss"] for entry in history["log_history"] if "loss" in entry]
    assert losses[-1] < losses[0] * 0.6, losses
    assert result.global_step == 40


def test_only_lora_and_head_weights_change(run, checkpoint):
    result, _ = run
    with safe_open(f"{result.adapter_dir}/adapter_model.safetensors", framework="pt") as handle:
        keys = list(handle.keys())
    assert keys and all(("lora_" in key and ".language_model." in key) or "embedding_proj_layer" in key for key in keys)
    assert not any("visual" in key for key in keys)
    base, merged = loaded(checkpoint).state_dict(), loaded(result.merged_dir).state_dict()
    assert base.keys() == merged.keys()
    changed = {key for key in base if not torch.equal(base[key], merged[key])}
    assert all(key.startswith(("vlm.model.language_model.layers.", "embedding_proj_layer.")) for key in changed)
    assert any(key.startswith("embedding_proj_layer.") for key in changed) and any("q_proj" in key for key in changed)
    assert not any(key.startswith("vlm.model.visual.") or "norm" in key or "embed_tokens" in key for key in changed)


def test_merged_checkpoint_equals_the_peft_model(run, checkpoint, held_out):
    from peft import PeftModel

    from modeling_colqwen3 import ColQwen3

    result, _ = run
    processor = load_processor(str(checkpoint))
    peft_model = PeftModel.from_pretrained(ColQwen3.from_pretrained(checkpoint), result.adapter_dir).eval()
    merged = loaded(result.merged_dir)
    for batch in (
        processor.process_images([row["image"] for row in held_out[:3]]),
        processor.process_queries(["the red page"]),
    ):
        assert (embed(peft_model, batch) - embed(merged, batch)).abs().max().item() < 1e-5


def test_merged_checkpoint_loads_on_the_other_transformers_line(run, checkpoint, held_out):
    if other_tier_python() is None:
        pytest.skip(f"{ENVIRONMENT_VARIABLE} is unset: `bash scripts/dev.sh test` sets it to the other tier's Python")
    result, _ = run
    batch = load_processor(str(checkpoint)).process_images([row["image"] for row in held_out[:2]])
    theirs, version = embed_in_other_tier(result.merged_dir, batch)
    assert version.split(".")[0] != transformers.__version__.split(".")[0]
    assert (theirs - embed(loaded(result.merged_dir), batch)).abs().max().item() <= 1e-5


def test_full_finetuning_writes_no_adapter(tmp_path, checkpoint):
    config = TrainConfig(model=str(checkpoint), data=colour_examples(8), output_dir=str(tmp_path), max_steps=2,
                         full_finetune=True, **FAST)  # fmt: skip
    result = train(config)
    assert result.adapter_dir is None and not (tmp_path / "adapter").exists()
    base, tuned = loaded(checkpoint).state_dict(), loaded(result.merged_dir).state_dict()
    assert any(not torch.equal(base[k], tuned[k]) for k in base if k.startswith("vlm.model.visual."))  # all trains


def test_a_datasets_table_in_the_colpali_format_trains(tmp_path, checkpoint):
    datasets = pytest.importorskip("datasets", reason="the train extra (datasets) is not installed")
    rows = colour_examples(8)
    features = datasets.Features({"query": datasets.Value("string"), "image": datasets.Image()})
    table = datasets.Dataset.from_dict({k: [row[k] for row in rows] for k in ("query", "image")}, features=features)
    table.save_to_disk(tmp_path / "table")
    result = train(TrainConfig(model=str(checkpoint), data=str(tmp_path / "table"), output_dir=str(tmp_path / "run"),
                               max_steps=2, **FAST))  # fmt: skip
    assert result.global_step == 2 and result.train_loss > 0


def test_merged_checkpoint_is_complete_and_exports_for_vllm(run, tmp_path):
    import shutil

    result, output = run
    folder = shutil.copytree(result.merged_dir, tmp_path / "merged")
    assert {"scoring_colqwen3.py", "modeling_colqwen3.py", "config.json"} <= {p.name for p in folder.iterdir()}
    assert json.loads((output / "training_run.json").read_text())["config"]["max_visual_tokens"] == 16
    assert native_route_problem(folder) is not None and prepare_for_vllm_native(folder)
    assert native_route_problem(folder) is None


def test_gradient_checkpointing_gives_the_same_gradients(checkpoint):
    from colqwen3.train.losses import contrastive_loss

    processor, rows = load_processor(str(checkpoint)), colour_examples(4, seed=3)
    grads = []
    for checkpointing in (False, True):
        model = loaded(checkpoint).train()
        if checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        queries = processor.process_queries([row["query"] for row in rows])
        pages = processor.process_images([row["image"] for row in rows])
        q, p = model(**queries).embeddings, model(**pages).embeddings
        contrastive_loss(q, queries["attention_mask"], p, pages["attention_mask"]).backward()
        grads.append({name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    assert max((grads[0][k] - grads[1][k]).abs().max().item() for k in grads[0]) < 1e-6


class StopAt(TrainerCallback):
    """Stops a run after `step` optimizer steps, as a crash or a preempted job would."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def test_resume_continues_from_the_same_step_and_optimizer_state(tmp_path, checkpoint):
    fast = {k: v for k, v in FAST.items() if k != "save_steps"}
    settings = dict(model=str(checkpoint), data=colour_examples(16, seed=0), save_steps=5, max_steps=10, **fast)
    straight = train(TrainConfig(output_dir=str(tmp_path / "straight"), **settings))
    stopped = train(TrainConfig(output_dir=str(tmp_path / "stopped"), **settings), callbacks=[StopAt(5)])
    assert stopped.global_step == 5
    resumed = train(TrainConfig(output_dir=str(tmp_path / "stopped"), resume=True, **settings))
    assert resumed.global_step == straight.global_step == 10
    a, b = loaded(straight.merged_dir).state_dict(), loaded(resumed.merged_dir).state_dict()
    assert max((a[key] - b[key]).abs().max().item() for key in a) < 1e-6


def test_a_plain_qwen3vl_checkpoint_gets_a_seeded_head(tmp_path):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    colqwen = tiny.tiny_config()
    settings = {k: v for k, v in colqwen.to_dict().items() if k not in ("model_type", "architectures", "embed_dim",
                                                                        "embedding_proj_bias", "auto_map")}  # fmt: skip
    plain = tmp_path / "qwen3vl"
    Qwen3VLForConditionalGeneration(Qwen3VLConfig(**settings)).save_pretrained(plain)
    tiny.write_processor_files(plain)
    heads = []
    for name in ("a", "b"):
        config = TrainConfig(model=str(plain), data=colour_examples(8), output_dir=str(tmp_path / name), max_steps=1,
                             embed_dim=24, **FAST)  # fmt: skip
        result = train(config)
        assert result.base_model == str(tmp_path / name / "base")
        heads.append(loaded(result.base_model).embedding_proj_layer.weight)
        assert loaded(result.merged_dir).config.embed_dim == 24
    assert torch.equal(heads[0], heads[1])  # the same --head-seed gives the same head: adapters reload exactly


def write_beir(folder, rows, negatives=False):
    (folder / "qrels").mkdir(parents=True)
    (folder / "pages").mkdir()
    for index, row in enumerate(rows):
        row["image"].save(folder / "pages" / f"{index}.png")
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": r["query"]}) + "\n" for i, r in enumerate(rows))
    )
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"p{i}", "image": f"pages/{i}.png"}) + "\n" for i in range(len(rows)))
    )
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\tp{i}\t1" for i in range(len(rows))]
    (folder / "qrels" / "train.tsv").write_text("\n".join(lines) + "\n")
    if negatives:
        hard = [
            {"query-id": f"q{i}", "corpus-ids": [f"p{(i + 1) % len(rows)}", f"p{(i + 2) % len(rows)}"]}
            for i in range(len(rows))
        ]
        (folder / "hard_negatives.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hard))
    return folder


def test_beir_folder_with_hard_negatives_trains_from_the_command_line(tmp_path, checkpoint):
    folder = write_beir(tmp_path / "beir", colour_examples(8), negatives=True)
    examples = load_beir_folder(folder, hard_negatives=2)
    assert len(examples) == 8 and len(examples[0]["negatives"]) == 2 and examples[0]["query"] == "the red page"
    command = [sys.executable, "-m", "colqwen3", "train", "--model", str(checkpoint), "--data", str(folder),
               "--output-dir", str(tmp_path / "run"), "--loss", "hard-negatives", "--hard-negatives", "2",
               "--max-steps", "2", "--batch-size", "4", "--max-visual-tokens", "16", "--warmup-steps", "0",
               "--json-out", str(tmp_path / "result.json")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["global_step"] == 2 and result["train_loss"] > 0 and result["adapter_dir"].endswith("adapter")


def test_bad_data_is_named(tmp_path):
    good = colour_examples(2)
    with pytest.raises(ValueError, match=r"row 1: missing column\(s\) \['image'\]"):
        check_examples([good[0], {"query": "q"}])
    with pytest.raises(ValueError, match="row 0: empty or non-text query ' '"):
        check_examples([{"query": " ", "image": good[0]["image"]}])
    with pytest.raises(ValueError, match="row 0: page is not a readable image \\(str\\)"):
        check_examples([{"query": "q", "image": "page.png"}])
    with pytest.raises(ValueError, match="has no rows"):
        check_examples([])
    folder = write_beir(tmp_path / "beir", colour_examples(3))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq0\tp9\t1\n")
    with pytest.raises(ValueError, match=r"train.tsv:2: page 'p9' is not in corpus.jsonl"):
        load_beir_folder(folder)
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq0\tp0\t1\n")
    (folder / "pages" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"train.tsv:2: cannot read image .*0.png"):
        load_beir_folder(folder)
    with pytest.raises(ValueError, match="no qrels for split 'dev'"):
        load_beir_folder(folder, split="dev")


@pytest.mark.parametrize(
    "change, match",
    [
        ({"lora_r": 0}, "lora_r.*0"),
        ({"learning_rate": -1.0}, "learning_rate.*-1.0"),
        ({"lora_dropout": 1.0}, "lora_dropout.*1.0"),
        ({"loss": "triplet"}, "loss.*'triplet'"),
        ({"loss": "hard-negatives"}, "hard_negatives 0"),
        ({"max_visual_tokens": 0}, "max_visual_tokens.*0"),
        ({"epochs": 0, "max_steps": -1}, "epochs.*max_steps"),
    ],
)
def test_bad_settings_are_named(tmp_path, change, match):
    config = TrainConfig(model="m", data=[], output_dir=str(tmp_path), **change)
    with pytest.raises(ValueError, match=match):
        train(config)


def test_command_line_names_bad_flags(tmp_path, checkpoint):
    command = [sys.executable, "-m", "colqwen3", "train", "--model", str(checkpoint), "--data", str(tmp_path),
               "--output-dir", str(tmp_path / "out"), "--lora-r", "0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "lora_r" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")  # a folder that is not a BEIR folder nor a dataset


def test_shipped_scale_out_configs_parse():
    from importlib.resources import files

    import yaml

    configs = files("colqwen3.train") / "configs"
    for stage in (2, 3):
        config = json.loads((configs / f"deepspeed_zero{stage}.json").read_text())
        assert config["zero_optimization"]["stage"] == stage and config["train_micro_batch_size_per_gpu"] == "auto"
    for name, kind in (("accelerate_ddp.yaml", "MULTI_GPU"), ("accelerate_fsdp.yaml", "FSDP")):
        config = yaml.safe_load((configs / name).read_text())
        assert config["distributed_type"] == kind and config["mixed_precision"] == "no"


def test_accelerate_launch_on_two_cpu_processes(tmp_path, checkpoint):
    """Data parallel through `accelerate launch` (gloo on CPU): pages gathered across both processes, one writer."""
    data = tmp_path / "result.json"
    folder = write_beir(tmp_path / "beir", colour_examples(16))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "colqwen3", "train", "--model",
               str(checkpoint), "--data", str(folder), "--output-dir", str(tmp_path / "run"), "--max-steps", "3",
               "--batch-size", "4", "--max-visual-tokens", "16", "--warmup-steps", "0",
               "--json-out", str(data)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(data.read_text())
    assert result["global_step"] == 3 and result["train_loss"] > 0
    merged = loaded(result["merged_dir"])
    assert merged.config.embed_dim == loaded(checkpoint).config.embed_dim
