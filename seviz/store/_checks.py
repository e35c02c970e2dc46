"""What :func:`~seviz.store.open_store` checks before a store is read: the layout of :mod:`seviz.store.schema`.

One pass over the file's structure (no gate is read): every group and dataset
the schema names is there and is a dataset of the right kind, shape and
length, every attribute has its type, and ``/progress`` is consistent. A file
that fails gets one :class:`~seviz.errors.StoreError` naming the dataset or
attribute, never a traceback from deep inside h5py or the analysis, and never
an analysis of a silent subset of the samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from seviz.errors import StoreError
from seviz.store._h5 import _refresh
from seviz.store.schema import (
    BLOCK_ATTRS,
    BLOCK_DTYPES,
    COMPLETE_ATTR,
    DTYPE_ATTR,
    SAMPLE_COLUMNS,
    SCHEMA_ATTR,
    SCHEMA_VERSION,
    SKIPPED_COLUMNS,
    BlockInfo,
    Provenance,
    _flag_value,
    _integer_value,
    _text_value,
)

_FIX = "record it again with `seviz record`, or restore it from a copy"


@dataclass(frozen=True)
class CheckedLayout:
    """What the structural check of a store found (nothing here has been read from a gate)."""

    attrs: dict[str, Any]
    provenance: Provenance
    blocks: dict[str, BlockInfo]
    samples: int  # committed samples (/progress[0])
    consumed: int  # committed image-list entries (/progress[1])
    skips: int  # committed rows of /skipped
    complete: bool
    dtype: str


def root_attrs(f: h5py.File) -> dict[str, Any]:
    """The root attributes, text decoded."""
    return {
        k: (v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v) for k, v in f.attrs.items()
    }


def check_layout(f: h5py.File, path: Path) -> CheckedLayout:
    """Check an open store's structure and attributes against the schema.

    Raises:
        StoreError: The first thing that does not fit, named (dataset or
            attribute), with what was expected.
    """
    where = f"store {str(path)!r}"
    attrs = root_attrs(f)
    if SCHEMA_ATTR not in attrs or "blocks" not in f or "progress" not in f:
        raise StoreError(
            f"{str(path)!r} is not a seviz store (no {SCHEMA_ATTR} attribute or /blocks group); "
            "make one with `seviz record`"
        )
    schema = _integer_value(attrs[SCHEMA_ATTR], f"{where}: root attribute {SCHEMA_ATTR!r}", minimum=1)
    if schema > SCHEMA_VERSION:
        raise StoreError(
            f"{str(path)!r} uses store schema {schema}, newer than this seviz reads "
            f"({SCHEMA_VERSION}); upgrade seviz"
        )
    complete = _flag_value(attrs.get(COMPLETE_ATTR, False), f"{where}: root attribute {COMPLETE_ATTR!r}")
    dtype = _text_value(attrs.get(DTYPE_ATTR, "float16"), f"{where}: root attribute {DTYPE_ATTR!r}")
    if dtype not in BLOCK_DTYPES:
        raise StoreError(
            f"{where}: root attribute {DTYPE_ATTR!r} is {dtype!r}; expected one of {BLOCK_DTYPES}"
        )
    provenance = Provenance.from_attrs(attrs, where)
    samples, consumed = _progress(f, where)
    skips = consumed - samples

    group = _group(f, "samples", where)
    for name, (kind, tail) in SAMPLE_COLUMNS.items():
        _column(group, name, kind, tail, samples, complete, where)
    blocks_group = _group(f, "blocks", where)
    blocks = {}
    for name in blocks_group:
        blocks[name] = _block(blocks_group, name, samples, complete, where)
    if not blocks:
        raise StoreError(f"{where} has no datasets in /blocks: it holds no SE gates; {_FIX}")
    blocks = dict(sorted(blocks.items(), key=lambda item: (item[1].stage, item[1].block, item[0])))
    # Every image-list entry consumed is a sample or a skipped file, so /skipped holds the rest.
    skipped = _group(f, "skipped", where)
    for name in SKIPPED_COLUMNS:
        _column(skipped, name, "text", (), skips, complete, where, counted="unreadable files")
    return CheckedLayout(
        attrs=attrs,
        provenance=provenance,
        blocks=blocks,
        samples=samples,
        consumed=consumed,
        skips=skips,
        complete=complete,
        dtype=dtype,
    )


def check_samples(columns: Mapping[str, np.ndarray], provenance: Provenance, where: str) -> None:
    """Values of the committed sample columns that a reader relies on.

    Labels are class indices (>= 0); where the store lists its classes, each
    sample's class name is one of them and its label is that class's index,
    so the per-class statistics (by name) and the attributions (by label)
    describe the same images.
    """
    labels, names = columns["label"], columns["class_name"]
    if labels.size and int(labels.min()) < 0:
        first = int(np.flatnonzero(labels < 0)[0])
        raise StoreError(f"{where}: /samples/label[{first}] is {int(labels[first])}; class indices are >= 0")
    prob = columns["topk_prob"]
    if prob.size and not np.isfinite(prob).all():
        raise StoreError(f"{where}: /samples/topk_prob holds NaN or infinite values; {_FIX}")
    if not provenance.classes or not labels.size:
        return
    index = {c.name: c.index for c in provenance.classes}
    present, inverse = np.unique(names, return_inverse=True)
    unknown = [name for name in present.tolist() if name not in index]
    if unknown:
        first = int(np.flatnonzero(names == unknown[0])[0])
        raise StoreError(
            f"{where}: /samples/class_name[{first}] is {unknown[0]!r}, not one of the recorded classes "
            f"({', '.join(index)}; root attribute 'classes'); {_FIX}"
        )
    expected = np.asarray([index[name] for name in present.tolist()], dtype=np.int64)[inverse.ravel()]
    wrong = np.flatnonzero(expected != labels)
    if wrong.size:
        first = int(wrong[0])
        raise StoreError(
            f"{where}: /samples/label[{first}] is {int(labels[first])}, but its class "
            f"{str(names[first])!r} has index {int(expected[first])} (root attribute 'classes'); {_FIX}"
        )


def _progress(f: h5py.File, where: str) -> tuple[int, int]:
    data = f["progress"]
    if not isinstance(data, h5py.Dataset):
        raise StoreError(f"{where}: /progress is a group, not a dataset of 2 integers; {_FIX}")
    if f.swmr_mode:
        _refresh(data)
    if data.shape != (2,) or data.dtype.kind not in "iu":
        raise StoreError(
            f"{where}: /progress is {data.dtype} of shape {data.shape}; expected 2 integers "
            f"(samples committed, image-list entries consumed); {_FIX}"
        )
    samples, consumed = (int(v) for v in data[()])
    if samples < 0 or consumed < 0:
        raise StoreError(f"{where}: /progress is [{samples}, {consumed}]; counts cannot be negative; {_FIX}")
    if consumed < samples:
        raise StoreError(
            f"{where}: /progress says {samples} samples were committed from only {consumed} images; {_FIX}"
        )
    return samples, consumed


def _group(f: h5py.File, name: str, where: str) -> h5py.Group:
    group = f.get(name)
    if group is None:
        raise StoreError(f"{where} has no /{name} group; {_FIX}")
    if not isinstance(group, h5py.Group):
        raise StoreError(f"{where}: /{name} is a dataset, not a group; {_FIX}")
    return group


def _column(
    group: h5py.Group,
    name: str,
    kind: str,
    tail: tuple[int, ...],
    rows: int,
    complete: bool,
    where: str,
    counted: str = "samples",
) -> h5py.Dataset:
    label = f"{group.name}/{name}"
    data = group.get(name)
    if data is None:
        raise StoreError(f"{where} has no {label} dataset; {_FIX}")
    if not isinstance(data, h5py.Dataset):
        raise StoreError(f"{where}: {label} is a group, not a dataset; {_FIX}")
    if group.file.swmr_mode:
        _refresh(data)
    shape = data.shape
    expected = ("N", *tail)
    if shape is None or len(shape) != len(expected) or tuple(shape[1:]) != tail:
        raise StoreError(
            f"{where}: {label} has shape {shape}; expected ({', '.join(map(str, expected))}) "
            f"({'one value' if not tail else f'{tail[0]} values'} per sample); {_FIX}"
        )
    if not _has_kind(data.dtype, kind):
        raise StoreError(f"{where}: {label} holds {data.dtype}, not {_KIND_NAMES[kind]}; {_FIX}")
    _check_rows(label, shape[0], rows, complete, where, counted)
    return data


def _block(group: h5py.Group, name: str, rows: int, complete: bool, where: str) -> BlockInfo:
    label = f"/blocks/{name}"
    data = group.get(name)
    if not isinstance(data, h5py.Dataset):
        raise StoreError(f"{where}: {label} is a group, not a dataset of gates; {_FIX}")
    if group.file.swmr_mode:
        _refresh(data)
    shape = data.shape
    if shape is None or len(shape) != 2 or shape[1] < 1:
        raise StoreError(f"{where}: {label} has shape {shape}; expected (samples, channels) gates; {_FIX}")
    if data.dtype.name not in BLOCK_DTYPES:
        raise StoreError(
            f"{where}: {label} holds {data.dtype} values; SE gates are stored as {' or '.join(BLOCK_DTYPES)}; "
            f"{_FIX}"
        )
    _check_rows(label, shape[0], rows, complete, where)
    values: dict[str, Any] = {}
    attrs = dict(data.attrs.items())
    for key, kind in BLOCK_ATTRS.items():
        if key not in attrs:
            continue
        what = f"{where}: {label} attribute {key!r}"
        values[key] = _text_value(attrs[key], what) if kind is str else _integer_value(attrs[key], what)
    channels = values.pop("channels", shape[1])
    if channels != shape[1]:
        raise StoreError(
            f"{where}: {label} attribute 'channels' is {channels} but the dataset has {shape[1]} columns; {_FIX}"
        )
    return BlockInfo(name=name, channels=int(shape[1]), **{"module": "", "stage": 0, "block": 0, **values})


def _check_rows(
    label: str, present: int, rows: int, complete: bool, where: str, counted: str = "samples"
) -> None:
    if present < rows:
        raise StoreError(
            f"{where}: {label} has {present} rows but /progress says {rows} {counted} are committed "
            f"(a damaged or hand-edited file); {_FIX}"
        )
    if complete and present != rows:
        raise StoreError(
            f"{where}: {label} has {present} rows but the store is marked complete with {rows} {counted} "
            f"(/progress); {_FIX}"
        )


_KIND_NAMES = {"int": "integers", "float": "floating-point numbers", "text": "text"}


def _has_kind(dtype: np.dtype, kind: str) -> bool:
    if kind == "int":
        return dtype.kind in "iu"
    if kind == "float":
        return dtype.kind == "f"
    return dtype.kind == "S" or h5py.check_string_dtype(dtype) is not None


__all__ = ["CheckedLayout", "check_layout", "check_samples", "root_attrs"]
