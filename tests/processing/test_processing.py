"""ColQwen3Processor: trained prompt formats, placeholder handling, image budget and modes, MaxSim scoring."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from colqwen3.testing import tiny as kit
from colqwen3.testing.tiny import embed
from processing_colqwen3 import ColQwen3Processor

PAGE_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>"


def decode_real(processor, batch, index=0):
    keep = batch["attention_mask"][index].bool()
    return processor.tokenizer.decode(batch["input_ids"][index][keep])


def collapse_image_pads(text):
    while "<|image_pad|><|image_pad|>" in text:
        text = text.replace("<|image_pad|><|image_pad|>", "<|image_pad|>")
    return text


def test_page_prompt_is_the_trained_string(processor, pages):
    assert processor.page_prompt() == PAGE_PROMPT
    batch = processor.process_images(pages[:1])
    assert collapse_image_pads(decode_real(processor, batch)) == PAGE_PROMPT
    n_image_tokens = int(batch["image_grid_thw"][0].prod()) // 4
    assert int((batch["input_ids"] == processor.image_token_id).sum()) == n_image_tokens


def test_query_format_has_ten_augmentation_tokens(processor):
    batch = processor.process_queries(["What is the capital of France?"])
    assert decode_real(processor, batch) == "What is the capital of France?" + "<|endoftext|>" * 10
    assert torch.equal(processor.process_texts(["x y"])["input_ids"], processor.process_queries(["x y"])["input_ids"])


QUERIES = ["What is the capital of France?", "  total due  ", "a\nmulti-line query", "x"]


def test_text_only_call_builds_the_query_format(processor):
    """mteb's reference ColQwen3 wrapper encodes queries with `processor(text=...)`: Tomoro's processor builds the
    full query there, so ours must too, token for token what `process_queries` builds."""
    called, built = processor(text=QUERIES), processor.process_queries(QUERIES)
    assert called.keys() == built.keys()
    assert all(torch.equal(called[key], built[key]) for key in called)
    assert decode_real(processor, called, 1) == "total due" + "<|endoftext|>" * 10  # stripped, as Tomoro's
    single = processor(text="x")  # one string, as a caller may pass it
    assert torch.equal(single["input_ids"], processor.process_queries(["x"])["input_ids"])


def test_a_built_query_is_never_augmented_twice(processor):
    """vLLM's Transformers backend runs this processor over the prompt a client already built: still 10 tokens."""
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    for query in QUERIES:
        built = processor.query_prompt(query)
        assert processor.query_prompt(built) == built
        ids = processor(text=[built])["input_ids"][0]
        assert torch.equal(ids, processor(text=[query])["input_ids"][0])
        assert int((ids == pad_id).sum()) == 10


def test_suffix_overrides_the_augmentation(processor):
    for suffix, expected in [("", "x"), ("<|endoftext|>" * 2, "x" + "<|endoftext|>" * 2), ("?", "x?")]:
        for batch in (processor(text=[" x "], suffix=suffix), processor.process_queries([" x "], suffix=suffix)):
            assert decode_real(processor, batch) == expected
    assert decode_real(processor, processor.process_texts(["x"], suffix="")) == "x"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"text": ["q"], "suffix": 3}, TypeError, "`suffix` must be a string, got int"),
        ({"text": ["q", None]}, TypeError, r"`text\[1\]` must be one of strings, got NoneType"),
        ({"text": []}, ValueError, "`text` is an empty list"),
        ({"text": ["q", PAGE_PROMPT]}, ValueError, r"`text\[1\]` holds a vision placeholder but no images"),
    ],
)
def test_bad_text_only_calls_raise_clear_errors(processor, kwargs, error, match):
    with pytest.raises(error, match=match):
        processor(**kwargs)


def test_suffix_with_images_is_refused(processor, pages):
    with pytest.raises(ValueError, match="applies to text-only calls"):
        processor(images=pages[:1], suffix="")


def same_batches(first, second) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def test_nested_kwargs_are_the_callers_choice(processor, pages):
    """sentence-transformers passes `text_kwargs={"padding": ...}` / `common_kwargs={"return_tensors": ...}`: our
    defaults must not be added on top ("Keyword argument padding was passed two times")."""
    assert same_batches(processor(images=pages[:2], text_kwargs={"padding": True}), processor.process_images(pages[:2]))
    nested = processor(text=["a", "a longer query"], text_kwargs={"padding": "longest"},
                       common_kwargs={"return_tensors": "pt"})  # fmt: skip
    assert same_batches(nested, processor.process_queries(["a", "a longer query"]))
    listed = processor(text=["a", "a longer query"], return_tensors=None)
    assert isinstance(listed["input_ids"], list) and isinstance(listed["mm_token_type_ids"], list)


