"""``seviz evaluate``: what an edit costs (accuracy, agreement, KL, params, FLOPs)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from seviz.cli._common import add_model_arguments, load_model_from_args
from seviz.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

    from seviz.pruning import PrunedModel

HELP = "measure what an edit costs: accuracy, agreement, KL, params, FLOPs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    edited = parser.add_mutually_exclusive_group()
    edited.add_argument("--pruned", help="a pruned model from `seviz prune`")
    edited.add_argument("--blocks", help="block globs to remove in memory, e.g. 'SE_5_*'")
    edited.add_argument("--recommendation", help="apply a rec.json in memory")
    parser.add_argument("--data", required=True, help="labelled image folder (class folders or ImageNet val)")
    parser.add_argument("--classes", default=None, help="restrict to these classes (default: all found)")
    parser.add_argument("--images-per-class", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image-decoding worker processes (default: 0 on CPU, 4 on CUDA, as seviz record)",
    )
    parser.add_argument(
        "--per-block", action="store_true", help="also: accuracy change when removing each block alone"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write the figures as JSON")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from seviz.data import find_images
    from seviz.pruning import evaluate, prune_blocks, prune_from_recommendation

    loaded = load_model_from_args(args)
    items = find_images(args.data, loaded, args.classes, args.images_per_class)
    edited: nn.Module | PrunedModel
    if args.pruned:
        edited = load_model_from_args(args, args.pruned).model
    elif args.recommendation:
        edited = prune_from_recommendation(loaded, args.recommendation)
    elif args.blocks:
        edited = prune_blocks(loaded, args.blocks)
    elif args.per_block:
        edited = load_model_from_args(args).model
    else:
        raise UsageError(
            "nothing to compare: pass --pruned FILE, --blocks GLOBS, --recommendation rec.json or --per-block"
        )
    report = evaluate(
        loaded,
        edited,
        items,
        batch_size=args.batch_size,
        workers=args.workers,
        per_block=args.per_block,
        progress=not args.no_progress,
    )
    print(report.summary())
    if args.json_out:
        report.write_json(args.json_out, overwrite=True)
        print(f"wrote {args.json_out}")
    return 0
