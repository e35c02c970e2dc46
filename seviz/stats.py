"""Per-class statistics of SE excitations, streamed from a seviz store.

Section 7 of the SENet paper (Hu et al., arXiv 1709.01507) reads three things
off the recorded gates: how the mean excitation per channel differs between
classes (Figure 6), how much it varies within a class (Figure 7), and that
early gates are class-agnostic while deep ones are class-specific, except
SE_5_2 which saturates near 1 and is nearly an identity. This module computes
the numbers behind those findings for any store, in one pass over each block.

Memory does not grow with the number of samples (captum's ``Summarizer``
idea): each block is read in chunks of rows, and per (class, fold) we add up
sums, sums of squares (about a per-class reference row, so constant gates give
a variance of exactly 0), minima, maxima and a fine histogram. Float16 stores
(the default) go through one compiled loop per chunk (numba, see
``seviz._streaming`` and ``seviz._kernels``), and blocks are analysed side by
side, one thread per core up to four (the compiled loops release the GIL).

What is computed, per block (see the dataclasses below for the fields):

* per class and for all classes together, per channel: count, mean, std
  (population, ``ddof=0``), min, max, quantiles and histogram counts.
  Quantiles are read off a fixed histogram of ``quantile_bins`` (default 1000)
  bins over [0, 1] with linear interpolation inside the bin: for gates in
  [0, 1] the result lies in the same bin as the exact sample quantile
  (numpy's ``method="inverted_cdf"``), so it is within ``1 / quantile_bins``
  (0.001) of it. The ``histogram_bins`` (default 20) coarse counts are exact
  sums of the fine bins; gates outside [0, 1] are counted in the edge bins.
* class specificity, two methods named in the output: the between-class over
  within-class variance ratio per channel, averaged over channels; and a
  ``folds``-fold cross-validated nearest-centroid accuracy of predicting the
  class from the excitation vector, against chance (1 / number of classes).
  Sample ``i`` is in fold ``i % folds``; centroids come from the per-(class,
  fold) sums of the single pass; the samples scored are all of them when the
  store has at most ``max_eval_samples`` (default 10,000), otherwise an evenly
  spread deterministic subset held in memory during the pass.
* gate behaviour: mean |1 - s| over all gates, the fraction of gates at or
  above ``near_one`` (0.95), and input dependence, the share of the gates'
  mean square that varies across images: per channel ``var_c / E[s_c^2]`` and
  pooled ``sum_c var_c / sum_c E[s_c^2]`` (0 for gates that are a fixed
  per-channel vector, about 0.25 for uniform random gates). Its square root is
  the relative RMS error of replacing every gate by its channel mean, which is
  what folding a ``constant`` block into BatchNorm does.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from seviz.store import BlockInfo, Store, StoreError, open_store

if TYPE_CHECKING:
    from seviz._streaming import Scratch

log = logging.getLogger(__name__)

ALL_CLASSES = "all classes"
SPECIFICITY_METHODS = ("between_within_variance_ratio", "nearest_centroid_cv_accuracy")
STATISTICS_VERSION = 1
_CHUNK_ELEMENTS = 1 << 24  # about 32 MiB of float16 (64 MiB of float32) per chunk when chunk_rows is None
# Blocks analysed at once; each worker holds a chunk, histogram counts and the
# scored rows (about 130 MiB for a 2048-channel block with 10 classes and
# 10,000 scored rows), so memory stays under 1 GB.
_MAX_WORKERS = 4


@dataclass(frozen=True)
class StatsSettings:
    """Parameters of :func:`compute_statistics` that change its results.

    Attributes:
        quantile_bins: Fine bins over [0, 1] behind the quantiles; resolution
            ``1 / quantile_bins``. Must be a multiple of ``histogram_bins``.
        histogram_bins: Coarse bins over [0, 1] of the reported histograms.
        quantile_levels: Quantiles reported per class and channel.
        folds: Folds of the nearest-centroid cross-validation (sample ``i`` is
            in fold ``i % folds``).
        near_one: A gate at or above this counts as "near one".
        max_eval_samples: At most this many samples are scored by the
            nearest-centroid classifier (all of them in smaller stores).
        histogram_budget_bytes: Memory allowed for one block's fine histogram;
            with many classes and channels the quantile resolution is lowered
            (with a warning) to stay within it.
    """

    quantile_bins: int = 1000
    histogram_bins: int = 20
    quantile_levels: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
    folds: int = 5
    near_one: float = 0.95
    max_eval_samples: int = 10_000
    histogram_budget_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        if self.histogram_bins < 1 or self.quantile_bins % self.histogram_bins:
            raise ValueError(
                f"quantile_bins={self.quantile_bins} must be a positive multiple of "
                f"histogram_bins={self.histogram_bins}; e.g. quantile_bins=1000, histogram_bins=20"
            )
        if self.folds < 2:
            raise ValueError(f"folds={self.folds}: cross-validation needs at least 2 folds")
        if any(not 0.0 <= q <= 1.0 for q in self.quantile_levels):
            raise ValueError(f"quantile_levels={self.quantile_levels} must lie in [0, 1]")
        object.__setattr__(self, "quantile_levels", tuple(float(q) for q in self.quantile_levels))


@dataclass(frozen=True, eq=False)
class ClassStats:
    """Per-channel statistics of one block over one class (or all classes)."""

    name: str
    count: int
    mean: np.ndarray  # (C,) float64
    std: np.ndarray  # (C,) population std
    min: np.ndarray  # (C,)
    max: np.ndarray  # (C,)
    quantile_levels: tuple[float, ...]
    quantiles: np.ndarray  # (len(quantile_levels), C)
    histogram: np.ndarray  # (C, histogram_bins) int64 counts
    bin_edges: np.ndarray  # (histogram_bins + 1,) over [0, 1]

    def quantile(self, level: float) -> np.ndarray:
        """Per-channel quantile at one of the computed ``quantile_levels``."""
        for i, q in enumerate(self.quantile_levels):
            if math.isclose(q, level, abs_tol=1e-12):
                return self.quantiles[i]
        raise StoreError(
            f"quantile {level} was not computed; available: {list(self.quantile_levels)} "
            "(pass StatsSettings(quantile_levels=...) to compute others)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "mean": _floats(self.mean),
            "std": _floats(self.std),
            "min": _floats(self.min),
            "max": _floats(self.max),
            "quantiles": {
                f"{q:g}": _floats(v) for q, v in zip(self.quantile_levels, self.quantiles, strict=True)
            },
            "histogram": self.histogram.tolist(),
        }


@dataclass(frozen=True, eq=False)
class Specificity:
    """How well a block's excitation vector tells classes apart.

    ``variance_ratio`` is the mean over channels of between-class variance /
    (within-class variance + 1e-8); ``between_share`` pools them,
    ``sum between / sum (between + within)`` in [0, 1]. ``accuracy`` is the
    cross-validated nearest-centroid accuracy over ``evaluated`` samples, to
    compare with ``chance`` = 1 / ``classes``.
    """

    variance_ratio: float
    between_share: float
    channel_ratio: np.ndarray  # (C,)
    accuracy: float
    chance: float
    classes: int
    folds: int
    evaluated: int
    methods: tuple[str, ...] = SPECIFICITY_METHODS

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "variance_ratio": _float(self.variance_ratio),
            "between_share": _float(self.between_share),
            "channel_ratio": _floats(self.channel_ratio),
            "accuracy": _float(self.accuracy),
            "chance": _float(self.chance),
            "classes": self.classes,
            "folds": self.folds,
            "evaluated": self.evaluated,
        }


@dataclass(frozen=True, eq=False)
class GateBehaviour:
    """How close a block's gates are to 1 and how much they depend on the input."""

    mean_abs_deviation: float  # mean over all gates of |1 - s|
    fraction_near_one: float  # fraction of all gates >= near_one
    near_one: float
    input_dependence: float  # sum_c var_c / sum_c E[s_c^2]
    input_std: float  # sqrt(mean_c var_c): RMS across-image std
    channel_dependence: np.ndarray  # (C,) var_c / E[s_c^2]
    channel_near_one: np.ndarray  # (C,) fraction of images with s_c >= near_one
    min_gate: float
    max_gate: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_abs_deviation": _float(self.mean_abs_deviation),
            "fraction_near_one": _float(self.fraction_near_one),
            "near_one": self.near_one,
            "input_dependence": _float(self.input_dependence),
            "input_std": _float(self.input_std),
            "channel_dependence": _floats(self.channel_dependence),
            "channel_near_one": _floats(self.channel_near_one),
            "min_gate": _float(self.min_gate),
            "max_gate": _float(self.max_gate),
        }


