# Copyright 2026 The ColQwen3 authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""ColQwen3 processor: the page and query formats the checkpoints were trained with; MaxSim comes from scoring."""

import json
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

try:  # transformers >= 5 (PIL backend; works without torchvision)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
except ImportError:  # transformers 4.57; delete with its support
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

try:
    from .scoring_colqwen3 import check_batch, score_multi_vector
except ImportError:  # imported as a plain module (tests, the toolkit) rather than as a Hub package
    from scoring_colqwen3 import check_batch, score_multi_vector


__all__ = ["ColQwen3Processor"]

_TRANSFORMERS_5 = not hasattr(Qwen3VLProcessor, "attributes")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of a page: transparency over white (paper), 16-bit greyscale scaled down rather than clipped."""
    if image.mode in _SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float64)
        if image.mode != "I" or pixels.max(initial=0) > 255:
            pixels = pixels / 257.0  # 0..65535 -> 0..255
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


class ColQwen3Processor(Qwen3VLProcessor):
    r"""
    Processor for [`ColQwen3`]: a Qwen3-VL image processor and tokenizer plus the retrieval formats.

    - `process_images(images)`: one page prompt per image (`image_prompt_prefix` + `prompt_suffix`), images in RGB,
      at most `max_num_visual_tokens` visual tokens per image (a token covers a 32x32 pixel tile).
    - `process_queries(texts)` (and its Tomoro name `process_texts`): `query_prefix + text.strip()` followed by
      `num_query_augmentation_tokens` copies of `query_augmentation_token`.
    - `__call__(images=...)`: page prompts, as `process_images`. With `text=` too: one `<|image_pad|>` per image in
      the text is expanded (runs of pads already present are collapsed first), and a text without a placeholder
      becomes the page prompt with that text appended.
    - `__call__(text=...)` without images: queries, exactly as `process_queries` builds them (what mteb's reference
      ColQwen3 wrapper relies on), `suffix=` overriding the augmentation tokens. A text that is already a built query
      is tokenized as it is: a server that runs this processor over prompts a client built (vLLM's Transformers
      backend) never adds a second augmentation.
    - `score_multi_vector(qs, ps)`: exact MaxSim over real tokens.

    Padding is on the left, and `mm_token_type_ids` is always returned.
    """

    # 4.57 finds sub-processors through these; 5.x reads the `__init__` signature. Delete with 4.57 support.
    if not _TRANSFORMERS_5:
        attributes = ["image_processor", "tokenizer"]
        image_processor_class = "AutoImageProcessor"
        tokenizer_class = ("Qwen2Tokenizer", "Qwen2TokenizerFast")

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        max_num_visual_tokens: int = 1280,
        image_prompt_prefix: str = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.",
        video_prompt_prefix: str = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Describe the video.",
        prompt_suffix: str = "<|im_end|><|endoftext|>",
        query_prefix: str = "",
        query_augmentation_token: str = "<|endoftext|>",
        num_query_augmentation_tokens: int = 10,
        **kwargs,
    ):
        if tokenizer is None or image_processor is None:
            raise ValueError("ColQwen3Processor needs both an `image_processor` and a `tokenizer`.")
        # Qwen3VLProcessor.__init__ insists on a video processor, which needs torchvision: set up the parts here.
        # Workaround for transformers 4.57-5.23; delete when Qwen3VLProcessor accepts video_processor=None.
        super(Qwen3VLProcessor, self).__init__(image_processor, tokenizer, chat_template=chat_template)
        for name in ("image", "video", "vision_start", "vision_end"):
            default = {"image": "<|image_pad|>", "video": "<|video_pad|>"}.get(name, f"<|{name}|>")
            token = getattr(tokenizer, f"{name}_token", None) or default
            setattr(self, f"{name}_token", token)
            setattr(self, f"{name}_token_id", tokenizer.convert_tokens_to_ids(token))
        self.tokenizer.padding_side = "left"
        if not isinstance(num_query_augmentation_tokens, int) or num_query_augmentation_tokens < 0:
            raise ValueError(
                "`num_query_augmentation_tokens` must be a non-negative integer, "
                f"got {num_query_augmentation_tokens!r}."
            )
        self.image_prompt_prefix = image_prompt_prefix
        self.video_prompt_prefix = video_prompt_prefix
        self.prompt_suffix = prompt_suffix
        self.query_prefix = query_prefix
        self.query_augmentation_token = query_augmentation_token
        self.num_query_augmentation_tokens = num_query_augmentation_tokens
        self.max_num_visual_tokens = max_num_visual_tokens  # property: also sets the image processor's pixel budget

    # ----- visual-token budget -----
    @property
    def tokens_tile(self) -> int:
        """Edge in pixels of the square tile one visual token covers (patch_size * merge_size)."""
        return self.image_processor.patch_size * self.image_processor.merge_size

    @property
    def max_num_visual_tokens(self) -> int:
        return self._max_num_visual_tokens

    @max_num_visual_tokens.setter
    def max_num_visual_tokens(self, value: int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`max_num_visual_tokens` must be a positive integer, got {value!r}.")
        max_pixels = value * self.tokens_tile**2
        min_pixels = min(self.image_processor.size.get("shortest_edge", max_pixels), max_pixels)
        # `size` holds pixel COUNTS for Qwen image processors, not edge lengths.
        self.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        for name, pixels in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
            if getattr(self.image_processor, name, None) is not None:  # 4.57 reads these (delete with its support)
                setattr(self.image_processor, name, pixels)
        self._max_num_visual_tokens = value

    def save_pretrained(self, save_directory, *args, **kwargs):
        """The stock save, plus `preprocessor_config.json` wherever transformers 5.x left it out: 5.x nests the image
        processor in `processor_config.json`, while 4.57 and vLLM read `preprocessor_config.json` (and 4.57 reads
        `min_pixels` / `max_pixels` rather than `size`). Delete with 4.57 support, once vLLM reads the nested form."""
        saved = super().save_pretrained(save_directory, *args, **kwargs)
        folder = Path(save_directory)
        if not (folder / "preprocessor_config.json").exists():
            config = self.image_processor.to_dict()
            processor_config = json.loads((folder / "processor_config.json").read_text(encoding="utf-8"))
            config.pop("auto_map", None)
            config.update(
                processor_class=type(self).__name__,
                min_pixels=self.image_processor.size["shortest_edge"],
                max_pixels=self.image_processor.size["longest_edge"],
                **({"auto_map": processor_config["auto_map"]} if "auto_map" in processor_config else {}),
            )
            text = json.dumps(config, indent=2, sort_keys=True, default=list) + "\n"
            (folder / "preprocessor_config.json").write_text(text, encoding="utf-8")
        return saved

    def to_dict(self, *args, **kwargs):
        output = super().to_dict(*args, **kwargs)
        output.pop("_max_num_visual_tokens", None)
        output["max_num_visual_tokens"] = self.max_num_visual_tokens
        return output

    # ----- input checks -----
    @staticmethod
    def _check_batch(values, name: str, kind, kind_name: str) -> list:
        if isinstance(values, (str, Image.Image)):  # one text or one page
            values = [values]
        return check_batch(values, name, kind, kind_name)

    def prepare_images(self, images) -> list[Image.Image]:
        """Pages as the model sees them: RGB on white paper, at least one tile per side. `process_images` and
        `__call__` apply this; send these images when a server (vLLM) runs its own image processor."""
        images = self._check_batch(images, "images", Image.Image, "PIL images")
        prepared = []
        for index, image in enumerate(images):
            if image.width < 1 or image.height < 1:
                raise ValueError(f"`images[{index}]` has size {image.width}x{image.height}; an image needs pixels.")
            image = _to_rgb(image)
            tile = self.tokens_tile
            if image.width < tile or image.height < tile:
                # Qwen's resizer rejects sides shorter than one tile: stretch tiny images up to one tile.
                image = image.resize((max(image.width, tile), max(image.height, tile)), Image.BICUBIC)
            prepared.append(image)
        return prepared

    # ----- stock call, with placeholder clean-up -----
    def _collapse_placeholders(self, text: str) -> str:
        """One placeholder per image: `<|image_pad|><|image_pad|>...` -> `<|image_pad|>` (same for video)."""
        for token in (self.image_token, self.video_token):
            text = re.sub(f"(?:{re.escape(token)})+", token, text)
        return text

    @staticmethod
    def _caller_set(kwargs: dict, name: str) -> bool:
        """Whether the caller passed `name`, flat or nested (`text_kwargs={...}`, `common_kwargs={...}`)."""
        groups = ("text_kwargs", "images_kwargs", "videos_kwargs", "audio_kwargs", "common_kwargs")
        return name in kwargs or any(name in (kwargs.get(group) or {}) for group in groups)

    def __call__(self, images=None, text=None, videos=None, suffix: Optional[str] = None, **kwargs) -> BatchFeature:
        if suffix is not None and (images is not None or videos is not None):
            raise ValueError("`suffix` replaces the query augmentation tokens; it applies to text-only calls.")
        if isinstance(images, (list, tuple)) and images and all(isinstance(i, (list, tuple)) for i in images):
            # One list of images per sample (how `apply_chat_template` and sentence-transformers pass them).
            if text is None and any(len(sample) != 1 for sample in images):
                raise ValueError("Without `text`, each sample must hold exactly one image (one page prompt each).")
            images = [image for sample in images for image in sample]
        if images is not None:
            images = self.prepare_images(images)
            if text is None:
                text = [self.page_prompt()] * len(images)
        if text is not None:
            texts = self._check_batch(text, "text", str, "strings")
            if images is not None:
                # A text without a placeholder is extra page text (Tomoro's format: prefix + " " + text + suffix).
                texts = [t if self.image_token in t else self.page_prompt(t) for t in texts]
            elif videos is None:
                for index, t in enumerate(texts):
                    if self.image_token in t or self.video_token in t:
                        raise ValueError(f"`text[{index}]` holds a vision placeholder but no images were passed: {t!r}")
                texts = [self.query_prompt(t, suffix) for t in texts]
            text = [self._collapse_placeholders(t) for t in texts]
        # Defaults only where the caller set nothing, flat or nested: transformers rejects a keyword given both ways
        # ("Keyword argument padding was passed two times"), which sentence-transformers' nested kwargs would hit.
        if not self._caller_set(kwargs, "return_tensors"):
            kwargs["return_tensors"] = "pt"
        if text is not None and len(text) > 1 and not self._caller_set(kwargs, "padding"):
            kwargs["padding"] = "longest"
        batch = super().__call__(images=images, text=text, videos=videos, **kwargs)
        if "input_ids" in batch and "mm_token_type_ids" not in batch:  # 4.57 does not (delete with its support)
            input_ids = torch.as_tensor(batch["input_ids"])
            token_types = torch.zeros_like(input_ids, dtype=torch.int32)
            token_types[input_ids == self.image_token_id] = 1
            token_types[input_ids == self.video_token_id] = 2
            as_tensor = isinstance(batch["input_ids"], torch.Tensor)
            batch["mm_token_type_ids"] = token_types if as_tensor else token_types.tolist()
        return batch

    # ----- retrieval formats -----
    def page_prompt(self, text: Optional[str] = None) -> str:
        """The trained page prompt (one `<|image_pad|>` placeholder), optionally with extra page text."""
        extra = f" {text}" if text else ""
        return f"{self.image_prompt_prefix}{extra}{self.prompt_suffix}"

    @property
    def query_suffix(self) -> str:
        """The augmentation tokens every query ends with (10 `<|endoftext|>` for the Tomoro checkpoints)."""
        return self.query_augmentation_token * self.num_query_augmentation_tokens

    def is_query_prompt(self, text: str) -> bool:
        """Whether `text` is already a built query (prefix ... augmentation tokens)."""
        marked = bool(self.query_prefix or self.query_suffix)
        return marked and text.startswith(self.query_prefix) and text.endswith(self.query_suffix)

    def query_prompt(self, text: str, suffix: Optional[str] = None) -> str:
        """The trained query format: prefix + stripped text + the augmentation tokens (or `suffix`, when given).

        Idempotent without `suffix`: a text that is already a built query comes back unchanged.
        """
        if not isinstance(text, str):
            raise TypeError(f"A query must be a string, got {type(text).__name__}.")
        if suffix is None:
            if self.is_query_prompt(text):
                return text
            suffix = self.query_suffix
        elif not isinstance(suffix, str):
            raise TypeError(f"`suffix` must be a string, got {type(suffix).__name__}.")
        return self.query_prefix + text.strip() + suffix

    def process_images(self, images, **kwargs) -> BatchFeature:
        """Pages -> model inputs (`input_ids`, `attention_mask`, `pixel_values`, `image_grid_thw`, token types)."""
        images = self.prepare_images(images)
        return self(text=[self.page_prompt()] * len(images), images=images, padding="longest", **kwargs)

    def process_queries(self, texts, suffix: Optional[str] = None, **kwargs) -> BatchFeature:
        """Queries -> model inputs, in the trained query format (with the augmentation tokens, or `suffix`)."""
        texts = self._check_batch(texts, "texts", str, "strings")
        return self(text=texts, suffix=suffix, padding="longest", **kwargs)

    def process_texts(self, texts, suffix: Optional[str] = None, **kwargs) -> BatchFeature:
        """Tomoro's name for `process_queries` (same output: Tomoro's version also adds the augmentation tokens)."""
        return self.process_queries(texts, suffix=suffix, **kwargs)

    def get_n_patches(self, image_size: tuple[int, int], spatial_merge_size: Optional[int] = None) -> tuple[int, int]:
        """`(n_patches_x, n_patches_y)`: the grid of visual tokens a `(height, width)` image becomes."""
        height, width = image_size
        if height < 1 or width < 1:
            raise ValueError(f"`image_size` must be positive (height, width), got {image_size!r}.")
        merge_size = spatial_merge_size or self.image_processor.merge_size
        tile = self.image_processor.patch_size * merge_size
        size = self.image_processor.size
        height, width = max(height, tile), max(width, tile)
        resized_height, resized_width = smart_resize(
            height, width, factor=tile, min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"]
        )
        return resized_width // tile, resized_height // tile

    # ----- scoring -----
    # Exact MaxSim `[n_queries, n_pages]` (float32, CPU); the engine lives in scoring_colqwen3.py.
    score_multi_vector = staticmethod(score_multi_vector)
