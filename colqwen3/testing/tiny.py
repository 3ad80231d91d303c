"""Offline test kit: a tiny random ColQwen3 checkpoint (any layout), its tokenizer and processor.

Used by the tests, the benchmarks, the vLLM harness and the demo; nothing here touches the network. The tiny shapes
(text head_dim 32, interleaved M-RoPE [8, 4, 4], DeepStack on both vision layers) also suit vLLM's CPU attention.
"""

import functools
import json
import tempfile
from pathlib import Path
from typing import Optional

import torch

from colqwen3.remote_code import AUTO_MAP, copy_remote_code
from colqwen3.remote_code import CHECKPOINT_LAYOUTS as LAYOUTS
from configuration_colqwen3 import ColQwen3Config
from modeling_colqwen3 import ColQwen3
from processing_colqwen3 import ColQwen3Processor

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
TINY_MAX_VISUAL_TOKENS = 64  # keeps test images at <= 64 visual tokens (256 patches)
_CORPUS = [
    "Quarterly revenue grew by twelve percent while operating costs fell.",
    "The invoice lists three items, a total amount and the payment due date.",
    "Figure 2 shows the attention map over a scanned page of a technical report.",
    "Solar panels convert sunlight into electricity with an efficiency near twenty percent.",
    "Describe the image. What is the capital of France? Paris is the capital.",
    "Tables, charts and slides are retrieved with late interaction over visual tokens.",
]


@functools.lru_cache(maxsize=1)
def _tokenizer_files() -> dict:
    """tokenizer.json + tokenizer_config.json contents for a small byte-level BPE with the Qwen special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    tokenizer_config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "padding_side": "left",
        "model_max_length": 32768,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
    }
    return {"tokenizer.json": tokenizer.to_str(), "tokenizer_config.json": json.dumps(tokenizer_config, indent=2)}


def image_processor_config(max_num_visual_tokens: int = TINY_MAX_VISUAL_TOKENS) -> dict:
    """preprocessor_config.json of a Qwen3-VL image processor (`size` values are pixel counts)."""
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "ColQwen3Processor",
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "resample": 3,
        "patch_size": 16,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "size": {"shortest_edge": 4 * 32 * 32, "longest_edge": max_num_visual_tokens * 32 * 32},
        # 4.57 reads these two and ignores `size` when they are absent
        "min_pixels": 4 * 32 * 32,
        "max_pixels": max_num_visual_tokens * 32 * 32,
    }


def write_processor_files(folder: Path, max_num_visual_tokens: int = TINY_MAX_VISUAL_TOKENS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in _tokenizer_files().items():
        (folder / name).write_text(text)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(image_processor_config(max_num_visual_tokens), indent=2)
    )


def build_processor(max_num_visual_tokens: int = TINY_MAX_VISUAL_TOKENS) -> ColQwen3Processor:
    """The tiny tokenizer and image processor, loaded by the same Auto classes a user's checkpoint goes through."""
    from transformers import AutoImageProcessor, AutoTokenizer

    with tempfile.TemporaryDirectory() as folder:
        write_processor_files(Path(folder), max_num_visual_tokens)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        image_processor = AutoImageProcessor.from_pretrained(folder)
    return ColQwen3Processor(image_processor, tokenizer, max_num_visual_tokens=max_num_visual_tokens)


