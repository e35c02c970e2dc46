"""Writing a seviz store: :class:`StoreWriter` appends batches crash-safely (HDF5 SWMR).

Each batch is appended to every dataset and flushed, and only then is
``/progress`` advanced, so a run killed at any instant leaves a file whose first
``progress[0]`` samples are whole. An interrupted store is resumed by copying its
committed prefix into a fresh file that atomically replaces the old one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from seviz.errors import StoreError
from seviz.store._h5 import _check_is_store, _committed_skips, _open_swmr
from seviz.store.schema import (
    _REASON_LENGTH,
    SCHEMA_VERSION,
    TOPK,
    BlockInfo,
    Provenance,
    SampleBatch,
    _attr_value,
    _fixed_str,
    _utf8,
)

log = logging.getLogger(__name__)


def _chunk_rows(channels: int, itemsize: int) -> int:
    # Chunks of about 256 KiB: large enough for fast sequential reads, small
    # enough that a partially written chunk never costs much.
    return max(16, min(4096, (256 * 1024) // max(1, channels * itemsize)))


class StoreWriter:
    """Appends batches to a new (or resumed) store in SWMR mode.

    Use as a context manager; ``close(complete=True)`` marks the store complete
    after a clean close. Nothing is overwritten unless ``overwrite`` is set.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        blocks: Sequence[BlockInfo],
        attrs: Provenance | Mapping[str, Any],
        dtype: str = "float16",
        overwrite: bool = False,
        resume: bool = False,
        path_length: int = 1024,
        name_length: int = 128,
    ) -> None:
        self.path = Path(path)
        # The provenance goes through its one record, so every key and type is the schema's
        # (checked before any file is touched).
        if not isinstance(attrs, Provenance):
            attrs = Provenance.from_attrs(attrs, f"store {str(self.path)!r}", strict=True)
        self.blocks = list(blocks)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float16, np.float32):
            raise StoreError(f"unsupported --dtype {dtype!r}; use float16 or float32")
        self.samples = 0
        self.consumed = 0
        if resume:
            self._file = _reopen_for_append(self.path)
            self.samples, self.consumed = (int(v) for v in self._file["progress"][:2])
        else:
            if self.path.exists() and not overwrite:
                raise FileExistsError(
                    f"store {str(self.path)!r} already exists; pass --overwrite to replace it "
                    "or --resume to finish an interrupted run"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.path, "w", libver="latest")
            self._create_layout(attrs, path_length, name_length)
        self._lengths = {
            name: self._file[name].dtype.itemsize
            for name in ("samples/class_name", "samples/path", "skipped/path", "skipped/reason")
        }
        self._file.swmr_mode = True
        self._closed = False

    def _create_layout(self, attrs: Provenance, path_length: int, name_length: int) -> None:
        f = self._file
        for key, value in attrs.to_attrs().items():
            f.attrs[key] = value
        f.attrs["seviz_schema"] = SCHEMA_VERSION
        f.attrs["dtype"] = self.dtype.name
        f.attrs["complete"] = False
        samples = f.create_group("samples")
        columns = {
            "label": (np.int64, ()),
            "class_name": (_fixed_str(name_length), ()),
            "path": (_fixed_str(path_length), ()),
            "topk_index": (np.int32, (TOPK,)),
            "topk_prob": (np.float32, (TOPK,)),
        }
        for name, (dtype, tail) in columns.items():
            samples.create_dataset(
                name,
                shape=(0, *tail),
                maxshape=(None, *tail),
                dtype=dtype,
                chunks=(1024, *tail),
                compression="lzf" if name in ("class_name", "path") else None,
            )
        group = f.create_group("blocks")
        for info in self.blocks:
            rows = _chunk_rows(info.channels, self.dtype.itemsize)
            data = group.create_dataset(
                info.name,
                shape=(0, info.channels),
                maxshape=(None, info.channels),
                dtype=self.dtype,
                chunks=(rows, info.channels),
            )
            data.attrs.update(
                module=info.module,
                stage=info.stage,
                block=info.block,
                channels=info.channels,
                kind=info.kind,
                params=info.params,
                flops=info.flops,
            )
        skipped = f.create_group("skipped")
        for name, length in (("path", path_length), ("reason", _REASON_LENGTH)):
            skipped.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=_fixed_str(length), chunks=(256,), compression="lzf"
            )
        f.create_dataset("progress", data=np.zeros(2, dtype=np.int64))

    def append(self, batch: SampleBatch) -> None:
        """Append one batch and then advance the committed count (the crash-safe order)."""
        f = self._file
        n = len(batch.label)
        start, stop = self.samples, self.samples + n
        if n:
            columns = {
                "label": np.asarray(batch.label, dtype=np.int64),
                "class_name": _utf8(batch.class_name, self._lengths["samples/class_name"]),
                "path": _utf8(batch.path, self._lengths["samples/path"]),
                "topk_index": np.asarray(batch.topk_index, dtype=np.int32),
                "topk_prob": np.asarray(batch.topk_prob, dtype=np.float32),
            }
            for name, values in columns.items():
                _append_rows(f["samples"][name], start, stop, values)
            for info in self.blocks:
                gates = np.asarray(batch.gates[info.name], dtype=self.dtype)
                if gates.shape != (n, info.channels):
                    raise StoreError(
                        f"block {info.name}: got gates of shape {gates.shape}, expected {(n, info.channels)}"
                    )
                _append_rows(f["blocks"][info.name], start, stop, gates)
        if batch.skipped:
            first = f["skipped/path"].shape[0]
            last = first + len(batch.skipped)
            paths = _utf8([p for p, _ in batch.skipped], self._lengths["skipped/path"])
            reasons = _utf8([r for _, r in batch.skipped], self._lengths["skipped/reason"])
            _append_rows(f["skipped/path"], first, last, paths)
            _append_rows(f["skipped/reason"], first, last, reasons)
        self.samples, self.consumed = stop, self.consumed + batch.consumed
        progress = f["progress"]
        progress[:] = np.asarray([self.samples, self.consumed], dtype=np.int64)
        progress.flush()

    def close(self, complete: bool = False, final_attrs: Mapping[str, Any] | None = None) -> None:
        """Close the SWMR writer; if ``complete``, reopen and mark the store complete (written last)."""
        if self._closed:
            return
        self._closed = True
        self._file.close()
        if complete or final_attrs:
            with h5py.File(self.path, "a", libver="latest") as f:
                for key, value in (final_attrs or {}).items():
                    f.attrs[key] = _attr_value(value)
                f.attrs["complete"] = bool(complete)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(complete=False)


