"""The seviz store: one HDF5 file of per-image SE excitation vectors.

Layout (schema 1)::

    /                       attrs: seviz_schema, seviz_version, torch_version,
                            timm_version, h5py_version, model, model_spec,
                            weights_source, weights_sha256 (tensors),
                            weights_file_sha256 (file bytes, or ""), preprocessing (JSON),
                            classes (JSON list of {index, name, id}), command,
                            created, precision, gate_error (JSON), dtype,
                            run_config (JSON), complete, finished, skipped_count
    /samples/label          [N] int64     class index (in the model's class space)
    /samples/class_name     [N] str
    /samples/path           [N] str
    /samples/topk_index     [N, 5] int32  the model's top-5 predictions
    /samples/topk_prob      [N, 5] float32
    /blocks/<SE_s_b>        [N, C] float16|float32, attrs: module, stage, block,
                            channels, kind, params, flops
    /skipped/path           [M] str       unreadable images, never recorded
    /skipped/reason         [M] str
    /progress               [2] int64     (samples committed, image-list entries consumed)
    /attributions/<SE_s_b>  [K, C] float32  optional, by ``seviz attribute``: mean
                            attribution of each gate channel to each class's logit;
                            group attrs: method, classes (JSON), images, weights_sha256

Crash safety: the file is written in HDF5 SWMR mode. Each batch is appended to
every dataset and flushed, and only then is ``/progress`` advanced, so a run
killed at any instant leaves a file whose first ``progress[0]`` samples are
whole. Readers open with ``swmr=True`` (which also opens files whose writer
died) and read only that prefix. ``complete`` is set after a clean close.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import DTypeLike

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
TOPK = 5
# Sample columns read when a store is opened; "path" (the largest) is read on first use.
_EAGER_COLUMNS = ("label", "class_name", "topk_index", "topk_prob")
_REASON_LENGTH = 240


def _fixed_str(length: int) -> np.dtype:
    # Fixed-length strings, not variable-length ones: HDF5 SWMR does not keep
    # the global heap behind variable-length data consistent for readers or
    # after a crash.
    # Stored as fixed-size bytes holding UTF-8; readers decode them.
    return np.dtype(f"S{max(1, int(length))}")


def _utf8(values: Sequence[str], length: int) -> np.ndarray:
    encoded = [v.encode("utf-8")[:length] for v in values]
    return np.asarray(encoded, dtype=f"S{max(1, length)}")


class StoreError(ValueError):
    """A file is not a seviz store, or does not hold what was asked of it."""


@dataclass(frozen=True)
class BlockInfo:
    """What the store knows about one recorded SE block."""

    name: str
    module: str
    stage: int
    block: int
    channels: int
    kind: str = ""
    params: int = 0  # parameters of the whole SE branch (excitation FCs)
    flops: int = 0  # multiply-accumulates of the SE branch per image (pool, FCs, scale)


@dataclass(frozen=True)
class SampleBatch:
    """One batch of recorded samples, ready to append to a store."""

    label: np.ndarray
    class_name: Sequence[str]
    path: Sequence[str]
    topk_index: np.ndarray
    topk_prob: np.ndarray
    gates: Mapping[str, np.ndarray]
    consumed: int  # image-list entries this batch accounts for (its samples and skipped files)
    skipped: Sequence[tuple[str, str]] = ()


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
    """Write (replacing) the ``/attributions`` group of a complete store."""
    path = Path(path)
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
        attrs: Mapping[str, Any],
        dtype: str = "float16",
        overwrite: bool = False,
        resume: bool = False,
        path_length: int = 1024,
        name_length: int = 128,
    ) -> None:
        self.path = Path(path)
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

    def _create_layout(self, attrs: Mapping[str, Any], path_length: int, name_length: int) -> None:
        f = self._file
        for key, value in attrs.items():
            f.attrs[key] = _attr_value(value)
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


def _attr_value(value: Any) -> Any:
    """HDF5-storable form of an attribute: scalars as they are, containers as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return str(value)  # numpy str_ would become an unstorable '<U' array
    if isinstance(value, (bool, int, float, np.integer, np.floating, np.bool_)):
        return value
    return json.dumps(value, default=str)


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


def _committed_skips(f: h5py.File) -> int:
    # Skipped entries are appended before /progress is advanced; entries past the
    # committed image count belong to a batch that never committed.
    data = f["skipped/path"]
    data.refresh()
    consumed = int(f["progress"][1])
    samples = int(f["progress"][0])
    return min(data.shape[0], consumed - samples)


