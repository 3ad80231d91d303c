"""Rewrite a saved ColQwen3 checkpoint so that vLLM's native `ColQwen3Model` (vLLM 0.32) serves its head exactly.

Why: vLLM's native model reads the head width from `embed_dim` (or `dims`, `dim`, `projection_dim`, `colbert_dim`)
in config.json. When one of those is present it builds the head with `bias=False` and silently drops a checkpoint
bias, so every embedding is wrong. When none is present it builds the head while loading, when it meets the head
`weight`, with a bias if the checkpoint has one; a bias met BEFORE the weight is skipped and the load then fails
("custom_text_proj.bias not initialized"). Tensors are read file by file in (natural) file-name order and, within a
file, in sorted key order, so `*.bias` always comes before `*.weight` in one file.

The rewrite therefore:
1. renames `embed_dim` in config.json to `embedding_dim`, the alias `ColQwen3Config` already understands
   (transformers 4.57 and 5.x load it as `embed_dim`; our modeling code reads either name);
2. moves the head bias into a shard of its own that sorts after every other shard, with a
   `model.safetensors.index.json`, as `save_pretrained` writes sharded checkpoints.

Transformers loads the result exactly as before. A head without a bias needs neither step (`embed_dim` then gives a
bias-free head, which is what the checkpoint holds); the function leaves such checkpoints untouched.

Limits: it relies on vLLM's default sequential safetensors loading; `--model-loader-extra-config
'{"enable_multithread_load": true}'` reads shards in parallel and can reorder them.

Command line: `colqwen3 vllm-export CHECKPOINT_FOLDER`.

Workaround for vLLM 0.32's native ColQwen3 head (bias dropped when config.json names the width); delete this module
once vLLM's native model builds its head with the checkpoint's bias (the `vllm` tier's canary test then fails).
"""

import json
import math
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from colqwen3.serving.routes import launch_override_problem

HEAD_NAMES = ("embedding_proj_layer", "custom_text_proj")  # the names vLLM's native model treats as the head
WIDTH_KEYS = ("embed_dim", "dims", "dim", "projection_dim", "colbert_dim")  # what vLLM reads as the head width
INDEX_NAME = "model.safetensors.index.json"
_DTYPE_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "U8": 1, "I8": 1, "BOOL": 1}


def _is_head_bias(key: str) -> bool:
    return key.endswith(".bias") and any(name in key for name in HEAD_NAMES)


def _shard_files(folder: Path) -> list[Path]:
    """The weight files, chosen as transformers chooses them: model.safetensors first, else the index."""
    single = folder / "model.safetensors"
    if single.exists():
        return [single]
    index = folder / INDEX_NAME
    if not index.exists():
        raise FileNotFoundError(f"{folder} has neither model.safetensors nor {INDEX_NAME}.")
    weight_map = json.loads(index.read_text())["weight_map"]
    return [folder / name for name in dict.fromkeys(weight_map.values())]


def _tensor_keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def native_route_problem(folder) -> str | None:
    """Why vLLM's native route would serve `folder` wrongly (a head bias it would drop) or fail (the Transformers
    backend's launch override written into config.json), or None when it is fine."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    if problem := launch_override_problem(config):
        return f"{folder}: {problem}"
    has_bias = any(_is_head_bias(key) for path in _shard_files(folder) for key in _tensor_keys(path))
    widths = [key for key in WIDTH_KEYS if config.get(key) is not None]
    if has_bias and widths:
        return (
            f"{folder}: the head has a bias and config.json sets {widths}, so vLLM 0.32's native ColQwen3 would drop "
            f"the bias and serve wrong embeddings; run `colqwen3 vllm-export {folder}` first."
        )
    return None


def _native_config(config: dict) -> dict:
    """config.json with `embed_dim` renamed to `embedding_dim`, so vLLM builds the head from the weights it meets."""
    if problem := launch_override_problem(config):
        raise ValueError(problem)
    config = dict(config)
    width = config.pop("embed_dim", None)
    others = [key for key in WIDTH_KEYS if config.get(key) is not None]
    if others:
        raise ValueError(f"config.json also sets {others}: vLLM would build the head without its bias; remove them.")
    if width is not None:
        config.setdefault("embedding_dim", width)
    if config.get("embedding_dim") is None:
        raise ValueError("config.json has neither `embed_dim` nor `embedding_dim`.")
    return config


def _pop_biases(files: list[Path], bias_keys: list[str]) -> tuple[list[Path], dict]:
    """Take the head bias out of its shard(s): (shards to keep, some renamed `*.tmp`, the bias tensors)."""
    biases, kept = {}, []
    for path in files:
        keys = _tensor_keys(path)
        if not any(key in bias_keys for key in keys):
            kept.append(path)
            continue
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {"format": "pt"}
            tensors = {key: handle.get_tensor(key).clone() for key in keys}
        biases.update({key: tensors.pop(key) for key in bias_keys if key in tensors})
        path.unlink()
        if tensors:
            rewritten = path.with_name(path.name + ".tmp")
            save_file(tensors, str(rewritten), metadata=metadata)
            kept.append(rewritten)
    return kept, biases


def _shard_bytes(path: Path) -> int:
    total = 0
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            tensor_slice = handle.get_slice(key)
            total += math.prod(tensor_slice.get_shape()) * _DTYPE_BYTES.get(tensor_slice.get_dtype(), 4)
    return total


def _write_shards(folder: Path, kept: list[Path], biases: dict) -> None:
    """Rename the kept shards to the standard pattern, add the bias shard last, and write the shard index."""
    total = len(kept) + 1
    weight_map = {}
    for number, path in enumerate(kept, start=1):
        name = f"model-{number:05d}-of-{total:05d}.safetensors"
        path.rename(folder / name)
        weight_map.update({key: name for key in _tensor_keys(folder / name)})
    name = f"model-{total:05d}-of-{total:05d}.safetensors"
    save_file(biases, str(folder / name), metadata={"format": "pt"})
    weight_map.update({key: name for key in biases})
    total_size = sum(_shard_bytes(folder / shard) for shard in dict.fromkeys(weight_map.values()))
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")


def prepare_for_vllm_native(folder) -> bool:
    """Rewrite `folder` in place (see the module docstring). Returns False when the head has no bias (no change)."""
    folder = Path(folder)
    files = _shard_files(folder)
    bias_keys = sorted(key for path in files for key in _tensor_keys(path) if _is_head_bias(key))
    if not bias_keys:
        return False
    config_path = folder / "config.json"
    config = _native_config(json.loads(config_path.read_text()))  # validated before any file changes
    kept, biases = _pop_biases(files, bias_keys)
    _write_shards(folder, kept, biases)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return True
