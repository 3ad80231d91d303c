"""colqwen3.serving.inputs builds the exact prompts vLLM needs; checked here without vLLM, against the processor."""

import json
import shlex
import subprocess
import sys

import jinja2
import pytest
import torch
from PIL import Image

from colqwen3.serving.inputs import IMAGE_TOKEN, PAGE_TEMPLATE, page_document, page_input, page_messages, query_input
from colqwen3.testing.tiny import embed


def render(messages):
    """What vLLM's server does with `--chat-template PAGE_TEMPLATE` (plain Jinja, no generation prompt)."""
    return jinja2.Environment().from_string(PAGE_TEMPLATE).render(messages=messages)


def test_query_input_is_the_trained_query_format(processor, model):
    prompt = query_input(processor, "total due")
    batch = processor.process_queries(["total due"])
    assert processor.tokenizer(prompt, return_tensors="pt")["input_ids"].equal(batch["input_ids"])
    with pytest.raises(TypeError, match="list"):
        query_input(processor, ["total due"])


@pytest.mark.parametrize("text", [None, "Invoice 42"])
def test_page_messages_render_to_the_page_prompt(processor, pages, text):
    messages = page_messages(processor, pages[0], text)
    assert render(messages) == processor.page_prompt(text)
    parts = messages[0]["content"]
    assert [part["type"] for part in parts] == ["text", "image_url", "text"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_page_document_keeps_the_prompt_in_one_text_part(processor, pages):
    for http, image_type in ((False, "image_pil"), (True, "image_url")):
        document = page_document(processor, pages[0], http=http)
        texts = [part["text"] for part in document["content"] if part["type"] == "text"]
        # One text part holding the full placeholder: vLLM joins several text parts with "\n".
        assert texts == [processor.page_prompt()]
        assert f"<|vision_start|>{IMAGE_TOKEN}<|vision_end|>" in texts[0]
        assert [part["type"] for part in document["content"]][1] == image_type


def test_page_input_sends_the_page_as_process_images_sees_it(processor, model):
    """vLLM's stock processor would turn transparency black (`convert("RGB")`); page_input sends paper white."""
    rgba = Image.new("RGBA", (96, 64), (0, 0, 0, 0))
    rgba.paste((200, 30, 30, 255), (10, 10, 60, 40))
    assert rgba.convert("RGB").getpixel((0, 0)) == (0, 0, 0)
    inputs = page_input(processor, rgba)
    image = inputs["multi_modal_data"]["image"]
    assert (
        image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((20, 20)) == (200, 30, 30)
    )
    assert inputs["prompt"] == processor.page_prompt()
    sent = processor(text=[inputs["prompt"]], images=[image], return_tensors="pt")
    assert torch.equal(embed(model, sent), embed(model, processor.process_images([rgba])))


def test_page_input_names_a_bad_image(processor):
    with pytest.raises(TypeError, match="PIL"):
        page_input(processor, "page.png")
    with pytest.raises(ValueError, match="0x5"):
        page_input(processor, Image.new("RGB", (0, 5)))


@pytest.mark.parametrize("route", ["native", "transformers"])
def test_launch_line(tmp_path, tomoro_checkpoint, route):
    template = tmp_path / "page.jinja"
    command = [sys.executable, "-m", "colqwen3", "serve-line", str(tomoro_checkpoint), "--route", route]
    command += ["--template-file", str(template), "--max-pixels", "1310720", "--no-dtype"]
    printed = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    argv = shlex.split(printed)
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert argv[:3] == ["vllm", "serve", str(tomoro_checkpoint)]
    assert flags["--runner"] == "pooling" and json.loads(flags["--pooler-config"]) == {"task": "token_embed"}
    assert template.read_text() == PAGE_TEMPLATE and flags["--chat-template"] == str(template)
    assert json.loads(flags["--mm-processor-kwargs"]) == {"max_pixels": 1310720}
    assert json.loads(flags["--limit-mm-per-prompt"])["image"]["count"] == 1
    backend = ("--trust-remote-code" in argv, "--hf-overrides" in argv)
    if route == "transformers":
        assert backend == (True, True)
        hf_overrides = json.loads(argv[argv.index("--hf-overrides") + 1])
        # DeepStack channels: the tiny model's text hidden size 64 times (1 + its 2 DeepStack levels)
        expected = {"architectures": ["TransformersMultiModalEmbeddingModel"], "text_config": {"projection_dim": 192}}
        assert hf_overrides == expected
    else:
        assert backend == (False, False)
