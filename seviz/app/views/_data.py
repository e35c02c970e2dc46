"""Cached access to stores, their statistics and images, and the page's error messages.

Statistics come from :func:`seviz.analysis.cached_statistics`: computed once
per store version and settings and saved beside the store, so a new browser
session or a restarted app reads them back instead of computing them. In this
process they are also kept (``st.cache_resource``, shared by every session and
never copied per rerun), keyed by (path, modification time, size), so a
control change never reads samples again and a rewritten store is read anew.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from seviz.analysis import (
    ChannelExtremes,
    StoreStatistics,
    cached_channel_extremes,
    cached_statistics,
    preload_classes,
    saved_statistics,
)
from seviz.plots import default_blocks, default_classes
from seviz.pruning import Thresholds, needed_statistics
from seviz.store import Store, StoreError, open_store

_ENTRIES = 8
_THUMBNAIL = 160  # px, the longer side of a thumbnail


class PageError(Exception):
    """Shown in the page with ``st.error``; carries a message for the user, never a traceback."""


def _key(path: str | os.PathLike) -> tuple[str, int, int]:
    try:
        info = Path(path).stat()
    except OSError as error:
        raise PageError(f"cannot read store {str(path)!r}: {error.strerror or error}") from None
    return str(path), info.st_mtime_ns, info.st_size


@st.cache_resource(max_entries=_ENTRIES, show_spinner=False)
def _open(path: str, mtime_ns: int, size: int) -> Store:
    return open_store(path, warn_incomplete=False)


# Statistics with per-class parts read from the cache file on demand: small in memory.
@st.cache_resource(max_entries=_ENTRIES, show_spinner=False)
def _statistics(path: str, mtime_ns: int, size: int) -> StoreStatistics:
    return cached_statistics(_open(path, mtime_ns, size))


@st.cache_resource(max_entries=_ENTRIES, show_spinner=False)
def _verdict_statistics(path: str, mtime_ns: int, size: int, near_one: float) -> StoreStatistics:
    # Exactly the statistics `seviz recommend` computes (the library says which), so the
    # downloaded recommendation equals its file byte for byte.
    classes, settings = needed_statistics(Thresholds(near_one=near_one))
    return cached_statistics(_open(path, mtime_ns, size), classes=classes, settings=settings)


@st.cache_resource(max_entries=4 * _ENTRIES, show_spinner=False)
def _extremes(path: str, mtime_ns: int, size: int, block: str, k: int) -> ChannelExtremes:
    return cached_channel_extremes(_open(path, mtime_ns, size), block, k)


@st.cache_resource(max_entries=_ENTRIES, show_spinner=False)
def _attributions(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    return _open(path, mtime_ns, size).attributions()


@st.cache_resource(max_entries=_ENTRIES, show_spinner=False)
def _image_folder(path: str, mtime_ns: int, size: int) -> str:
    return guess_image_folder(_open(path, mtime_ns, size))


_FOLDER_RUNS, _FOLDER_RUN = 16, 32  # rows read to guess the image folder: runs spread over the store


def guess_image_folder(opened: Store) -> str:
    """The folder the store's images came from (the common parent of its class folders), or "".

    Reads 16 runs of 32 consecutive paths spread over the store, not every path (50,000
    at ImageNet size) nor a strided selection (which decompresses every chunk of the column).
    """
    n = len(opened)
    starts = sorted({(n * i) // _FOLDER_RUNS for i in range(_FOLDER_RUNS)}) if n else []
    paths = [str(p) for start in starts for p in opened.paths_at(slice(start, min(n, start + _FOLDER_RUN)))]
    if not paths:
        return ""
    try:
        common = Path(os.path.commonpath(paths))
    except ValueError:
        return ""
    return str(common.parent if len(set(opened.class_names.tolist())) > 1 and common.suffix else common)


def image_folder(path: str | os.PathLike) -> str:
    """:func:`guess_image_folder` of a store, once per store version (a page's default, read on every rerun)."""
    folder: str = _guarded("cannot read the image paths of", path, _image_folder)
    return folder


def _guarded(what: str, path: str | os.PathLike, function: Any) -> Any:
    key = _key(path)
    try:
        return function(*key)
    except (StoreError, FileNotFoundError, ValueError) as error:
        raise PageError(f"{what} {Path(path).name}: {error}") from None
    except Exception as error:  # noqa: BLE001 - a malformed file may fail anywhere inside h5py
        raise PageError(
            f"{what} {Path(path).name}: {type(error).__name__}: {error}. "
            "Is it a seviz store written by `seviz record`?"
        ) from None


def warm(path: str | os.PathLike) -> None:
    """Put a store's statistics into this process's caches before any page asks for them.

    Reads the statistics, or computes and saves them where they are not saved beside
    the store yet; then the per-class parts of the Distributions page's default
    blocks and classes, and the Pruning page's statistics at the default thresholds
    when those are saved (they are never computed here). The app's server runs this
    in a background thread for the stores it was started with
    (:func:`seviz.app.serve.warm`); a page that asks meanwhile waits for it through
    the cache's own lock instead of computing a second time.

    Raises:
        PageError: The store cannot be read (the page shows the same message).
    """
    key = _key(path)
    stats = _statistics(*key)
    for name in default_blocks(stats):
        preload_classes(stats.block(name), default_classes(stats))
    near_one = Thresholds().near_one
    classes, settings = needed_statistics(Thresholds(near_one=near_one))
    if saved_statistics(_open(*key), classes=classes, settings=settings) is not None:
        _verdict_statistics(*key, float(near_one))


def store(path: str | os.PathLike) -> Store:
    """The opened store (metadata in memory), or :class:`PageError`."""
    opened: Store = _guarded("cannot open store", path, _open)
    return opened


def statistics(path: str | os.PathLike) -> StoreStatistics:
    """Statistics of every block and class of a store (computed once per store version, then read)."""
    name = Path(path).name
    with st.spinner(f"Computing the statistics of {name} once (saved beside it for next time)..."):
        stats: StoreStatistics = _guarded("cannot compute statistics of", path, _statistics)
    return stats


def verdict_statistics(path: str | os.PathLike, near_one: float) -> StoreStatistics:
    """Statistics behind the pruning verdicts (as :func:`seviz.pruning.recommend` computes them)."""
    name = Path(path).name
    with st.spinner(f"Computing the gate behaviour of {name} once per near-one level..."):
        stats: StoreStatistics = _guarded(
            "cannot compute statistics of",
            path,
            lambda p, mtime, size: _verdict_statistics(p, mtime, size, float(near_one)),
        )
    return stats


def extremes(path: str | os.PathLike, block: str, k: int) -> ChannelExtremes:
    """The samples with the highest and lowest gates of every channel of ``block``."""
    with st.spinner(f"Ranking the samples of {block} once (saved beside the store)..."):
        found: ChannelExtremes = _guarded(
            "cannot rank the samples of",
            path,
            lambda p, mtime, size: _extremes(p, mtime, size, block, int(k)),
        )
    return found


def attributions(path: str | os.PathLike) -> dict[str, Any]:
    """The store's captum channel attributions (block -> Attributions); empty when none."""
    found: dict[str, Any] = _guarded("cannot read attributions of", path, _attributions)
    return found


def provenance(opened: Store) -> dict[str, str]:
    """Where the store came from (model, weights, precision, created, versions ...), as text.

    Read from the store's :class:`~seviz.store.Provenance` record (with the gates' stored
    dtype), in the order the app shows them; empty values are left out.
    """
    record = opened.provenance
    values = {
        "model": record.model,
        "model_spec": record.model_spec,
        "weights_source": record.weights_source,
        "weights_sha256": record.weights_sha256,
        "precision": record.precision,
        "dtype": opened.dtype,
        "created": record.created,
        "finished": record.finished,
        "command": record.command,
        **{f"{name}_version": version for name, version in record.versions.items()},
    }
    return {key: str(value) for key, value in values.items() if str(value) != ""}


def recording_details(opened: Store) -> tuple[dict[str, Any], dict[str, Any]]:
    """The store's preprocessing and its recording precision's gate error (from its provenance), or {}."""
    record = opened.provenance
    return dict(record.preprocessing), dict(record.gate_error)


def image_file(opened: Store, stored_path: str) -> Path | None:
    """A sample's image file: its stored path, or that path relative to the store's folder; None when missing."""
    stored = Path(stored_path)
    for candidate in (stored, opened.path.parent / stored):
        if candidate.is_file():
            return candidate
    return None


@st.cache_resource(max_entries=512, show_spinner=False)
def _thumbnail(path: str, mtime_ns: int) -> Any:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        small = ImageOps.exif_transpose(image).convert("RGB")
        small.thumbnail((_THUMBNAIL, _THUMBNAIL))
        return small


def thumbnail(path: Path) -> Any:
    """A small RGB copy of an image (kept once read), or None when it cannot be read."""
    try:
        return _thumbnail(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError):
        return None


def show_incomplete(opened: Store) -> None:
    """A warning for a store whose recording did not finish (its committed samples are still shown)."""
    if not opened.complete:
        st.warning(
            f"{opened.path.name} is incomplete: the recording did not finish. Showing its "
            f"{len(opened)} committed samples; finish it with `seviz record ... --resume`."
        )