def _append_rows(dataset: h5py.Dataset, start: int, stop: int, values: Any) -> None:
    # Truncate rows past ``start`` too: a crashed run may have written a batch
    # that was never committed.
    dataset.resize(stop, axis=0)
    dataset[start:stop] = values
    dataset.flush()


def _reopen_for_append(path: Path) -> h5py.File:
    """Open an interrupted store for appending.

    A writer killed in SWMR mode leaves the file flagged as open for writing,
    which HDF5 refuses to reopen for writing (``h5clear`` would be needed). So
    the committed prefix is copied into a fresh file that replaces the old
    one atomically; the old file stays untouched until the copy is whole.
    """
    if not path.exists():
        raise FileNotFoundError(f"cannot resume: store {str(path)!r} does not exist; drop --resume")
    with _open_swmr(path) as old:
        _check_is_store(old, path)
        if bool(old.attrs.get("complete", False)):
            raise StoreError(f"cannot resume: store {str(path)!r} is already complete")
        samples, consumed = (int(v) for v in old["progress"][:2])
        skipped_count = int(_committed_skips(old))
        temp = path.with_name(path.name + ".resume-tmp")
        with h5py.File(temp, "w", libver="latest") as new:
            for key, value in old.attrs.items():
                new.attrs[key] = value
            for group_name in ("samples", "blocks", "skipped"):
                group = new.create_group(group_name)
                rows = skipped_count if group_name == "skipped" else samples
                for name, data in old[group_name].items():
                    data.refresh()
                    copy = group.create_dataset(
                        name,
                        shape=(rows, *data.shape[1:]),
                        maxshape=data.maxshape,
                        dtype=data.dtype,
                        chunks=data.chunks,
                        compression=data.compression,
                        compression_opts=data.compression_opts,
                    )
                    for begin in range(0, rows, 8192):
                        end = min(rows, begin + 8192)
                        copy[begin:end] = data[begin:end]
                    copy.attrs.update(dict(data.attrs))
            new.create_dataset("progress", data=np.asarray([samples, consumed], dtype=np.int64))
            new.attrs["skipped_committed"] = skipped_count
    os.replace(temp, path)
    log.info("resuming %s after %d samples (%d image-list entries)", path, samples, consumed)
    return h5py.File(path, "a", libver="latest")
