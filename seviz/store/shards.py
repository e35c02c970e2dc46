"""Sharded stores: one crash-safe shard per rank, combined into one store of HDF5 virtual datasets.

A recording run by ``torchrun`` on ``W`` ranks writes, beside ``--out store.h5``::

    store.h5                               written by rank 0 once every shard is complete
    store.shards/shard-00000-of-0000W.h5   a normal seviz store: rank 0's contiguous slice
    store.shards/shard-00001-of-0000W.h5   ... (root attrs ``rank`` and ``world_size``)

:func:`combine_shards` writes ``store.h5`` with the same layout as a
single-process store (:mod:`seviz.store.schema`): every sample column and every
block is an HDF5 virtual dataset (h5py ``VirtualLayout``) that maps the shards'
rows one after another, so the rows are in the single-process order and no gate
is copied. Sources are named by paths relative to ``store.h5`` (HDF5 looks for
them beside the virtual file first), so ``store.h5`` and ``store.shards/`` can
move together. A missing shard would read as fill values, so the store lists
its shards (attribute ``shards``) and :func:`~seviz.store.open_store` refuses a
store whose shards are not there.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from seviz.errors import StoreError
from seviz.store._h5 import _check_is_store, _committed_skips, _open_swmr
from seviz.store.schema import (
    RANK_ATTR,
    SHARD_RUN_KEYS,
    SHARDS_ATTR,
    WORLD_SIZE_ATTR,
    _attr_value,
    _decode,
    _json_attr,
)

log = logging.getLogger(__name__)

_SHARD_NAME = re.compile(r"^shard-(\d{5,})-of-(\d{5,})\.h5$")
# Rows read or copied at once when a column is copied rather than mapped.
_COPY_ROWS = 8192

MISSING, UNREADABLE, INCOMPLETE, COMPLETE = "missing", "unreadable", "incomplete", "complete"


def shard_folder(out: str | os.PathLike) -> Path:
    """The folder beside ``out`` holding its shards: ``store.h5`` -> ``store.shards``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.shards")


def shard_path(out: str | os.PathLike, rank: int, world_size: int) -> Path:
    """The shard rank ``rank`` of ``world_size`` writes for the store ``out``."""
    return shard_folder(out) / f"shard-{rank:05d}-of-{world_size:05d}.h5"


def existing_shards(out: str | os.PathLike) -> dict[int, list[Path]]:
    """Shard files present for ``out``, by the world size in their names."""
    folder = shard_folder(out)
    found: dict[int, list[Path]] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            match = _SHARD_NAME.match(path.name)
            if match:
                found.setdefault(int(match.group(2)), []).append(path)
    return found


def shard_state(path: Path) -> str:
    """``missing``, ``unreadable`` (a run stopped before it set the store up), ``incomplete`` or ``complete``."""
    if not path.exists():
        return MISSING
    try:
        with _open_swmr(path) as f:
            _check_is_store(f, path)
            return COMPLETE if bool(f.attrs.get("complete", False)) else INCOMPLETE
    except StoreError:
        return UNREADABLE


@dataclass(frozen=True)
class _Shard:
    """What the combiner reads of one complete shard (its gates stay where they are)."""

    path: Path
    attrs: dict[str, Any]
    samples: int
    consumed: int
    columns: dict[str, tuple[tuple[int, ...], np.dtype]]  # "samples/label" -> (row shape, dtype)
    column_attrs: dict[str, dict[str, Any]]
    skipped: tuple[np.ndarray, np.ndarray]  # committed /skipped/path and /skipped/reason rows

    @property
    def run_config(self) -> dict[str, Any]:
        return _json_attr(self.attrs, "run_config", {})


def _read_shard(path: Path, rank: int, world_size: int) -> _Shard:
    state = shard_state(path)
    if state != COMPLETE:
        raise StoreError(
            f"cannot combine the shards of {world_size} ranks: shard {str(path)!r} is {state}; "
            "finish it with the same torchrun command and --resume"
        )
    with _open_swmr(path) as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        if int(attrs.get(RANK_ATTR, -1)) != rank or int(attrs.get(WORLD_SIZE_ATTR, -1)) != world_size:
            raise StoreError(
                f"shard {str(path)!r} says it is rank {attrs.get(RANK_ATTR)!r} of "
                f"{attrs.get(WORLD_SIZE_ATTR)!r}, its name says rank {rank} of {world_size}; "
                "record it again (--overwrite)"
            )
        samples, consumed = (int(v) for v in f["progress"][:2])
        columns, column_attrs = {}, {}
        for group in ("samples", "blocks"):
            for name, data in f[group].items():
                key = f"{group}/{name}"
                if data.shape[0] != samples:
                    raise StoreError(
                        f"shard {str(path)!r}: {key} has {data.shape[0]} rows, /progress says {samples}; "
                        "record it again (--overwrite)"
                    )
                columns[key] = (tuple(data.shape[1:]), data.dtype)
                column_attrs[key] = dict(data.attrs)
        skips = _committed_skips(f)
        skipped = (f["skipped/path"][:skips], f["skipped/reason"][:skips])
    return _Shard(path, attrs, samples, consumed, columns, column_attrs, skipped)


