"""Preprocessing (timm data configs) of the models seviz loads, and where each value came from.

A data config holds the six keys timm's ``validate.py`` takes as flags
(:data:`DATA_CONFIG_KEYS`). Its values come from layers, the first that has a
key wins:

1. values given explicitly: the ``--input-size``/``--mean``/... flags, or the
   ``data_config`` mapping of :func:`~seviz.models.load_model`;
2. a ``--data-config`` JSON file with any of those keys;
3. the preprocessing a store was recorded with (``seviz evaluate --store``,
   a recommendation made from a store, ``seviz attribute``);
4. the model's own config: timm's ``pretrained_cfg``, torchvision's weights
   transforms, the demo's, or a user model's timm-style ``pretrained_cfg`` /
   ``default_cfg`` dict;
5. :data:`IMAGENET_DEFAULT_CFG`.

:func:`resolve_preprocessing` merges them with timm's own
``resolve_data_config`` and returns the config together with the origin of
every value (stored as ``preprocessing_source``) and, when a model with trained
weights fell back to the ImageNet default, a note in plain words naming the
flags that change it. Explicit layers are checked when the
:class:`DataConfigRequest` is built, so a bad flag or file is refused before any
model is built.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seviz.errors import DataConfigError

log = logging.getLogger(__name__)

DATA_CONFIG_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")

IMAGENET_DEFAULT_CFG: dict[str, Any] = {
    "input_size": (3, 224, 224),
    "interpolation": "bilinear",
    "crop_pct": 0.875,
    "crop_mode": "center",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}

# The command-line flag of each key, named as timm's validate.py names it.
FLAGS = {
    "input_size": "--input-size",
    "mean": "--mean",
    "std": "--std",
    "crop_pct": "--crop-pct",
    "crop_mode": "--crop-mode",
    "interpolation": "--interpolation",
}
# timm's eval interpolations (``timm.data.transforms.str_to_interp_mode``; 'random' is for training).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
# timm's eval crop modes (``transforms_imagenet_eval``).
CROP_MODES = ("center", "squash", "border")

# Origins of a value, as stored in ``preprocessing_source``.
FROM_FLAGS = "flags"
FROM_ARGUMENT = "argument"
FROM_MODEL = "model"
FROM_DEFAULT = "default"
FILE_PREFIX = "file:"
STORE_PREFIX = "store:"

HOW_TO_CHANGE = (
    "--input-size C H W --mean R G B --std R G B (also --crop-pct, --crop-mode, --interpolation), "
    "or --data-config FILE with those keys (from Python: data_config={...})"
)


# ---------------------------------------------------------------- checking values


def _where(key: str, origin: str) -> str:
    if origin == FROM_FLAGS:
        return FLAGS[key]
    return f"{key!r} ({describe_origin(origin)})"


def _numbers(value: Any, key: str, origin: str) -> tuple[float, ...]:
    items = [value] if isinstance(value, (int, float, str)) else value
    if not isinstance(items, (list, tuple)):
        raise DataConfigError(f"{_where(key, origin)} must be a list of numbers, got {value!r}")
    numbers = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise DataConfigError(f"{_where(key, origin)} takes numbers; {item!r} is not one") from None
        if not math.isfinite(number):
            raise DataConfigError(f"{_where(key, origin)} must be finite, got {item!r}")
        numbers.append(number)
    return tuple(numbers)


def _input_size(value: Any, origin: str) -> tuple[int, int, int]:
    numbers = _numbers(value, "input_size", origin)
    example = "e.g. --input-size 3 32 32" if origin == FROM_FLAGS else "e.g. [3, 32, 32]"
    if len(numbers) != 3:
        shown = " ".join(f"{n:g}" for n in numbers)
        raise DataConfigError(
            f"{_where('input_size', origin)} takes 3 numbers, channels height width ({example}); "
            f"got {len(numbers)}: {shown}"
        )
    if any(n != int(n) or n < 1 for n in numbers):
        raise DataConfigError(
            f"{_where('input_size', origin)} takes whole positive numbers ({example}); got {numbers}"
        )
    channels, height, width = (int(n) for n in numbers)
    if channels != 3:
        raise DataConfigError(
            f"{_where('input_size', origin)} has {channels} channels; seviz feeds RGB images, so C must be 3"
        )
    return channels, height, width


def _per_channel(value: Any, key: str, origin: str, channels: int) -> tuple[float, ...]:
    numbers = _numbers(value, key, origin)
    if len(numbers) == 1:  # one value for every channel, as timm's resolve_data_config allows
        numbers = numbers * channels
    if len(numbers) != channels:
        raise DataConfigError(
            f"{_where(key, origin)} takes one number per channel ({channels}: R G B) or one for all; "
            f"got {len(numbers)}"
        )
    if key == "std" and any(n <= 0 for n in numbers):
        raise DataConfigError(
            f"{_where(key, origin)} must be positive (images are divided by it); got {numbers}"
        )
    return numbers


def _choice(value: Any, key: str, origin: str, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise DataConfigError(f"{_where(key, origin)} is {value!r}; use one of {', '.join(choices)}")
    return text


def _crop_pct(value: Any, origin: str) -> float:
    numbers = _numbers(value, "crop_pct", origin)
    if len(numbers) != 1 or not 0 < numbers[0] <= 1:
        raise DataConfigError(
            f"{_where('crop_pct', origin)} is the fraction of the resized image the centre crop keeps, "
            f"in (0, 1] (0.875 for ImageNet, 1.0 for CIFAR); got {value!r}"
        )
    return numbers[0]


def check_data_config(
    values: Mapping[str, Any], origin: str = FROM_ARGUMENT, strict: bool = True
) -> dict[str, Any]:
    """Check and normalise (partial) preprocessing values; ``None`` values count as not given.

    Args:
        values: Any of :data:`DATA_CONFIG_KEYS`.
        origin: Where they came from (for the messages): ``flags``, ``file:PATH``, ...
        strict: Refuse keys that are not data-config keys (else they are ignored).

    Returns:
        The given values as tuples of ints/floats and lower-case names.

    Raises:
        DataConfigError: An unknown key (with ``strict``), or a value seviz cannot use.
    """
    if not isinstance(values, Mapping):
        raise DataConfigError(
            f"{describe_origin(origin)} must be a mapping of {', '.join(DATA_CONFIG_KEYS)}; "
            f"got a {type(values).__name__}"
        )
    unknown = sorted(str(k) for k in values if k not in DATA_CONFIG_KEYS)
    if unknown and strict:
        raise DataConfigError(
            f"{describe_origin(origin)} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"a data config takes {', '.join(DATA_CONFIG_KEYS)}"
        )
    given = {k: values[k] for k in DATA_CONFIG_KEYS if values.get(k) is not None}
    clean: dict[str, Any] = {}
    if "input_size" in given:
        clean["input_size"] = _input_size(given["input_size"], origin)
    channels = 3
    for key in ("mean", "std"):
        if key in given:
            clean[key] = _per_channel(given[key], key, origin, channels)
    if "crop_pct" in given:
        clean["crop_pct"] = _crop_pct(given["crop_pct"], origin)
    if "crop_mode" in given:
        clean["crop_mode"] = _choice(given["crop_mode"], "crop_mode", origin, CROP_MODES)
    if "interpolation" in given:
        clean["interpolation"] = _choice(given["interpolation"], "interpolation", origin, INTERPOLATIONS)
    return clean


def read_data_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``--data-config`` JSON file (an object with any of :data:`DATA_CONFIG_KEYS`).

    Raises:
        DataConfigError: Missing or unreadable file, bad JSON, not an object, unknown keys or bad values.
    """
    file = Path(path).expanduser()
    origin = f"{FILE_PREFIX}{file}"
    if not file.is_file():
        raise DataConfigError(
            f"--data-config file {str(file)!r} does not exist; pass a JSON file such as "
            '{"input_size": [3, 32, 32], "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}'
        )
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataConfigError(
            f"--data-config file {str(file)!r} is not valid JSON ({error}); it must be one object with any of "
            f"{', '.join(DATA_CONFIG_KEYS)}"
        ) from None
    if not isinstance(data, dict):
        raise DataConfigError(
            f"--data-config file {str(file)!r} holds a {type(data).__name__}, not a JSON object with any of "
            f"{', '.join(DATA_CONFIG_KEYS)}"
        )
    return check_data_config(data, origin, strict=True)


