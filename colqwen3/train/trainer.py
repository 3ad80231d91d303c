"""Fine-tune ColQwen3 with LoRA (or fully) on late-interaction losses, over the Hugging Face `Trainer`.

The `Trainer` brings what scale-out needs unchanged: `accelerate launch` data parallelism, DeepSpeed ZeRO and FSDP
(`deepspeed=` / `fsdp=` arguments or an accelerate config), resumable checkpoints, `report_to` logging. This module adds
the model set-up (a ColQwen3 checkpoint, or a plain Qwen3-VL checkpoint plus a new seeded head), the LoRA targets, the
loss (`colqwen3.train.losses.contrastive_loss`, pages gathered across processes), exact periodic retrieval metrics,
and the outputs: `adapter/`, and `merged/` in the Tomoro layout with the remote code.
"""

import inspect
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from transformers import Trainer, TrainingArguments

from colqwen3.checkpoints import load_processor, save_checkpoint
from colqwen3.index.embedding import loading_kwargs
from colqwen3.train.config import LORA_TARGETS, TrainConfig
from colqwen3.train.data import ColQwen3Collator, check_examples, load_examples
from colqwen3.train.evaluate import retrieval_metrics
from colqwen3.train.losses import contrastive_loss


# ----- model -----
def load_base_model(config: TrainConfig, processor):
    """A `ColQwen3` to train: the checkpoint itself, or a plain Qwen3-VL checkpoint plus a head initialised from
    `head_seed`. The latter is saved to `output_dir/base` (with the processor) so adapters reload deterministically."""
    from transformers import AutoConfig

    from configuration_colqwen3 import ColQwen3Config
    from modeling_colqwen3 import ColQwen3

    loading = loading_kwargs(torch.cuda.is_available(), config.bf16, config.attn_implementation)
    source = AutoConfig.from_pretrained(config.model, trust_remote_code=True)
    if getattr(source, "model_type", None) == "colqwen3":
        return ColQwen3.from_pretrained(config.model, **loading), config.model
    if getattr(source, "model_type", None) != "qwen3_vl":
        raise ValueError(f"{config.model} is neither a ColQwen3 nor a Qwen3-VL checkpoint (model_type "
                         f"{getattr(source, 'model_type', None)!r}).")  # fmt: skip
    from transformers import Qwen3VLForConditionalGeneration

    backbone = Qwen3VLForConditionalGeneration.from_pretrained(config.model, **loading)
    settings = {k: v for k, v in source.to_dict().items() if k not in ("model_type", "architectures", "auto_map")}
    model = ColQwen3(ColQwen3Config(**{**settings, "embed_dim": config.embed_dim}))
    model.vlm.load_state_dict(backbone.state_dict(), strict=True)
    torch.manual_seed(config.head_seed)
    model.embedding_proj_layer.reset_parameters()
    model = model.to(backbone.dtype)
    base = Path(config.output_dir) / "base"
    from accelerate import PartialState

    with PartialState().main_process_first():  # under `accelerate launch`, one process writes, the others wait
        if PartialState().is_main_process:
            save_checkpoint(model, processor, base)
    return ColQwen3.from_pretrained(base, **loading), str(base)


def apply_lora(model, config: TrainConfig):
    """LoRA on the language model's attention and MLP projections only (never the vision tower); the head is trained
    fully. With `full_finetune`, every weight trains and no adapter is made."""
    if config.full_finetune:
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        init_lora_weights="gaussian",
        bias="none",
        # a regex: only `...language_model.layers.N.(self_attn|mlp).<name>` match, never `visual.*`
        target_modules=r".*language_model.*\.(" + "|".join(LORA_TARGETS) + r")$",
        modules_to_save=["embedding_proj_layer"],
    )
    return get_peft_model(model, lora)


