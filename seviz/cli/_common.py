"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from seviz.errors import UsageError

if TYPE_CHECKING:
    from seviz.models import DataConfigRequest, LoadedModel


def add_model_arguments(
    parser: argparse.ArgumentParser, weights_default: str = "pretrained", store_default: bool = False
) -> None:
    """``--model``, ``--weights``, ``--num-classes``, ``--class-names`` and the preprocessing flags.

    ``store_default``: the command takes a store's preprocessing by default (its help says so).
    """
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
    add_preprocessing_arguments(parser, store_default)


def add_preprocessing_arguments(parser: argparse.ArgumentParser, store_default: bool = False) -> None:
    """timm ``validate.py``'s preprocessing flags and ``--data-config FILE``.

    Values are parsed as text and checked by :mod:`seviz.models.preprocessing`, so a
    bad one is a seviz error naming the flag and the fix.
    """
    default = (
        "the store's (STORE or --store, or the one a --recommendation was made from), else "
        if store_default
        else ""
    )
    group = parser.add_argument_group(
        "preprocessing",
        f"default: {default}the model's own config (timm pretrained_cfg; a user model's pretrained_cfg or "
        "default_cfg dict), else ImageNet's. Flags win over --data-config, which wins over the rest",
    )
    group.add_argument("--input-size", nargs="+", metavar="N", help="model input C H W, e.g. 3 32 32")
    group.add_argument("--mean", nargs="+", metavar="X", help="per-channel mean R G B, e.g. 0.49 0.48 0.45")
    group.add_argument("--std", nargs="+", metavar="X", help="per-channel std R G B (positive)")
    group.add_argument("--crop-pct", metavar="F", help="centre-crop fraction in (0, 1] (1.0 for CIFAR)")
    group.add_argument("--crop-mode", metavar="MODE", help="center, squash or border")
    group.add_argument(
        "--interpolation", metavar="NAME", help="bilinear, bicubic, nearest, lanczos, box or hamming"
    )
    group.add_argument(
        "--data-config",
        metavar="FILE",
        help="JSON object with any of input_size, mean, std, crop_pct, crop_mode, interpolation",
    )


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


def data_config_from_args(
    args: argparse.Namespace, recorded: tuple[str, dict[str, Any]] | None = None
) -> DataConfigRequest:
    """The preprocessing flags and ``--data-config`` file (checked), over ``recorded`` (origin, config)."""
    from seviz.models import DATA_CONFIG_KEYS, DataConfigRequest
    from seviz.models.preprocessing import FROM_FLAGS

    request = DataConfigRequest.build(
        values={key: getattr(args, key, None) for key in DATA_CONFIG_KEYS},
        file=getattr(args, "data_config", None),
        values_origin=FROM_FLAGS,
    )
    return request.over(*recorded) if recorded else request


def load_model_from_args(
    args: argparse.Namespace, weights: str | None = None, data_config: DataConfigRequest | None = None
) -> LoadedModel:
    """The model named by --model, with ``weights`` (default --weights), the class options and preprocessing.

    ``data_config`` defaults to the preprocessing flags (:func:`data_config_from_args`).
    """
    from seviz.models import load_model

    return load_model(
        args.model,
        weights or args.weights,
        args.num_classes,
        split_list(args.class_names),
        data_config=data_config if data_config is not None else data_config_from_args(args),
    )


def model_file(spec: str) -> str | None:
    """The Python file of a ``path/to/file.py:factory`` model spec (an input a command must not replace)."""
    target, sep, _ = spec.rpartition(":")
    return target if sep and target.endswith(".py") else None


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