def _open_swmr(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r", libver="latest", swmr=True)
    except OSError:
        try:
            # Files written without SWMR (an older h5py, another tool) open plainly.
            return h5py.File(path, "r")
        except OSError as error:
            raise StoreError(f"{str(path)!r} is not a readable HDF5 file ({error})") from None


def _check_is_store(f: h5py.File, path: Path) -> None:
    if "seviz_schema" not in f.attrs or "blocks" not in f or "progress" not in f:
        raise StoreError(
            f"{str(path)!r} is not a seviz store (no seviz_schema attribute or /blocks group); "
            "make one with `seviz record`"
        )
    schema = int(f.attrs["seviz_schema"])
    if schema > SCHEMA_VERSION:
        raise StoreError(
            f"{str(path)!r} uses store schema {schema}, newer than this seviz reads "
            f"({SCHEMA_VERSION}); upgrade seviz"
        )


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "OS":
        return np.asarray(
            [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in values],
            dtype=str,
        )
    return values


def _json_attr(attrs: Mapping[str, Any], key: str, default: Any) -> Any:
    value = attrs.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


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
    _file: h5py.File | None = field(default=None, repr=False)
    _paths: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def paths(self) -> np.ndarray:
        """Image path of every committed sample (read on first use: the largest column)."""
        if self._paths is None:
            self._paths = _decode(self._samples("path")[: len(self)])
        return self._paths

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks)

    @property
    def classes(self) -> list[dict[str, Any]]:
        """Recorded classes as ``{index, name, id}`` dicts, in recording order."""
        return _json_attr(self.attrs, "classes", [])

    @property
    def recorded_class_names(self) -> list[str]:
        """Names of the classes that have samples, in recording order."""
        recorded = [c["name"] for c in self.classes]
        present = set(self.class_names.tolist())
        return [name for name in recorded if name in present] or sorted(present)

    def json_attr(self, key: str, default: Any = None) -> Any:
        """A JSON-valued root attribute (preprocessing, classes, gate_error, ...), decoded."""
        return _json_attr(self.attrs, key, default)

    def attributions(self) -> dict[str, Attributions]:
        """Channel attributions written by ``seviz attribute`` (empty when none)."""
        if self._file is None or not self._file.id.valid:
            self._file = _open_swmr(self.path)
        group = self._file.get("attributions")
        if group is None:
            return {}
        classes = _json_attr(group.attrs, "classes", [])
        method = str(group.attrs.get("method", ""))
        images = int(group.attrs.get("images", 0))
        return {
            name: Attributions(name, list(classes), np.asarray(data[()], dtype=np.float32), method, images)
            for name, data in group.items()
        }

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
        return np.asarray(data[rows], dtype=np.float32)

    def iter_chunks(
        self,
        name: str,
        rows: int = 8192,
        dtype: DTypeLike | None = np.float32,
        buffer: np.ndarray | None = None,
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(row_slice, gates)`` chunks of one block: memory stays bounded.

        ``dtype`` is the type of the yielded gates; ``None`` keeps the stored
        type (float16 or float32), which skips a conversion that costs several
        times the read itself. ``buffer`` (with ``dtype=None``): flat ``uint8``
        memory of at least ``rows x channels x itemsize`` bytes that every
        chunk is read into, so a chunk is only valid until the next one is
        read; it saves the fresh pages (and the kernel's zeroing of them) of a
        new array per chunk.
        """
        data = self._dataset(name)
        for start in range(0, len(self), rows):
            stop = min(len(self), start + rows)
            if buffer is not None and dtype is None:
                size = (stop - start) * data.shape[1] * data.dtype.itemsize
                chunk = buffer[:size].view(data.dtype).reshape(stop - start, data.shape[1])
                data.read_direct(chunk, np.s_[start:stop])
                yield slice(start, stop), chunk
                continue
            chunk = data[start:stop]
            yield slice(start, stop), chunk if dtype is None else np.asarray(chunk, dtype=dtype)

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
        data = self._file[group][name]
        if self._file.swmr_mode:
            data.refresh()
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
    """Open a seviz store for reading.

    Args:
        path: The ``.h5`` file written by ``seviz record``.
        warn_incomplete: Log a warning when the run that wrote it did not finish.

    Returns:
        A :class:`Store` with sample metadata loaded and gates read on demand.

    Raises:
        FileNotFoundError: The path does not exist.
        StoreError: The file is not a seviz store.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"store {str(path)!r} does not exist")
    f = _open_swmr(path)
    try:
        _check_is_store(f, path)
        progress = f["progress"]
        if f.swmr_mode:
            progress.refresh()
        count = int(progress[0])
        samples = {}
        for name in _EAGER_COLUMNS:
            data = f["samples"][name]
            if f.swmr_mode:
                data.refresh()
            samples[name] = _decode(data[:count])
        blocks = {}
        for name, data in f["blocks"].items():
            a = data.attrs
            blocks[name] = BlockInfo(
                name=name,
                module=str(a.get("module", "")),
                stage=int(a.get("stage", 0)),
                block=int(a.get("block", 0)),
                channels=int(a.get("channels", data.shape[1])),
                kind=str(a.get("kind", "")),
                params=int(a.get("params", 0)),
                flops=int(a.get("flops", 0)),
            )
        blocks = dict(sorted(blocks.items(), key=lambda item: (item[1].stage, item[1].block, item[0])))
        skips = _committed_skips(f)
        skipped = list(
            zip(
                _decode(f["skipped/path"][:skips]).tolist(),
                _decode(f["skipped/reason"][:skips]).tolist(),
                strict=True,
            )
        )
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        complete = bool(attrs.get("complete", False))
    except Exception:
        f.close()
        raise
    store = Store(
        path=path,
        attrs=attrs,
        blocks=blocks,
        labels=samples["label"],
        class_names=samples["class_name"],
        topk_index=samples["topk_index"],
        topk_prob=samples["topk_prob"],
        skipped=skipped,
        complete=complete,
        _file=f,
    )
    if not complete and warn_incomplete:
        log.warning(
            "store %s is incomplete (the recording did not finish); reading its %d committed samples. "
            "Finish it with `seviz record ... --resume`.",
            path,
            len(store),
        )
    return store
