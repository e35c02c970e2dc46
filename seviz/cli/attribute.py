"""``seviz attribute``: captum rankings of which gate channels drive each class, into the store."""

from __future__ import annotations

import argparse

from seviz.cli._common import add_preprocessing_arguments, data_config_from_args

HELP = "captum: which gate channels drive each class, into the store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store")
    parser.add_argument(
        "--model",
        default=None,
        help="default: the model the store was recorded with (a file.py:factory or module:factory model only "
        "with --trust-store-model)",
    )
    parser.add_argument("--weights", default=None, help="default: the weights the store was recorded with")
    parser.add_argument(
        "--images-per-class", type=int, default=None, help="use at most N recorded images per class"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    add_preprocessing_arguments(parser, store_default=True)
    parser.add_argument(
        "--trust-store-model",
        action="store_true",
        help="rebuild a file.py:factory or module:factory model the store names (runs that code)",
    )


def run(args: argparse.Namespace) -> int:
    from seviz.recording import attribute

    summary = attribute(
        args.store,
        model=args.model,
        weights=args.weights,
        images_per_class=args.images_per_class,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        data_config=data_config_from_args(args),
        trust_store_model=args.trust_store_model,
    )
    print(
        f"attributed {summary.images} images of {len(summary.classes)} classes over {summary.blocks} blocks "
        f"into {summary.store}\nmethod: {summary.method}\npreprocessing: {summary.preprocessing}"
    )
    return 0
