"""The `colqwen3` command (also `python -m colqwen3`): one subcommand per job, each a thin layer over the Python API.

Results go to stdout, progress and notices to stderr. Flags mean the same in every subcommand: `--model` (checkpoint
folder or Hub id), `--pages` (folders and files of pages), `--query` (repeatable), `--index` (page index folder),
`--route` (vLLM route), `--max-visual-tokens`, `--json-out` (results as JSON), `--*-atol` (absolute tolerances).
"""

import argparse
import sys

from colqwen3 import __version__
from colqwen3.cli import evaluate, kit, publish, search, serving, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colqwen3", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"colqwen3 {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (search, evaluate, train, publish, serving, kit):
        module.add_parsers(subcommands)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args, parser)
    except (ValueError, OSError) as error:  # bad input named by the API or a file it cannot read: a message
        print(f"colqwen3 {args.command}: error: {error}", file=sys.stderr)
        return 2
