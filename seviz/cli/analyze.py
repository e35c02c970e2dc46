"""``seviz analyze``: per-block class specificity and gate behaviour, and all statistics as JSON."""

from __future__ import annotations

import argparse

from seviz.cli._common import split_list

HELP = "per-class statistics, class specificity and gate behaviour per block"

FLAGS = {"path": "--json"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store")
    parser.add_argument("--blocks", default=None, help="comma-separated blocks (default: all)")
    parser.add_argument(
        "--classes", default=None, help="classes to report per-class statistics for (default: all)"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write all statistics as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="split each block's rows into N parts analysed side by side and merged (same numbers)",
    )


def run(args: argparse.Namespace) -> int:
    from seviz._files import check_output
    from seviz.analysis import compute_statistics

    if args.json_out:  # before the work: never over the store, nor over a file without --overwrite
        check_output(args.json_out, inputs=[args.store], overwrite=args.overwrite, what="JSON")
    stats = compute_statistics(
        args.store, blocks=split_list(args.blocks), classes=split_list(args.classes), jobs=args.jobs
    )
    print(stats.summary())
    if args.json_out:
        print(f"wrote {stats.write_json(args.json_out, overwrite=args.overwrite, inputs=[args.store])}")
    return 0
