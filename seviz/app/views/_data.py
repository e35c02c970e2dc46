"""Cached access to stores and their statistics, and the page's error messages.

Everything is keyed by (path, modification time, size): a store that is
rewritten is read again, and a control change never re-reads samples. The
cached objects are read-only and shared by all browser sessions
(``st.cache_resource``: no copy per rerun, which matters for large stores).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from seviz.analysis import StatsSettings, StoreStatistics, compute_statistics
from seviz.store import Store, StoreError, open_store

_ENTRIES = 8


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


# Full statistics hold per-class histograms: a 1000-class store takes about 2 GB, so keep few.
@st.cache_resource(max_entries=4, show_spinner=False)
def _statistics(path: str, mtime_ns: int, size: int) -> StoreStatistics:
    return compute_statistics(_open(path, mtime_ns, size))


@st.cache_resource(max_entries=_ENTRIES, show_spinner=False)
def _verdict_statistics(path: str, mtime_ns: int, size: int, near_one: float) -> StoreStatistics:
    # Exactly the statistics `seviz recommend` computes (no per-class part, this near_one), so the
    # downloaded recommendation equals its file byte for byte. The per-class statistics above may
    # use a coarser histogram on stores with many classes, which can move "share of gates >= near_one".
    return compute_statistics(
        _open(path, mtime_ns, size), classes=[], settings=StatsSettings(near_one=near_one)
    )


@st.cache_resource(max_entries=_ENTRIES, show_spinner=False)
def _attributions(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    return _open(path, mtime_ns, size).attributions()


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


def store(path: str | os.PathLike) -> Store:
    """The opened store (metadata in memory), or :class:`PageError`."""
    return _guarded("cannot open store", path, _open)


def statistics(path: str | os.PathLike) -> StoreStatistics:
    """Statistics of every block and class of a store, computed once per file version."""
    with st.spinner(f"Computing statistics of {Path(path).name} (once per store)..."):
        return _guarded("cannot compute statistics of", path, _statistics)


def verdict_statistics(path: str | os.PathLike, near_one: float) -> StoreStatistics:
    """Statistics behind the pruning verdicts (as :func:`seviz.recommend.recommend` computes them)."""
    with st.spinner(f"Computing gate behaviour of {Path(path).name} (once per store and near-one level)..."):
        return _guarded(
            "cannot compute statistics of", path, lambda *key: _verdict_statistics(*key, float(near_one))
        )


def attributions(path: str | os.PathLike) -> dict[str, Any]:
    """The store's captum channel attributions (block -> Attributions); empty when none."""
    return _guarded("cannot read attributions of", path, _attributions)


def show_incomplete(opened: Store) -> None:
    """A warning for a store whose recording did not finish (its committed samples are still shown)."""
    if not opened.complete:
        st.warning(
            f"{opened.path.name} is incomplete: the recording did not finish. Showing its "
            f"{len(opened)} committed samples; finish it with `seviz record ... --resume`."
        )