def test_one_image_list_per_sample(processor, pages):
    """`apply_chat_template` passes one list of images per sample: the same as the flat list."""
    assert same_batches(processor(images=[[pages[0]], [pages[1]]]), processor.process_images(pages[:2]))
    per_sample = processor(images=[[pages[0]], [pages[1]]], text=[PAGE_PROMPT, PAGE_PROMPT])
    assert same_batches(per_sample, processor(images=pages[:2], text=[PAGE_PROMPT, PAGE_PROMPT]))
    with pytest.raises(ValueError, match="each sample must hold exactly one image"):
        processor(images=[[pages[0], pages[1]]])


def test_batched_chat_template_renders_pages(processor, pages):
    template = (
        "{%- for message in messages -%}<|im_start|>user\n{% for item in message['content'] -%}"
        "{%- if item['type'] == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>{%- endif -%}{%- endfor -%}"
        "Describe the image.<|im_end|><|endoftext|>{%- endfor -%}"
    )
    conversations = [[{"role": "user", "content": [{"type": "image", "image": page}]}] for page in pages[:2]]
    batch = processor.apply_chat_template(conversations, chat_template=template, tokenize=True, return_dict=True,
                                          return_tensors="pt", padding=True)  # fmt: skip
    expected = processor.process_images(pages[:2])
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["pixel_values"], expected["pixel_values"])


def test_left_padding_and_mm_token_type_ids(processor, pages):
    batch = processor.process_queries(["a", "a much longer query text"])
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1
    assert torch.equal(
        batch["mm_token_type_ids"], torch.zeros_like(batch["input_ids"]).to(batch["mm_token_type_ids"].dtype)
    )
    images = processor.process_images(pages[:2])
    expected = (images["input_ids"] == processor.image_token_id).to(images["mm_token_type_ids"].dtype)
    assert torch.equal(images["mm_token_type_ids"], expected)


def test_duplicated_placeholders_are_collapsed(processor, pages):
    single = processor(text=[PAGE_PROMPT], images=pages[:1])
    duplicated = PAGE_PROMPT.replace("<|image_pad|>", "<|image_pad|>" * 7)
    repeated = processor(text=[duplicated], images=pages[:1])
    assert torch.equal(single["input_ids"], repeated["input_ids"])
    video_text = "<|vision_start|><|video_pad|><|video_pad|><|vision_end|>"
    assert processor._collapse_placeholders(video_text) == "<|vision_start|><|video_pad|><|vision_end|>"


def test_text_without_placeholder_becomes_page_text(processor, pages):
    batch = processor(text=["page 3 of the report"], images=pages[:1])
    expected = PAGE_PROMPT.replace("Describe the image.", "Describe the image. page 3 of the report")
    assert collapse_image_pads(decode_real(processor, batch)) == expected


def test_huge_image_stays_within_the_default_budget():
    processor = kit.build_processor(max_num_visual_tokens=1280)
    assert processor.image_processor.size["longest_edge"] == 1_310_720
    batch = processor.process_images([Image.new("RGB", (10_000, 10_000), "white")])
    n_tokens = int(batch["image_grid_thw"][0].prod()) // 4
    assert 1000 < n_tokens <= 1280


def test_budget_is_settable_and_round_trips(tmp_path, model):
    from transformers import AutoProcessor

    folder = kit.write_checkpoint(tmp_path / "ckpt", model=model, max_num_visual_tokens=48)
    loaded = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    assert loaded.max_num_visual_tokens == 48 and loaded.image_processor.size["longest_edge"] == 48 * 1024
    override = AutoProcessor.from_pretrained(folder, trust_remote_code=True, max_num_visual_tokens=16)
    assert override.max_num_visual_tokens == 16
    batch = override.process_images([Image.new("RGB", (2000, 1000), "white")])
    assert int(batch["image_grid_thw"][0].prod()) // 4 <= 16
    override.save_pretrained(tmp_path / "saved")
    again = AutoProcessor.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    assert again.max_num_visual_tokens == 16
    assert again.query_prompt("q") == override.query_prompt("q") and again.page_prompt() == PAGE_PROMPT
    with pytest.raises(ValueError, match="max_num_visual_tokens"):
        override.max_num_visual_tokens = 0


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ([], ValueError, "empty list"),
        (None, ValueError, "None"),
        (["a page", None], TypeError, r"images\[0\]"),
        ([np.zeros((32, 32, 3), dtype=np.uint8)], TypeError, "ndarray"),
        ("page.png", TypeError, "str"),
    ],
)
def test_bad_images_raise_clear_errors(processor, pages, bad, error, match):
    with pytest.raises(error, match=match):
        processor.process_images(bad)