def tiny_config(embed_dim: int = 32, tie_word_embeddings: bool = True, **overrides) -> ColQwen3Config:
    """A two-layer Qwen3-VL (text hidden 64, head_dim 32) with M-RoPE and DeepStack, sized for the tiny tokenizer."""
    tokenizer = json.loads(_tokenizer_files()["tokenizer.json"])
    vocab = tokenizer["model"]["vocab"]
    special = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    vocab_size = max(max(vocab.values()), max(special.values())) + 1
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        # legacy spelling, read by 4.57 and converted to `rope_parameters` by 5.x
        "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "default", "mrope_section": [8, 4, 4], "mrope_interleaved": True},
        "tie_word_embeddings": tie_word_embeddings,
        "pad_token_id": special["<|endoftext|>"],
        "eos_token_id": special["<|im_end|>"],
    }
    vision_config = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0, 1],
        "out_hidden_size": 64,
    }
    settings = dict(
        text_config=text_config,
        vision_config=vision_config,
        embed_dim=embed_dim,
        image_token_id=special["<|image_pad|>"],
        video_token_id=special["<|video_pad|>"],
        vision_start_token_id=special["<|vision_start|>"],
        vision_end_token_id=special["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings,
    )
    settings.update(overrides)
    return ColQwen3Config(**settings)


def build_model(config: Optional[ColQwen3Config] = None, seed: int = 0, head_bias: str = "random", **attn) -> ColQwen3:
    """A randomly initialised tiny ColQwen3 in fp32 eval mode.

    head_bias: "random" (non-zero, like a trained Tomoro head), "zero" (present but all zero) or "none" (no bias).
    """
    if head_bias not in ("random", "zero", "none"):
        raise ValueError(f"head_bias must be 'random', 'zero' or 'none', got {head_bias!r}")
    config = config if config is not None else tiny_config(embedding_proj_bias=head_bias != "none")
    torch.manual_seed(seed)
    model = ColQwen3._from_config(config, **attn) if attn else ColQwen3(config)
    with torch.no_grad():
        # Random init gives norms a weight of one and biases of zero; perturb them so a test notices a lost weight.
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                param.add_(0.1 * torch.randn_like(param))
        if model.embedding_proj_layer.bias is not None:
            bias = model.embedding_proj_layer.bias
            bias.copy_(0.5 * torch.randn_like(bias) if head_bias == "random" else torch.zeros_like(bias))
    return model.eval()


def layout_state_dict(model: ColQwen3, layout: str) -> dict:
    """The model's weights under the key names of one checkpoint family (see CHECKPOINT_KEY_MAPPING)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    state = {}
    for key, tensor in model.state_dict().items():
        if layout != "tomoro":
            if key.startswith("vlm.lm_head."):
                continue  # colpali-engine and OpenSearch wrap a bare Qwen3VLModel: no LM head on disk
            key = key.replace("embedding_proj_layer.", "custom_text_proj.")
            key = key.replace("vlm.model.", "model." if layout == "colpali" else "")
        elif key == "vlm.lm_head.weight" and model.config.tie_word_embeddings:
            continue  # tied to the input embeddings, as transformers saves it
        state[key] = tensor.detach().clone().contiguous()
    return state


def write_checkpoint(
    folder,
    layout: str = "tomoro",
    model: Optional[ColQwen3] = None,
    max_num_visual_tokens: int = TINY_MAX_VISUAL_TOKENS,
    seed: int = 0,
    head_bias: str = "random",
) -> Path:
    """A complete checkpoint folder (code files, config.json with auto_map, processor files, model.safetensors)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else build_model(seed=seed, head_bias=head_bias)
    if layout == "tomoro":
        ColQwen3.register_for_auto_class("AutoModel")
        model.save_pretrained(folder)  # our own save path writes the Tomoro layout
    else:
        ColQwen3Config.register_for_auto_class()
        model.config.save_pretrained(folder)
        save_file(layout_state_dict(model, layout), str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = dict(AUTO_MAP)
    config["architectures"] = ["ColQwen3"]
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    write_processor_files(folder, max_num_visual_tokens)
    processor_config = {
        "processor_class": "ColQwen3Processor",
        "auto_map": {"AutoProcessor": AUTO_MAP["AutoProcessor"]},
        "max_num_visual_tokens": max_num_visual_tokens,
    }
    (folder / "processor_config.json").write_text(json.dumps(processor_config, indent=2))
    copy_remote_code(folder)
    return folder


# `text_config.projection_dim` of the tiny model in DeepStack-channel mode: hidden 64 x (1 + 2 DeepStack levels)
TINY_DEEPSTACK_CHANNEL_WIDTH = 64 * (1 + 2)


def write_launch_override(folder) -> Path:
    """Write vLLM's DeepStack-channel launch override into `folder`'s config.json: what the tools must refuse."""
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text())
    config["text_config"]["projection_dim"] = TINY_DEEPSTACK_CHANNEL_WIDTH
    path.write_text(json.dumps(config, indent=2))
    return Path(folder)


def embed(model: ColQwen3, batch) -> torch.Tensor:
    """`model(**batch).embeddings` without gradients."""
    with torch.no_grad():
        return model(**batch).embeddings