def _check_consistent(shards: Sequence[_Shard]) -> None:
    """The shards are slices of one recording: same blocks, options and precision, contiguous."""
    first = shards[0]

    def signature(shard: _Shard) -> dict[str, Any]:
        return {
            "blocks": sorted(k for k in shard.columns if k.startswith("blocks/")),
            "options": {k: v for k, v in shard.run_config.items() if k not in SHARD_RUN_KEYS},
            "precision": shard.attrs.get("precision"),
        }

    for shard in shards[1:]:
        mine, theirs = signature(shard), signature(first)
        for what in mine:
            if mine[what] != theirs[what]:
                raise StoreError(
                    f"shard {str(shard.path)!r} was recorded with other {what} than "
                    f"{str(first.path)!r} ({mine[what]!r} vs {theirs[what]!r}); the ranks must run one "
                    "command: record again with --overwrite"
                )
        for key, (tail, dtype) in shard.columns.items():
            other_tail, other_dtype = first.columns[key]
            if tail != other_tail or (dtype.kind != "S" and dtype != other_dtype):
                raise StoreError(
                    f"shard {str(shard.path)!r}: {key} is {dtype}{tail}, in {str(first.path)!r} it is "
                    f"{other_dtype}{other_tail}; record again with --overwrite"
                )
    expected = 0
    for shard in shards:
        start, stop = (int(shard.run_config.get(k, -1)) for k in ("shard_start", "shard_stop"))
        if start != expected or shard.consumed != stop - start:
            raise StoreError(
                f"shard {str(shard.path)!r} covers image-list entries {start}..{stop} and consumed "
                f"{shard.consumed}, but entry {expected} is next; record again with --overwrite"
            )
        expected = stop
    if expected != int(first.run_config.get("images", -1)):
        raise StoreError(
            f"the shards cover {expected} image-list entries of {first.run_config.get('images')}; "
            "record again with --overwrite"
        )


def combine_shards(
    out: str | os.PathLike, world_size: int, extra_attrs: Mapping[str, Any] | None = None
) -> Path:
    """Write ``out``: one store whose columns are virtual datasets over the complete shards.

    The file is written beside ``out`` and renamed over it at the end, so a
    reader sees either the old file or the whole new one, never a part.

    Args:
        out: The combined store to write (its shards are in :func:`shard_folder`).
        world_size: How many ranks recorded (shards ``0 .. world_size - 1``).
        extra_attrs: More root attributes (e.g. every rank's summary).

    Returns:
        The path of the combined store.

    Raises:
        StoreError: A shard is missing, incomplete, or not a slice of the same recording.
    """
    out = Path(out)
    shards = [_read_shard(shard_path(out, r, world_size), r, world_size) for r in range(world_size)]
    _check_consistent(shards)
    temp = out.with_name(out.name + ".combine-tmp")
    try:
        with h5py.File(temp, "w", libver="latest") as f:
            _write_attrs(f, shards, out, extra_attrs or {})
            for key in shards[0].columns:
                _map_column(f, key, shards, out)
            _copy_skipped(f, shards)
            # /progress is the sum of the shards' counts, not a concatenation: written, not mapped.
            progress = [sum(s.samples for s in shards), sum(s.consumed for s in shards)]
            f.create_dataset("progress", data=np.asarray(progress, dtype=np.int64))
            f.attrs["complete"] = True  # last
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    log.info("combined %d shards (%d samples) into %s", world_size, progress[0], out)
    return out


