"""`colqwen3 sample-pages` and `colqwen3 tiny-checkpoint`: the offline kit, for demos and trying things out."""

from pathlib import Path

from colqwen3.remote_code import CHECKPOINT_LAYOUTS
from colqwen3.testing.pages import write_sample_pages


def add_parsers(subcommands) -> None:
    pages = subcommands.add_parser("sample-pages", help="draw the demo's sample pages (4 PNG pages and a 2-page PDF)")
    pages.add_argument("folder", type=Path)
    pages.set_defaults(handler=run_sample_pages)

    tiny = subcommands.add_parser("tiny-checkpoint", help="write a tiny checkpoint with RANDOM weights (offline)")
    tiny.add_argument("folder", type=Path)
    tiny.add_argument("--layout", choices=CHECKPOINT_LAYOUTS, default="tomoro")
    tiny.add_argument("--head-bias", choices=("random", "zero", "none"), default="random")
    tiny.add_argument("--max-visual-tokens", type=int, default=64)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(handler=run_tiny_checkpoint)


def run_sample_pages(args, parser) -> int:
    paths = write_sample_pages(args.folder)
    print(f"wrote {len(paths)} files to {args.folder}: " + ", ".join(path.name for path in paths))
    return 0


def run_tiny_checkpoint(args, parser) -> int:
    from colqwen3.testing.tiny import write_checkpoint  # loads transformers: only when this subcommand runs

    folder = write_checkpoint(
        args.folder,
        layout=args.layout,
        max_num_visual_tokens=args.max_visual_tokens,
        seed=args.seed,
        head_bias=args.head_bias,
    )
    print(folder)
    return 0
