"""The `colqwen3` command: subcommands, one flag vocabulary, and every README command that can run offline here."""

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from colqwen3 import __version__
from colqwen3.cli import build_parser
from colqwen3.testing import tiny as kit
from colqwen3.testing.pages import write_sample_pages

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = {"index", "search", "eval", "train", "publish", "vllm-export", "serve-line", "vllm-search", "vllm-check",
               "sample-pages", "tiny-checkpoint"}  # fmt: skip
# README commands runnable without vLLM, a GPU or a network; the vllm tier runs the vLLM ones through the same
# harness, tests/train runs `train` on the tiny checkpoint and tests/evaluation runs `eval` on a local folder (ViDoRe
# itself needs the Hub).
OFFLINE_SUBCOMMANDS = {"index", "search", "vllm-export", "serve-line", "sample-pages", "tiny-checkpoint"}


def subparsers() -> dict:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_module_and_console_script_run_the_same_cli():
    as_module = subprocess.run([sys.executable, "-m", "colqwen3", "--help"], capture_output=True, text=True, check=True)
    assert SUBCOMMANDS <= set(re.findall(r"^\s{4}([a-z-]+)\s", as_module.stdout, flags=re.M))
    script = Path(sys.executable).parent / "colqwen3"
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"colqwen3 {__version__}"


def test_one_flag_vocabulary():
    """Same meaning, same name: tolerances are `--*-atol`, no subcommand spells a shared flag its own way."""
    assert set(subparsers()) == SUBCOMMANDS
    flags = {name: {s for a in p._actions for s in a.option_strings} for name, p in subparsers().items()}
    everything = set().union(*flags.values())
    assert not {f for f in everything if f.endswith("-tol") or f == "--tol"}, "tolerances are spelled --*-atol"
    assert {"--text-atol", "--image-atol", "--score-atol", "--json-out"} <= flags["vllm-check"]
    for shared in ("--model", "--pages", "--query", "--top-k", "--route", "--max-visual-tokens", "--index"):
        users = [name for name, names in flags.items() if shared in names]
        assert users, shared
    assert not any(f in everything for f in ("--routes", "--tol", "--max-pixels-per-page", "--k"))


def test_tiny_checkpoint_and_sample_pages(tmp_path):
    run = [sys.executable, "-m", "colqwen3"]
    subprocess.run([*run, "tiny-checkpoint", str(tmp_path / "ckpt"), "--layout", "colpali"], check=True)
    assert {"config.json", "model.safetensors", "scoring_colqwen3.py"} <= {
        p.name for p in (tmp_path / "ckpt").iterdir()
    }
    printed = subprocess.run(
        [*run, "sample-pages", str(tmp_path / "pages")], capture_output=True, text=True, check=True
    )
    assert "wrote 5 files" in printed.stdout and (tmp_path / "pages" / "appendix.pdf").exists()


def readme_commands() -> list[str]:
    """`colqwen3 ...` lines of the README's bash blocks (continuation lines joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split(" #")[0].strip()
            if command.startswith("colqwen3 "):
                commands.append(command)
    return commands


def test_readme_shows_every_subcommand():
    assert {shlex.split(command)[1] for command in readme_commands()} == SUBCOMMANDS


@pytest.fixture(scope="module")
def readme_folders(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme")
    checkpoint = kit.write_checkpoint(work / "tomoro-colqwen3-embed-4b")
    return work, checkpoint, write_sample_pages(work / "pages")[0].parent


@pytest.mark.parametrize(
    "command", [c for c in readme_commands() if shlex.split(c)[1] in OFFLINE_SUBCOMMANDS], ids=lambda c: c[:60]
)
def test_readme_command_runs(readme_folders, command):
    work, checkpoint, pages = readme_folders
    command = command.replace("TomoroAI/tomoro-colqwen3-embed-4b", str(checkpoint))
    argv = [sys.executable, "-m", "colqwen3", *shlex.split(command)[1:]]
    result = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, command + "\n" + result.stdout[-2000:] + result.stderr[-3000:]
