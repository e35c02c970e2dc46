"""What a recording is asked to do: :class:`RecordConfig`, checked once, before anything runs.

Every value is checked when the config is made (``RecordConfig(...)`` raises
:class:`~seviz.errors.RecordError` naming the parameter), and
:meth:`RecordConfig.check_paths` checks the files it names, so a bad option
never costs a model load and never touches an existing store. The CLI maps
the parameter names to its flags (``seviz/cli/record.py``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from seviz._files import check_output
from seviz.data.images import IMAGE_SUFFIXES
from seviz.errors import OutputError, RecordError
from seviz.models.preprocessing import DataConfigLike, as_request
from seviz.recording.fast_modes import PRECISIONS

DTYPES = ("float16", "float32")
DECODERS = ("cpu", "gpu")
WRITERS = ("auto", "thread", "inline")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class RecordConfig:
    """Everything :func:`~seviz.recording.record` needs; see its docstring for each field.

    Values are checked (and normalised: paths as :class:`~pathlib.Path`, a
    comma-separated ``classes`` as a tuple) when the config is made.

    Raises:
        RecordError: A value seviz cannot use; ``error.param`` names the field.
    """

    model: str
    data: Path
    out: Path
    classes: tuple[str, ...] | None = None
    weights: str = "pretrained"
    images_per_class: int | None = None
    batch_size: int = 32
    workers: int | None = None
    device: str = "auto"
    dtype: str = "float16"
    overwrite: bool = False
    resume: bool = False
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    max_gate_error: float = 0.02
    fallback: bool = False
    progress: bool = True
    command: str = ""
    decode: str = "cpu"
    writer: str = "auto"
    data_config: DataConfigLike = None  # preprocessing over the model's own (see seviz.models.load_model)

    def __post_init__(self) -> None:
        for name, value in _normalised(self).items():
            object.__setattr__(self, name, value)
        _check_choices(self)
        _check_numbers(self)
        if self.overwrite and self.resume:
            raise RecordError(
                "`overwrite=True` (record again) and `resume=True` (finish the store) exclude each other; pass one",
                param="resume",
            )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def inputs(self) -> list[Path]:
        """Files this recording reads besides the images: a weights file, a model file."""
        found = []
        if self.weights not in ("pretrained", "random") and Path(self.weights).expanduser().is_file():
            found.append(Path(self.weights).expanduser())
        target, sep, _ = self.model.rpartition(":")
        if sep and target.endswith(".py"):
            found.append(Path(target).expanduser())
        return found

    def check_paths(self) -> None:
        """Check the folder and files the config names (before any model is loaded or file written).

        Raises:
            FileNotFoundError: ``data`` is not a folder, or ``resume`` names no store.
            OutputError: ``out`` exists (without ``overwrite`` or ``resume``), is an
                input, or lies inside ``data``.
        """
        if not self.data.is_dir():
            raise FileNotFoundError(
                f"data folder {str(self.data)!r} does not exist; pass `data` as a folder of images"
            )
        check_output(self.out, inputs=self.inputs(), folders=[self.data], overwrite=True, param="out")
        if self.resume:
            if not self.out.exists():
                raise FileNotFoundError(
                    f"cannot resume: store {str(self.out)!r} does not exist; drop `resume`"
                )
        elif self.out.exists() and not self.overwrite:
            raise OutputError(
                f"store {str(self.out)!r} already exists; pass `overwrite=True` to replace it or `resume=True` "
                "to finish it",
                param="out",
            )


def _normalised(config: RecordConfig) -> dict[str, Any]:
    if not isinstance(config.model, str) or not config.model.strip():
        raise RecordError("`model` is empty; name a model such as se_resnet50", param="model")
    for name in ("data", "out"):
        if getattr(config, name) in (None, ""):
            raise RecordError(f"`{name}` is required", param=name)
    out = Path(config.out).expanduser()
    if out.suffix.lower() in IMAGE_SUFFIXES:
        raise RecordError(
            f"`out` {str(out)!r} has an image suffix; a store is an HDF5 file: name it *.h5", param="out"
        )
    return {
        "model": config.model.strip(),
        "data": Path(config.data).expanduser(),
        "out": out,
        "classes": _names(config.classes, "classes"),
        "class_names": _names(config.class_names, "class_names"),
        "dtype": _dtype_name(config.dtype),
        "data_config": as_request(
            config.data_config
        ),  # checked: a bad value is refused before any model work
    }


def _dtype_name(dtype: Any) -> str:
    try:
        return np.dtype(dtype).name
    except TypeError:
        raise RecordError(
            f"unknown `dtype` {dtype!r}; use one of {', '.join(DTYPES)}", param="dtype"
        ) from None


def _names(value: str | Sequence[str] | None, param: str) -> tuple[str, ...] | None:
    """A comma-separated string or a sequence of names as a tuple; an empty list is an error."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(p).strip() for p in parts)
    if not names or not all(names):
        raise RecordError(
            f"`{param}` {value!r} names no {'class' if param == 'classes' else 'output'} (or an empty one); "
            f"list names separated by commas, or leave `{param}` out"
            + (" to record every class" if param == "classes" else ""),
            param=param,
        )
    return names


def _check_choices(config: RecordConfig) -> None:
    choices = {
        "dtype": DTYPES,
        "precision": PRECISIONS,
        "decode": DECODERS,
        "writer": WRITERS,
    }
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise RecordError(
                f"unknown `{name}` {getattr(config, name)!r}; use one of {', '.join(allowed)}", param=name
            )
    if not isinstance(config.device, str) or not _DEVICE.fullmatch(config.device):
        raise RecordError(
            f"unknown `device` {config.device!r}; use auto, cpu, cuda or cuda:N", param="device"
        )
    if not isinstance(config.weights, str) or not config.weights.strip():
        raise RecordError("`weights` is empty; use pretrained, random or a weights file", param="weights")


def _check_numbers(config: RecordConfig) -> None:
    for name, least in (("batch_size", 1), ("images_per_class", 1), ("workers", 0), ("num_classes", 1)):
        value = getattr(config, name)
        if value is None and name != "batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise RecordError(
                f"`{name}` must be a whole number of {least} or more, got {value!r}", param=name
            )
    gate_error = config.max_gate_error
    if (
        isinstance(gate_error, bool)
        or not isinstance(gate_error, numbers.Real)
        or not math.isfinite(gate_error)
    ):
        raise RecordError(
            f"`max_gate_error` must be a finite number, got {gate_error!r}", param="max_gate_error"
        )
    if gate_error < 0:
        raise RecordError(f"`max_gate_error` must be 0 or more, got {gate_error!r}", param="max_gate_error")