# ---------------------------------------------------------------- what the user asked for


@dataclass(frozen=True)
class DataConfigRequest:
    """Preprocessing asked for on top of the model's own, as checked layers (the first wins).

    Build one with :meth:`build`; :func:`as_request` turns what ``load_model``'s
    ``data_config`` accepts into one.

    Attributes:
        layers: ``(origin, values)`` pairs, highest precedence first; values are checked.
    """

    layers: tuple[tuple[str, dict[str, Any]], ...] = ()

    @classmethod
    def build(
        cls,
        values: Mapping[str, Any] | None = None,
        file: str | os.PathLike | None = None,
        *,
        values_origin: str = FROM_ARGUMENT,
    ) -> DataConfigRequest:
        """Explicit ``values`` (flags, or a mapping) over a ``--data-config`` ``file``.

        Raises:
            DataConfigError: Any bad value, key or file (nothing is loaded yet).
        """
        layers: list[tuple[str, dict[str, Any]]] = []
        checked = check_data_config(values or {}, values_origin)
        if checked:
            layers.append((values_origin, checked))
        if file is not None and str(file) != "":
            layers.append((f"{FILE_PREFIX}{Path(file).expanduser()}", read_data_config(file)))
        return cls(tuple(layers))

    def over(self, origin: str, values: Mapping[str, Any] | None) -> DataConfigRequest:
        """This request with ``values`` (a store's recorded preprocessing) as its lowest layer.

        Args:
            origin: ``store:PATH`` for a store's preprocessing.
            values: Recorded values; keys other than :data:`DATA_CONFIG_KEYS` are ignored.
        """
        checked = check_data_config(values or {}, origin, strict=False)
        return DataConfigRequest((*self.layers, (origin, checked))) if checked else self

    @property
    def values(self) -> dict[str, Any]:
        """The merged explicit values, as timm's ``resolve_data_config`` takes its ``args``."""
        merged: dict[str, Any] = {}
        for _origin, values in reversed(self.layers):
            merged.update(values)
        return merged


