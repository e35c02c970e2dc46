"""``seviz plot``: the paper's Figures 6 and 7 and the depth figure, as PNG/SVG."""

from __future__ import annotations

import argparse

from seviz.cli._common import split_list

HELP = "the paper's Figures 6 and 7 and depth plots (PNG and SVG)"

FLAGS = {"out_dir": "--out"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store")
    parser.add_argument("--out", default="figures", help="folder to write into")
    parser.add_argument(
        "--blocks", default=None, help="default: SE_2_3,SE_3_4,SE_4_6,SE_5_1,SE_5_2,SE_5_3 when present"
    )
    parser.add_argument("--classes", default=None, help="default: up to 10 recorded classes")
    parser.add_argument(
        "--channels", type=int, default=None, help="plot a subset of N channels (the paper used 50)"
    )
    parser.add_argument(
        "--random-channels", action="store_true", help="pick the subset at random (seeded), not first N"
    )
    parser.add_argument("--sort", action="store_true", help="sort channels by their all-class mean")
    parser.add_argument("--formats", default="png,svg")
    parser.add_argument("--overwrite", action="store_true", help="replace figures already in --out")


def run(args: argparse.Namespace) -> int:
    from seviz.analysis import compute_statistics
    from seviz.plots import save_figures

    blocks, classes = split_list(args.blocks), split_list(args.classes)
    stats = compute_statistics(args.store, blocks=blocks, classes=classes)
    paths = save_figures(
        stats,
        args.out,
        formats=split_list(args.formats) or ["png"],
        blocks=blocks,
        classes=classes,
        channels=args.channels,
        how="random" if args.random_channels else "first",
        sort=args.sort,
        overwrite=args.overwrite,
        inputs=[args.store],
    )
    print(f"wrote {len(paths)} figures to {args.out}")
    return 0