# ----- the trainer -----
class ColQwen3Trainer(Trainer):
    """`Trainer` with the late-interaction loss, and evaluation that also reports exact nDCG@5 / recall@5."""

    def __init__(self, *args, loss_config: TrainConfig, retrieval_examples=None, retrieval_processor=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_config = loss_config
        self.retrieval_examples, self.retrieval_processor = retrieval_examples, retrieval_processor

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        config = self.loss_config
        queries, pages = inputs["queries"], inputs["pages"]
        query_embeddings = model(**queries).embeddings
        page_embeddings = model(**pages).embeddings
        negatives = None
        if "negatives" in inputs:
            negatives = (model(**inputs["negatives"]).embeddings, inputs["negatives"]["attention_mask"])
        loss = contrastive_loss(
            query_embeddings,
            queries["attention_mask"],
            page_embeddings,
            pages["attention_mask"],
            loss=config.loss,
            temperature=config.temperature,
            pairwise_temperature=config.pairwise_temperature,
            normalize=config.normalize_scores,
            negatives=negatives,
            negative_weight=config.hard_negative_weight,
        )
        return (loss, {"query_embeddings": query_embeddings}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.retrieval_examples is not None:
            found = retrieval_metrics(self.model, self.retrieval_processor, self.retrieval_examples)
            found = {f"{metric_key_prefix}_{name}": value for name, value in found.items()}
            self.log(found)
            metrics.update(found)
        return metrics


def training_arguments(config: TrainConfig, has_eval: bool) -> TrainingArguments:
    """`TrainingArguments` for the run, spelled for transformers 4.57 and 5.x alike."""
    eval_steps = config.eval_steps or config.save_steps
    arguments = dict(
        output_dir=str(Path(config.output_dir) / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        bf16=False,  # bf16 *weights* (the recipe), not mixed precision: the model is loaded in `dtype` already
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        activation_checkpointing=config.gradient_checkpointing,  # transformers >= 5.2x spells it this way
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_strategy="steps",
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps if has_eval else None,
        remove_unused_columns=False,  # rows hold PIL images; the collator builds the model inputs
        label_names=[],
        report_to=config.report_to,
        seed=config.seed,
        deepspeed=config.deepspeed,
        fsdp=config.fsdp,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
    )
    accepted = inspect.signature(TrainingArguments.__init__).parameters
    if "activation_checkpointing" in accepted:  # the old names are deprecated aliases there
        arguments.pop("gradient_checkpointing"), arguments.pop("gradient_checkpointing_kwargs")
    return TrainingArguments(**{name: value for name, value in arguments.items() if name in accepted})


# ----- a run -----
@dataclass
class TrainResult:
    output_dir: str
    base_model: str
    adapter_dir: Optional[str]
    merged_dir: str
    global_step: int
    train_loss: float
    eval_metrics: dict


def _datasets(config: TrainConfig):
    train = load_examples(config.data, config.split, config.hard_negatives)
    check_examples(train, config.hard_negatives)
    evaluation = None
    if config.eval_data is not None:
        evaluation = load_examples(config.eval_data, config.eval_split, config.hard_negatives)
        check_examples(evaluation, config.hard_negatives)
    return train, evaluation


def _last_checkpoint(config: TrainConfig) -> Optional[str]:
    if not config.resume:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(config.output_dir) / "checkpoints"
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last is None:
        raise ValueError(f"--resume: no checkpoint to resume from in {folder}")
    return last


def train(config: TrainConfig, callbacks: Optional[list] = None) -> TrainResult:
    """Run one training job (see `TrainConfig`); writes `adapter/`, `merged/` and `training_run.json`.

    `callbacks`: extra `transformers.TrainerCallback`s (early stopping, custom logging, ...)."""
    config.check()
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    train_rows, eval_rows = _datasets(config)
    processor = load_processor(config.model)
    torch.manual_seed(config.seed)
    model, base = load_base_model(config, processor)
    model = apply_lora(model, config)
    trainer = ColQwen3Trainer(
        model=model,
        args=training_arguments(config, has_eval=eval_rows is not None),
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        data_collator=ColQwen3Collator(processor, config.max_visual_tokens, config.hard_negatives),
        loss_config=config,
        retrieval_examples=eval_rows,
        retrieval_processor=processor,
        callbacks=callbacks,
    )
    outcome = trainer.train(resume_from_checkpoint=_last_checkpoint(config))
    metrics = trainer.evaluate() if eval_rows is not None else {}
    adapter_dir, merged_dir = _write_outputs(trainer, processor, output, config)
    result = TrainResult(str(output), base, adapter_dir, str(merged_dir), trainer.state.global_step,
                         float(outcome.training_loss), metrics)  # fmt: skip
    if trainer.is_world_process_zero():
        run = {"config": {k: v for k, v in asdict(config).items() if k not in ("data", "eval_data")}}
        run["config"].update(data=str(config.data)[:200], eval_data=str(config.eval_data)[:200])
        run["result"] = asdict(result)
        (output / "training_run.json").write_text(json.dumps(run, indent=2, default=str) + "\n")
    return result


def _write_outputs(trainer, processor, output: Path, config: TrainConfig) -> tuple[Optional[str], Path]:
    """`save_outputs` on the main process only (under `accelerate launch`); every process gets the paths."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    paths = (str(output / "adapter") if hasattr(model, "merge_and_unload") else None), output / "merged"
    if trainer.is_world_process_zero():
        paths = save_outputs(model, processor, output, config)
    trainer.accelerator.wait_for_everyone()
    return paths


def save_outputs(model, processor, output: Path, config: TrainConfig) -> tuple[Optional[str], Path]:
    """`adapter/` (LoRA runs) and `merged/`: a plain ColQwen3 checkpoint in the Tomoro layout with the remote code.

    The merged processor keeps the inference visual-token budget; the training cap is recorded in
    `training_run.json` (`max_visual_tokens`)."""
    adapter_dir = None
    if hasattr(model, "merge_and_unload"):
        adapter_dir = str(output / "adapter")
        model.save_pretrained(adapter_dir)
        model = model.merge_and_unload()
    merged = save_checkpoint(model, processor, output / "merged")
    print(f"saved {'adapter and ' if adapter_dir else ''}merged checkpoint to {output}", file=sys.stderr)
    return adapter_dir, merged
