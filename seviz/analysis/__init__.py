"""Analysis of a store: streamed per-class statistics, class specificity, gate behaviour.

Rooms: :mod:`~seviz.analysis.results` (the frozen result records, a leaf),
:mod:`~seviz.analysis.compute` (:func:`compute_statistics`, one streamed pass per
block), ``_accumulator`` and ``_kernels`` (its vectorised and compiled loops).
"""

from seviz.analysis.compute import compute_statistics, store_identity
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
    "ClassStats",
    "GateBehaviour",
    "Specificity",
    "StatsSettings",
    "StoreStatistics",
    "compute_statistics",
    "store_identity",
]
