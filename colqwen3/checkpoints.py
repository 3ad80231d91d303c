"""Read and write complete ColQwen3 checkpoints: the processor of any supported checkpoint, and the one writer of a
loadable checkpoint folder (weights in the Tomoro layout, config with `auto_map`, processor files, remote code).

Used by training (`base/`, `merged/`) and publishing.
"""

import json
from pathlib import Path
from typing import Optional

from colqwen3.remote_code import AUTO_MAP, copy_remote_code, write_sentence_transformers_files


def load_processor(model_id: str, revision: Optional[str] = None):
    """The checkpoint's ColQwen3 processor; for a plain Qwen3-VL or colpali-engine checkpoint, one built from its
    tokenizer and image processor (no video processor, so no torchvision)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    from processing_colqwen3 import ColQwen3Processor

    config = AutoConfig.from_pretrained(model_id, trust_remote_code=True, revision=revision)
    if getattr(config, "model_type", None) == "colqwen3":
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(model_id, trust_remote_code=True, revision=revision)
    return ColQwen3Processor(
        AutoImageProcessor.from_pretrained(model_id, revision=revision),
        AutoTokenizer.from_pretrained(model_id, revision=revision),
    )


def save_checkpoint(model, processor, folder, max_shard_size: Optional[str] = None) -> Path:
    """A complete, loadable checkpoint: weights in the Tomoro layout (safetensors, sharded with an index above
    `max_shard_size`), config with auto_map, processor, remote code, sentence-transformers files."""
    from modeling_colqwen3 import ColQwen3

    folder = Path(folder)
    ColQwen3.register_for_auto_class("AutoModel")
    type(processor).register_for_auto_class("AutoProcessor")
    model.save_pretrained(folder, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    processor.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(auto_map=dict(AUTO_MAP), architectures=["ColQwen3"])
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    copy_remote_code(folder)
    write_sentence_transformers_files(folder)
    return folder
