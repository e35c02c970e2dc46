"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

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
    """A comma-separated flag as a list (``None`` when the flag was not given)."""
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def model_file(spec: str) -> str | None:
    """The Python file of a ``path/to/file.py:factory`` model spec (an input a command must not replace)."""
    target, sep, _ = spec.rpartition(":")
    return target if sep and target.endswith(".py") else None


def load_model_from_args(args: argparse.Namespace, weights: str | None = None) -> LoadedModel:
    """The model named by --model, with ``weights`` (default --weights) and the class options."""
    from seviz.models import load_model

    return load_model(args.model, weights or args.weights, args.num_classes, split_list(args.class_names))


def flag_table(parser: argparse.ArgumentParser, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Library parameter -> flag for one subcommand: each option's ``dest``, then ``overrides``.

    ``overrides`` (a command module's ``FLAGS``) names library parameters that no
    option is called after (``path`` of ``write_json`` is ``--json``).
    """
    table = {
        action.dest: max(action.option_strings, key=len)
        for action in parser._actions
        if action.option_strings and action.dest != "help"
    }
    return {**table, **(overrides or {})}


_PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)(=[^`]*)?`")


def as_flags(message: str, flags: Mapping[str, str]) -> str:
    """A library message with each backticked parameter written as the flag that sets it.

    ```batch_size``` becomes ``--batch-size``, ```overwrite=True``` ``--overwrite``,
    ```images_per_class=5``` ``--images-per-class 5``; a parameter without a flag
    keeps its backticks.
    """

    def flag(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        option = flags.get(name)
        if option is None:
            return match.group(0)
        if value is None or value == "=True":
            return option
        return f"{option} {value[1:]}"

    return _PARAMETER.sub(flag, message)
