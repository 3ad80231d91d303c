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
"""ColQwen3 configuration: a Qwen3-VL backbone plus the width of the multi-vector retrieval head."""

from transformers.models.qwen3_vl.configuration_qwen3_vl import (
    Qwen3VLConfig,
    Qwen3VLTextConfig,
    Qwen3VLVisionConfig,
)

try:  # transformers >= 5
    from transformers import PreTrainedConfig
except ImportError:  # transformers 4.57; delete with its support
    from transformers import PretrainedConfig as PreTrainedConfig


__all__ = ["ColQwen3Config"]


class ColQwen3Config(Qwen3VLConfig):
    r"""
    Configuration of a [`ColQwen3`] retriever: the full [`Qwen3VLConfig`] of the backbone plus `embed_dim`, the
    width of the per-token embeddings produced by the linear retrieval head.

    Args:
        text_config (`dict`, `Qwen3VLTextConfig` or `None`):
            Language-model settings. `None` gives the Qwen3-VL defaults.
        vision_config (`dict`, `Qwen3VLVisionConfig` or `None`):
            Vision-tower settings. `None` gives the Qwen3-VL defaults.
        embed_dim (`int`, *optional*, defaults to 320):
            Output width of `embedding_proj_layer`. Also readable as `embedding_dim` (sentence-transformers' name).
        embedding_proj_bias (`bool`, *optional*, defaults to `True`):
            Whether `embedding_proj_layer` has a bias (Tomoro and colpali-engine heads do).
        kwargs:
            Everything else [`Qwen3VLConfig`] accepts (token ids, `tie_word_embeddings`, ...).

    Example:

    ```python
    >>> from configuration_colqwen3 import ColQwen3Config
    >>> config = ColQwen3Config(embed_dim=128)
    >>> config.embedding_dim
    128
    ```
    """

    model_type = "colqwen3"
    attribute_map = {"embedding_dim": "embed_dim"}

    # On transformers 5 this annotation makes `embed_dim` a dataclass field (saved and validated like the
    # parent's fields); on 4.57 it is a plain class attribute and `__init__` below stores it on the instance.
    # The explicit `__init__` is the transformers 4.57 workaround; with 4.57 gone the annotations alone suffice.
    embed_dim: int = 320
    embedding_proj_bias: bool = True

    def __init__(
        self, text_config=None, vision_config=None, embed_dim: int = 320, embedding_proj_bias: bool = True, **kwargs
    ):
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim <= 0:
            raise ValueError(f"`embed_dim` must be a positive integer, got {embed_dim!r}.")
        if not isinstance(embedding_proj_bias, bool):
            raise ValueError(f"`embedding_proj_bias` must be True or False, got {embedding_proj_bias!r}.")
        given_sub_configs = {}
        for name, value, config_class in (
            ("text_config", text_config, Qwen3VLTextConfig),
            ("vision_config", vision_config, Qwen3VLVisionConfig),
        ):
            if value is not None and not isinstance(value, (dict, PreTrainedConfig)):
                raise TypeError(
                    f"`{name}` must be a dict, a {config_class.__name__} or None, got {type(value).__name__}."
                )
            if isinstance(value, PreTrainedConfig):
                # 4.57's Qwen3VLConfig only understands dicts: hand it one, then put the caller's object back so
                # that settings living on the object (e.g. an attention implementation) are kept.
                # Workaround for transformers 4.57; delete with its support.
                given_sub_configs[name] = value
        self.embed_dim = embed_dim
        self.embedding_proj_bias = embedding_proj_bias
        super().__init__(
            text_config=text_config.to_dict() if "text_config" in given_sub_configs else text_config,
            vision_config=vision_config.to_dict() if "vision_config" in given_sub_configs else vision_config,
            **kwargs,
        )
        for name, value in given_sub_configs.items():
            setattr(self, name, value)
        self._validate_colqwen3()

    def save_pretrained(self, save_directory, **kwargs):
        width = getattr(self.text_config, "projection_dim", None)
        if width is not None:
            # vLLM sizes its input embeddings by it: the native ColQwen3 then fails, and the launch tools refuse it.
            raise ValueError(
                f"`text_config.projection_dim` is set ({width}): that is a launch-time override for vLLM's "
                "Transformers backend (DeepStack channels, passed as `hf_overrides`), not a checkpoint setting. "
                "Remove it from the config before saving."
            )
        return super().save_pretrained(save_directory, **kwargs)

    def to_dict(self):
        output = super().to_dict()
        text = output.get("text_config")
        if isinstance(text, dict) and text.get("rope_parameters") and not text.get("rope_scaling"):
            # transformers 5.x writes only `rope_parameters`; 4.57 reads `rope_scaling` and `rope_theta` and fails
            # without them. Write both spellings so a checkpoint saved on either line loads on the other.
            # Workaround for transformers 4.57; delete with its support.
            legacy = dict(text["rope_parameters"])
            text["rope_theta"] = legacy.pop("rope_theta", text.get("rope_theta"))
            text["rope_scaling"] = legacy
        return output

    def _validate_colqwen3(self):
        text = self.text_config
        for owner, field in ((text, "hidden_size"), (text, "vocab_size"), (self.vision_config, "spatial_merge_size")):
            value = getattr(owner, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{owner.base_config_key}.{field}` must be a positive integer, got {value!r}.")
        for field in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
            value = getattr(self, field)
            if not isinstance(value, int) or not 0 <= value < text.vocab_size:
                raise ValueError(f"`{field}` must be a token id in [0, {text.vocab_size}), got {value!r}.")
