"""Publish a ColQwen3 checkpoint as a complete, verified remote-code repository on the Hugging Face Hub.

`publish(source, output_dir, repo_id=...)` is what `colqwen3 publish` runs:
1. load the source (any supported layout, a Hub id, or a PEFT adapter merged into its base; `build.load_source`);
2. write the repository folder: weights as `save_pretrained` writes them (bf16 by default, shards of at most 5 GB),
   config and processor files with `auto_map`, tokenizer files, the remote code, a model card (`card.model_card`);
   optionally rewritten for vLLM's native route (`--vllm-native`);
3. verify it (`verify.verify_repository`): the file list, the card's YAML, and offline loading under every given
   Python with the source's embeddings;
4. only then upload it in one commit (`upload.upload_repository`), or print the operations (`dry_run`).
"""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from colqwen3.publish.build import MAX_SHARD_SIZE, PublishError, check_output_dir, load_source, write_repository
from colqwen3.publish.card import model_card
from colqwen3.publish.upload import check_repo_id, upload_repository
from colqwen3.publish.verify import Verification, reference, verify_repository

__all__ = ["PublishError", "PublishResult", "publish"]


@dataclass
class PublishResult:
    folder: Path
    verification: Verification
    uploaded: list = field(default_factory=list)  # paths in the repository, when uploaded (or dry-run)


def default_pythons() -> list:
    """This interpreter, and the other transformers line's when `COLQWEN3_OTHER_TIER_PYTHON` names one."""
    from colqwen3.testing.cross_tier import other_tier_python

    other = other_tier_python()
    # venv interpreters are symlinks to one base Python: compare the paths themselves, not what they resolve to
    return [sys.executable] + ([other] if other and os.path.abspath(other) != os.path.abspath(sys.executable) else [])


def publish(
    source: str,
    output_dir,
    *,
    repo_id: Optional[str] = None,
    base: Optional[str] = None,
    source_revision: Optional[str] = None,
    dtype: str = "bfloat16",
    max_shard_size: str = MAX_SHARD_SIZE,
    vllm_native: bool = False,
    eval_report=None,
    license: str = "apache-2.0",
    datasets: Optional[list] = None,
    base_model: Optional[str] = None,
    overwrite: bool = False,
    private: bool = False,
    revision: Optional[str] = None,
    commit_message: str = "Upload ColQwen3 checkpoint",
    dry_run: bool = False,
    verify_pythons: Optional[list] = None,
    api=None,
) -> PublishResult:
    """Build `output_dir` from `source`, verify it, and upload it to `repo_id` when given (see the module docstring).

    Verification compares with the source's embeddings at the published precision (its weights cast to `dtype`,
    run in float32), fp32 <= 1e-5. A failed verification raises `PublishError` and uploads nothing. The source is
    never modified."""
    output_dir = Path(output_dir)
    check_output_dir(output_dir, source, overwrite)
    if repo_id is not None:
        check_repo_id(repo_id)
    if eval_report is not None and not Path(eval_report).is_file():
        raise ValueError(f"--eval-report {eval_report} does not exist.")
    loaded = load_source(source, base=base, revision=source_revision)
    write_repository(loaded, output_dir, dtype=dtype, overwrite=overwrite, max_shard_size=max_shard_size)
    expected = reference(loaded.model, loaded.processor)
    card = model_card(
        repo_id or f"local/{output_dir.name}",
        loaded.processor,
        loaded.model.config.embed_dim,
        base_model=base_model or loaded.base_model,
        license=license,
        datasets=datasets,
        eval_report=eval_report,
        vllm_native=vllm_native,
    )
    (output_dir / "README.md").write_text(card, encoding="utf-8")
    if vllm_native:
        from colqwen3.serving.export import prepare_for_vllm_native

        prepare_for_vllm_native(output_dir)
    print(f"verifying {output_dir} under {len(verify_pythons or default_pythons())} Python(s)", file=sys.stderr)
    verification = verify_repository(output_dir, expected, verify_pythons or default_pythons())
    if not verification.ok:
        problems = "\n".join(f"  - {problem}" for problem in verification.problems)
        raise PublishError(f"{output_dir} failed verification; nothing was uploaded:\n{problems}")
    result = PublishResult(output_dir, verification)
    if repo_id is not None:
        operations = upload_repository(output_dir, repo_id, private=private, revision=revision,
                                       commit_message=commit_message, dry_run=dry_run, api=api)  # fmt: skip
        result.uploaded = [operation.path_in_repo for operation in operations]
    return result
