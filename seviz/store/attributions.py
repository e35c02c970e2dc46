"""Channel attributions kept in a store (``/attributions/<block>``, by ``seviz attribute``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from seviz._files import atomic_write, free_bytes
from seviz.errors import DiskFullError, StoreError
from seviz.store._checks import check_layout
from seviz.store._h5 import _open_swmr, h5_errors
from seviz.store.lock import StoreLock
from seviz.store.schema import BlockInfo, _attr_value, _integer_value, _json_value, _text_value

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attributions:
    """Per-class channel attributions of one block (``/attributions/<block>``)."""

    block: str
    classes: list[str]
    values: np.ndarray  # (classes, channels)
    method: str
    images: int

    def top_channels(self, class_name: str, k: int = 10) -> list[tuple[int, float]]:
        """The ``k`` channels whose gates most drive ``class_name``'s logit, best first."""
        if class_name not in self.classes:
            raise StoreError(f"class {class_name!r} has no attributions; it has {', '.join(self.classes)}")
        row = self.values[self.classes.index(class_name)]
        order = np.argsort(-row, kind="stable")[:k]
        return [(int(c), float(row[c])) for c in order]


def write_attributions(
    path: str | os.PathLike,
    tables: Mapping[str, np.ndarray],
    classes: Sequence[str],
    attrs: Mapping[str, Any],
) -> None:
    """Write (replacing) the ``/attributions`` group of a complete store, holding its writer lock.

    The store is checked (as :func:`~seviz.store.open_store` does) before anything is written,
    and the group is written into a copy beside the store that then replaces it: on any
    failure the store is as it was.

    Raises:
        StoreLockedError: Another run is writing the store.
        DiskFullError: Its device cannot hold the copy (checked first), or filled up while writing.
    """
    path = Path(path)
    with StoreLock(path):
        _write_attributions(path, tables, classes, attrs)


def _write_attributions(
    path: Path, tables: Mapping[str, np.ndarray], classes: Sequence[str], attrs: Mapping[str, Any]
) -> None:
    with _open_swmr(path) as f:
        with h5_errors(path, "checking its layout"):
            layout = check_layout(f, path)
        if not layout.complete:
            raise StoreError(
                f"store {str(path)!r} is incomplete; finish it with `seviz record ... --resume` before attributing"
            )
        unknown = sorted(set(tables) - set(layout.blocks))
        if unknown:
            raise StoreError(f"store {str(path)!r} has no block {unknown[0]!r} to attribute")
    # The recorded store is never opened for writing: a copy beside it gets the group and then
    # replaces it, so an error, a full disk or a kill midway leaves the store (and the
    # attributions it had) as they were. A store reached through a link is replaced where it lives.
    target = path.resolve()
    _check_room_for_a_copy(target)
    log.info(
        "writing the attributions into a copy of %s (%s), then moving it over the store",
        target,
        _gib(target.stat().st_size),
    )
    with atomic_write(target, tag="attributing") as staged:
        shutil.copyfile(target, staged)
        shutil.copymode(target, staged)
        with h5py.File(staged, "a", libver="latest") as f:
            if "attributions" in f:
                del f["attributions"]
            group = f.create_group("attributions")
            for key, value in attrs.items():
                group.attrs[key] = _attr_value(value)
            group.attrs["classes"] = json.dumps(list(classes))
            for block, values in tables.items():
                group.create_dataset(block, data=np.asarray(values, dtype=np.float32))


def _check_room_for_a_copy(store: Path) -> None:
    """Refuse, before copying, when the store's device cannot hold a second copy of it."""
    size, free = store.stat().st_size, free_bytes(store)
    if free < size + _HEADROOM:
        raise DiskFullError(
            f"attributions are written into a copy of {str(store)!r} that then replaces it, which needs "
            f"{_gib(size + _HEADROOM)} free on {str(store.parent)!r} and {_gib(free)} is; free some space "
            "there (the store is as it was)"
        )


_HEADROOM = 16 << 20  # bytes beyond the copy: the attribution tables and HDF5's own metadata


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def read_attributions(f: h5py.File, path: Path, blocks: Mapping[str, BlockInfo]) -> dict[str, Attributions]:
    """The ``/attributions`` group of an open store, checked (empty when there is none).

    Raises:
        StoreError: The group holds something other than one (classes, channels)
            float table per recorded block, or its attributes have the wrong types.
    """
    group = f.get("attributions")
    if group is None:
        return {}
    where = f"store {str(path)!r}: /attributions"
    if not isinstance(group, h5py.Group):
        raise StoreError(f"{where} is a dataset, not a group; run `seviz attribute` again")
    classes = _json_value(group.attrs.get("classes"), f"{where} attribute 'classes'", list, [])
    if not all(isinstance(c, str) for c in classes):
        raise StoreError(f"{where} attribute 'classes' must be a list of class names")
    method = _text_value(group.attrs.get("method", ""), f"{where} attribute 'method'")
    images = _integer_value(group.attrs.get("images", 0), f"{where} attribute 'images'")
    out = {}
    for name, data in group.items():
        info = blocks.get(name)
        if info is None:
            raise StoreError(f"{where}/{name} attributes a block the store does not have")
        if not isinstance(data, h5py.Dataset) or data.dtype.kind != "f":
            raise StoreError(f"{where}/{name} is not a table of floats; run `seviz attribute` again")
        if data.shape != (len(classes), info.channels):
            raise StoreError(
                f"{where}/{name} has shape {data.shape}; expected ({len(classes)} classes, "
                f"{info.channels} channels); run `seviz attribute` again"
            )
        out[name] = Attributions(name, list(classes), np.asarray(data[()], dtype=np.float32), method, images)
    return out
