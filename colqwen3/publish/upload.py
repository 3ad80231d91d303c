"""Upload a verified repository folder with `huggingface_hub`: create the repository (and branch) if needed, then one
commit holding every file (the Hub stores large and binary files through LFS itself)."""

import sys
from pathlib import Path
from typing import Optional

from colqwen3.publish.build import unexpected_files


def check_repo_id(repo_id: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"--repo-id must be ORG/NAME, got {repo_id!r}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"--repo-id {repo_id!r} is not a valid Hub repository id: {error}") from None
    return repo_id


def commit_operations(folder) -> list:
    """One `CommitOperationAdd` per file, at the repository root, in name order."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder)
    extra = unexpected_files(folder)
    if extra:
        raise ValueError(f"{folder} holds files a model repository should not: {extra}")
    return [
        CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path))
        for path in sorted(folder.iterdir(), key=lambda p: p.name)
    ]


def upload_repository(
    folder,
    repo_id: str,
    *,
    private: bool = False,
    revision: Optional[str] = None,
    commit_message: str = "Upload ColQwen3 checkpoint",
    dry_run: bool = False,
    api=None,
) -> list:
    """Upload `folder` to `repo_id` in one commit; returns the operations (printed instead of sent when `dry_run`).
    `api` defaults to `huggingface_hub.HfApi()` (tests pass a recorder)."""
    check_repo_id(repo_id)
    operations = commit_operations(folder)
    if dry_run:
        where = f"{repo_id}{'@' + revision if revision else ''}"
        print(f"dry run: would create {'private ' if private else ''}repository {where} (if missing) and commit:")
        for operation in operations:
            size = Path(operation.path_or_fileobj).stat().st_size
            print(f"  add {operation.path_in_repo} ({size:,} bytes)")
        return operations
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    print(f"uploading {len(operations)} files to {repo_id}", file=sys.stderr)
    api.create_commit(repo_id, operations=operations, commit_message=commit_message, revision=revision,
                      repo_type="model")  # fmt: skip
    return operations
