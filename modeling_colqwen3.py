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
"""ColQwen3: a Qwen3-VL backbone with a linear head that turns every token into an L2-normalised retrieval vector."""

import inspect
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    Qwen3VLForConditionalGeneration,
    Qwen3VLModel,
    Qwen3VLTextModel,
)
from transformers.utils import ModelOutput, logging

try:
    from .configuration_colqwen3 import ColQwen3Config
except ImportError:  # imported as a plain module (tests, scripts) rather than as a Hub package
    from configuration_colqwen3 import ColQwen3Config
try:
    from .scoring_colqwen3 import SINGLE_VECTOR_STRATEGIES, pool_single_vector
except ImportError:
    from scoring_colqwen3 import SINGLE_VECTOR_STRATEGIES, pool_single_vector


__all__ = [
    "SINGLE_VECTOR_STRATEGIES",
    "ColQwen3",
    "ColQwen3DeepStackTextModel",
    "ColQwen3ForRetrievalOutput",
    "ColQwen3PreTrainedModel",
    "deepstack_channel_levels",
    "pool_single_vector",
]

logger = logging.get_logger(__name__)

# transformers 5 takes `mm_token_type_ids` (0 text, 1 image, 2 video) in `get_rope_index` and `forward`;
# 4.57 derives the modalities from the token ids itself and rejects the argument.
# Workaround for transformers 4.57; delete (always pass the token types) when 4.57 support ends.
_INNER_TAKES_MM_TOKEN_TYPES = "mm_token_type_ids" in inspect.signature(Qwen3VLModel.get_rope_index).parameters

# Every layout below holds the same Qwen3-VL backbone and linear head; keys are renamed to the Tomoro layout
# (`vlm.model.*`, `vlm.lm_head.*`, `embedding_proj_layer.*`), which is also the layout `save_pretrained` writes.
CHECKPOINT_KEY_MAPPING = {
    r"^custom_text_proj\.": "embedding_proj_layer.",  # colpali-engine / OpenSearch head
    r"^model\.visual\.": "vlm.model.visual.",  # colpali-engine, older saves
    r"^model\.language_model\.": "vlm.model.language_model.",
    r"^visual\.": "vlm.model.visual.",  # colpali-engine, newer saves / OpenSearch
    r"^language_model\.": "vlm.model.language_model.",
    r"^lm_head\.": "vlm.lm_head.",
}
_LM_HEAD_KEY = "vlm.lm_head.weight"
_HEAD_BIAS_KEY = "embedding_proj_layer.bias"


try:  # transformers >= 5: weight renames live in a registry keyed by class name
    from transformers.conversion_mapping import register_checkpoint_conversion_mapping
    from transformers.core_model_loading import WeightRenaming
except ImportError:  # transformers 4.57: `from_pretrained(key_mapping=...)` only, and save never renames
    WeightRenaming = None


if WeightRenaming is not None:

    class _LoadOnlyRenaming(WeightRenaming):
        """A rename applied when loading only: save reverses renames, and ours must not be reversed (several
        layouts map onto one), so that `save_pretrained` always writes the Tomoro layout."""

        __slots__ = ()

        def reverse_transform(self):
            return WeightRenaming(source_patterns=r"(?!)", target_patterns="")  # matches no key

    # Workaround for vLLM 0.32's Transformers backend, which only reads this registry (it never calls our
    # `from_pretrained`); delete when vLLM applies a remote model's own `from_pretrained` renames.
    # vLLM's Transformers backend reads this registry (it never calls our `from_pretrained`), so registering here
    # lets it load every layout too.
    register_checkpoint_conversion_mapping(
        "ColQwen3",
        [_LoadOnlyRenaming(source, target) for source, target in CHECKPOINT_KEY_MAPPING.items()],
        overwrite=True,
    )


