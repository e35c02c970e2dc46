"""Low-level HDF5 access shared by the store's reader, writer and attributions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

from seviz.errors import StoreError
from seviz.store.schema import SCHEMA_VERSION


def _open_swmr(path: Path) -> h5py.File:
    """Open a store for reading: plainly when it is closed, in SWMR mode while it is written.

    A closed file opens plainly first, where HDF5 reads every piece of
    metadata once: a damaged file fails at once. An SWMR reader retries a
    piece whose checksum fails, with a backoff that can last minutes, so SWMR
    is kept for files that need it: being written, or left by a killed writer
    (HDF5 refuses those a plain open). A file shorter than its superblock says
    is refused before either.
    """
    _check_length(path)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        if "truncated file" in str(error):
            raise _truncated(path, str(error)) from None
    try:
        return h5py.File(path, "r", libver="latest", swmr=True)
    except OSError as error:
        raise StoreError(f"{str(path)!r} is not a readable HDF5 file ({error})") from None


_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_length(path: Path) -> None:
    """Refuse a file cut short: fewer bytes than the end-of-file address in its HDF5 superblock."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        raise StoreError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    if len(head) < 48 or not head.startswith(_SIGNATURE):
        return  # not HDF5 at offset 0 (or a user block): h5py says what it is
    version = head[8]
    width = head[9] if version >= 2 else head[13]
    if width not in (2, 4, 8):
        return
    at = 12 + 2 * width if version >= 2 else (24 if version == 0 else 28) + 2 * width
    base = int.from_bytes(head[at - 2 * width : at - width], "little") if version >= 2 else 0
    end = int.from_bytes(head[at : at + width], "little")
    if end != (1 << (8 * width)) - 1 and size < base + end:
        raise _truncated(path, f"{size:,} bytes of {base + end:,}")


def _truncated(path: Path, detail: str) -> StoreError:
    return StoreError(
        f"store {str(path)!r} is truncated ({detail}): cut short by a failed copy or a full disk, or still "
        "being created; record it again with `seviz record`, or restore it from a copy"
    )


@contextmanager
def h5_errors(path: Path, what: str) -> Iterator[None]:
    """Turn h5py's errors on a damaged file into a :class:`StoreError` naming the file and what was read.

    A truncated or overwritten file opens, and then fails wherever its missing
    bytes are read: ``RuntimeError: Can't decode global heap prefix``,
    ``OSError: Can't read data``, a ``KeyError`` for an object whose header is
    gone. Only h5py calls go inside this block.
    """
    try:
        yield
    except StoreError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as error:
        raise StoreError(
            f"store {str(path)!r} is damaged (truncated or overwritten?): {what} failed "
            f"({type(error).__name__}: {str(error)[:200]}); record it again with `seviz record`, "
            "or restore it from a copy"
        ) from None


def _refresh(data: h5py.Dataset) -> None:
    """See rows a SWMR writer appended since the file was opened.

    Virtual datasets (a combined store, :mod:`seviz.store.shards`) are never
    refreshed: that store is written whole before it is renamed into place, so
    there is nothing new to see, and HDF5 (2.0.0, h5py 3.16) reads fill values
    from a virtual dataset's sources after ``refresh()`` on a second handle of it.
    """
    if not data.is_virtual:
        data.refresh()


def _check_is_store(f: h5py.File, path: Path) -> None:
    with h5_errors(path, "reading the root attributes"):
        if "seviz_schema" not in f.attrs or "blocks" not in f or "progress" not in f:
            raise StoreError(
                f"{str(path)!r} is not a seviz store (no seviz_schema attribute or /blocks group); "
                "make one with `seviz record`"
            )
        schema = f.attrs["seviz_schema"]
    try:
        schema = int(schema)
    except (TypeError, ValueError):
        raise StoreError(
            f"{str(path)!r}: root attribute 'seviz_schema' is {schema!r}, not an integer"
        ) from None
    if schema > SCHEMA_VERSION:
        raise StoreError(
            f"{str(path)!r} uses store schema {schema}, newer than this seviz reads "
            f"({SCHEMA_VERSION}); upgrade seviz"
        )


def _committed_skips(f: h5py.File) -> int:
    # Skipped entries are appended before /progress is advanced; entries past the
    # committed image count belong to a batch that never committed.
    data = f["skipped/path"]
    data.refresh()
    consumed = int(f["progress"][1])
    samples = int(f["progress"][0])
    return min(data.shape[0], consumed - samples)
