"""Reading a seviz store: :func:`open_store` and the read-only :class:`Store` view.

Only the committed prefix (``/progress[0]`` samples) is ever read, so a store that
is being written, or was left by a killed run, reads consistently. The layout is
in :mod:`seviz.store.schema`; :func:`open_store` checks a file against it once
(:mod:`seviz.store._checks`), and every later read turns h5py's errors on a
damaged file into a :class:`~seviz.errors.StoreError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import DTypeLike

from seviz.errors import StoreError
from seviz.store._checks import check_layout, check_samples
from seviz.store._h5 import _open_swmr, _refresh, h5_errors
from seviz.store.attributions import Attributions, read_attributions
from seviz.store.schema import BlockInfo, Provenance, _decode
from seviz.store.shards import check_shards_present

log = logging.getLogger(__name__)

# Sample columns read when a store is opened; "path" (the largest) is read on first use.
_EAGER_COLUMNS = ("label", "class_name", "topk_index", "topk_prob")


@dataclass
class Store:
    """A read-only view of a seviz store: metadata in memory, gates read on demand.

    Only the committed prefix (``len(store)`` samples) is ever read, so a store
    being written, or left by a killed run, reads consistently.
    """

    path: Path
    attrs: dict[str, Any]
    blocks: dict[str, BlockInfo]
    labels: np.ndarray
    class_names: np.ndarray
    topk_index: np.ndarray
    topk_prob: np.ndarray
    skipped: list[tuple[str, str]]
    complete: bool
    provenance: Provenance = field(default_factory=Provenance)
    dtype: str = "float16"  # of the stored gates
    _file: h5py.File | None = field(default=None, repr=False)
    _paths: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def paths(self) -> np.ndarray:
        """Image path of every committed sample (read on first use: the largest column)."""
        if self._paths is None:
            self._paths = self._read_paths(slice(0, len(self)))
        return self._paths

    def paths_at(self, rows: slice | range | np.ndarray | list[int]) -> np.ndarray:
        """The image paths of some committed samples, reading only those rows when :attr:`paths` was not read.

        The app shows a few thumbnails of a 50,000-sample store; reading every path
        for them costs it a third of a second.

        Raises:
            IndexError: A row is not a committed sample.
        """
        if isinstance(rows, range):
            rows = slice(rows.start, rows.stop, rows.step)
        if self._paths is not None:
            return self._paths[rows]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            if step < 1:
                return self.paths[rows]
            return self._read_paths(slice(start, stop, step) if start < stop else slice(0, 0))
        index = np.asarray(rows, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"sample rows {index.min()}..{index.max()} outside 0..{len(self) - 1}")
        unique, inverse = np.unique(np.where(index < 0, index + len(self), index), return_inverse=True)
        return self._read_paths(unique if unique.size else slice(0, 0))[inverse]

    def _read_paths(self, rows: slice | np.ndarray) -> np.ndarray:
        column = self._samples("path")
        with h5_errors(self.path, "reading /samples/path"):
            return _decode(column[rows])

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks)

    @property
    def classes(self) -> list[dict[str, Any]]:
        """Recorded classes as ``{index, name, id}`` dicts, in recording order."""
        return [c.to_dict() for c in self.provenance.classes]

    @property
    def recorded_class_names(self) -> list[str]:
        """Names of the classes that have samples, in recording order."""
        recorded = [c.name for c in self.provenance.classes]
        present = set(self.class_names.tolist())
        return [name for name in recorded if name in present] or sorted(present)

    def attributions(self) -> dict[str, Attributions]:
        """Channel attributions written by ``seviz attribute`` (empty when none)."""
        if self._file is None or not self._file.id.valid:
            self._file = _open_swmr(self.path)
        with h5_errors(self.path, "reading /attributions"):
            return read_attributions(self._file, self.path, self.blocks)

    def class_counts(self) -> dict[str, int]:
        names, counts = np.unique(self.class_names.astype(str), return_counts=True)
        return dict(zip(names.tolist(), counts.tolist(), strict=True))

    def block(self, name: str) -> BlockInfo:
        if name not in self.blocks:
            raise StoreError(
                f"block {name!r} is not in store {str(self.path)!r}; it has {', '.join(self.blocks)}"
            )
        return self.blocks[name]

    def gates(self, name: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Gate values of one block as a (samples, channels) numpy array (float32)."""
        self.block(name)
        data = self._dataset(name)
        if rows is None:
            rows = slice(0, len(self))
        elif isinstance(rows, slice):
            rows = slice(*rows.indices(len(self)))
        with h5_errors(self.path, f"reading /blocks/{name}"):
            return np.asarray(data[rows], dtype=np.float32)

    def iter_chunks(
        self,
        name: str,
        rows: int = 8192,
        dtype: DTypeLike | None = np.float32,
        buffer: np.ndarray | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(row_slice, gates)`` chunks of one block: memory stays bounded.

        ``dtype`` is the type of the yielded gates; ``None`` keeps the stored
        type (float16 or float32), which skips a conversion that costs several
        times the read itself. ``buffer`` (with ``dtype=None``): flat ``uint8``
        memory of at least ``rows x channels x itemsize`` bytes that every
        chunk is read into, so a chunk is only valid until the next one is
        read; it saves the fresh pages (and the kernel's zeroing of them) of a
        new array per chunk. ``start`` and ``stop`` bound the rows read (default:
        all committed samples).
        """
        data = self._dataset(name)
        what = f"reading /blocks/{name}"
        end = len(self) if stop is None else min(len(self), stop)
        for a in range(start, end, rows):
            b = min(end, a + rows)
            if buffer is not None and dtype is None:
                size = (b - a) * data.shape[1] * data.dtype.itemsize
                chunk = buffer[:size].view(data.dtype).reshape(b - a, data.shape[1])
                with h5_errors(self.path, what):
                    data.read_direct(chunk, np.s_[a:b])
                yield slice(a, b), chunk
                continue
            with h5_errors(self.path, what):
                chunk = data[a:b]
            yield slice(a, b), chunk if dtype is None else np.asarray(chunk, dtype=dtype)

    def class_mask(self, class_name: str) -> np.ndarray:
        if class_name not in set(self.class_names.tolist()):
            raise StoreError(
                f"class {class_name!r} is not in store {str(self.path)!r}; it has "
                f"{', '.join(self.recorded_class_names)}"
            )
        return self.class_names == class_name

    def _dataset(self, name: str) -> h5py.Dataset:
        return self._column("blocks", name)

    def _samples(self, name: str) -> h5py.Dataset:
        return self._column("samples", name)

    def _column(self, group: str, name: str) -> h5py.Dataset:
        if self._file is None or not self._file.id.valid:
            self._file = _open_swmr(self.path)
        with h5_errors(self.path, f"reading /{group}/{name}"):
            data = self._file[group][name]
            if self._file.swmr_mode:
                _refresh(data)
        return data

    def close(self) -> None:
        if self._file is not None and self._file.id.valid:
            self._file.close()
        self._file = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(path: str | os.PathLike, warn_incomplete: bool = True) -> Store:
    """Open a seviz store for reading, after checking it against the schema.

    The check covers the file's structure, not its gates: every dataset the
    schema names is present, of its kind (integers, floats, text), shape and
    length (at least the committed samples; exactly them in a complete store),
    every attribute has its type (JSON ones are JSON), and ``/progress`` is
    consistent. Gate values outside [0, 1] are reported by the analysis.

    Args:
        path: The ``.h5`` file written by ``seviz record``.
        warn_incomplete: Log a warning when the run that wrote it did not finish.

    Returns:
        A :class:`Store` with sample metadata loaded and gates read on demand.

    Raises:
        FileNotFoundError: The path does not exist.
        StoreError: The file is not a seviz store, or is damaged; the message
            names the dataset or attribute.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"store {str(path)!r} does not exist")
    where = f"store {str(path)!r}"
    f = _open_swmr(path)
    try:
        check_shards_present(f, path)
        with h5_errors(path, "checking its layout"):
            layout = check_layout(f, path)
        count = layout.samples
        samples = {}
        for name in _EAGER_COLUMNS:
            with h5_errors(path, f"reading /samples/{name}"):
                samples[name] = _decode(f["samples"][name][:count])
        check_samples(samples, layout.provenance, where)
        with h5_errors(path, "reading /skipped"):
            skipped = list(
                zip(
                    _decode(f["skipped/path"][: layout.skips]).tolist(),
                    _decode(f["skipped/reason"][: layout.skips]).tolist(),
                    strict=True,
                )
            )
    except BaseException:
        f.close()
        raise
    store = Store(
        path=path,
        attrs=layout.attrs,
        blocks=layout.blocks,
        labels=samples["label"],
        class_names=samples["class_name"],
        topk_index=samples["topk_index"],
        topk_prob=samples["topk_prob"],
        skipped=skipped,
        complete=layout.complete,
        provenance=layout.provenance,
        dtype=layout.dtype,
        _file=f,
    )
    if not layout.complete and warn_incomplete:
        log.warning(
            "store %s is incomplete (the recording did not finish); reading its %d committed samples. "
            "Finish it with `seviz record ... --resume`.",
            path,
            len(store),
        )
    return store
