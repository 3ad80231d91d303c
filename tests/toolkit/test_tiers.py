"""The test tiers of `scripts/dev.sh`: the vllm tier collects only tests/vllm (its environment has no mteb or peft),
so a test marked `vllm` anywhere else would never run."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_vllm_test_lives_in_tests_vllm():
    marked = {path for path in TESTS.rglob("test_*.py") if re.search(r"pytest\.mark\.vllm\b", path.read_text())}
    assert marked and all(path.parent == TESTS / "vllm" for path in marked), sorted(map(str, marked))
