"""The launch options of each vLLM route (`colqwen3.serving.routes.route_options`), used by the launch line, the
offline `LLM` helper and the parity harness: the Transformers backend gets the DeepStack-channel override computed
from config.json; the native route and config.json itself never carry it. No vLLM needed: all of this happens before
an engine starts."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from colqwen3.serving.client import launch_command
from colqwen3.serving.export import native_route_problem, prepare_for_vllm_native
from colqwen3.serving.offline import make_llm
from colqwen3.serving.routes import (
    TRANSFORMERS_BACKEND_OVERRIDES,
    deepstack_channel_overrides,
    route_options,
)
from colqwen3.testing import tiny as kit
from configuration_colqwen3 import ColQwen3Config
from modeling_colqwen3 import deepstack_channel_levels

REPO_ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURES = TRANSFORMERS_BACKEND_OVERRIDES["architectures"]


@pytest.fixture
def checkpoint(tmp_path, model):
    return kit.write_checkpoint(tmp_path / "ckpt", model=model)


def test_transformers_route_gets_the_override_computed_from_config_json(checkpoint):
    options = route_options("transformers", checkpoint)
    assert options == {
        "trust_remote_code": True,
        "hf_overrides": {"architectures": ARCHITECTURES, "text_config": {"projection_dim": 64 * (1 + 2)}},
    }
    # the width the remote code recognises: the override, applied to the checkpoint's config, turns the mode on
    config = ColQwen3Config.from_pretrained(checkpoint)
    config.text_config.projection_dim = options["hf_overrides"]["text_config"]["projection_dim"]
    assert deepstack_channel_levels(config) == 2


def test_the_4b_checkpoint_rows_become_four_times_wider():
    """config.json at the repository root is the 4B checkpoint's: hidden 2560, DeepStack at vision layers 5, 11, 17."""
    config = json.loads((REPO_ROOT / "config.json").read_text())
    assert deepstack_channel_overrides(config) == {"text_config": {"projection_dim": 2560 * 4}}
    assert deepstack_channel_overrides({"text_config": {"hidden_size": 8}, "vision_config": {}}) == {}


def test_without_channels_and_on_the_native_route_there_is_no_override(checkpoint):
    plain = route_options("transformers", checkpoint, deepstack_channels=False)
    assert plain == {"trust_remote_code": True, "hf_overrides": {"architectures": ARCHITECTURES}}
    assert route_options("native", checkpoint) == {}
    assert route_options("native", "TomoroAI/not-fetched-for-the-native-route") == {}  # a Hub id is not read


def test_the_native_route_refuses_the_override(checkpoint):
    with pytest.raises(ValueError, match="Transformers backend only.*native ColQwen3 keeps DeepStack"):
        route_options("native", checkpoint, deepstack_channels=True)
    with pytest.raises(ValueError, match="Transformers backend only"):
        launch_command(checkpoint, "native", deepstack_channels=True)
    with pytest.raises(ValueError, match="Transformers backend only"):  # refused before vLLM is even imported
        make_llm(
            checkpoint, "native", refuse_known_problems=False, hf_overrides={"text_config": {"projection_dim": 192}}
        )
    with pytest.raises(ValueError, match="already set text_config.projection_dim"):
        route_options("transformers", checkpoint, hf_overrides={"text_config": {"projection_dim": 192}})


def test_callers_overrides_are_merged(checkpoint):
    options = route_options("transformers", checkpoint, hf_overrides={"text_config": {"rms_norm_eps": 1e-5}})
    assert options["hf_overrides"]["text_config"] == {"rms_norm_eps": 1e-5, "projection_dim": 192}


def test_a_config_json_holding_the_override_is_refused_everywhere(checkpoint, model, tmp_path):
    kit.write_launch_override(checkpoint)
    for route in ("native", "transformers"):
        with pytest.raises(ValueError, match="config.json sets text_config.projection_dim = 192.*launch-time"):
            route_options(route, checkpoint)
    with pytest.raises(ValueError, match="launch-time"):
        make_llm(checkpoint, "native")  # native_route_problem names it first
    assert "launch-time" in native_route_problem(checkpoint)
    with pytest.raises(ValueError, match="launch-time"):
        prepare_for_vllm_native(checkpoint)  # the export never writes it back
    result = subprocess.run(
        [sys.executable, "-m", "colqwen3", "serve-line", str(checkpoint), "--route", "transformers"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "text_config.projection_dim = 192" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr  # one line


def test_serve_line_without_channels(checkpoint):
    command = [sys.executable, "-m", "colqwen3", "serve-line", str(checkpoint), "--route", "transformers"]
    argv = shlex.split(subprocess.run([*command, "--no-deepstack-channels"], capture_output=True, text=True).stdout)
    assert json.loads(argv[argv.index("--hf-overrides") + 1]) == {"architectures": ARCHITECTURES}


def test_an_unreadable_model_is_named(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        route_options("transformers", tmp_path)
    with pytest.raises(ValueError, match="cannot read config.json of 'no/such-model'"):
        route_options("transformers", "no/such-model")
