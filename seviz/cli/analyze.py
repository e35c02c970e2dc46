"""``seviz analyze``: per-block class specificity and gate behaviour, and all statistics as JSON."""

from __future__ import annotations

import argparse

from seviz.cli._common import split_list

HELP = "per-class statistics, class specificity and gate behaviour per block"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store")
    parser.add_argument("--blocks", default=None, help="comma-separated blocks (default: all)")
    parser.add_argument(
        "--classes", default=None, help="classes to report per-class statistics for (default: all)"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write all statistics as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from seviz.analysis import compute_statistics

    stats = compute_statistics(args.store, blocks=split_list(args.blocks), classes=split_list(args.classes))
    print(stats.summary())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(stats.to_dict(), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json_out}")
    return 0
