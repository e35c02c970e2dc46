"""Statistics saved once beside a store, so a new app session or a restarted app does not recompute them.

:func:`cached_statistics` is :func:`~seviz.analysis.compute_statistics` with
a memory: each block's results are written to an HDF5 file (h5py, never
pickle) in a folder beside the store, ``STORE.h5.seviz-cache/``, keyed by the
store's identity and content fingerprint (:func:`store_fingerprint`) and by
the statistics settings and class selection. A store that is re-recorded,
resumed or replaced, or other settings, give another key, so the statistics
are computed again (and entries of an older version of the store are
removed). Where the store's folder is read-only, the cache goes to
``$XDG_CACHE_HOME/seviz`` (``~/.cache/seviz``).

Loaded statistics keep every block's "all classes" part, specificity and
gate behaviour in memory (a few arrays per channel) and read a class's part
from the file when it is first asked for, so a store of 1,000 classes does
not hold gigabytes of per-class histograms in memory. Per-class means and
standard deviations are kept exactly (float64); per-class quantiles in
float32 (display precision; the quantiles' own resolution is 1/1000 at best).

:func:`cached_channel_extremes` does the same for
:func:`~seviz.analysis.extremes.channel_extremes`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from seviz.analysis.compute import compute_statistics, store_identity
from seviz.analysis.extremes import ChannelExtremes, channel_extremes
from seviz.analysis.results import (
    ALL_CLASSES,
    STATISTICS_VERSION,
    BlockStatistics,
    ClassStats,
    GateBehaviour,
    Specificity,
    StatsSettings,
    StoreStatistics,
)
from seviz.errors import StoreError
from seviz.store import BlockInfo, Store, open_store

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
CACHE_SUFFIX = ".seviz-cache"
_KEY_FILE = "key.json"
_LOADED_CLASSES = 256  # ClassStats kept in memory per block after a read


def cache_folder(store_path: str | os.PathLike, writable: bool = False) -> Path:
    """Where the cache of a store lives: ``STORE.seviz-cache`` beside it, else in the user's cache.

    Args:
        store_path: The store.
        writable: Return the folder that can be written (the user's cache when
            the store's folder is read-only); otherwise the folder beside the
            store when it exists, else the user's.
    """
    path = Path(store_path).expanduser().resolve()
    beside = path.with_name(path.name + CACHE_SUFFIX)
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    user = root / "seviz" / f"{path.name}-{digest}{CACHE_SUFFIX}"
    if writable:
        return (
            beside
            if (beside.is_dir() and os.access(beside, os.W_OK)) or os.access(path.parent, os.W_OK)
            else user
        )
    return beside if beside.is_dir() or not user.is_dir() else user


def store_fingerprint(store: Store) -> dict[str, Any]:
    """The store's identity (:func:`~seviz.analysis.store_identity`) and a digest of what it holds.

    The digest covers every sample's label and class and the first and last
    committed gate row of every block: cheap to compute, and it changes when
    the store is re-recorded, resumed or replaced by another one of the same name.
    """
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(store.labels, dtype=np.int64).tobytes())
    digest.update("\n".join(map(str, store.class_names.tolist())).encode())
    for name, info in store.blocks.items():
        digest.update(f"{name}:{info.channels}:".encode())
        if len(store):
            rows = np.asarray([0, len(store) - 1])
            digest.update(np.ascontiguousarray(store.gates(name, np.unique(rows))).tobytes())
    return {**store_identity(store), "content_sha256": digest.hexdigest()}


def cached_statistics(
    store: Store | str | os.PathLike,
    blocks: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    settings: StatsSettings | None = None,
    *,
    refresh: bool = False,
) -> StoreStatistics:
    """:func:`~seviz.analysis.compute_statistics`, computed once per store version and settings, then read.

    Args:
        store: An open store or its path.
        blocks: Blocks to return (default: all, in depth order). Blocks not in
            the cache yet are computed together and saved.
        classes: Classes with per-class statistics (default: all); part of the key.
        settings: Statistics settings; part of the key.
        refresh: Compute and save again even when the cache holds them.

    Returns:
        The statistics, equal to what :func:`compute_statistics` returns (per-class
        quantiles to float32 precision), with per-class parts read on first use.

    Raises:
        StoreError: As :func:`compute_statistics`. A cache that cannot be written
            is not an error: the statistics are returned and a warning is logged.
    """
    settings = settings or StatsSettings()
    if not isinstance(store, Store):
        with open_store(store, warn_incomplete=False) as opened:
            return cached_statistics(opened, blocks, classes, settings, refresh=refresh)
    names, entry, found = _saved_blocks(store, blocks, classes, settings, refresh)
    missing = [name for name in names if name not in found]
    class_names: tuple[str, ...] | None = next((b[1] for b in found.values()), None)
    if missing:
        log.info(
            "computing statistics of %s for %s (saved in %s)", ", ".join(missing), store.path.name, entry.root
        )
        computed = compute_statistics(store, missing, classes, settings)
        class_names = computed.class_names
        for name in missing:
            block = computed.block(name)
            saved = entry.save(name, lambda f, b=block: _write_block(f, b, computed.class_names))
            loaded = entry.load(name, _read_block) if saved else None
            found[name] = loaded if loaded is not None else (block, computed.class_names)
    return StoreStatistics(
        store=store_identity(store),
        settings=settings,
        class_names=tuple(class_names or ()),
        blocks={name: found[name][0] for name in names},
    )


def saved_statistics(
    store: Store,
    blocks: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    settings: StatsSettings | None = None,
) -> StoreStatistics | None:
    """What :func:`cached_statistics` would return, read only: None when any block is not saved yet.

    Never computes: for callers that must stay quick (the app's server warms the
    stores it was started with, see :mod:`seviz.app.serve`).
    """
    settings = settings or StatsSettings()
    names, _entry, found = _saved_blocks(store, blocks, classes, settings, refresh=False)
    if len(found) < len(names) or not names:
        return None
    return StoreStatistics(
        store=store_identity(store),
        settings=settings,
        class_names=next(iter(found.values()))[1],
        blocks={name: found[name][0] for name in names},
    )


def _saved_blocks(
    store: Store,
    blocks: Sequence[str] | None,
    classes: Sequence[str] | None,
    settings: StatsSettings,
    refresh: bool,
) -> tuple[list[str], _Entry, dict[str, tuple[BlockStatistics, tuple[str, ...]]]]:
    """The blocks asked for (checked), their cache entry, and those of them already saved."""
    names = list(store.blocks) if blocks is None else list(blocks)
    for name in names:
        store.block(name)
    params = {
        "statistics": STATISTICS_VERSION,
        "settings": _settings_dict(settings),
        "classes": None if classes is None else list(classes),
    }
    entry = _Entry(store, "statistics", params)
    found = {} if refresh else {name: b for name in names if (b := entry.load(name, _read_block)) is not None}
    return names, entry, found


def cached_channel_extremes(
    store: Store | str | os.PathLike, block: str, k: int = 8, *, refresh: bool = False
) -> ChannelExtremes:
    """:func:`~seviz.analysis.extremes.channel_extremes`, computed once per store version, then read."""
    if not isinstance(store, Store):
        with open_store(store, warn_incomplete=False) as opened:
            return cached_channel_extremes(opened, block, k, refresh=refresh)
    store.block(block)
    entry = _Entry(store, "extremes", {"k": int(k)})
    found = None if refresh else entry.load(block, _read_extremes)
    if found is None:
        found = channel_extremes(store, block, k)
        entry.save(block, lambda f: _write_extremes(f, found))
    return found


def class_values(block: BlockStatistics, field: str, channel: int) -> np.ndarray:
    """One channel's ``field`` (``mean``, ``std``, ``min``, ``max``) for every class of ``block``, in order.

    Reads one column from the cache file instead of every class's statistics.
    """
    classes = block.classes
    if isinstance(classes, _StoredClasses):
        return classes.column(field, channel)
    return np.asarray([getattr(classes[name], field)[channel] for name in classes], dtype=np.float64)


def preload_classes(block: BlockStatistics, names: Sequence[str]) -> None:
    """Read the per-class statistics of ``names`` from the cache file at once (a no-op in memory)."""
    if isinstance(block.classes, _StoredClasses):
        block.classes.load([n for n in names if n != ALL_CLASSES])


def class_counts(block: BlockStatistics) -> np.ndarray:
    """The image count of every class of ``block``, in order (read once from the cache file, then kept)."""
    classes = block.classes
    if isinstance(classes, _StoredClasses):
        return classes.counts()
    return np.asarray([classes[name].count for name in classes], dtype=np.int64)


def class_quantiles(block: BlockStatistics, channel: int) -> np.ndarray:
    """One channel's quantiles for every class of ``block``: (classes, levels)."""
    classes = block.classes
    if isinstance(classes, _StoredClasses):
        return classes.quantile_column(channel)
    levels = len(block.all.quantile_levels)
    rows = [classes[name].quantiles[:, channel] for name in classes]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), levels)