DataConfigLike = DataConfigRequest | Mapping[str, Any] | str | os.PathLike | None


def as_request(data_config: DataConfigLike) -> DataConfigRequest:
    """``load_model``'s ``data_config`` as a checked :class:`DataConfigRequest`.

    ``None``: nothing asked; a mapping: explicit values (any of
    :data:`DATA_CONFIG_KEYS`); a path: a ``--data-config`` JSON file.

    Raises:
        DataConfigError: A bad value, key or file.
    """
    if data_config is None:
        return DataConfigRequest()
    if isinstance(data_config, DataConfigRequest):
        return data_config
    if isinstance(data_config, Mapping):
        return DataConfigRequest.build(values=data_config)
    if isinstance(data_config, (str, os.PathLike)):
        return DataConfigRequest.build(file=data_config)
    raise DataConfigError(
        f"data_config must be a mapping of {', '.join(DATA_CONFIG_KEYS)}, a JSON file path or a "
        f"DataConfigRequest; got a {type(data_config).__name__}"
    )


# ---------------------------------------------------------------- resolving


@dataclass(frozen=True)
class Preprocessing:
    """A resolved data config and where each of its values came from.

    Attributes:
        config: All of :data:`DATA_CONFIG_KEYS` (tuples, floats, names).
        sources: Key -> origin: ``flags``, ``argument``, ``file:PATH``,
            ``store:PATH``, ``model`` or ``default``.
        notes: Plain-words warnings (the ImageNet fallback), each naming the flags that change it.
    """

    config: dict[str, Any]
    sources: dict[str, str]
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: the values, then which layer gave which keys."""
        return describe_preprocessing(self.config, self.sources)


def model_data_config(model: Any) -> dict[str, Any]:
    """The data-config keys a model carries as a timm-style ``pretrained_cfg`` (or ``default_cfg``).

    Accepts a dict or an object with ``to_dict()`` (timm's ``PretrainedCfg``);
    keys other than :data:`DATA_CONFIG_KEYS` and ``None`` values are dropped.
    """
    for attribute in ("pretrained_cfg", "default_cfg"):
        config = getattr(model, attribute, None)
        if config is not None and not isinstance(config, Mapping) and hasattr(config, "to_dict"):
            config = config.to_dict()
        if isinstance(config, Mapping) and any(config.get(k) is not None for k in DATA_CONFIG_KEYS):
            return {k: config[k] for k in DATA_CONFIG_KEYS if config.get(k) is not None}
    return {}


def resolve_preprocessing(
    model_config: Mapping[str, Any] | None = None,
    data_config: DataConfigLike = None,
    *,
    model: str = "the model",
    explain_defaults: bool = True,
) -> Preprocessing:
    """Resolve a model's preprocessing: explicit values > file > store > the model's own > ImageNet default.

    The merge is timm's ``resolve_data_config`` (explicit layers as its ``args``,
    the model's own config over :data:`IMAGENET_DEFAULT_CFG` as its
    ``pretrained_cfg``); the origin of each key is the first layer holding it.

    Args:
        model_config: The model's own data config (partial or empty).
        data_config: What the user asked for (see :func:`as_request`).
        model: The model's name, for the notes.
        explain_defaults: Add a note when ``input_size``, ``mean`` or ``std``
            fell back to the ImageNet default (seviz passes False for random weights,
            which were trained on nothing).

    Raises:
        DataConfigError: A bad explicit value, or a bad value in the model's own config.
    """
    from timm.data import resolve_data_config

    request = as_request(data_config)
    given = model_config or {}
    own = {k: given[k] for k in DATA_CONFIG_KEYS if given.get(k) is not None}
    layers = [*request.layers, (FROM_MODEL, own), (FROM_DEFAULT, IMAGENET_DEFAULT_CFG)]
    sources = {key: next(origin for origin, values in layers if key in values) for key in DATA_CONFIG_KEYS}
    merged = resolve_data_config(args=request.values, pretrained_cfg={**IMAGENET_DEFAULT_CFG, **own})
    config: dict[str, Any] = {}
    for key in DATA_CONFIG_KEYS:  # each value checked against the layer it came from
        config.update(check_data_config({key: merged[key]}, sources[key], strict=False))
    defaulted = [k for k in DATA_CONFIG_KEYS if sources[k] == FROM_DEFAULT]
    notes: tuple[str, ...] = ()
    if explain_defaults and {"input_size", "mean", "std"} & set(defaulted):
        notes = (default_note(model, {k: config[k] for k in defaulted}, has_own=bool(own)),)
    return Preprocessing(config, sources, notes)


def default_note(model: str, defaulted: Mapping[str, Any], has_own: bool = False) -> str:
    """The plain-words warning that ``model`` is fed ImageNet's preprocessing for ``defaulted`` keys."""
    why = (
        "its own config (pretrained_cfg) does not give"
        if has_own
        else "it carries no preprocessing of its own (no timm-style pretrained_cfg or default_cfg) and none "
        "was given for"
    )
    values = ", ".join(f"{k} {_show(v)}" for k, v in defaulted.items())
    return (
        f"{model} is fed ImageNet's default preprocessing ({values}): {why} {', '.join(defaulted)}. "
        f"If it was trained on other inputs, say how: {HOW_TO_CHANGE}"
    )


