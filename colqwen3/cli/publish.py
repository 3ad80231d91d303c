"""`colqwen3 publish`: a complete, verified Hub repository from any supported checkpoint."""

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

PUBLISH_HELP = """Build a complete remote-code repository from SOURCE in OUTPUT_DIR, verify it, and upload it.

    colqwen3 publish ./runs/lora/merged ./publish/my-colqwen3 --repo-id my-org/my-colqwen3 --eval-report report.json
    colqwen3 publish ./runs/lora/adapter ./publish/my-colqwen3 --base TomoroAI/tomoro-colqwen3-embed-4b --dry-run \\
        --repo-id my-org/my-colqwen3

SOURCE: a checkpoint folder in any supported layout (Tomoro, colpali-engine, unprefixed), a Hub id, or a PEFT adapter
folder (merged into --base, default: the adapter's recorded base). Without --repo-id nothing is uploaded; with
--dry-run the upload is printed instead of sent. Verification (file list, model card YAML, offline loading with the
source's embeddings under this Python and each --verify-python) runs before any upload; a failure uploads nothing.
"""


def add_parsers(subcommands) -> None:
    parser = subcommands.add_parser(
        "publish",
        help="build, verify and upload a complete Hub repository",
        description=PUBLISH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SOURCE", help="checkpoint folder, Hub id or PEFT adapter folder")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", type=Path, help="where the repository folder is written")
    parser.add_argument("--repo-id", help="ORG/NAME to upload to (default: build and verify only)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to commit to (created if missing)")
    parser.add_argument("--commit-message", default="Upload ColQwen3 checkpoint")
    parser.add_argument("--dry-run", action="store_true", help="print the upload instead of sending it")
    parser.add_argument("--base", help="base checkpoint of a PEFT adapter SOURCE")
    parser.add_argument("--source-revision", help="Hub revision of SOURCE")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    parser.add_argument("--vllm-native", action="store_true", help="rewrite the head for vLLM's native route")
    parser.add_argument("--eval-report", type=Path, help="`colqwen3 eval --json-out` report for the card")
    parser.add_argument("--license", default="apache-2.0")
    parser.add_argument("--dataset", action="append", dest="datasets", help="training dataset id (repeatable)")
    parser.add_argument("--base-model", help="Hub id for the card's base_model (default: from the source)")
    parser.add_argument("--overwrite", action="store_true", help="replace the repository files in OUTPUT_DIR")
    parser.add_argument("--verify-python", action="append", default=None, metavar="PYTHON",
                        help="also verify under this Python (e.g. a transformers 4.57 venv); repeatable")  # fmt: skip
    parser.add_argument("--json-out", type=Path, help="also write the verification and upload as JSON")
    parser.set_defaults(handler=run_publish)


def run_publish(args, parser) -> int:
    from colqwen3.publish import PublishError, default_pythons, publish

    pythons = default_pythons() + [python for python in args.verify_python or [] if python not in default_pythons()]
    try:
        result = publish(
            args.source, args.output_dir, repo_id=args.repo_id, base=args.base, source_revision=args.source_revision,
            dtype=args.dtype, vllm_native=args.vllm_native, eval_report=args.eval_report, license=args.license,
            datasets=args.datasets, base_model=args.base_model, overwrite=args.overwrite, private=args.private,
            revision=args.revision, commit_message=args.commit_message, dry_run=args.dry_run, verify_pythons=pythons,
        )  # fmt: skip
    except PublishError as error:
        print(f"colqwen3 publish: {error}", file=sys.stderr)
        return 1
    for row in result.verification.loads:
        diffs = ", ".join(f"{name} {diff:.1e}" for name, diff in row["max_abs_diff"].items())
        print(f"verified under transformers {row['transformers']}: max |diff| {diffs}")
    state = "uploaded to " + args.repo_id if args.repo_id and not args.dry_run else "not uploaded"
    print(f"{result.folder}: {len(list(result.folder.iterdir()))} files, {state}")
    if args.json_out:
        data = {"folder": str(result.folder), "verification": asdict(result.verification), "uploaded": result.uploaded}
        args.json_out.write_text(json.dumps(data, indent=2) + "\n")
    return 0