# ---------------------------------------------------------------- entries


class _Entry:
    """One kind of cached result for one store and one set of parameters: a folder of per-block files."""

    def __init__(self, store: Store, kind: str, params: Mapping[str, Any]) -> None:
        self.store_key = store_fingerprint(store)
        self.key = {"seviz_cache": CACHE_FORMAT, "kind": kind, "store": self.store_key, **params}
        self.text = json.dumps(self.key, sort_keys=True)
        self.name = f"{kind}-{hashlib.sha256(self.text.encode()).hexdigest()[:16]}"
        self.store_path = store.path
        self.root = cache_folder(store.path)

    def _file(self, root: Path, block: str) -> Path:
        return root / self.name / f"{block}.h5"

    def load(self, block: str, read: Any) -> Any:
        for root in dict.fromkeys([self.root, cache_folder(self.store_path, writable=True)]):
            path = self._file(root, block)
            if not path.is_file():
                continue
            try:
                with h5py.File(path, "r") as f:
                    if f.attrs.get("key") != self.text:
                        continue
                    return read(f, path)
            except (OSError, KeyError, ValueError) as error:
                log.warning("ignoring the unreadable statistics cache %s (%s)", path, error)
        return None

    def save(self, block: str, write: Any) -> bool:
        root = cache_folder(self.store_path, writable=True)
        folder = root / self.name
        target = folder / f"{block}.h5"
        temporary = folder / f".{block}.{uuid.uuid4().hex}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / _KEY_FILE).write_text(self.text + "\n")
            with h5py.File(temporary, "w") as f:
                f.attrs["key"] = self.text
                write(f)
            os.replace(temporary, target)  # readers see the old file or the whole new one
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            log.warning(
                "could not save statistics in %s (%s); they will be computed again next time", folder, error
            )
            return False
        self._remove_stale(root)
        return True

    def _remove_stale(self, root: Path) -> None:
        """Remove entries made for another version of the store (their key's store part differs)."""
        for folder in root.iterdir():
            try:
                key = json.loads((folder / _KEY_FILE).read_text())
            except (OSError, ValueError):
                continue
            if key.get("store") != self.store_key:
                shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- the files


