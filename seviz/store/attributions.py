"""Channel attributions kept in a store (``/attributions/<block>``, by ``seviz attribute``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from seviz.errors import StoreError
from seviz.store._h5 import _check_is_store, _open_swmr
from seviz.store.lock import StoreLock
from seviz.store.schema import _attr_value


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

    Raises:
        StoreLockedError: Another run is writing the store.
    """
    path = Path(path)
    with StoreLock(path):
        _write_attributions(path, tables, classes, attrs)


def _write_attributions(
    path: Path, tables: Mapping[str, np.ndarray], classes: Sequence[str], attrs: Mapping[str, Any]
) -> None:
    with _open_swmr(path) as f:
        _check_is_store(f, path)
        if not bool(f.attrs.get("complete", False)):
            raise StoreError(
                f"store {str(path)!r} is incomplete; finish it with `seviz record ... --resume` before attributing"
            )
    with h5py.File(path, "a", libver="latest") as f:
        if "attributions" in f:
            del f["attributions"]
        group = f.create_group("attributions")
        for key, value in attrs.items():
            group.attrs[key] = _attr_value(value)
        group.attrs["classes"] = json.dumps(list(classes))
        for block, values in tables.items():
            group.create_dataset(block, data=np.asarray(values, dtype=np.float32))