def _write_attrs(f: h5py.File, shards: Sequence[_Shard], out: Path, extra: Mapping[str, Any]) -> None:
    first = shards[0]
    for key, value in first.attrs.items():
        if key not in (RANK_ATTR, "complete"):
            f.attrs[key] = value
    run_config = {k: v for k, v in first.run_config.items() if k not in SHARD_RUN_KEYS}
    errors = [_json_attr(s.attrs, "gate_error", {}) for s in shards]
    gate_error = errors[0] if all(e == errors[0] for e in errors) else _worst_gate_error(errors)
    combined = {
        "run_config": run_config,
        "gate_error": gate_error,
        WORLD_SIZE_ATTR: len(shards),
        SHARDS_ATTR: [Path(os.path.relpath(s.path, out.parent)).as_posix() for s in shards],
        "created": min(str(s.attrs.get("created", "")) for s in shards),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "samples": sum(s.samples for s in shards),
        "skipped_count": sum(len(s.skipped[0]) for s in shards),
        **extra,
    }
    for key, value in combined.items():
        f.attrs[key] = _attr_value(value)
    f.attrs["complete"] = False


def _worst_gate_error(errors: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every rank calibrates a fast mode on the same first batch; if their figures differ, keep the worst."""
    worst = max(errors, key=lambda e: float(e.get("max_abs", 0.0) or 0.0))
    return {**worst, "per_shard": list(errors)}


def _map_column(f: h5py.File, key: str, shards: Sequence[_Shard], out: Path) -> None:
    """One column as a virtual dataset: shard after shard, in rank order (the single-process order)."""
    tail, dtype = shards[0].columns[key]
    if dtype.kind == "S":
        # Each rank sized its fixed-length strings for its own slice; HDF5 converts
        # fixed-length strings on read, so the widest type carries all of them.
        dtype = np.dtype(f"S{max(s.columns[key][1].itemsize for s in shards)}")
    total = sum(s.samples for s in shards)
    layout = h5py.VirtualLayout(shape=(total, *tail), dtype=dtype)
    start = 0
    for shard in shards:
        if shard.samples:  # an empty slice (more ranks than images) maps nothing
            relative = Path(os.path.relpath(shard.path, out.parent)).as_posix()
            source = h5py.VirtualSource(relative, key, shape=(shard.samples, *tail))
            layout[start : start + shard.samples] = source
        start += shard.samples
    # A label of -1 (no class) marks rows HDF5 could not read from a shard.
    fill = -1 if key == "samples/label" else (b"" if dtype.kind == "S" else 0)
    data = f.create_virtual_dataset(key, layout, fillvalue=fill)
    data.attrs.update(shards[0].column_attrs[key])


def _copy_skipped(f: h5py.File, shards: Sequence[_Shard]) -> None:
    """``/skipped`` is copied, not mapped: a shard's committed skips are a prefix that its own
    ``/progress`` defines (rows past it belong to a batch that never committed), which a
    mapping of whole datasets would not honour; the rows are few (one per unreadable file)."""
    group = f.create_group("skipped")
    for column in (0, 1):
        values = [s.skipped[column] for s in shards]
        width = max([1, *(v.dtype.itemsize for v in values)])
        rows = np.concatenate([np.asarray(v, dtype=f"S{width}") for v in values])
        group.create_dataset(
            ("path", "reason")[column],
            data=rows,
            maxshape=(None,),
            chunks=(256,),
            compression="lzf",
            dtype=f"S{width}",
        )


def check_shards_present(f: h5py.File, path: Path) -> None:
    """A combined store reads its rows from its shards: refuse it when one is missing.

    HDF5 reads a virtual dataset's missing source as fill values, silently.
    """
    listed = _json_attr(f.attrs, SHARDS_ATTR, [])
    missing = [name for name in listed if not (path.parent / name).is_file()]
    if missing:
        raise StoreError(
            f"store {str(path)!r} reads its samples from {len(listed)} shard files beside it, and "
            f"{missing[0]!r} is missing ({len(missing)} missing); keep the store and its "
            f"{shard_folder(path).name}/ folder together (move or copy both)"
        )


def shard_summary(path: Path) -> dict[str, Any]:
    """What a complete shard holds, for a rank that resumes a run its shard had already finished."""
    with _open_swmr(path) as f:
        attrs = f.attrs
        return {
            "store": str(path),
            "model": str(attrs.get("model", "")),
            "blocks": len(f["blocks"]),
            "samples": int(f["progress"][0]),
            "skipped": int(f["progress"][1] - f["progress"][0]),
            "skipped_files": tuple(_decode(f["skipped/path"][: _committed_skips(f)]).tolist()),
            "precision": str(attrs.get("precision", "")),
            "complete": bool(attrs.get("complete", False)),
        }


def describe_shards(found: Mapping[int, Sequence[Path]]) -> str:
    """``2 shards of a 4-rank run`` ... for messages."""
    return "; ".join(f"{len(paths)} shard(s) of a {world}-rank run" for world, paths in sorted(found.items()))