@dataclass(frozen=True, eq=False)
class BlockStatistics:
    """Everything :func:`compute_statistics` found for one SE block."""

    info: BlockInfo
    classes: Mapping[str, ClassStats]
    all: ClassStats
    specificity: Specificity
    behaviour: GateBehaviour
    quantile_bins: int  # resolution actually used: 1 / quantile_bins

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def channels(self) -> int:
        return self.info.channels

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def class_stats(self, name: str) -> ClassStats:
        """Statistics of one class, or of all samples for ``ALL_CLASSES`` ("all classes").

        Raises:
            StoreError: The class has no statistics in this block.
        """
        if name == ALL_CLASSES:
            return self.all
        if name not in self.classes:
            raise StoreError(_unknown("class", name, list(self.classes), f"block {self.name}"))
        return self.classes[name]

    def to_dict(self, per_class: bool = True) -> dict[str, Any]:
        out = {
            "name": self.name,
            "module": self.info.module,
            "stage": self.info.stage,
            "block": self.info.block,
            "channels": self.channels,
            "params": self.info.params,
            "flops": self.info.flops,
            "quantile_bins": self.quantile_bins,
            "specificity": self.specificity.to_dict(),
            "behaviour": self.behaviour.to_dict(),
            "all": self.all.to_dict(),
        }
        if per_class:
            out["classes"] = {name: stats.to_dict() for name, stats in self.classes.items()}
        return out


