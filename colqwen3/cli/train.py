"""`colqwen3 train`: fine-tune ColQwen3 (LoRA by default). Flags are the fields of `colqwen3.train.trainer.TrainConfig`,
so the command and the Python API cannot drift apart."""

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Optional

HELP = {
    "model": "ColQwen3 checkpoint, or a plain Qwen3-VL checkpoint (a new head is added, seeded by --head-seed)",
    "data": "BEIR folder, `datasets` id/path (colpali format: query, image), or a saved dataset",
    "output_dir": "run folder: checkpoints/, adapter/, merged/, training_run.json",
    "eval_data": "held-out data in the same forms (loss, nDCG@5 and recall@5 every --eval-steps)",
    "max_visual_tokens": "visual tokens per page while training (the inference budget is unchanged)",
    "bf16": "bf16 weights (default: on CUDA only)",
    "report_to": "logging targets for the Trainer, e.g. tensorboard (default: none)",
    "resume": "continue from the last checkpoint in OUTPUT_DIR/checkpoints (same step and optimizer state)",
    "deepspeed": "DeepSpeed JSON config (configs/deepspeed_zero2.json or _zero3.json)",
}


def add_parsers(subcommands) -> None:
    from colqwen3.train.config import LOSSES, TrainConfig

    parser = subcommands.add_parser("train", help="fine-tune ColQwen3 (LoRA + late-interaction loss)")
    for spec in dataclasses.fields(TrainConfig):
        flag = "--" + spec.name.replace("_", "-")
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        default = (
            None
            if required
            else (spec.default if spec.default_factory is dataclasses.MISSING else spec.default_factory())
        )
        options = {"help": HELP.get(spec.name, f"default {default!r}"), "required": required}
        if spec.name == "report_to":
            options.update(nargs="+", default=["none"])
        elif spec.name == "loss":
            options.update(choices=LOSSES, default=default)
        elif spec.type in (bool, "bool") or isinstance(default, bool) or spec.name == "bf16":
            options.update(action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            options.update(type=type(default), default=default)
        elif spec.type == Optional[int]:
            options.update(type=int, default=default)
        else:
            options.update(default=default)
        parser.add_argument(flag, dest=spec.name, **options)
    parser.add_argument("--json-out", type=Path, default=None, help="write the run's result as JSON")
    parser.set_defaults(handler=run_train)


def run_train(args, parser) -> int:
    from colqwen3.train.config import TrainConfig
    from colqwen3.train.trainer import train

    values = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(TrainConfig)}
    result = train(TrainConfig(**values))
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch`, the main process reports
        return 0
    summary = dataclasses.asdict(result)
    print(json.dumps(summary, indent=2, default=str))
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"result written to {args.json_out}", file=sys.stderr)
    return 0
