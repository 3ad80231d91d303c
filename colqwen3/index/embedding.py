"""Load a ColQwen3 checkpoint for embedding: dtype and attention by device, the offline tiny demo checkpoint."""

import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch


def is_transformers_5() -> bool:
    import transformers

    return int(transformers.__version__.split(".")[0]) >= 5


def tiny_checkpoint_for_demo() -> str:
    """Write a tiny checkpoint with RANDOM weights offline into a temporary folder deleted when the process exits."""
    import atexit
    import shutil

    from colqwen3.testing.tiny import write_checkpoint

    print(
        "No --model given: building a tiny checkpoint with RANDOM weights offline; rankings are meaningless.",
        file=sys.stderr,
    )
    folder = Path(tempfile.mkdtemp(prefix="colqwen3-tiny-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return str(write_checkpoint(folder / "ckpt"))


def load_model(model_id: Optional[str], device: str = "cpu", revision: Optional[str] = None):
    """`(model_id, model, processor)` for a checkpoint folder or Hub id, bf16 + FlashAttention 2 on CUDA when present.

    `model_id=None` builds a tiny checkpoint with RANDOM weights offline (the pipeline is real, rankings are not) and
    returns its folder as the id.
    """
    from transformers import AutoModel, AutoProcessor

    if model_id is None:
        model_id = tiny_checkpoint_for_demo()
    kwargs = {"trust_remote_code": True, **loading_kwargs(on_cuda=device.startswith("cuda"))}
    if revision:
        kwargs["revision"] = revision
    model = AutoModel.from_pretrained(model_id, **kwargs).to(device).eval()
    processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=True, revision=revision)
    return model_id, model, processor


def loading_kwargs(on_cuda: bool, bf16: Optional[bool] = None, attn_implementation: Optional[str] = None) -> dict:
    """`from_pretrained` dtype and attention: bf16 + FlashAttention 2 (sdpa without flash-attn) on CUDA, float32 + sdpa
    elsewhere; explicit `bf16` / `attn_implementation` win. The caller's choice, never overridden inside the model."""
    dtype = torch.bfloat16 if (bf16 if bf16 is not None else on_cuda) else torch.float32
    attention = attn_implementation or ("flash_attention_2" if on_cuda and has_flash_attn() else "sdpa")
    # transformers 4.57 spells `dtype` as `torch_dtype` (delete the branch with 4.57 support)
    return {"dtype" if is_transformers_5() else "torch_dtype": dtype, "attn_implementation": attention}


def has_flash_attn() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True
