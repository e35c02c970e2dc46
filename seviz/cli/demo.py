"""``seviz demo``: the whole job offline on the shipped demo model and images."""

from __future__ import annotations

import argparse

HELP = "the whole job offline, on the shipped demo model and images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="seviz-demo", help="folder for the store, reports and figures")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    parser.add_argument("--data", default=None, help="image folder (default: the shipped CIFAR-10 sample)")
    parser.add_argument("--images-per-class", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from seviz.demo import run_demo

    result = run_demo(
        args.out,
        overwrite=args.overwrite,
        data=args.data,
        images_per_class=args.images_per_class,
        progress=not args.no_progress,
    )
    print(result.summary())
    return 0
