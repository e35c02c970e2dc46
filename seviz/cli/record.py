"""``seviz record``: hook every SE gate of a model and stream its gates on images into a store."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from seviz.cli._common import add_model_arguments, data_config_from_args, split_list

if TYPE_CHECKING:
    from seviz.recording import RecordConfig

HELP = "record SE gates of a model on images into an HDF5 store"

# Library parameters named differently from this command's options (the rest map by name:
# `batch_size` is --batch-size).
FLAGS = {"path": "--out", "progress": "--no-progress"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--data", required=True, help="image folder: class folders (WordNet ids or names) or ImageNet val"
    )
    parser.add_argument(
        "--classes", default=None, help="comma-separated classes (names, WordNet ids, indices); default all"
    )
    parser.add_argument("--out", default="seviz-store.h5", help="store to write (default: seviz-store.h5)")
    parser.add_argument(
        "--images-per-class", type=int, default=None, help="first N images of each class (paper: 50)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image-decoding worker processes (default: 0 on CPU, where the model uses every core; 4 on CUDA)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--dtype", default="float16", choices=["float16", "float32"], help="stored gate dtype"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store")
    parser.add_argument("--resume", action="store_true", help="finish an interrupted store")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="fp32 is exact")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--max-gate-error", type=float, default=0.02, help="bound on fast-mode gate error (0.02)"
    )
    parser.add_argument(
        "--fallback", action="store_true", help="record in fp32 if the fast mode is out of bound"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--decode", default="cpu", choices=["cpu", "gpu"], help="gpu: decode JPEGs on the CUDA device"
    )
    parser.add_argument(
        "--writer",
        default="auto",
        choices=["auto", "thread", "inline"],
        help="store writes from a background thread or between batches (auto: thread on CUDA, inline on CPU)",
    )


def config_from_args(args: argparse.Namespace) -> RecordConfig:
    """The :class:`~seviz.recording.RecordConfig` the flags describe (checked as it is made)."""
    from seviz.recording import RecordConfig

    names = split_list(args.class_names)
    return RecordConfig(
        model=args.model,
        data=Path(args.data),
        out=Path(args.out),
        classes=args.classes,
        weights=args.weights,
        images_per_class=args.images_per_class,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        dtype=args.dtype,
        overwrite=args.overwrite,
        resume=args.resume,
        num_classes=args.num_classes,
        class_names=None if names is None else tuple(names),
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        max_gate_error=args.max_gate_error,
        fallback=args.fallback,
        progress=not args.no_progress,
        command=shlex.join(["seviz", *args.argv]),
        decode=args.decode,
        writer=args.writer,
        data_config=data_config_from_args(args),
    )


def run(args: argparse.Namespace) -> int:
    from seviz.recording import record
    from seviz.recording.distributed import shard_from_environment

    summary = record(config_from_args(args))
    shard = shard_from_environment()
    if shard is not None and shard.rank != 0:  # under torchrun rank 0 reports for every rank
        return 0
    print(summary.summary())
    return 0
