"""ColQwen3 forward: parity with a plain Qwen3-VL forward + linear head, masking, batching, dtypes, attention."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from colqwen3.testing import tiny as kit
from colqwen3.testing.references import stock_embeddings, stock_qwen3vl
from colqwen3.testing.tiny import embed
from modeling_colqwen3 import ColQwen3

FP32_ATOL = 1e-5


@pytest.fixture(scope="module")
def reference(model):
    return stock_qwen3vl(model)


@pytest.mark.parametrize("modality", ["text", "image"])
def test_matches_plain_qwen3vl_plus_head(model, reference, processor, pages, modality):
    if modality == "text":
        batch = processor.process_queries(["capital of France?", "a much longer query about quarterly revenue growth"])
    else:
        batch = processor.process_images([pages[0], pages[1].resize((320, 240))])
    ours = embed(model, batch)
    for index in range(len(batch["input_ids"])):
        expected = stock_embeddings(reference, model.embedding_proj_layer, batch, index)
        real = ours[index][batch["attention_mask"][index].bool()]
        assert real.shape == expected.shape
        assert (real - expected).abs().max().item() < FP32_ATOL


def test_deepstack_is_applied(model, reference, processor, pages):
    """The image path must differ from a forward that drops DeepStack (what a hand-built inputs_embeds loses)."""
    batch = processor.process_images(pages[:1])
    ours = embed(model, batch)[0]
    saved = reference.language_model._deepstack_process
    reference.language_model._deepstack_process = lambda hidden, *args, **kwargs: hidden
    try:
        without_deepstack = stock_embeddings(reference, model.embedding_proj_layer, batch, 0)
    finally:
        reference.language_model._deepstack_process = saved
    assert (ours - without_deepstack).abs().max().item() > 1e-2


def test_unit_norm_on_real_tokens_and_exact_zeros_on_padding(model, processor):
    batch = processor.process_queries(["a", "a considerably longer query with many more tokens"])
    out = embed(model, batch)
    mask = batch["attention_mask"].bool()
    assert out.shape == (2, batch["input_ids"].shape[1], model.config.embed_dim)
    assert torch.allclose(out[mask].norm(dim=-1), torch.ones(int(mask.sum())), atol=1e-5)
    assert (~mask).any() and torch.equal(out[~mask], torch.zeros_like(out[~mask]))


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_alone_equals_left_padded_batch_with_long_neighbour(processor, pages, attn_implementation):
    model = kit.build_model(seed=0, attn_implementation=attn_implementation)
    small_page = pages[2].resize((64, 64))
    alone = embed(model, processor.process_images([small_page]))[0]
    batch = processor.process_images([small_page, pages[0].resize((600, 800))])
    together = embed(model, batch)
    assert torch.isfinite(together).all()
    real = together[0][batch["attention_mask"][0].bool()]
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1] // 2  # really left-padded
    assert (real - alone).abs().max().item() < FP32_ATOL

    query_alone = embed(model, processor.process_queries(["paris"]))[0]
    queries = processor.process_queries(["paris", "a long neighbour " * 20])
    query_batched = embed(model, queries)
    assert torch.isfinite(query_batched).all()
    assert (query_batched[0][queries["attention_mask"][0].bool()] - query_alone).abs().max().item() < FP32_ATOL


def test_bf16_stays_within_bf16_tolerance_of_fp32(model, processor, pages):
    batch = processor.process_images(pages[:2])
    fp32 = embed(model, batch)
    bf16_model = kit.build_model(seed=0).to(torch.bfloat16)
    bf16_batch = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in batch.items()}
    bf16 = embed(bf16_model, bf16_batch)
    assert bf16.dtype == torch.bfloat16 and torch.isfinite(bf16).all()
    mask = batch["attention_mask"].bool()
    cosine = F.cosine_similarity(bf16.float()[mask], fp32[mask], dim=-1)
    assert cosine.min().item() > 0.98
    assert (bf16.float() - fp32).abs().max().item() < 0.1


def test_eager_and_sdpa_agree(processor, pages):
    batch = processor.process_images(pages[:2])
    sdpa = embed(kit.build_model(seed=1, attn_implementation="sdpa"), batch)
    eager = embed(kit.build_model(seed=1, attn_implementation="eager"), batch)
    assert (sdpa - eager).abs().max().item() < FP32_ATOL


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="flash-attn is not installed (needs CUDA)")
def test_flash_attention_2_matches_sdpa(processor, pages):
    if not torch.cuda.is_available():
        pytest.skip("flash-attn is installed but no CUDA device is present")
    batch = {k: v.cuda() for k, v in processor.process_images(pages[:2]).items()}
    batch = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in batch.items()}
    flash = kit.build_model(seed=0, attn_implementation="flash_attention_2").cuda().bfloat16()
    sdpa = kit.build_model(seed=0, attn_implementation="sdpa").cuda().bfloat16()
    mask = batch["attention_mask"].bool()
    cosine = F.cosine_similarity(embed(flash, batch)[mask].float(), embed(sdpa, batch)[mask].float(), dim=-1)
    assert cosine.min().item() > 0.99


def test_never_runs_the_lm_head(model, processor, pages):
    def fail(*args, **kwargs):
        raise AssertionError("the LM head ran")

    handle = model.vlm.lm_head.register_forward_pre_hook(fail)
    try:
        embed(model, processor.process_images(pages[:1]))
        embed(model, processor.process_queries(["q"]))
    finally:
        handle.remove()


def test_mm_token_type_ids_are_derived_when_omitted(model, processor, pages):
    batch = processor.process_images(pages[:2])
    given = embed(model, batch)
    omitted = embed(model, {k: v for k, v in batch.items() if k != "mm_token_type_ids"})
    assert torch.equal(given, omitted)
    assert torch.equal(model.mm_token_type_ids_from_input_ids(batch["input_ids"]), batch["mm_token_type_ids"].int())


def test_inputs_embeds_and_tuple_output_match_input_ids(model, processor):
    batch = processor.process_queries(["one", "two words here"])
    from_ids = embed(model, batch)
    with torch.no_grad():
        inputs_embeds = model.get_input_embeddings()(batch["input_ids"])
        (from_embeds,) = model(inputs_embeds=inputs_embeds, attention_mask=batch["attention_mask"], return_dict=False)
    assert (from_ids - from_embeds).abs().max().item() < FP32_ATOL


def test_vllm_shims(model, processor, pages):
    batch = processor.process_images(pages[:1])
    empty = torch.empty(0, 3, dtype=torch.long)
    positions, deltas = model.get_rope_index(
        batch["input_ids"], batch["mm_token_type_ids"], batch["image_grid_thw"], empty
    )
    assert positions.shape == (3, 1, batch["input_ids"].shape[1])
    text = processor.process_queries(["q"])
    text_positions, _ = model.get_rope_index(text["input_ids"], None, empty, empty, text["attention_mask"])
    assert torch.equal(text_positions[0], text_positions[1])  # text-only M-RoPE: all three axes equal
    features = model.get_image_features(batch["pixel_values"], batch["image_grid_thw"])
    merged = features.pooler_output if hasattr(features, "pooler_output") else features[0]
    assert sum(part.shape[0] for part in merged) == int((batch["input_ids"] == model.config.image_token_id).sum())
    assert model.get_input_embeddings() is model.vlm.model.language_model.embed_tokens
    assert model.language_model is model.get_decoder()


def test_bad_forward_inputs_raise_clear_errors(model, processor, pages):
    batch = processor.process_images(pages[:1])
    with pytest.raises(ValueError, match="exactly one of"):
        model()
    with pytest.raises(ValueError, match="image_grid_thw"):
        model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"])
    with pytest.raises(ValueError, match="attention_mask"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"][:, 1:])


def test_mismatched_vision_output_width_is_rejected():
    config = kit.tiny_config()
    config.vision_config.out_hidden_size = 32
    with pytest.raises(ValueError, match="out_hidden_size"):
        ColQwen3(config)
