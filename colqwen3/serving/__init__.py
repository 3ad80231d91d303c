"""vLLM serving tools: exact inputs (`inputs`), the native-route export (`export`), offline `LLM` helpers
(`offline`), the HTTP client and launch line (`client`), the one parity harness (`parity`) and shared constants
(`routes`). Modules that need vLLM import it lazily, so everything but the engines works without it."""
