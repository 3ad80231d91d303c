"""Which model embedded an index: a fingerprint of the weights themselves, not the string the user typed.

A local checkpoint folder is identified by a SHA-256 over its `config.json` and weight files (names and bytes), so the
same folder given as `./ckpt`, `ckpt/` or an absolute path is one model, a copy elsewhere is the same model, and
weights retrained in place are a different one. A Hub id is identified by the commit it resolved to.
"""

import hashlib
import sys
from pathlib import Path
from typing import Optional

from colqwen3.index.store import ModelIdentity

__all__ = ["WEIGHT_SUFFIXES", "model_identity"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CHUNK = 8 << 20
_LARGE = 1 << 30  # say what is happening when hashing takes more than a moment


def _fingerprint_folder(folder: Path) -> str:
    files = [folder / "config.json"] + sorted(
        path for path in folder.iterdir() if path.is_file() and path.suffix in WEIGHT_SUFFIXES
    )
    if len(files) == 1:
        raise ValueError(f"model folder {folder} has no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    if sum(path.stat().st_size for path in files) > _LARGE:
        print(f"fingerprinting the weights in {folder} ...", file=sys.stderr)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def model_identity(model_id: str, revision: Optional[str] = None, config=None) -> ModelIdentity:
    """The identity of a checkpoint folder (content hash) or Hub id (resolved commit, from `config._commit_hash`)."""
    folder = Path(model_id)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ValueError(f"model folder {folder} has no config.json")
        return ModelIdentity(fingerprint=_fingerprint_folder(folder), location=str(folder.resolve()))
    commit = getattr(config, "_commit_hash", None) or revision
    if not commit:
        raise ValueError(f"cannot tell which revision of {model_id!r} was loaded; pass --revision")
    return ModelIdentity(fingerprint=f"hub:{model_id}@{commit}", location=model_id)
