"""vLLM facts used by every serving tool, defined once: the two routes, the pooling task and the CPU settings.

- route `native`: vLLM's own `ColQwen3Model` (picked by `architectures: ["ColQwen3"]` in config.json);
- route `transformers`: vLLM's Transformers backend running this repository's remote code. By default it is launched
  with the DeepStack-channel override (`deepstack_channel_overrides`): `text_config.projection_dim = hidden_size *
  (1 + DeepStack levels)`, which widens vLLM's input-embedding rows so that image rows carry their DeepStack features
  to our decoder (`modeling_colqwen3.deepstack_channel_levels`). Without it that backend drops DeepStack.
  The override is a launch option only: in config.json it would break the native route and every other reader.
"""

import json
import os
from pathlib import Path

ROUTES = ("native", "transformers")
POOLING_TASK = "token_embed"  # per-token vectors; vLLM's default pooling returns one (first-token) vector
TRANSFORMERS_BACKEND_OVERRIDES = {"architectures": ["TransformersMultiModalEmbeddingModel"]}
# CPU vLLM (0.32) settings for small local runs; `setdefault`, so a caller's own values win.
CPU_ENV_DEFAULTS = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache; the default (4) is far more than embedding needs
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # keep the engine in this process (no fork/spawn guard needed)
    "TOKENIZERS_PARALLELISM": "false",
}
# Checks on the offline test kit also promise never to reach a hub.
OFFLINE_CHECK_ENV_DEFAULTS = {**CPU_ENV_DEFAULTS, "HF_HUB_OFFLINE": "1"}


def check_route(route: str) -> str:
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    return route


def apply_cpu_env_defaults(env=None, defaults=CPU_ENV_DEFAULTS) -> dict:
    """Set `defaults` in `env` (default: this process's environment) where unset; returns `env`."""
    env = os.environ if env is None else env
    for name, value in defaults.items():
        env.setdefault(name, value)
    return env


def checkpoint_config(model) -> dict:
    """config.json of a checkpoint folder, or of a Hub model id (through the Hub cache)."""
    folder = Path(model)
    if folder.is_dir():
        path = folder / "config.json"
        if not path.is_file():
            raise ValueError(f"{folder} has no config.json: not a checkpoint folder.")
        return json.loads(path.read_text())
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(str(model), "config.json")).read_text())
    except Exception as error:  # not a folder, and not a Hub id this machine can read
        raise ValueError(f"cannot read config.json of {str(model)!r}: {type(error).__name__}: {error}") from error


def deepstack_channel_overrides(config: dict) -> dict:
    """`hf_overrides` entries that carry DeepStack through vLLM's Transformers backend, computed from config.json:
    `{"text_config": {"projection_dim": hidden_size * (1 + levels)}}`; `{}` when the vision tower has no DeepStack
    levels."""
    levels = len((config.get("vision_config") or {}).get("deepstack_visual_indexes") or ())
    if not levels:
        return {}
    hidden_size = (config.get("text_config") or config).get("hidden_size")
    if not isinstance(hidden_size, int) or hidden_size <= 0:
        raise ValueError(f"config.json has no usable text_config.hidden_size (got {hidden_size!r}).")
    return {"text_config": {"projection_dim": hidden_size * (1 + levels)}}


def launch_override_problem(config: dict) -> str | None:
    """Why a config.json must not be served as is: it holds `text_config.projection_dim`, which vLLM reads as the width
    of its input embeddings. That belongs in `hf_overrides` at launch (Transformers backend), never in the file."""
    width = (config.get("text_config") or {}).get("projection_dim")
    if width is None:
        return None
    return (
        f"config.json sets text_config.projection_dim = {width}: that is the launch-time DeepStack-channel override "
        "of vLLM's Transformers backend (hf_overrides), not a checkpoint setting; in config.json it makes vLLM's "
        "native ColQwen3 fail and changes every reader. Remove it from config.json; the serving tools pass it at "
        "launch."
    )


def _sets_projection_dim(hf_overrides) -> bool:
    return isinstance(hf_overrides, dict) and "projection_dim" in (hf_overrides.get("text_config") or {})


def route_options(route: str, model, deepstack_channels: bool | None = None, hf_overrides=None) -> dict:
    """Engine options (`LLM(...)` keywords) a route needs beyond the model; `hf_overrides` are the caller's, merged in.

    The Transformers backend runs remote code and, unless `deepstack_channels=False`, gets the DeepStack-channel
    override computed from `model`'s config.json (exact image vectors; input rows and cached image rows (1 + levels)
    times wider). The native route keeps DeepStack itself and refuses the override (vLLM would fail deep inside with
    a size mismatch). Either route refuses a config.json that already holds it."""
    hf_overrides = dict(hf_overrides or {})
    channels = check_route(route) == "transformers" and deepstack_channels is not False
    # the override is computed from config.json; otherwise a Hub id is not fetched just to be checked
    config = checkpoint_config(model) if channels or Path(model).is_dir() else None
    problem = config and launch_override_problem(config)
    if problem:
        raise ValueError(problem)
    if route == "native":
        if deepstack_channels or _sets_projection_dim(hf_overrides):
            raise ValueError(
                "The DeepStack-channel override (text_config.projection_dim) is for vLLM's Transformers backend only: "
                "vLLM's native ColQwen3 keeps DeepStack itself and fails with it (a size mismatch deep inside vLLM). "
                "Use route 'transformers', or leave the override out."
            )
        return {"hf_overrides": hf_overrides} if hf_overrides else {}
    if channels:
        if _sets_projection_dim(hf_overrides):
            raise ValueError(
                "hf_overrides already set text_config.projection_dim; the route computes it from config.json."
            )
        for key, value in deepstack_channel_overrides(config).items():
            hf_overrides[key] = {**(hf_overrides.get(key) or {}), **value}
    hf_overrides.update(TRANSFORMERS_BACKEND_OVERRIDES)
    return {"trust_remote_code": True, "hf_overrides": hf_overrides}
