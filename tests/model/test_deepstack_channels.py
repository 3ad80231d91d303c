"""DeepStack channels (`modeling_colqwen3.deepstack_channel_levels`): the mode vLLM's Transformers backend is launched
in so that image rows carry their DeepStack features. Off (every config.json): the code path of a plain Qwen3-VL,
bit for bit. On: the call vLLM makes (wide input embeddings, positions, nothing else) reproduces the stock forward.
References are a stock `Qwen3VLModel` + the linear head (`colqwen3.testing.references`), never ColQwen3's own output."""

import copy

import pytest
import torch
from torch import nn
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextModel

from colqwen3.testing.references import stock_embeddings, stock_qwen3vl
from colqwen3.testing.tiny import embed
from configuration_colqwen3 import ColQwen3Config
from modeling_colqwen3 import ColQwen3, ColQwen3DeepStackTextModel, deepstack_channel_levels

ATOL = 1e-6


def with_channels(model: ColQwen3) -> ColQwen3:
    """The same weights in DeepStack-channel mode: `text_config.projection_dim = hidden * (1 + levels)`, as vLLM's
    launch override sets it."""
    config = copy.deepcopy(model.config)
    text = config.get_text_config()
    text.projection_dim = text.hidden_size * (1 + len(config.vision_config.deepstack_visual_indexes))
    wide = ColQwen3(config).eval()
    wide.load_state_dict(model.state_dict(), strict=True)
    return wide


def vllm_style_call(model: ColQwen3, batch: dict) -> torch.Tensor:
    """What vLLM's Transformers backend does with one unpadded request: text rows from the decoder's input
    embeddings, image rows from `get_image_features(...).pooler_output` merged in, then `forward(inputs_embeds,
    position_ids)` with no token ids, no pixels and no attention mask."""
    ids = batch["input_ids"]
    with torch.no_grad():
        embeds = model.language_model.get_input_embeddings()(ids)
        if "pixel_values" in batch:
            features = model.get_image_features(batch["pixel_values"], batch["image_grid_thw"])
            rows = features[0] if isinstance(features, tuple) else features.pooler_output
            embeds[ids == model.config.image_token_id] = torch.cat(rows)
        positions, _ = model.get_rope_index(ids, image_grid_thw=batch.get("image_grid_thw"))
        return model(inputs_embeds=embeds, position_ids=positions, attention_mask=batch["attention_mask"])[0][0]


@pytest.fixture(scope="module")
def wide(model):
    return with_channels(model)


@pytest.fixture(scope="module")
def reference(model):
    return stock_qwen3vl(model)


def test_off_by_default_and_the_stock_modules_are_used(model):
    assert deepstack_channel_levels(model.config) == 0 and model.deepstack_channel_levels == 0
    assert type(model.get_decoder()) is Qwen3VLTextModel
    assert type(model.get_input_embeddings()) is nn.Embedding
    assert deepstack_channel_levels(ColQwen3Config.from_dict(ColQwen3Config().to_dict())) == 0  # the 4B layout


def test_off_mode_is_bit_identical_to_plain_qwen3vl(model, reference, processor, pages):
    """No DeepStack-channel code runs: the embeddings equal stock Qwen3-VL + head exactly, not just closely."""
    for batch in (processor.process_images(pages[:1]), processor.process_queries(["total due?"])):
        ours = embed(model, batch)[0]
        assert torch.equal(ours, stock_embeddings(reference, model.embedding_proj_layer, batch, 0))


def test_a_projection_dim_of_another_width_leaves_the_mode_off(model):
    config = copy.deepcopy(model.config)
    config.get_text_config().projection_dim = config.get_text_config().hidden_size * 2  # 1 level short of 2 + 1
    assert deepstack_channel_levels(config) == 0 and type(ColQwen3(config).get_decoder()) is Qwen3VLTextModel


