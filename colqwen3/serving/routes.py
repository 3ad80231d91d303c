"""vLLM facts used by every serving tool, defined once: the two routes, the pooling task and the CPU settings.

- route `native`: vLLM's own `ColQwen3Model` (picked by `architectures: ["ColQwen3"]` in config.json);
- route `transformers`: vLLM's Transformers backend running this repository's remote code.
"""

import os

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


def transformers_backend_options(route: str) -> dict:
    """Engine options a route needs beyond the model folder: the Transformers backend runs remote code."""
    if check_route(route) == "transformers":
        return {"trust_remote_code": True, "hf_overrides": dict(TRANSFORMERS_BACKEND_OVERRIDES)}
    return {}
