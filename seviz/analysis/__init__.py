"""Analysis of a store: streamed per-class statistics, class specificity, gate behaviour.

Rooms: :mod:`~seviz.analysis.results` (the frozen result records, a leaf),
:mod:`~seviz.analysis.compute` (:func:`compute_statistics`, one streamed pass per
block), ``_accumulator``, ``_kernels`` and ``_numpy_loops`` (its vectorised and
compiled loops), :mod:`~seviz.analysis.extremes` (the samples with the highest and
lowest gate of each channel), :mod:`~seviz.analysis.cache` (both saved once beside
the store and read back).
"""

from seviz.analysis.cache import (
    cache_folder,
    cached_channel_extremes,
    cached_statistics,
    class_counts,
    class_quantiles,
    class_values,
    preload_classes,
    saved_statistics,
    store_fingerprint,
)
from seviz.analysis.compute import compute_statistics, store_identity
from seviz.analysis.extremes import ChannelExtremes, channel_extremes
from seviz.analysis.results import (
    ALL_CLASSES,
    SPECIFICITY_METHODS,
    STATISTICS_VERSION,
    BlockStatistics,
    ClassStats,
    GateBehaviour,
    Specificity,
    StatsSettings,
    StoreStatistics,
)

__all__ = [
    "ALL_CLASSES",
    "SPECIFICITY_METHODS",
    "STATISTICS_VERSION",
    "BlockStatistics",
    "ChannelExtremes",
    "ClassStats",
    "GateBehaviour",
    "Specificity",
    "StatsSettings",
    "StoreStatistics",
    "cache_folder",
    "cached_channel_extremes",
    "cached_statistics",
    "saved_statistics",
    "channel_extremes",
    "class_counts",
    "class_quantiles",
    "class_values",
    "compute_statistics",
    "preload_classes",
    "store_fingerprint",
    "store_identity",
]