def test_mixed_image_list_names_the_bad_item(processor, pages):
    with pytest.raises(TypeError, match=r"images\[1\].*str"):
        processor.process_images([pages[0], "not an image"])


def test_zero_size_image_is_rejected(processor):
    with pytest.raises(ValueError, match="0x10"):
        processor.process_images([Image.new("RGB", (0, 10))])


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ([], ValueError, "`texts` is an empty list"),
        (None, ValueError, "`texts` is None"),
        (["ok", 3], TypeError, r"`texts\[1\]` must be one of strings, got int"),
        (b"q", TypeError, "`texts` must be a list of strings, got bytes"),
    ],
)
def test_bad_queries_raise_clear_errors(processor, bad, error, match):
    with pytest.raises(error, match=match):
        processor.process_queries(bad)


def _sixteen_bit(page):
    grey = np.asarray(page.convert("L"), dtype=np.uint16) * 257
    image = Image.fromarray(grey)
    assert image.mode == "I;16"
    return image


@pytest.mark.parametrize(
    "convert",
    [
        lambda page: page.convert("RGBA"),
        lambda page: page.convert("L"),
        lambda page: page.convert("CMYK"),
        lambda page: page.convert("P"),
        _sixteen_bit,
        lambda page: page.resize((1, 1)),
        lambda page: page.resize((3, 900)),
    ],
    ids=["RGBA", "L", "CMYK", "P", "I;16", "1x1", "3x900"],
)
def test_image_modes_and_tiny_sizes_embed_finitely(model, processor, pages, convert):
    batch = processor.process_images([convert(pages[0])])
    out = embed(model, batch)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[batch["attention_mask"].bool()].norm(dim=-1), torch.tensor(1.0), atol=1e-5)


def test_sixteen_bit_is_scaled_not_clipped(processor, pages):
    eight = processor.process_images([pages[0].convert("L")])["pixel_values"]
    sixteen = processor.process_images([_sixteen_bit(pages[0])])["pixel_values"]
    assert torch.allclose(eight, sixteen, atol=1e-6)


def test_transparent_areas_become_white_paper(processor):
    clear = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    white = Image.new("RGB", (64, 64), "white")
    assert torch.equal(
        processor.process_images([clear])["pixel_values"], processor.process_images([white])["pixel_values"]
    )


def test_get_n_patches_matches_the_image_grid(processor):
    for size in [(800, 600), (333, 1000), (64, 64)]:
        batch = processor.process_images([Image.new("RGB", (size[1], size[0]), "white")])
        _, grid_h, grid_w = batch["image_grid_thw"][0].tolist()
        assert processor.get_n_patches(size) == (grid_w // 2, grid_h // 2)


NO_TORCHVISION_SCRIPT = """
import json, sys
sys.modules["torchvision"] = None  # `import torchvision` now raises ImportError, and find_spec says it is absent
from colqwen3.testing.pages import sample_pages
from colqwen3.testing.tiny import build_processor, write_checkpoint
from transformers import AutoProcessor
processor = AutoProcessor.from_pretrained(write_checkpoint(sys.argv[1]), trust_remote_code=True)
pages = processor.process_images(sample_pages()[:1])
queries = processor.process_queries(["total due"])
print(json.dumps({"class": type(processor).__name__, "video": getattr(processor, "video_processor", None) is not None,
                  "grid": pages["image_grid_thw"].tolist(), "query_tokens": int(queries["attention_mask"].sum())}))
"""


def test_works_without_torchvision(tmp_path):
    """The whole processor path (AutoProcessor over a checkpoint, pages, queries) where torchvision cannot import."""
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCHVISION_SCRIPT, str(tmp_path / "ckpt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["class"] == "ColQwen3Processor" and report["video"] is False
    assert len(report["grid"]) == 1 and report["grid"][0][0] == 1 and report["query_tokens"] > 10


def test_processor_requires_both_parts():
    with pytest.raises(ValueError, match="image_processor"):
        ColQwen3Processor(image_processor=None, tokenizer=None)
