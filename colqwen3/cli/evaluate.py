"""`colqwen3 eval`: score a checkpoint on ViDoRe (v1, v2, v3), named mteb tasks or a local BEIR-format folder."""

import argparse
from pathlib import Path

EVAL_HELP = """Evaluate a ColQwen3 checkpoint with mteb 2.x and print a markdown table (progress on stderr).

    colqwen3 eval TomoroAI/tomoro-colqwen3-embed-4b --benchmark "ViDoRe(v1)" --output-dir out/eval/4b-v1
    colqwen3 eval ./my-checkpoint --tasks VidoreDocVQARetrieval VidoreTatdqaRetrieval
    colqwen3 eval ./my-checkpoint --data ./my-beir-folder

MODEL is a checkpoint folder or a Hub id. `--output-dir` receives mteb's result JSON (results/ORG__NAME/REVISION/),
the run's scores (predictions/), report.json and report.md. mteb downloads benchmark data from the Hub on first use.
A local folder holds corpus.jsonl, queries.jsonl and qrels/test.tsv (see `colqwen3.evaluation.data`).
"""


def add_parsers(subcommands) -> None:
    parser = subcommands.add_parser(
        "eval",
        help="evaluate on ViDoRe / mteb tasks / a local BEIR-format folder",
        description=EVAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="checkpoint folder or Hub id")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--benchmark", help='"ViDoRe(v1)", "ViDoRe(v2)" or "ViDoRe(v3)" (public tasks)')
    source.add_argument("--tasks", nargs="+", metavar="TASK", help="mteb task names")
    source.add_argument("--data", nargs="+", type=Path, metavar="FOLDER", help="local BEIR-format folders")
    parser.add_argument("--output-dir", type=Path, default=None, help="where results go (default: out/eval/NAME)")
    parser.add_argument("--batch-size", type=int, default=8, help="pages or queries per forward pass")
    parser.add_argument("--max-visual-tokens", type=int, default=None, help="page budget (default: the processor's)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--revision", default=None, help="Hub revision of MODEL")
    parser.add_argument("--name", default=None, help="model name in the results (default: the id or local/FOLDER)")
    parser.add_argument("--compare-to", default=None, help="published model to compare a benchmark mean with")
    parser.add_argument("--include-private", action="store_true", help="also run a benchmark's private tasks")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the report as JSON here")
    parser.set_defaults(handler=run_eval)


def run_eval(args, parser) -> int:
    try:
        import mteb  # noqa: F401
    except ImportError:
        parser.error("evaluation needs mteb: pip install 'colqwen3[eval]'")
    from colqwen3.evaluation import evaluate
    from colqwen3.evaluation.run import default_name

    name = args.name or default_name(args.model)
    output_dir = args.output_dir or Path("out/eval") / name.replace("/", "__")
    report = evaluate(
        args.model,
        benchmark=args.benchmark,
        tasks=args.tasks,
        data=args.data,
        output_dir=output_dir,
        batch_size=args.batch_size,
        max_visual_tokens=args.max_visual_tokens,
        device=args.device,
        revision=args.revision,
        name=name,
        compare_to=args.compare_to,
        include_private=args.include_private,
    )
    if args.json_out:
        report.write_json(args.json_out)
    print(report.markdown(), end="")
    return 0