@dataclass(frozen=True, eq=False)
class StoreStatistics:
    """Statistics of the chosen blocks of one store, with the store's provenance."""

    store: dict[str, Any]  # file, model, created, samples, complete, ... (see store_identity)
    settings: StatsSettings
    class_names: tuple[str, ...]
    blocks: Mapping[str, BlockStatistics] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.store.get("model", ""))

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks)

    @property
    def complete(self) -> bool:
        return bool(self.store.get("complete", False))

    def block(self, name: str) -> BlockStatistics:
        """Statistics of one block.

        Raises:
            StoreError: The block was not analysed (not in the store, or not asked for).
        """
        if name not in self.blocks:
            where = f"the statistics of {self.store['file']}"
            raise StoreError(_unknown("block", name, list(self.blocks), where))
        return self.blocks[name]

    def to_dict(self, per_class: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (floats rounded to 6 decimals, NaN as null)."""
        settings = asdict(self.settings)
        settings["quantile_levels"] = list(self.settings.quantile_levels)
        return {
            "seviz_statistics": STATISTICS_VERSION,
            "store": dict(self.store),
            "settings": settings,
            "classes": list(self.class_names),
            "blocks": {name: block.to_dict(per_class) for name, block in self.blocks.items()},
        }


def store_identity(store: Store) -> dict[str, Any]:
    """What names a store in derived files: stable across reads of the same file."""
    attrs = store.attrs
    return {
        "file": store.path.name,
        "model": str(attrs.get("model", "")),
        "model_spec": str(attrs.get("model_spec", "")),
        "weights_sha256": str(attrs.get("weights_sha256", "")),
        "created": str(attrs.get("created", "")),
        "samples": len(store),
        "complete": bool(store.complete),
        "dtype": str(attrs.get("dtype", "")),
        "precision": str(attrs.get("precision", "fp32")),
        "gate_error_max_abs": float(store.json_attr("gate_error", {}).get("max_abs", 0.0) or 0.0),
    }


def compute_statistics(
    store: Store | str | os.PathLike,
    blocks: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    settings: StatsSettings | None = None,
    chunk_rows: int | None = None,
    workers: int | None = None,
) -> StoreStatistics:
    """Compute per-class statistics, class specificity and gate behaviour of SE blocks.

    Args:
        store: An open :class:`~seviz.store.Store` or the path of one. An
            incomplete store is read up to its committed samples.
        blocks: Block names to analyse (default: all, in depth order).
        classes: Classes to report per-class statistics for (default: all
            recorded classes). "All classes" statistics and class specificity
            always use every sample; choose a few classes for stores with
            hundreds of classes to keep the histograms small.
        settings: Bins, quantile levels, folds and thresholds; see
            :class:`StatsSettings`.
        chunk_rows: Rows read at once (default: about 16 M gates, 32 MiB of
            float16, per chunk). Changes speed and memory only, not the results.
        workers: Blocks analysed side by side, each in a thread with its own
            buffers (default: one per core, at most four). Changes speed and
            memory only, not the results.

    Returns:
        A :class:`StoreStatistics`; ``stats.block("SE_5_2").class_stats("cat").mean``
        is the mean excitation per channel of class "cat" in block SE_5_2.

    Raises:
        StoreError: The file is not a seviz store, has no samples, a block or
            class is not in it, or a block holds non-finite gates.
    """
    settings = settings or StatsSettings()
    _start_loading_kernels()
    if not isinstance(store, Store):
        with open_store(store) as opened:
            return compute_statistics(opened, blocks, classes, settings, chunk_rows, workers)
    if len(store) == 0:
        raise StoreError(f"store {str(store.path)!r} has no committed samples yet; record some first")
    names = list(store.blocks) if blocks is None else list(blocks)
    for name in names:
        store.block(name)  # raises StoreError naming the block and the ones there are
    present, inverse = np.unique(store.class_names, return_inverse=True)
    recorded = store.recorded_class_names
    all_classes = recorded + sorted(set(present.tolist()) - set(recorded))
    selected = list(all_classes) if classes is None else list(classes)
    for name in selected:
        if name not in all_classes:
            raise StoreError(_unknown("class", name, all_classes, f"store {str(store.path)!r}"))
    index = {name: i for i, name in enumerate(all_classes)}
    labels = np.asarray([index[name] for name in present.tolist()], dtype=np.intp)[inverse.ravel()]

    from seviz._streaming import Scratch

    spare: queue.SimpleQueue[Scratch] = queue.SimpleQueue()  # one per worker, reused block after block

    def one(name: str) -> BlockStatistics:
        info = store.blocks[name]
        log.info("statistics of %s (%d channels, %d samples)", name, info.channels, len(store))
        try:
            scratch = spare.get_nowait()
        except queue.Empty:
            scratch = Scratch()
        try:
            return _block_statistics(
                store, info, labels, all_classes, selected, settings, chunk_rows, scratch
            )
        finally:
            spare.put(scratch)

    if workers is not None and workers < 1:
        raise ValueError(f"workers={workers} must be at least 1")
    workers = min(len(names), workers or min(_MAX_WORKERS, _cpus()))
    if workers <= 1:
        results = {name: one(name) for name in names}
    else:
        # Blocks are independent and the compiled loops that take the time
        # release the GIL, so blocks run side by side; largest first, so no
        # worker is left with a big block at the end.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seviz-stats") as pool:
            by_size = sorted(names, key=lambda name: -store.blocks[name].channels)
            futures = {name: pool.submit(one, name) for name in by_size}
            try:
                results = {name: futures[name].result() for name in names}
            except BaseException:
                for future in futures.values():
                    future.cancel()
                raise
    return StoreStatistics(
        store=store_identity(store), settings=settings, class_names=tuple(selected), blocks=results
    )


def _block_statistics(
    store: Store,
    info: BlockInfo,
    labels: np.ndarray,
    all_classes: list[str],
    selected: list[str],
    settings: StatsSettings,
    chunk_rows: int | None,
    scratch: Scratch,
) -> BlockStatistics:
    from seviz._streaming import BlockAccumulator

    rows = max(256, _CHUNK_ELEMENTS // max(1, info.channels)) if chunk_rows is None else int(chunk_rows)
    if rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows} must be at least 1")
    acc = BlockAccumulator(info, len(store), all_classes, selected, settings, scratch)
    # As stored: the accumulator works on float16 gates directly, faster than
    # converting them to float32 first; it copies what it keeps of a chunk, so
    # every chunk is read into the same memory.
    buffer = scratch.take("chunk", rows * info.channels * 4, np.uint8)  # float16 or float32
    try:
        chunks = store.iter_chunks(info.name, rows=rows, dtype=None, buffer=buffer)
    except TypeError:  # an iter_chunks without ``dtype`` (a wrapper, an older Store): float32 chunks
        chunks = store.iter_chunks(info.name, rows=rows)
    for row_slice, gates in chunks:
        acc.add(row_slice.start, gates, labels[row_slice])
    return acc.finish()


_loader: threading.Thread | None = None
_loader_lock = threading.Lock()


def _start_loading_kernels() -> None:
    """Load the compiled kernels in a thread (once per process) while the caller opens the store."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = threading.Thread(target=_load_kernels, name="seviz-load-kernels", daemon=True)
            _loader.start()


def _load_kernels() -> None:
    try:
        from seviz._kernels import load_all

        load_all()
    except Exception:  # the workers' own first calls will raise it where it can be reported
        log.debug("loading the compiled kernels ahead failed", exc_info=True)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _unknown(kind: str, name: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    shown = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
    return f"{kind} {name!r} is not in {where}; {hint}it has: {shown or 'none'}"


def _float(value: float) -> float | None:
    value = float(value)
    return None if not math.isfinite(value) else round(value, 6)


def _floats(values: np.ndarray) -> list[float | None]:
    return [_float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
