"""Load a checkpoint in the *other* transformers line (4.57 <-> 5.x) and embed a saved batch, or process fixed
inputs with its processor, there.

`scripts/dev.sh` points `COLQWEN3_OTHER_TIER_PYTHON` at the other test environment's interpreter; tests call
`embed_in_other_tier(folder, batch)` or `process_in_other_tier(folder)`, which run this module there:
`python -m colqwen3.testing.cross_tier FOLDER BATCH.pt OUT.pt` or `... --processor FOLDER OUT.pt`.
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


def processor_inputs(processor) -> dict:
    """A fixed set of processor outputs: sample pages, a page smaller than the minimum pixel budget, two queries."""
    from PIL import Image

    from colqwen3.testing.pages import sample_pages

    pages = processor.process_images(sample_pages()[:2] + [Image.new("RGB", (40, 30), "white")])
    queries = processor.process_queries(["invoice total", "  capital of France "])
    return {f"pages.{key}": value for key, value in pages.items()} | {f"queries.{k}": v for k, v in queries.items()}


def process_in_other_tier(folder) -> tuple[dict, str]:
    """(`processor_inputs` of `AutoProcessor.from_pretrained(folder, trust_remote_code=True)` there, its version)."""
    python = other_tier_python()
    if python is None:
        raise RuntimeError(f"{ENVIRONMENT_VARIABLE} is not set to an existing interpreter")
    with tempfile.TemporaryDirectory() as work:
        out_path = Path(work) / "out.pt"
        command = [python, "-m", "colqwen3.testing.cross_tier", "--processor", str(folder), str(out_path)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"loading the processor of {folder} in {python} failed:\n{done.stderr[-4000:]}")
        result = torch.load(out_path)
    return result["outputs"], result["transformers"]


def main() -> None:
    import transformers
    from transformers import AutoModel, AutoProcessor

    if sys.argv[1] == "--processor":
        folder, out_path = sys.argv[2:4]
        outputs = processor_inputs(AutoProcessor.from_pretrained(folder, trust_remote_code=True))
        torch.save({"outputs": outputs, "transformers": transformers.__version__}, out_path)
        return
    folder, batch_path, out_path = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        embeddings = model(**torch.load(batch_path)).embeddings
    torch.save({"embeddings": embeddings, "transformers": transformers.__version__}, out_path)


if __name__ == "__main__":
    main()
