"""The files that make a ColQwen3 checkpoint loadable with `trust_remote_code`: one list, used everywhere.

Adding a remote-code file means adding it to `REMOTE_CODE_FILES` (and to `py-modules` in pyproject.toml).
"""

import fnmatch
import importlib.util
import shutil
from pathlib import Path
from typing import Optional

# Python modules copied into every checkpoint folder; transformers follows their relative imports.
REMOTE_CODE_FILES = (
    "configuration_colqwen3.py",
    "modeling_colqwen3.py",
    "processing_colqwen3.py",
    "scoring_colqwen3.py",
)
# config.json's `auto_map`: which class each Auto class builds.
AUTO_MAP = {
    "AutoConfig": "configuration_colqwen3.ColQwen3Config",
    "AutoModel": "modeling_colqwen3.ColQwen3",
    "AutoProcessor": "processing_colqwen3.ColQwen3Processor",
}
# Weight layouts the remote code loads (key names: see CHECKPOINT_KEY_MAPPING in modeling_colqwen3.py).
CHECKPOINT_LAYOUTS = ("tomoro", "colpali", "unprefixed")
# Configuration files a complete checkpoint carries beside its weights and tokenizer.
CONFIG_FILES = ("config.json", "preprocessor_config.json", "processor_config.json")


def remote_code_dir() -> Path:
    """Where the remote-code modules of this installation live (the repository root in an editable install)."""
    spec = importlib.util.find_spec("modeling_colqwen3")
    if spec is None or spec.origin is None:
        raise ImportError("modeling_colqwen3 is not importable: install the colqwen3 package (pip install -e .).")
    return Path(spec.origin).parent


def copy_remote_code(folder) -> list[Path]:
    """Copy every file of `REMOTE_CODE_FILES` into `folder`; returns the written paths."""
    source, folder = remote_code_dir(), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in REMOTE_CODE_FILES:
        written.append(Path(shutil.copy(source / name, folder / name)))
    return written


# Tokenizer files `save_pretrained` writes on either transformers line (5.x writes fewer); a chat template if any.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
# Weights as `save_pretrained` writes them: one file, or shards with an index.
WEIGHT_FILE_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
MODEL_CARD = "README.md"
# sentence-transformers 6.x (`MultiVectorEncoder(repo, trust_remote_code=True)`): its "retrieval" task sends text to
# `processor(text=...)` (our query format) and images to `processor(images=...)` (our page prompt) and reads
# `model(...).embeddings`. No Dense or Normalize module: the model already projects, normalises and zeroes padding
# (vLLM also reads modules.json and would apply them). No `max_seq_length`: queries are never truncated.
SENTENCE_TRANSFORMERS_FILES = {
    "modules.json": [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}
    ],
    "config_sentence_transformers.json": {
        "model_type": "MultiVectorEncoder",
        "similarity_fn_name": "maxsim",
        "prompts": {},
        "default_prompt_name": None,
    },
    "sentence_bert_config.json": {
        "transformer_task": "retrieval",
        "modality_config": {
            modality: {"method": "forward", "method_output_name": "embeddings"} for modality in ("text", "image")
        },
        "module_output_name": "token_embeddings",
        "processing_kwargs": {"text": {"truncation": False}},
    },
}


def write_sentence_transformers_files(folder) -> list[Path]:
    """Write `SENTENCE_TRANSFORMERS_FILES` into `folder`; returns the written paths."""
    import json

    written = []
    for name, content in SENTENCE_TRANSFORMERS_FILES.items():
        path = Path(folder) / name
        path.write_text(json.dumps(content, indent=2) + "\n")
        written.append(path)
    return written


def repository_file_kind(name: str) -> Optional[str]:
    """What a file of a published repository is (`code`, `config`, `tokenizer`, `weights`, `card`), or None when a
    complete repository has no business holding it."""
    if name in REMOTE_CODE_FILES:
        return "code"
    if name in CONFIG_FILES:
        return "config"
    if name in TOKENIZER_FILES:
        return "tokenizer"
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in WEIGHT_FILE_PATTERNS):
        return "weights"
    if name == MODEL_CARD:
        return "card"
    if name in SENTENCE_TRANSFORMERS_FILES:
        return "sentence-transformers"
    return None