def test_on_mode_builds_the_channel_decoder_and_pads_text_rows_with_zeros(wide, processor):
    levels = len(wide.config.vision_config.deepstack_visual_indexes)
    hidden = wide.config.get_text_config().hidden_size
    assert wide.deepstack_channel_levels == levels == 2
    assert type(wide.get_decoder()) is ColQwen3DeepStackTextModel  # its own class, not re-classed
    ids = processor.process_queries(["total due?"])["input_ids"]
    with torch.no_grad():
        rows = wide.get_input_embeddings()(ids)
        assert rows.shape[-1] == hidden * (1 + levels)
        assert torch.equal(rows[..., :hidden], wide.get_decoder().embed_tokens(ids))
        assert not rows[..., hidden:].any()


def test_image_rows_carry_each_items_deepstack_features(model, wide, processor, pages):
    batch = processor.process_images([pages[0], pages[1].resize((128, 96))])  # two images of different sizes
    with torch.no_grad():
        stock = model.vlm.model.get_image_features(batch["pixel_values"], batch["image_grid_thw"])
        got = wide.get_image_features(batch["pixel_values"], batch["image_grid_thw"])
        video = wide.get_video_features(batch["pixel_values"], batch["image_grid_thw"])  # same encoder path
    tokens, levels = stock if isinstance(stock, tuple) else (stock.pooler_output, stock.deepstack_features)
    rows = got[0] if isinstance(got, tuple) else got.pooler_output
    video_rows = video[0] if isinstance(video, tuple) else video.pooler_output
    sizes = [item.shape[0] for item in tokens]
    assert [item.shape[0] for item in rows] == sizes and len(set(sizes)) == 2
    for item, row in enumerate(rows):
        per_level = [torch.split(level, sizes)[item] if torch.is_tensor(level) else level[item] for level in levels]
        assert torch.equal(row, torch.cat([tokens[item], *per_level], dim=-1))
        assert torch.equal(video_rows[item], row)


@pytest.mark.parametrize("modality", ["text", "image"])
def test_the_call_vllm_makes_reproduces_the_stock_forward(model, wide, reference, processor, pages, modality):
    batch = processor.process_queries(["total due?"]) if modality == "text" else processor.process_images(pages[:1])
    expected = stock_embeddings(reference, model.embedding_proj_layer, batch, 0)
    got = vllm_style_call(wide, batch)
    assert (got - expected).abs().max().item() <= ATOL
    if modality == "image":  # the same call without channels loses DeepStack: the channels are what make it exact
        assert (vllm_style_call(model, batch) - expected).abs().max().item() > 1e-2


def test_on_mode_forward_with_token_ids_matches_the_stock_forward(model, wide, reference, processor, pages):
    """A Transformers caller of a channel-mode model gets the same vectors (the forward builds the wide rows itself),
    padded batches included."""
    batch = processor.process_images([pages[0], pages[1].resize((128, 96))])
    assert (batch["attention_mask"] == 0).any()  # the smaller page is left-padded
    ours = embed(wide, batch)
    for index in range(2):
        expected = stock_embeddings(reference, model.embedding_proj_layer, batch, index)
        real = ours[index][batch["attention_mask"][index].bool()]
        assert (real - expected).abs().max().item() <= ATOL
    assert not ours[batch["attention_mask"] == 0].any()


def test_bad_widths_and_saving_the_override_are_refused(wide, tmp_path):
    hidden = wide.config.get_text_config().hidden_size
    with pytest.raises(ValueError, match=rf"are {hidden * 2} wide.*\({hidden}\).*\({hidden * 3}\)"):
        wide.get_decoder()(inputs_embeds=torch.zeros(1, 3, hidden * 2))
    with pytest.raises(ValueError, match="projection_dim.*launch-time override"):
        wide.config.save_pretrained(tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_set_input_embeddings_accepts_what_get_input_embeddings_returned(wide):
    decoder = wide.get_decoder()
    table = decoder.embed_tokens
    wide.set_input_embeddings(wide.get_input_embeddings())
    assert decoder.embed_tokens is table