def _none_if_empty(grid_thw: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Older vLLM passes empty tensors, not None, for absent image/video grids; stock Qwen3-VL crashes on them.

    Workaround for vLLM before mid-2026 (0.21 does it, 0.32 passes None); delete when those versions are unsupported.
    """
    if grid_thw is not None and grid_thw.numel() == 0:
        return None
    return grid_thw


def deepstack_channel_levels(config) -> int:
    """How many DeepStack levels travel in extra input channels, or 0 when that mode is off (the default).

    vLLM's Transformers backend keeps only the merged visual tokens of `get_image_features` and gives `forward`
    nothing but the input embeddings, so DeepStack would be lost there. It sizes those embeddings, and every image row
    it caches, by `text_config.projection_dim`; launched with `projection_dim = hidden_size * (1 + levels)` (an
    `hf_overrides` entry, never written into config.json), each visual row can carry its DeepStack features after its
    own embedding.
    """
    text_config = config.get_text_config()
    levels = len(getattr(config.vision_config, "deepstack_visual_indexes", None) or ())
    width = getattr(text_config, "projection_dim", None)
    return levels if levels and width == text_config.hidden_size * (1 + levels) else 0


def _split_per_item(features, sizes: list) -> tuple:
    """Per-item rows: transformers 5 splits features per image itself, 4.57 returns DeepStack levels unsplit."""
    return tuple(torch.split(features, sizes)) if isinstance(features, torch.Tensor) else tuple(features)


class _ZeroPaddedEmbedding(nn.Module):
    """Token embeddings followed by zeros in the DeepStack channels: text rows carry no DeepStack features.

    Built on each `get_input_embeddings()` call around the current embedding module, because vLLM swaps that module
    for its own after the model is built; a kept wrapper would hold the discarded one.
    """

    def __init__(self, embedding: nn.Module, width: int):
        super().__init__()
        self.embedding = embedding
        self.width = width

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        embeds = self.embedding(input_ids)
        return nn.functional.pad(embeds, (0, self.width - embeds.shape[-1]))


class ColQwen3DeepStackTextModel(Qwen3VLTextModel):
    """
    The Qwen3-VL decoder, also accepting DeepStack features in extra input channels (see [`deepstack_channel_levels`]).

    Input `(batch, seq, hidden_size * (1 + levels))` is split into the token embeddings and one block per level; each
    block is added to every row after the matching decoder layer. Text rows carry zeros there, so they are unchanged,
    and visual rows get exactly what Qwen3-VL's `_deepstack_process` adds to them. Input of the usual width runs the
    stock decoder. Built as its own class (vLLM decorates the decoder class for torch.compile before building it), and
    `forward` names its tensor arguments, which vLLM's compile wrapper binds by name.
    """

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values=None,
        inputs_embeds: Optional[torch.Tensor] = None,
        use_cache: Optional[bool] = None,
        visual_pos_masks: Optional[torch.Tensor] = None,
        deepstack_visual_embeds: Optional[list] = None,
        **kwargs,
    ):
        hidden_size = self.config.hidden_size
        if inputs_embeds is not None and inputs_embeds.shape[-1] != hidden_size:
            width = getattr(self.config, "projection_dim", None)
            if inputs_embeds.shape[-1] != width or width % hidden_size or deepstack_visual_embeds is not None:
                raise ValueError(
                    f"`inputs_embeds` are {inputs_embeds.shape[-1]} wide: expected `hidden_size` ({hidden_size}) or, "
                    f"without `deepstack_visual_embeds`, `text_config.projection_dim` ({width}), a multiple of it."
                )
            token_embeds, *deepstack_visual_embeds = inputs_embeds.split(hidden_size, dim=-1)
            inputs_embeds = token_embeds.contiguous()
            deepstack_visual_embeds = [level.contiguous() for level in deepstack_visual_embeds]
            visual_pos_masks = None  # every row gets its level; see `_deepstack_process`
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            visual_pos_masks=visual_pos_masks,
            deepstack_visual_embeds=deepstack_visual_embeds,
            **kwargs,
        )

    def get_input_embeddings(self):
        """Token embeddings zero-padded to `projection_dim`: vLLM embeds text rows through the decoder's."""
        return _ZeroPaddedEmbedding(self.embed_tokens, self.config.projection_dim)

    def set_input_embeddings(self, value):
        self.embed_tokens = value.embedding if isinstance(value, _ZeroPaddedEmbedding) else value

    def _deepstack_process(self, hidden_states, visual_pos_masks, visual_embeds):
        if visual_pos_masks is None:  # channel input: one row of features per token, zeros on text rows
            return hidden_states + visual_embeds.to(hidden_states.dtype)
        return super()._deepstack_process(hidden_states, visual_pos_masks, visual_embeds)


@dataclass
class ColQwen3ForRetrievalOutput(ModelOutput):
    """
    Output of [`ColQwen3`].

    Args:
        embeddings (`torch.FloatTensor` of shape `(batch_size, sequence_length, embed_dim)`):
            One L2-normalised vector per input token; rows at padded positions (`attention_mask == 0`) are exactly 0.
    """

    embeddings: Optional[torch.Tensor] = None


class ColQwen3PreTrainedModel(PreTrainedModel):
    config_class = ColQwen3Config
    # An empty prefix lets the same class load every checkpoint layout (a "model" prefix made 4.57 leave
    # `model.*` checkpoints randomly initialised; "vlm" broke vLLM's Transformers backend).
    base_model_prefix = ""
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen3VLTextDecoderLayer", "Qwen3VLVisionBlock"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True  # transformers 5
    _supports_flash_attn_2 = True  # transformers 4.57
    _supports_sdpa = True
    _supports_attention_backend = True  # vLLM's Transformers backend requires it
    # vLLM's Transformers backend re-roots `vlm.lm_head.*` and cannot place it; retrieval never uses it.
    # Workaround for vLLM 0.32; delete when its backend places nested LM heads.
    _keys_to_ignore_on_load_unexpected = [r"^vlm\.lm_head\."]


class ColQwen3(ColQwen3PreTrainedModel):
    r"""
    ColPali-style late-interaction retriever on Qwen3-VL. The inner Qwen3-VL model runs as usual (M-RoPE positions,
    DeepStack visual features), the LM head is skipped, and `embedding_proj_layer` maps each final hidden state to
    `config.embed_dim` dimensions before L2 normalisation. Score with [`ColQwen3Processor.score_multi_vector`].
    """

    # transformers 5.x finds the tied LM head inside `vlm` itself; 4.57 needs the key. Delete with 4.57 support.
    _tied_weights_keys = ["vlm.lm_head.weight"] if not _INNER_TAKES_MM_TOKEN_TYPES else None

    def __init__(self, config: ColQwen3Config):
        super().__init__(config)
        text_config = config.get_text_config()
        vision_out = getattr(config.vision_config, "out_hidden_size", text_config.hidden_size)
        if vision_out != text_config.hidden_size:
            raise ValueError(
                f"`vision_config.out_hidden_size` ({vision_out}) must equal `text_config.hidden_size` "
                f"({text_config.hidden_size}): image features are written into the text embedding sequence."
            )
        # vLLM substitutes its own config class for model_type `colqwen3`: read our fields defensively. That class
        # knows `embed_dim` but not our alias `embedding_dim`, which `colqwen3 vllm-export` writes instead.
        # Workaround for vLLM 0.32 (config substitution, head-bias export); delete with the vllm-export workaround.
        embed_dim = getattr(config, "embed_dim", None) or getattr(config, "embedding_dim", None)
        if embed_dim is None:
            raise ValueError("The config has no `embed_dim`: the width of the retrieval head is unknown.")
        # The config object itself (not a rebuilt copy) goes to the backbone so runtime settings such as the
        # attention implementation chosen by the caller or by vLLM reach every layer.
        self.vlm = Qwen3VLForConditionalGeneration(config)
        self.deepstack_channel_levels = deepstack_channel_levels(config)
        if self.deepstack_channel_levels:
            self.vlm.model.language_model = ColQwen3DeepStackTextModel._from_config(text_config)
        self.embedding_proj_layer = nn.Linear(
            text_config.hidden_size, embed_dim, bias=getattr(config, "embedding_proj_bias", True)
        )
        self.post_init()

    # ----- accessors used by transformers, PEFT and vLLM -----
    @property
    def language_model(self):
        return self.vlm.model.language_model

    @property
    def visual(self):
        return self.vlm.model.visual

    def get_input_embeddings(self):
        return self.vlm.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.vlm.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.vlm.lm_head

    def get_decoder(self):
        return self.vlm.model.language_model

    def set_decoder(self, decoder):
        self.vlm.model.language_model = decoder

    # ----- multimodal shims (the Qwen3-VL model API, with vLLM's quirks absorbed) -----
    def mm_token_type_ids_from_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """0 for text, 1 for `<|image_pad|>`, 2 for `<|video_pad|>` (what the transformers 5 processor returns)."""
        token_types = torch.zeros_like(input_ids, dtype=torch.int32)
        token_types[input_ids == self.config.image_token_id] = 1
        token_types[input_ids == self.config.video_token_id] = 2
        return token_types

    def get_rope_index(
        self,
        input_ids: torch.LongTensor,
        mm_token_type_ids: Optional[torch.Tensor] = None,
        image_grid_thw: Optional[torch.LongTensor] = None,
        video_grid_thw: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """M-RoPE positions `(3, batch, seq)` and deltas `(batch, 1)`; empty grid tensors count as absent."""
        image_grid_thw, video_grid_thw = _none_if_empty(image_grid_thw), _none_if_empty(video_grid_thw)
        if not _INNER_TAKES_MM_TOKEN_TYPES:
            return self.vlm.model.get_rope_index(input_ids, image_grid_thw, video_grid_thw, attention_mask)
        if mm_token_type_ids is None:
            mm_token_type_ids = self.mm_token_type_ids_from_input_ids(input_ids)
        return self.vlm.model.get_rope_index(
            input_ids,
            mm_token_type_ids,
            image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw,
            attention_mask=attention_mask,
            **kwargs,
        )

    def get_image_features(
        self, pixel_values: torch.Tensor, image_grid_thw: Optional[torch.LongTensor] = None, **kwargs
    ):
        """Merged visual tokens per image (and DeepStack features), as `Qwen3VLModel.get_image_features` gives them;
        with DeepStack channels on, each image's DeepStack features follow its tokens in the same rows."""
        image_grid_thw = _none_if_empty(image_grid_thw)
        features = self.vlm.model.get_image_features(pixel_values, image_grid_thw, **kwargs)
        return self._append_deepstack_channels(features, image_grid_thw)

    def get_video_features(
        self, pixel_values_videos: torch.Tensor, video_grid_thw: Optional[torch.LongTensor] = None, **kwargs
    ):
        video_grid_thw = _none_if_empty(video_grid_thw)
        features = self.vlm.model.get_video_features(pixel_values_videos, video_grid_thw, **kwargs)
        return self._append_deepstack_channels(features, video_grid_thw)

    def _append_deepstack_channels(self, features, grid_thw: torch.Tensor):
        """Per item, `[tokens, hidden * (1 + levels)]`: merged visual tokens, then each DeepStack level (off: as is)."""
        if not self.deepstack_channel_levels:
            return features
        is_tuple = isinstance(features, tuple)  # transformers 4.57: (per-item tokens, DeepStack levels)
        pooled, deepstack = features if is_tuple else (features.pooler_output, features.deepstack_features)
        sizes = (grid_thw.prod(-1) // self.visual.spatial_merge_size**2).tolist()
        levels = [_split_per_item(level, sizes) for level in deepstack]
        wide = tuple(
            torch.cat([tokens, *(level[item] for level in levels)], dim=-1)
            for item, tokens in enumerate(_split_per_item(pooled, sizes))
        )
        if is_tuple:
            return wide, deepstack
        features.pooler_output = wide
        return features

    # ----- forward -----
    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        pixel_values: Optional[torch.Tensor] = None,
        image_grid_thw: Optional[torch.LongTensor] = None,
        mm_token_type_ids: Optional[torch.Tensor] = None,
        pixel_values_videos: Optional[torch.Tensor] = None,
        video_grid_thw: Optional[torch.LongTensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs,
    ) -> Union[ColQwen3ForRetrievalOutput, tuple]:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`): token ids, left-padded by the processor.
            attention_mask (`torch.Tensor` of shape `(batch_size, seq_len)`): 1 for real tokens, 0 for padding.
            pixel_values (`torch.Tensor` of shape `(num_patches, channels * patch volume)`): flat image patches.
            image_grid_thw (`torch.LongTensor` of shape `(num_images, 3)`): patch grid of each image.
            mm_token_type_ids (`torch.Tensor` of shape `(batch_size, seq_len)`): 0 text, 1 image, 2 video;
                derived from `input_ids` when omitted.
            inputs_embeds (`torch.Tensor` of shape `(batch_size, seq_len, hidden_size)`): instead of `input_ids`.
            position_ids (`torch.LongTensor` of shape `(3, batch_size, seq_len)`): M-RoPE positions; computed from
                the inputs (padding-aware) when omitted.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`.")
        image_grid_thw, video_grid_thw = _none_if_empty(image_grid_thw), _none_if_empty(video_grid_thw)
        if pixel_values is not None and image_grid_thw is None:
            raise ValueError(
                "`pixel_values` were given without `image_grid_thw`: pass both (the processor returns both)."
            )
        if pixel_values_videos is not None and video_grid_thw is None:
            raise ValueError("`pixel_values_videos` were given without `video_grid_thw`.")
        batch_size, seq_len = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        if attention_mask is not None and tuple(attention_mask.shape) != (batch_size, seq_len):
            raise ValueError(
                f"`attention_mask` has shape {tuple(attention_mask.shape)}, expected {(batch_size, seq_len)}."
            )
        return_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)

        if input_ids is not None and mm_token_type_ids is None:
            mm_token_type_ids = self.mm_token_type_ids_from_input_ids(input_ids)
        if position_ids is None:
            # Positions are computed here, padding-aware, for text and images alike, so an input gets the same
            # positions alone or left-padded in a batch (transformers 5 would use 0..L-1 for padded text batches).
            if input_ids is not None:
                position_ids, _ = self.get_rope_index(
                    input_ids, mm_token_type_ids, image_grid_thw, video_grid_thw, attention_mask
                )
            elif attention_mask is not None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
                position_ids = position_ids.unsqueeze(0).expand(3, -1, -1)  # (3, batch, seq): text-only M-RoPE

        if self.deepstack_channel_levels and input_ids is not None:
            # The decoder embeds wide rows (see `ColQwen3DeepStackTextModel`): build them here, as vLLM does.
            inputs_embeds = self._channel_inputs_embeds(
                input_ids, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw
            )
            input_ids = pixel_values = pixel_values_videos = None

        inner_inputs = {"mm_token_type_ids": mm_token_type_ids} if _INNER_TAKES_MM_TOKEN_TYPES else {}
        outputs = self.vlm.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            pixel_values_videos=pixel_values_videos,
            video_grid_thw=video_grid_thw,
            use_cache=False,  # a retriever never decodes
            return_dict=True,
            **inner_inputs,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state  # (batch, seq, hidden)
        head = self.embedding_proj_layer
        embeddings = head(hidden_states.to(head.weight.dtype))  # (batch, seq, embed_dim)
        embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        if attention_mask is not None:
            # masked_fill, not a multiply: padded rows can be NaN under CPU sdpa and NaN * 0 stays NaN.
            embeddings = embeddings.masked_fill(attention_mask.unsqueeze(-1) == 0, 0.0)

        if not return_dict:
            return (embeddings,)
        return ColQwen3ForRetrievalOutput(embeddings=embeddings)

    def _channel_inputs_embeds(self, input_ids, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw):
        """Wide input embeddings (DeepStack channels on): zero-padded token embeddings, visual rows in place."""
        inputs_embeds = self.get_input_embeddings()(input_ids)
        for name, token_id, pixels, grid_thw, get_features in (
            ("image", self.config.image_token_id, pixel_values, image_grid_thw, self.get_image_features),
            ("video", self.config.video_token_id, pixel_values_videos, video_grid_thw, self.get_video_features),
        ):
            if pixels is None:
                continue
            features = get_features(pixels, grid_thw)
            rows = torch.cat(features[0] if isinstance(features, tuple) else features.pooler_output)
            placeholders = input_ids == token_id
            if int(placeholders.sum()) != rows.shape[0]:
                raise ValueError(
                    f"`input_ids` hold {int(placeholders.sum())} {name} placeholder tokens but the {name}s give "
                    f"{rows.shape[0]} visual tokens."
                )
            inputs_embeds[placeholders] = rows.to(inputs_embeds.dtype)
        return inputs_embeds

    # ----- loading -----
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """
        Loads the Tomoro layout, the colpali-engine layouts and the unprefixed layout alike, and raises instead of
        leaving any backbone or head weight randomly initialised. A checkpoint whose head has no bias loads into a
        bias-free head.
        """
        if WeightRenaming is None:  # transformers 4.57 (delete with its support); 5.x applies the registered renames
            kwargs.setdefault("key_mapping", CHECKPOINT_KEY_MAPPING)
        return_loading_info = kwargs.pop("output_loading_info", False)
        try:
            model, loading_info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        except RuntimeError as error:  # shape mismatches; transformers' own message does not name our config
            raise ValueError(
                f"Could not load ColQwen3 weights from {pretrained_model_name_or_path}: {error} "
                "Check that config.json (sizes, `embed_dim`) matches the weights."
            ) from error
        model._check_loading_info(loading_info, pretrained_model_name_or_path)
        return (model, loading_info) if return_loading_info else model

    def _check_loading_info(self, loading_info: dict, source) -> None:
        missing = set(loading_info.get("missing_keys") or ())
        unexpected = set(loading_info.get("unexpected_keys") or ())
        mismatched = list(loading_info.get("mismatched_keys") or ())
        if _HEAD_BIAS_KEY in missing and self.embedding_proj_layer.bias is not None:
            # The checkpoint's head has no bias: run without one rather than with a random one.
            self.embedding_proj_layer.bias = None
            self.config.embedding_proj_bias = False
            missing.discard(_HEAD_BIAS_KEY)
        if _LM_HEAD_KEY in missing:
            missing.discard(_LM_HEAD_KEY)
            if not self.config.get_text_config().tie_word_embeddings and not getattr(
                self.config, "tie_word_embeddings", False
            ):
                logger.warning(
                    f"{source} has no `{_LM_HEAD_KEY}`; it stays randomly initialised. "
                    "Retrieval never uses the LM head."
                )
        if missing or unexpected or mismatched:

            def listing(keys):
                keys = sorted(str(k) for k in keys)
                return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")

            problems = []
            if missing:
                problems.append(f"missing from the checkpoint: {listing(missing)}")
            if unexpected:
                problems.append(f"not used by the model: {listing(unexpected)}")
            if mismatched:
                problems.append(
                    f"with a different shape: {listing(k[0] if isinstance(k, tuple) else k for k in mismatched)}"
                )
            raise ValueError(
                f"Could not load ColQwen3 weights from {source}: " + "; ".join(problems) + ". Accepted layouts: "
                "Tomoro (`vlm.model.*`, `embedding_proj_layer.*`), colpali-engine (`model.visual.*`/`visual.*`, "
                "`custom_text_proj.*`) and unprefixed (`visual.*`, `language_model.*`). Check that config.json "
                "(sizes, `embed_dim`) matches the weights."
            )
