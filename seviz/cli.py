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
    p.add_argument(
        "--data", required=True, help="image folder: class folders (WordNet ids or names) or ImageNet val"
    )
    p.add_argument(
        "--classes", default=None, help="comma-separated classes (names, WordNet ids, indices); default all"
    )
    p.add_argument("--out", default="seviz-store.h5", help="store to write (default: seviz-store.h5)")
    p.add_argument(
        "--images-per-class", type=int, default=None, help="first N images of each class (paper: 50)"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image-decoding worker processes (default: 0 on CPU, where the model uses every core; 4 on CUDA)",
    )
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
    p.add_argument(
        "--decode", default="cpu", choices=["cpu", "gpu"], help="gpu: decode JPEGs on the CUDA device"
    )
    p.add_argument(
        "--writer",
        default="auto",
        choices=["auto", "thread", "inline"],
        help="store writes from a background thread or between batches (auto: thread on CUDA, inline on CPU)",
    )

    p = commands.add_parser("blocks", help="list the SE blocks seviz finds in a model")
    _add_model_arguments(p, weights_default="random")

    p = commands.add_parser("info", help="summarise a store")
    p.add_argument("store")

    p = commands.add_parser(
        "analyze", help="per-class statistics, class specificity and gate behaviour per block"
    )
    p.add_argument("store")
    p.add_argument("--blocks", default=None, help="comma-separated blocks (default: all)")
    p.add_argument(
        "--classes", default=None, help="classes to report per-class statistics for (default: all)"
    )
    p.add_argument("--json", dest="json_out", default=None, help="write all statistics as JSON")

    p = commands.add_parser("recommend", help="verdicts per SE block: identity, constant or keep")
    p.add_argument("store")
    p.add_argument("--out", default="rec.json", help="JSON to write; the Markdown table goes beside it (.md)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--identity-max-deviation", type=float, default=None, help="mean |1-s| at most (0.02)")
    p.add_argument("--identity-min-near-one", type=float, default=None, help="share of gates near one (0.95)")
    p.add_argument(
        "--constant-max-dependence", type=float, default=None, help="input dependence at most (1e-3)"
    )
    p.add_argument(
        "--near-one", type=float, default=None, help='a gate at or above this is "near one" (0.95)'
    )

    p = commands.add_parser("plot", help="the paper's Figures 6 and 7 and depth plots (PNG and SVG)")
    p.add_argument("store")
    p.add_argument("--out", default="figures", help="folder to write into")
    p.add_argument(
        "--blocks", default=None, help="default: SE_2_3,SE_3_4,SE_4_6,SE_5_1,SE_5_2,SE_5_3 when present"
    )
    p.add_argument("--classes", default=None, help="default: up to 10 recorded classes")
    p.add_argument(
        "--channels", type=int, default=None, help="plot a subset of N channels (the paper used 50)"
    )
    p.add_argument(
        "--random-channels", action="store_true", help="pick the subset at random (seeded), not first N"
    )
    p.add_argument("--sort", action="store_true", help="sort channels by their all-class mean")
    p.add_argument("--formats", default="png,svg")

    p = commands.add_parser("app", help="explore stores in the Streamlit app")
    p.add_argument("stores", nargs="*", help="stores to open (default: browse --root)")
    p.add_argument("--root", default=".", help="folder the app may browse (default: current folder)")
    p.add_argument("--port", type=int, default=8501)

    p = commands.add_parser("demo", help="the whole job offline, on the shipped demo model and images")
    p.add_argument("--out", default="seviz-demo", help="folder for the store, reports and figures")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.add_argument("--data", default=None, help="image folder (default: the shipped CIFAR-10 sample)")
    p.add_argument("--images-per-class", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")

    p = commands.add_parser("prune", help="remove or fold SE branches and save the edited model")
    _add_model_arguments(p)
    chosen = p.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--recommendation", help="rec.json from `seviz recommend` (identity removed, constant folded)"
    )
    chosen.add_argument(
        "--blocks", help="comma-separated block globs to remove, e.g. 'SE_5_*' (the paper's stage 5)"
    )
    p.add_argument("--out", required=True, help="pruned model to write (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")

    p = commands.add_parser(
        "evaluate", help="measure what an edit costs: accuracy, agreement, KL, params, FLOPs"
    )
    _add_model_arguments(p)
    edited = p.add_mutually_exclusive_group()
    edited.add_argument("--pruned", help="a pruned model from `seviz prune`")
    edited.add_argument("--blocks", help="block globs to remove in memory, e.g. 'SE_5_*'")
    edited.add_argument("--recommendation", help="apply a rec.json in memory")
    p.add_argument("--data", required=True, help="labelled image folder (class folders or ImageNet val)")
    p.add_argument("--classes", default=None, help="restrict to these classes (default: all found)")
    p.add_argument("--images-per-class", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image-decoding worker processes (default: 0 on CPU, 4 on CUDA, as seviz record)",
    )
    p.add_argument(
        "--per-block", action="store_true", help="also: accuracy change when removing each block alone"
    )
    p.add_argument("--json", dest="json_out", default=None, help="write the figures as JSON")
    p.add_argument("--no-progress", action="store_true")

    p = commands.add_parser("attribute", help="captum: which gate channels drive each class, into the store")
    p.add_argument("store")
    p.add_argument("--model", default=None, help="default: the model the store was recorded with")
    p.add_argument("--weights", default=None, help="default: the weights the store was recorded with")
    p.add_argument(
        "--images-per-class", type=int, default=None, help="use at most N recorded images per class"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
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
        command=shlex.join(["seviz", *args.argv]),
        decode=args.decode,
        writer=args.writer,
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

    loaded = _load_model(args)
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
        print(
            "classes:   "
            + ", ".join(f"{name} ({counts.get(name, 0)})" for name in store.recorded_class_names)
        )
        print("blocks:    " + ", ".join(f"{b.name} ({b.channels})" for b in store.blocks.values()))
    return 0


@_command("analyze")
def _analyze(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from seviz.stats import compute_statistics

    stats = compute_statistics(args.store, blocks=_split(args.blocks), classes=_split(args.classes))
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


@_command("recommend")
def _recommend(args: argparse.Namespace) -> int:
    from seviz.recommend import Thresholds, recommend

    overrides = {
        key: getattr(args, key)
        for key in ("identity_max_deviation", "identity_min_near_one", "constant_max_dependence", "near_one")
        if getattr(args, key) is not None
    }
    recommendation = recommend(args.store, Thresholds(**overrides))
    json_path, md_path = recommendation.write(args.out, overwrite=args.overwrite)
    print(recommendation.to_markdown())
    print(f"wrote {json_path} and {md_path}")
    return 0


@_command("plot")
def _plot(args: argparse.Namespace) -> int:
    from seviz.plots import save_figures
    from seviz.stats import compute_statistics

    blocks, classes = _split(args.blocks), _split(args.classes)
    stats = compute_statistics(args.store, blocks=blocks, classes=classes)
    paths = save_figures(
        stats,
        args.out,
        formats=_split(args.formats) or ["png"],
        blocks=blocks,
        classes=classes,
        channels=args.channels,
        how="random" if args.random_channels else "first",
        sort=args.sort,
    )
    print(f"wrote {len(paths)} figures to {args.out}")
    return 0


@_command("app")
def _app(args: argparse.Namespace) -> int:
    from seviz.app_launcher import launch_app

    return launch_app(list(args.stores), root=args.root, port=args.port)


@_command("demo")
def _demo(args: argparse.Namespace) -> int:
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


@_command("prune")
def _prune(args: argparse.Namespace) -> int:
    from seviz.pruning import prune_blocks, prune_from_recommendation

    loaded = _load_model(args)
    if args.recommendation:
        pruned = prune_from_recommendation(loaded, args.recommendation, inplace=True)
    else:
        pruned = prune_blocks(loaded, args.blocks, inplace=True)
    path = pruned.save(args.out, overwrite=args.overwrite)
    for edit in pruned.edits:
        where = f" (folded into {edit.folded_into})" if edit.folded_into else ""
        print(f"{edit.name}: {edit.action} -> {edit.replacement}{where}")
    print(f"removed {pruned.params_removed:,} parameters; wrote {path}")
    print(f"load it with: --model {args.model} --weights {path}")
    return 0


@_command("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from seviz.data import find_images
    from seviz.evaluate import evaluate
    from seviz.pruning import prune_blocks, prune_from_recommendation

    loaded = _load_model(args)
    items = find_images(args.data, loaded, args.classes, args.images_per_class)
    if args.pruned:
        edited = _load_model(args, args.pruned).model
    elif args.recommendation:
        edited = prune_from_recommendation(loaded, args.recommendation)
    elif args.blocks:
        edited = prune_blocks(loaded, args.blocks)
    elif args.per_block:
        edited = _load_model(args).model
    else:
        raise ValueError(
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
        Path(args.json_out).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


@_command("attribute")
def _attribute(args: argparse.Namespace) -> int:
    from seviz.attribute import attribute

    summary = attribute(
        args.store,
        model=args.model,
        weights=args.weights,
        images_per_class=args.images_per_class,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
    )
    print(
        f"attributed {summary.images} images of {len(summary.classes)} classes over {summary.blocks} blocks "
        f"into {summary.store}\nmethod: {summary.method}"
    )
    return 0


def _load_model(args: argparse.Namespace, weights: str | None = None):
    """The model named by --model, with ``weights`` (default --weights) and the class options."""
    from seviz.models import load_model

    return load_model(args.model, weights or args.weights, args.num_classes, _split(args.class_names))


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that carry a message for the user: printed without a traceback.

    seviz's own errors are ``ValueError`` subclasses; ``OSError`` covers files
    (missing, existing, unreadable, disk full); a fast mode over its gate-error
    bound and running out of accelerator memory are the two ``RuntimeError``
    kinds a user can act on. Any other exception is a bug and shows its traceback.
    """
    import torch

    from seviz.precision import GateErrorTooLarge

    return (ValueError, OSError, GateErrorTooLarge, torch.OutOfMemoryError)


def _raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seviz`` command."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command as typed, stored in what it writes
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
