"""Offline test kit shared by the tests, the benchmarks, the vLLM harness and the demo: tiny random checkpoints
(`tiny`), drawn sample pages (`pages`) and independent reference computations (`references`)."""
