"""Writing a seviz store: :class:`StoreWriter` appends batches crash-safely (HDF5 SWMR).

Each batch is appended to every dataset and flushed, and only then is
``/progress`` advanced, so a run killed at any instant leaves a file whose first
``progress[0]`` samples are whole. The guarantees, in the order a writer meets them:

* **One writer**: :class:`~seviz.store.lock.StoreLock` (``STORE.lock``) is held
  before anything is read for writing or written; a second writer fails at once.
* **Atomic replace**: a new store is written under a temporary name beside the
  target (``.STORE.partial``) and renamed over it once its first batch has
  committed, so a run that fails before that (bad options, a model that does not
  load, Ctrl-C) leaves an existing store as it was.
* **Resume**: an interrupted store is resumed by copying its committed prefix
  into a fresh file (``.STORE.resume-tmp``) that atomically replaces the old one.
* **Completion mark through the writer's own handle**: ``complete`` and the
  final attributes are created with the layout and set in place at the end, so
  a reader holding the store open never blocks the last step.
* **Full disk**: before each batch the space it may need (new chunks and some
  metadata) is checked; a full disk stops with :class:`~seviz.errors.DiskFullError`,
  every committed sample kept and no temporary file left.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from seviz._files import check_output, free_bytes, is_no_space, no_space, temporary_path
from seviz.errors import StoreError
from seviz.store._h5 import _check_is_store, _committed_skips, _open_swmr
from seviz.store.lock import StoreLock
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

# Attributes set when a run ends. They exist from the start, with fixed-size types, so the
# end of a run only writes their values in place (SWMR allows that; adding or resizing
# attributes, or a second open of the file for writing while a reader holds it, it does not).
FINAL_ATTRS: dict[str, tuple[np.dtype, Any]] = {
    "complete": (np.dtype(np.bool_), False),
    "finished": (np.dtype("S40"), b""),
    "samples": (np.dtype(np.int64), 0),
    "skipped_count": (np.dtype(np.int64), 0),
}

# Room kept free for the metadata of a batch and the final close (B-tree and object header updates).
_METADATA_RESERVE = 512 * 1024


def _chunk_rows(channels: int, itemsize: int) -> int:
    # Chunks of about 256 KiB: large enough for fast sequential reads, small
    # enough that a partially written chunk never costs much.
    return max(16, min(4096, (256 * 1024) // max(1, channels * itemsize)))


class StoreWriter:
    """Appends batches to a new (or resumed) store in SWMR mode; the one writer of the store.

    Use as a context manager; ``close(complete=True)`` marks the store complete,
    written last. Nothing is overwritten unless ``overwrite`` is set, and a new
    store replaces the old one only once its first batch has committed (see the
    module docstring). The store's lock is taken first; pass ``lock`` when the
    caller already holds it.

    Raises:
        StoreLockedError: Another writer holds the store.
        OutputError: The store exists and neither ``overwrite`` nor ``resume`` is set,
            or ``path`` is one of ``inputs``.
        DiskFullError: No room for the resume copy.
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
        *,
        inputs: Sequence[str | os.PathLike] = (),
        lock: StoreLock | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        # The provenance goes through its one record, so every key and type is the schema's
        # (checked before any file is touched).
        if not isinstance(attrs, Provenance):
            attrs = Provenance.from_attrs(attrs, f"store {str(self.path)!r}", strict=True)
        self.blocks = list(blocks)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float16, np.float32):
            raise StoreError(f"unsupported `dtype` {dtype!r}; use float16 or float32", param="dtype")
        if overwrite and resume:
            raise StoreError(
                "`overwrite=True` and `resume=True` exclude each other; pass one", param="resume"
            )
        self.samples = 0
        self.consumed = 0
        self._closed = False
        self._broken = False
        self._staging: Path | None = None
        self._published = False
        self._own_lock = lock is None
        self._lock = lock if lock is not None else StoreLock(self.path)
        self._lock.acquire()
        try:
            self._open(attrs, overwrite, resume, path_length, name_length, inputs)
        except BaseException:
            self._discard()
            raise

    def _open(
        self,
        attrs: Provenance,
        overwrite: bool,
        resume: bool,
        path_length: int,
        name_length: int,
        inputs: Sequence[str | os.PathLike],
    ) -> None:
        if resume:
            self._file = _reopen_for_append(self.path)
            self._published = True
            self.samples, self.consumed = (int(v) for v in self._file["progress"][:2])
        else:
            check_output(self.path, inputs=inputs, overwrite=overwrite, param="path", what="store")
            self._staging = temporary_path(self.path)
            self._staging.unlink(missing_ok=True)  # left by a run killed before its first batch
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self._staging, "w", libver="latest")
            self._create_layout(attrs, path_length, name_length)
        _create_final_attrs(self._file)
        self._lengths = {
            name: self._file[name].dtype.itemsize
            for name in ("samples/class_name", "samples/path", "skipped/path", "skipped/reason")
        }
        self._file.swmr_mode = True

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

    @property
    def published(self) -> bool:
        """Whether the store at ``path`` is this writer's (a resumed store, or a new one past its first batch)."""
        return self._published

    def append(self, batch: SampleBatch) -> None:
        """Append one batch and then advance the committed count (the crash-safe order).

        Raises:
            DiskFullError: The batch may not fit on the device; nothing of it was written.
        """
        if self._broken:
            raise StoreError(f"store {str(self.path)!r} failed earlier; its committed samples are kept")
        self._check_space(len(batch.label), len(batch.skipped))
        try:
            self._write(batch)
        except (OSError, RuntimeError) as error:
            if not is_no_space(error):
                raise
            self._broken = True
            raise self._disk_full() from None
        if self._staging is not None:
            self._publish()

    def _write(self, batch: SampleBatch) -> None:
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
            gates = {info.name: np.asarray(batch.gates[info.name], dtype=self.dtype) for info in self.blocks}
            for info in self.blocks:
                if gates[info.name].shape != (n, info.channels):
                    raise StoreError(
                        f"block {info.name}: got gates of shape {gates[info.name].shape}, "
                        f"expected {(n, info.channels)}"
                    )
            for name, values in columns.items():
                _append_rows(f["samples"][name], start, stop, values)
            for name, values in gates.items():
                _append_rows(f["blocks"][name], start, stop, values)
        if batch.skipped:
            first = f["skipped/path"].shape[0]
            last = first + len(batch.skipped)
            paths = _utf8([p for p, _ in batch.skipped], self._lengths["skipped/path"])
            reasons = _utf8([r for _, r in batch.skipped], self._lengths["skipped/reason"])
            _append_rows(f["skipped/path"], first, last, paths)
            _append_rows(f["skipped/reason"], first, last, reasons)
        progress = f["progress"]
        progress[:] = np.asarray([stop, self.consumed + batch.consumed], dtype=np.int64)
        progress.flush()
        self.samples, self.consumed = stop, self.consumed + batch.consumed

    def _check_space(self, rows: int, skipped: int) -> None:
        """Refuse a batch that may not fit: its new chunks (allocated whole) and some metadata."""
        need = _METADATA_RESERVE
        for group, first, count in (("samples", self.samples, rows), ("blocks", self.samples, rows)):
            for data in self._file[group].values():
                need += _new_chunk_bytes(data, first, count)
        first_skip = self._file["skipped/path"].shape[0]
        for data in self._file["skipped"].values():
            need += _new_chunk_bytes(data, first_skip, skipped)
        free = free_bytes(self.path.parent)
        if free < need:
            raise self._disk_full(f"the next batch may need {_mib(need)}, {_mib(free)} are free")

    def _disk_full(self, detail: str = "") -> Exception:
        if self._staging is not None:
            kept = "nothing was committed, so no store is left behind"
            if self.path.exists():
                kept += f" and {str(self.path)!r} is as it was"
        else:
            kept = (
                f"the {self.samples} committed samples are kept: free some space, then finish the store "
                "with `resume=True`"
            )
        return no_space(self.path, f"{detail}; {kept}" if detail else kept)

    def _publish(self) -> None:
        """Move the new store over the target: from now on the target is this run's store."""
        staging, self._staging = self._staging, None
        if staging is not None:
            os.replace(staging, self.path)
            self._published = True

    def close(self, complete: bool = False, final_attrs: Mapping[str, Any] | None = None) -> None:
        """Close the writer; with ``complete``, first mark the store complete (the last thing written).

        The final attributes are written through the writer's own handle, so a
        reader holding the store open does not stop the store from completing.
        A new store that never committed a batch is removed (an existing store
        it would have replaced stays as it was), unless ``complete`` is set.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if not self._broken and (complete or final_attrs):
                self._mark(complete, final_attrs or {})
                if complete:
                    self._publish()
            self._file.close()
        except (OSError, RuntimeError) as error:
            if not is_no_space(error):
                raise
            self._broken = True
            raise self._disk_full() from None
        finally:
            self._discard()

    def _mark(self, complete: bool, final_attrs: Mapping[str, Any]) -> None:
        attrs = self._file.attrs
        for key, value in final_attrs.items():
            if key in FINAL_ATTRS:
                attrs.modify(key, np.asarray(value, dtype=FINAL_ATTRS[key][0]))
            else:
                attrs[key] = _attr_value(value)
        attrs.modify("complete", np.bool_(complete))
        self._file.flush()

    def _discard(self) -> None:
        """After a close or a failed start: drop an unpublished new store, release the lock."""
        file = getattr(self, "_file", None)
        if file is not None and file.id.valid:
            try:
                file.close()
            except (OSError, RuntimeError) as error:  # a full disk: what was committed is on disk
                log.debug("closing %s after a failure: %s", self.path, error)
        if self._staging is not None:
            self._staging.unlink(missing_ok=True)
            self._staging = None
        if self._own_lock:
            self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(complete=False)


def _create_final_attrs(f: h5py.File) -> None:
    """Give the final attributes their fixed-size types before SWMR mode starts (see FINAL_ATTRS)."""
    for key, (dtype, default) in FINAL_ATTRS.items():
        if key not in f.attrs or f.attrs.get_id(key).dtype != dtype:
            f.attrs.create(key, default, dtype=dtype)


def _new_chunk_bytes(data: h5py.Dataset, first: int, count: int) -> int:
    """Bytes of the chunks that rows ``first:first + count`` allocate (chunks are allocated whole)."""
    if count <= 0:
        return 0
    rows = data.chunks[0]
    allocated = -(-first // rows)  # chunks holding rows before ``first``
    needed = -(-(first + count) // rows)
    chunk = int(np.prod(data.chunks)) * data.dtype.itemsize
    return max(0, needed - allocated) * chunk


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _append_rows(dataset: h5py.Dataset, start: int, stop: int, values: Any) -> None:
    # Truncate rows past ``start`` too: a crashed run may have written a batch
    # that was never committed.
    dataset.resize(stop, axis=0)
    dataset[start:stop] = values
    dataset.flush()


def _reopen_for_append(path: Path) -> h5py.File:
    """Open an interrupted store for appending (the caller holds its lock).

    A writer killed in SWMR mode leaves the file flagged as open for writing,
    which HDF5 refuses to reopen for writing (``h5clear`` would be needed). So
    the committed prefix is copied into a fresh file that replaces the old
    one atomically; the old file stays untouched until the copy is whole, and
    a failed copy (a full disk, Ctrl-C) leaves no temporary file. The copy's
    own handle is returned: the replaced store is never opened a second time.
    """
    if not path.exists():
        raise FileNotFoundError(f"cannot resume: store {str(path)!r} does not exist; drop `resume=True`")
    temp = temporary_path(path, "resume-tmp")
    temp.unlink(missing_ok=True)  # left by a resume that was killed while copying
    free, need = free_bytes(path.parent), path.stat().st_size + _METADATA_RESERVE
    if free < need:
        raise no_space(
            path,
            f"resuming copies the committed samples and may need {_mib(need)}, {_mib(free)} are free; "
            f"{str(path)!r} is as it was",
        )
    new = h5py.File(temp, "w", libver="latest")
    try:
        with _open_swmr(path) as old:
            samples, consumed = _copy_committed(old, new, path)
        os.replace(temp, path)
    except BaseException as error:
        try:
            new.close()
        except (OSError, RuntimeError):
            pass
        temp.unlink(missing_ok=True)
        if isinstance(error, (OSError, RuntimeError)) and is_no_space(error):
            raise no_space(
                path, f"resuming needs room for a copy of it; {str(path)!r} is as it was"
            ) from None
        raise
    log.info("resuming %s after %d samples (%d image-list entries)", path, samples, consumed)
    return new


def _copy_committed(old: h5py.File, new: h5py.File, path: Path) -> tuple[int, int]:
    """Copy the attributes and committed rows of ``old`` into ``new``; returns (samples, consumed)."""
    _check_is_store(old, path)
    if bool(old.attrs.get("complete", False)):
        raise StoreError(f"cannot resume: store {str(path)!r} is already complete")
    samples, consumed = (int(v) for v in old["progress"][:2])
    skipped_count = int(_committed_skips(old))
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
    new.flush()
    return samples, consumed
