"""Load a checkpoint in the *other* transformers line (4.57 <-> 5.x) and embed a saved batch there.

`scripts/dev.sh` points `COLQWEN3_OTHER_TIER_PYTHON` at the other test environment's interpreter; tests call
`embed_in_other_tier(folder, batch)`, which runs this module there:
`python -m colqwen3.testing.cross_tier FOLDER BATCH.pt OUT.pt`.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch

ENVIRONMENT_VARIABLE = "COLQWEN3_OTHER_TIER_PYTHON"


def other_tier_python() -> Optional[str]:
    """The other transformers line's Python, or None when this run was not started by `scripts/dev.sh test`."""
    python = os.environ.get(ENVIRONMENT_VARIABLE)
    return python if python and Path(python).exists() else None


def embed_in_other_tier(folder, batch: dict) -> tuple[torch.Tensor, str]:
    """(embeddings of `batch` by `AutoModel.from_pretrained(folder, trust_remote_code=True)` there, its version)."""
    python = other_tier_python()
    if python is None:
        raise RuntimeError(f"{ENVIRONMENT_VARIABLE} is not set to an existing interpreter")
    with tempfile.TemporaryDirectory() as work:
        batch_path, out_path = Path(work) / "batch.pt", Path(work) / "out.pt"
        torch.save({key: value for key, value in batch.items()}, batch_path)
        command = [python, "-m", "colqwen3.testing.cross_tier", str(folder), str(batch_path), str(out_path)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"loading {folder} in {python} failed:\n{done.stderr[-4000:]}")
        result = torch.load(out_path)
    return result["embeddings"], result["transformers"]


def main() -> None:
    import transformers
    from transformers import AutoModel

    folder, batch_path, out_path = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        embeddings = model(**torch.load(batch_path)).embeddings
    torch.save({"embeddings": embeddings, "transformers": transformers.__version__}, out_path)


if __name__ == "__main__":
    main()