def _settings_dict(settings: StatsSettings) -> dict[str, Any]:
    out = dataclasses.asdict(settings)
    out["quantile_levels"] = list(settings.quantile_levels)
    return out


# Per-channel arrays of a block, stacked into one (rows, C) float64 dataset: h5py reads one
# dataset much faster than many.
_CHANNEL_ROWS = (
    ("all", "mean"),
    ("all", "std"),
    ("all", "min"),
    ("all", "max"),
    ("specificity", "channel_ratio"),
    ("behaviour", "channel_dependence"),
    ("behaviour", "channel_near_one"),
)


def _write_block(f: h5py.File, block: BlockStatistics, class_names: Sequence[str]) -> None:
    spec, gates, everything = block.specificity, block.behaviour, block.all
    parts = {"all": everything, "specificity": spec, "behaviour": gates}
    meta: dict[str, Any] = {
        "info": dataclasses.asdict(block.info),
        "quantile_bins": block.quantile_bins,
        "class_names": list(class_names),
        "classes": list(block.classes),
        "specificity": {
            f.name: getattr(spec, f.name)
            for f in dataclasses.fields(Specificity)
            if f.name != "channel_ratio"
        },
        "behaviour": {
            f.name: getattr(gates, f.name)
            for f in dataclasses.fields(GateBehaviour)
            if not isinstance(getattr(gates, f.name), np.ndarray)
        },
        "all": {
            "name": everything.name,
            "count": everything.count,
            "quantile_levels": list(everything.quantile_levels),
            "bin_edges": everything.bin_edges.tolist(),
        },
    }
    meta["specificity"]["methods"] = list(spec.methods)
    f.attrs["meta"] = json.dumps(meta)
    f.create_dataset("channel", data=np.stack([getattr(parts[p], n) for p, n in _CHANNEL_ROWS]))
    f.create_dataset("all_quantiles", data=everything.quantiles)
    f.create_dataset("all_histogram", data=everything.histogram)
    names = list(block.classes)
    if not names:
        return
    group = f.create_group("classes")
    stats = [block.classes[name] for name in names]
    largest = max(int(s.histogram.max(initial=0)) for s in stats)
    arrays: dict[str, np.ndarray] = {
        "count": np.asarray([s.count for s in stats], dtype=np.int64),
        "mean": np.stack([s.mean for s in stats]),
        "std": np.stack([s.std for s in stats]),
        "min": np.stack([s.min for s in stats]).astype(np.float32),  # gate values: exact in float32
        "max": np.stack([s.max for s in stats]).astype(np.float32),
        "quantiles": np.stack([s.quantiles for s in stats]).astype(np.float32),
        "histogram": np.stack([s.histogram for s in stats]).astype(
            np.uint16 if largest < 1 << 16 else np.uint32
        ),
    }
    for name, data in arrays.items():
        if data.ndim == 1:
            group.create_dataset(name, data=data)
            continue
        # One class a chunk: a chart reads only the classes it draws. The histograms (mostly
        # zeros with few samples a class) are compressed; the rest would hardly shrink.
        packed = (
            {"compression": "gzip", "compression_opts": 1, "shuffle": True} if name == "histogram" else {}
        )
        group.create_dataset(name, data=data, chunks=(1, *data.shape[1:]), **packed)


