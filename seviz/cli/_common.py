"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from seviz.errors import UsageError

if TYPE_CHECKING:
    from seviz.models import LoadedModel


def add_model_arguments(parser: argparse.ArgumentParser, weights_default: str = "pretrained") -> None:
    """``--model``, ``--weights``, ``--num-classes`` and ``--class-names``."""
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


def split_list(text: str | None) -> list[str] | None:
    """A comma-separated flag as a list (``None`` when the flag was not given).

    Raises:
        UsageError: The flag was given but names nothing (``""``, ``","``): that
            is not the same as leaving it out.
    """
    if text is None:
        return None
    items = [p.strip() for p in text.split(",") if p.strip()]
    if not items:
        raise UsageError(f"a comma-separated list {text!r} names nothing; list names, or drop the flag")
    return items


def load_model_from_args(args: argparse.Namespace, weights: str | None = None) -> LoadedModel:
    """The model named by --model, with ``weights`` (default --weights) and the class options."""
    from seviz.models import load_model

    return load_model(args.model, weights or args.weights, args.num_classes, split_list(args.class_names))