# ---------------------------------------------------------------- describing


def describe_preprocessing(config: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """``input 3x32x32, mean (...), ...; input_size, mean, std from flags; ...``."""
    return f"{describe_config(config)}; {describe_sources(sources)}" if sources else describe_config(config)


def describe_origin(origin: str) -> str:
    """An origin token in words (``file:cfg.json`` -> ``--data-config file cfg.json``)."""
    if origin.startswith(FILE_PREFIX):
        return f"--data-config file {origin[len(FILE_PREFIX) :]}"
    if origin.startswith(STORE_PREFIX):
        return f"the preprocessing recorded in store {origin[len(STORE_PREFIX) :]}"
    return {
        FROM_FLAGS: "flags",
        FROM_ARGUMENT: "the data_config argument",
        FROM_MODEL: "the model's own config",
        FROM_DEFAULT: "the ImageNet default",
    }.get(origin, origin)


def describe_sources(sources: Mapping[str, str]) -> str:
    """``input_size, mean, std from flags; ... from the model's own config``."""
    by_origin: dict[str, list[str]] = {}
    for key, origin in sources.items():
        by_origin.setdefault(origin, []).append(key)
    return "; ".join(f"{', '.join(keys)} from {describe_origin(o)}" for o, keys in by_origin.items())


def describe_config(config: Mapping[str, Any]) -> str:
    """``input 3x32x32, mean (0.5, 0.5, 0.5), std (...), crop_pct 1, center crop, bilinear``."""
    size = "x".join(str(v) for v in config.get("input_size", ()))
    return (
        f"input {size}, mean {_show(config.get('mean'))}, std {_show(config.get('std'))}, "
        f"crop_pct {config.get('crop_pct', 0):g}, {config.get('crop_mode')} crop, {config.get('interpolation')}"
    )


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_json(config: Mapping[str, Any]) -> dict[str, Any]:
    """A data config as JSON gives it back (lists, not tuples), for comparing with a stored one."""
    return json.loads(json.dumps(dict(config)))
