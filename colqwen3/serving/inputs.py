"""The exact vLLM inputs for ColQwen3 queries and pages, so vLLM's vectors equal `process_queries` / `process_images`.

vLLM (0.32, both routes) adds neither the ColPali page prompt nor the query augmentation, and neither route runs our
processor's `process_*` methods, so the caller builds the trained prompt strings:

| use                        | query                        | page                                                  |
|----------------------------|------------------------------|-------------------------------------------------------|
| `LLM.encode` (token_embed) | `query_input(processor, q)`  | `page_input(processor, image)` (+ multi_modal_data)   |
| `LLM.score`, `POST /score` | `query_input(processor, q)`  | `page_document(processor, image)`: `{"content": ...}` |
| `POST /pooling`            | `{"input": query_input(..)}` | `{"messages": page_messages(..)}` + `PAGE_TEMPLATE`   |

`page_document` puts the whole `page_prompt()` in one text part: it already contains
`<|vision_start|><|image_pad|><|vision_end|>`, which is the placeholder vLLM would otherwise prepend, so vLLM keeps
the text verbatim. A second text part would be joined with "\\n" and change the prompt.
Images go in as PIL for offline calls (`image_pil` part) and as base64 PNG data URLs over HTTP (`image_url` part).
"""

import base64
import io

__all__ = [
    "IMAGE_TOKEN",
    "PAGE_TEMPLATE",
    "image_data_url",
    "page_document",
    "page_input",
    "page_messages",
    "query_input",
]

IMAGE_TOKEN = "<|image_pad|>"

# Server-side chat template for `/pooling` page requests: renders content parts verbatim in order (text as is, an
# image part as `<|image_pad|>`), so `page_messages` renders to exactly `page_prompt()`. The checkpoint's own (Qwen)
# template would add a newline and drop the trailing `<|endoftext|>`.
PAGE_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% else %}" + IMAGE_TOKEN + "{% endif %}{% endfor %}{% endif %}{% endfor %}"
)


def _rgb(processor, image):
    # What `process_images` feeds the model (RGB on white, at least one tile): vLLM's stock processor would do neither.
    return processor.prepare_images([image])[0]


def image_data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def query_input(processor, text: str) -> str:
    """A query prompt for `LLM.encode`, `LLM.score`, `/pooling` `input` and `/score` `queries`."""
    if not isinstance(text, str):
        raise TypeError(f"query must be a string, got {type(text).__name__}")
    return processor.query_prompt(text)


def page_input(processor, image, text: str | None = None) -> dict:
    """A page prompt for `LLM.encode`: the trained page prompt with the image attached."""
    return {"prompt": processor.page_prompt(text), "multi_modal_data": {"image": _rgb(processor, image)}}


def page_document(processor, image, text: str | None = None, *, http: bool = False) -> dict:
    """A page for `LLM.score` (`http=False`, PIL part) or `POST /score` `documents` (`http=True`, data-URL part)."""
    image = _rgb(processor, image)
    if http:
        image_part = {"type": "image_url", "image_url": {"url": image_data_url(image)}}
    else:
        image_part = {"type": "image_pil", "image_pil": image}
    return {"content": [{"type": "text", "text": processor.page_prompt(text)}, image_part]}


def page_messages(processor, image, text: str | None = None) -> list[dict]:
    """A page for `POST /pooling` `messages`: parts that `PAGE_TEMPLATE` renders to exactly `page_prompt(text)`."""
    before, after = processor.page_prompt(text).split(IMAGE_TOKEN)
    parts = [{"type": "text", "text": before}] if before else []
    parts.append({"type": "image_url", "image_url": {"url": image_data_url(_rgb(processor, image))}})
    if after:
        parts.append({"type": "text", "text": after})
    return [{"role": "user", "content": parts}]