def _read_block(f: h5py.File, path: Path) -> tuple[BlockStatistics, tuple[str, ...]]:
    meta = json.loads(f.attrs["meta"])
    channel = dict(zip(_CHANNEL_ROWS, f["channel"][()], strict=True))
    a = meta["all"]
    everything = ClassStats(
        name=a["name"],
        count=int(a["count"]),
        mean=channel["all", "mean"],
        std=channel["all", "std"],
        min=channel["all", "min"],
        max=channel["all", "max"],
        quantile_levels=tuple(a["quantile_levels"]),
        quantiles=f["all_quantiles"][()],
        histogram=f["all_histogram"][()],
        bin_edges=np.asarray(a["bin_edges"], dtype=np.float64),
    )
    spec = dict(meta["specificity"])
    spec["methods"] = tuple(spec["methods"])
    block = BlockStatistics(
        info=BlockInfo(**meta["info"]),
        classes=_StoredClasses(path, meta["classes"], everything),
        all=everything,
        specificity=Specificity(channel_ratio=channel["specificity", "channel_ratio"], **spec),
        behaviour=GateBehaviour(
            channel_dependence=channel["behaviour", "channel_dependence"],
            channel_near_one=channel["behaviour", "channel_near_one"],
            **meta["behaviour"],
        ),
        quantile_bins=int(meta["quantile_bins"]),
    )
    return block, tuple(meta["class_names"])


