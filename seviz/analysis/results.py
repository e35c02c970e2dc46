"""The results of analysing a store: per-class, per-block and per-store statistics.

A leaf: these frozen records import nothing from seviz's other rooms, so every
reader of statistics (pruning, plots, the app) depends only on them.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seviz._files import atomic_write_text, check_output
from seviz.errors import AnalysisError, StoreError
from seviz.store import BlockInfo

ALL_CLASSES = "all classes"


SPECIFICITY_METHODS = ("between_within_variance_ratio", "nearest_centroid_cv_accuracy")


STATISTICS_VERSION = 1


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
            raise AnalysisError(
                f"quantile_bins={self.quantile_bins} must be a positive multiple of "
                f"histogram_bins={self.histogram_bins}; e.g. quantile_bins=1000, histogram_bins=20"
            )
        if self.folds < 2:
            raise AnalysisError(f"folds={self.folds}: cross-validation needs at least 2 folds")
        if any(not 0.0 <= q <= 1.0 for q in self.quantile_levels):
            raise AnalysisError(f"quantile_levels={self.quantile_levels} must lie in [0, 1]")
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

    def summary(self) -> str:
        """The per-block table ``seviz analyze`` prints: specificity and gate behaviour, in depth order."""
        lines = [
            f"{'block':8} {'channels':>8} {'specificity':>11} {'chance':>6} {'var-ratio':>9} "
            f"{'mean|1-s|':>9} {'>=0.95':>6} {'input-dep':>9}"
        ]
        for name, block in self.blocks.items():
            sp, gb = block.specificity, block.behaviour
            lines.append(
                f"{name:8} {block.channels:>8} {sp.accuracy:>11.3f} {sp.chance:>6.3f} {sp.variance_ratio:>9.3f} "
                f"{gb.mean_abs_deviation:>9.4f} {gb.fraction_near_one:>6.3f} {gb.input_dependence:>9.4f}"
            )
        lines.append(
            f"specificity: {self.settings.folds}-fold nearest-centroid accuracy of the class from the "
            "excitation vector"
        )
        return "\n".join(lines)

    def write_json(
        self,
        path: str | os.PathLike,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
        per_class: bool = True,
    ) -> Path:
        """Write :meth:`to_dict` as JSON, atomically.

        Args:
            path: The JSON file.
            overwrite: Replace an existing file.
            inputs: Files it may not replace (the store the statistics came from).
            per_class: Include the per-class statistics.

        Raises:
            OutputError: ``path`` exists and ``overwrite`` is False, or is one of ``inputs``.
        """
        target = check_output(path, inputs=inputs, overwrite=overwrite, what="statistics JSON")
        return atomic_write_text(
            target, json.dumps(self.to_dict(per_class), indent=2, allow_nan=False) + "\n"
        )


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
