"""Turn any supported checkpoint into the folder a remote-code Hub repository holds, and nothing more.

Sources: a ColQwen3 checkpoint folder in any layout this code loads (Tomoro, colpali-engine, unprefixed), a Hub id, or
a PEFT adapter folder with its base (merged into the weights). The output is what `save_pretrained` writes (Tomoro
layout, safetensors in shards of at most 5 GB with an index, bf16 unless asked otherwise), the remote code from the
one list of remote-code files, the processor files and a generated model card.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from colqwen3.remote_code import MODEL_CARD, repository_file_kind
from colqwen3.serving.routes import launch_override_problem

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
MAX_SHARD_SIZE = "5GB"


class PublishError(RuntimeError):
    """A publication step failed; the message says which and why. Nothing was uploaded."""


@dataclass
class Source:
    model: object  # ColQwen3, float32, eval mode
    processor: object
    description: str  # what was loaded, for messages and the card
    base_model: Optional[str] = None  # the Hub id the weights derive from, when known


def _has_weights(folder: Path) -> bool:
    return any(
        path.name.endswith(WEIGHT_SUFFIXES) and not path.name.startswith("adapter_") for path in folder.iterdir()
    )


def load_source(source: str, base: Optional[str] = None, revision: Optional[str] = None) -> Source:
    """Load `source` in float32: a checkpoint folder or Hub id, or a PEFT adapter folder (merged into `base`, default:
    the adapter's `base_model_name_or_path`)."""
    from colqwen3.checkpoints import load_processor
    from colqwen3.index.embedding import loading_kwargs
    from modeling_colqwen3 import ColQwen3

    float32 = loading_kwargs(on_cuda=False, bf16=False)
    folder = Path(source)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{source} is a file; SOURCE is a checkpoint folder, an adapter folder or a Hub id.")
    if folder.is_dir() and (folder / "adapter_config.json").exists():
        adapter_config = json.loads((folder / "adapter_config.json").read_text())
        base = base or adapter_config.get("base_model_name_or_path")
        if not base or (not Path(base).is_dir() and ("/" not in base or base.startswith((".", "/")))):
            raise ValueError(
                f"{source} is a PEFT adapter but its base {base!r} is not a checkpoint folder or Hub id; "
                "pass the base checkpoint with --base."
            )
        from peft import PeftModel

        model = PeftModel.from_pretrained(ColQwen3.from_pretrained(base, **float32), str(folder))
        return Source(model.merge_and_unload().eval(), load_processor(base), f"adapter {source} merged into {base}",
                      base_model=_hub_id(base))  # fmt: skip
    if folder.is_dir() and not _has_weights(folder):
        raise ValueError(f"{source} holds no weights (model.safetensors, shards with an index, or pytorch_model.bin).")
    if base:
        raise ValueError(f"--base is for PEFT adapters; {source} is a full checkpoint.")
    if folder.is_dir() and (folder / "config.json").is_file():
        if problem := launch_override_problem(json.loads((folder / "config.json").read_text())):
            raise ValueError(f"{source}: {problem}")
    model = ColQwen3.from_pretrained(source, revision=revision, **float32).eval()
    return Source(model, load_processor(source, revision=revision), f"checkpoint {source}",
                  base_model=_card_base_model(folder) if folder.is_dir() else source)  # fmt: skip


def _hub_id(name: str) -> Optional[str]:
    return None if Path(name).exists() else name


def _card_base_model(folder: Path) -> Optional[str]:
    """`base_model` from the source's own model card, if it has one."""
    card = folder / MODEL_CARD
    if not card.exists():
        return None
    from huggingface_hub import ModelCard

    return ModelCard.load(card).data.to_dict().get("base_model")


def check_output_dir(output_dir: Path, source: str, overwrite: bool) -> None:
    if Path(source).exists() and Path(source).resolve() == output_dir.resolve():
        raise ValueError(f"OUTPUT_DIR {output_dir} is the source itself; the source is never modified.")
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"OUTPUT_DIR {output_dir} is a file.")
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(f"OUTPUT_DIR {output_dir} is not empty; pass --overwrite to replace its contents.")


def write_repository(
    source: Source, output_dir, dtype: str = "bfloat16", overwrite: bool = False, max_shard_size: str = MAX_SHARD_SIZE
) -> Path:
    """Save `source` into `output_dir` as a complete repository folder (parameters cast to `dtype` in place)."""
    from colqwen3.checkpoints import save_checkpoint

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
    output_dir = Path(output_dir)
    if output_dir.exists() and overwrite:
        for path in output_dir.iterdir():  # only files a repository holds; anything else is left for the user
            if path.is_file() and repository_file_kind(path.name) is not None:
                path.unlink()
    # Parameters only: buffers such as the rotary frequencies are recomputed in float32 at load time, and rounding
    # them here would make the verification reference differ from what a loaded repository computes.
    for parameter in source.model.parameters():
        parameter.data = parameter.data.to(DTYPES[dtype])
    save_checkpoint(source.model, source.processor, output_dir, max_shard_size=max_shard_size)
    print(f"wrote {source.description} to {output_dir} ({dtype})", file=sys.stderr)
    return output_dir


def unexpected_files(folder) -> list[str]:
    """Files (and folders) a complete repository should not hold: tests, tooling, caches, stray outputs."""
    return sorted(
        path.name for path in Path(folder).iterdir() if path.is_dir() or repository_file_kind(path.name) is None
    )
