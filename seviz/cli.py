"""The ``seviz`` command line. Each subcommand parses arguments and calls one library function.

Nothing heavy is imported at module level, so ``seviz --help`` is fast.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger("seviz")

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str):
    def decorator(function: Callable[[argparse.Namespace], int]):
        _COMMANDS[name] = function
        return function

    return decorator


def _add_model_arguments(parser: argparse.ArgumentParser, weights_default: str = "pretrained") -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="se_resnet50 (paper weights via timm), se_resnet50_cifar10 (offline demo), any timm name, "
        "torchvision:NAME, or path/to/file.py:factory",
    )
    parser.add_argument(
        "--weights",
        default=weights_default,
        help="pretrained (default; HF/torch cache or download), random, or a .safetensors/.pth file",
    )
    parser.add_argument("--num-classes", type=int, default=None, help="outputs of your own model")
    parser.add_argument("--class-names", default=None, help="comma-separated output names of your own model")


def _split(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def build_parser() -> argparse.ArgumentParser:
    from seviz import __version__

    parser = argparse.ArgumentParser(
        prog="seviz",
        description="See what the Squeeze-and-Excitation gates of a network do, and which can go.",
    )
    parser.add_argument("--version", action="version", version=f"seviz {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser("record", help="record SE gates of a model on images into an HDF5 store")
    _add_model_arguments(p)
    p.add_argument("--data", required=True, help="image folder: class folders (WordNet ids or names) or ImageNet val")
    p.add_argument("--classes", default=None, help="comma-separated classes (names, WordNet ids, indices); default all")
    p.add_argument("--out", default="seviz-store.h5", help="store to write (default: seviz-store.h5)")
    p.add_argument("--images-per-class", type=int, default=None, help="first N images of each class (paper: 50)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="image-decoding worker processes (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored gate dtype")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--resume", action="store_true", help="finish an interrupted store")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="fp32 is exact")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--max-gate-error", type=float, default=0.02, help="bound on fast-mode gate error (0.02)")
    p.add_argument("--fallback", action="store_true", help="record in fp32 if the fast mode is out of bound")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    p = commands.add_parser("blocks", help="list the SE blocks seviz finds in a model")
    _add_model_arguments(p, weights_default="random")

    p = commands.add_parser("info", help="summarise a store")
    p.add_argument("store")
    return parser


@_command("record")
def _record(args: argparse.Namespace) -> int:
    from seviz.recording import record

    summary = record(
        model=args.model,
        data=args.data,
        out=args.out,
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
        class_names=_split(args.class_names),
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        max_gate_error=args.max_gate_error,
        fallback=args.fallback,
        progress=not args.no_progress,
        command=shlex.join(["seviz", *sys.argv[1:]]),
    )
    print(
        f"store:    {summary.store}\n"
        f"model:    {summary.model} ({summary.precision})\n"
        f"blocks:   {summary.blocks}\n"
        f"samples:  {summary.samples}\n"
        f"skipped:  {summary.skipped} unreadable files\n"
        f"speed:    {summary.images_per_second:.1f} images/s"
    )
    return 0


@_command("blocks")
def _blocks(args: argparse.Namespace) -> int:
    from seviz.discover import discover_se_gates, format_gate_table
    from seviz.models import load_model

    loaded = load_model(args.model, args.weights, args.num_classes, _split(args.class_names))
    gates = discover_se_gates(loaded.model, tuple(loaded.data_config["input_size"]))
    print(format_gate_table(gates))
    return 0


@_command("info")
def _info(args: argparse.Namespace) -> int:
    from seviz.store import open_store

    with open_store(args.store) as store:
        counts = store.class_counts()
        print(f"store:     {store.path}")
        print(f"model:     {store.attrs.get('model')} (weights {store.attrs.get('weights_source')})")
        print(f"precision: {store.attrs.get('precision', 'fp32')}")
        print(f"complete:  {store.complete}")
        print(f"samples:   {len(store)}; skipped files: {len(store.skipped)}")
        print("classes:   " + ", ".join(f"{name} ({counts.get(name, 0)})" for name in store.recorded_class_names))
        print("blocks:    " + ", ".join(f"{b.name} ({b.channels})" for b in store.blocks.values()))
    return 0


def _user_error_types() -> tuple[type[BaseException], ...]:
    # Errors that carry a message for the user: printed without a traceback.
    return (ValueError, FileNotFoundError, FileExistsError, RuntimeError, OSError)


def _raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seviz`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(levelname)s: %(message)s",
    )
    # SIGTERM stops a run like Ctrl-C does: the store is closed with every committed sample.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("seviz: interrupted", file=sys.stderr)
        return 130
    except _user_error_types() as error:
        if args.verbose:
            raise
        print(f"seviz {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
