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
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="split each block's rows into N parts analysed side by side and merged (same numbers)",
    )


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from seviz.analysis import compute_statistics

    stats = compute_statistics(
        args.store, blocks=split_list(args.blocks), classes=split_list(args.classes), jobs=args.jobs
    )
    print(
        f"{'block':8} {'channels':>8} {'specificity':>11} {'chance':>6} {'var-ratio':>9} {'mean|1-s|':>9} "
        f"{'>=0.95':>6} {'input-dep':>9}"
    )
    for name in stats.block_names:
        block = stats.block(name)
        sp, gb = block.specificity, block.behaviour
        print(
            f"{name:8} {block.channels:>8} {sp.accuracy:>11.3f} {sp.chance:>6.3f} {sp.variance_ratio:>9.3f} "
            f"{gb.mean_abs_deviation:>9.4f} {gb.fraction_near_one:>6.3f} {gb.input_dependence:>9.4f}"
        )
    print("specificity: 5-fold nearest-centroid accuracy of the class from the excitation vector")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(stats.to_dict(), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json_out}")
    return 0