class _StoredClasses(Mapping[str, ClassStats]):
    """Per-class statistics of one block, read from its cache file when asked for (and then kept)."""

    def __init__(self, path: Path, names: Sequence[str], everything: ClassStats) -> None:
        self._path = path
        self._index = {name: i for i, name in enumerate(names)}
        self._levels = everything.quantile_levels
        self._edges = everything.bin_edges
        self._loaded: dict[str, ClassStats] = {}
        self._counts: np.ndarray | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> ClassStats:
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
        if name not in self._index:
            raise KeyError(name)
        self.load([name])
        with self._lock:
            return self._loaded[name]

    def load(self, names: Sequence[str]) -> None:
        """Read the statistics of ``names`` (those not in memory yet) with one opening of the file."""
        with self._lock:
            wanted = sorted({self._index[n] for n in names if n in self._index and n not in self._loaded})
        if not wanted:
            return
        with self._open() as f:
            g = f["classes"]
            rows = {
                field: g[field][wanted]
                for field in ("count", "mean", "std", "min", "max", "quantiles", "histogram")
            }
        by_index = {i: name for name, i in self._index.items()}
        loaded = {}
        for position, i in enumerate(wanted):
            name = by_index[i]
            loaded[name] = ClassStats(
                name=name,
                count=int(rows["count"][position]),
                mean=rows["mean"][position],
                std=rows["std"][position],
                min=rows["min"][position].astype(np.float64),
                max=rows["max"][position].astype(np.float64),
                quantile_levels=self._levels,
                quantiles=rows["quantiles"][position].astype(np.float64),
                histogram=rows["histogram"][position].astype(np.int64),
                bin_edges=self._edges,
            )
        with self._lock:
            for name, stats in loaded.items():
                if len(self._loaded) >= _LOADED_CLASSES:
                    self._loaded.pop(next(iter(self._loaded)))
                self._loaded[name] = stats

    def column(self, field: str, channel: int) -> np.ndarray:
        if field not in ("mean", "std", "min", "max"):
            raise StoreError(f"field {field!r} is not one of mean, std, min, max")
        if not self._index:
            return np.zeros(0)
        with self._open() as f:
            return np.asarray(f["classes"][field][:, int(channel)], dtype=np.float64)

    def counts(self) -> np.ndarray:
        with self._lock:
            if self._counts is not None:
                return self._counts
        if not self._index:
            counts = np.zeros(0, dtype=np.int64)
        else:
            with self._open() as f:
                counts = np.asarray(f["classes"]["count"][:], dtype=np.int64)
        with self._lock:
            self._counts = counts
        return counts

    def quantile_column(self, channel: int) -> np.ndarray:
        if not self._index:
            return np.zeros((0, len(self._levels)))
        with self._open() as f:
            return np.asarray(f["classes"]["quantiles"][:, :, int(channel)], dtype=np.float64)

    def _open(self) -> h5py.File:
        try:
            return h5py.File(self._path, "r")
        except OSError as error:
            raise StoreError(
                f"the statistics cache {str(self._path)!r} cannot be read ({error}); "
                "reload the page to compute the statistics again"
            ) from None


def _write_extremes(f: h5py.File, extremes: ChannelExtremes) -> None:
    f.attrs["block"] = extremes.block
    f.attrs["k"] = extremes.k
    for name in ("top_index", "top_value", "bottom_index", "bottom_value"):
        f.create_dataset(name, data=getattr(extremes, name))


def _read_extremes(f: h5py.File, path: Path) -> ChannelExtremes:
    return ChannelExtremes(
        block=str(f.attrs["block"]),
        k=int(f.attrs["k"]),
        **{name: f[name][()] for name in ("top_index", "top_value", "bottom_index", "bottom_value")},
    )


__all__ = [
    "CACHE_FORMAT",
    "CACHE_SUFFIX",
    "cache_folder",
    "cached_channel_extremes",
    "cached_statistics",
    "class_quantiles",
    "class_values",
    "preload_classes",
    "store_fingerprint",
]
