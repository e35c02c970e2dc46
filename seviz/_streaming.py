"""The single streaming pass behind :func:`seviz.stats.compute_statistics`.

One :class:`BlockAccumulator` per block takes the block's chunks in order and
keeps only fixed-size state (sizes in brackets; K classes, F folds, C
channels, H reported classes, B fine bins):

* per (class, fold): row count, sum and sum of squares of ``gate - ref``,
  where ``ref`` is the first row seen of that class [2 x K*F*C float64], so
  gates that never change give a variance of exactly 0 (no cancellation);
* per class: minima and maxima [2 x K*C float32];
* per (channel, reported class): a histogram of B bins over [0, 1]
  [C*H*B int64], from which quantiles and coarse histograms are read;
* at most ``max_eval_samples`` rows, evenly spread and chosen by index, to
  score the nearest-centroid classifier once the centroids are known.

Rows of a chunk are first grouped by (class, fold) with one gather, so every
sum above is a plain reduction over contiguous rows.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from seviz.stats import (
    ALL_CLASSES,
    BlockStatistics,
    ClassStats,
    GateBehaviour,
    Specificity,
    StatsSettings,
)
from seviz.store import BlockInfo, StoreError

log = logging.getLogger(__name__)

# Added to the within-class variance before dividing: about the variance of
# float16 rounding near 1, so exactly constant channels score 0 instead of NaN.
_VARIANCE_FLOOR = 1e-8
_SUM_ROWS = 1024  # float32 partial sums over at most this many rows, then float64
_HIST_SLAB_BYTES = 2 << 20  # histogram columns handled at once stay in cache


class BlockAccumulator:
    """Fixed-size running state of one block; feed chunks with :meth:`add`, then :meth:`finish`."""

    def __init__(
        self,
        info: BlockInfo,
        samples: int,
        all_classes: list[str],
        selected: list[str],
        settings: StatsSettings,
    ) -> None:
        self.info = info
        self.settings = settings
        self.all_classes = all_classes
        self.selected = selected
        channels, classes, folds = info.channels, len(all_classes), settings.folds
        index = {name: i for i, name in enumerate(all_classes)}
        # Histogram groups: one per reported class, plus one for the rest (so
        # the "all classes" histogram is the sum of the groups).
        self.hist_group = np.full(classes, len(selected), dtype=np.intp)
        for i, name in enumerate(selected):
            self.hist_group[index[name]] = i
        groups = len(selected) + (1 if len(selected) < classes else 0)
        self.bins = _affordable_bins(info, groups, settings)
        near = settings.near_one * self.bins
        self.near_bin = int(round(near)) if abs(near - round(near)) < 1e-6 else None

        self.count = np.zeros((classes, folds), dtype=np.int64)
        self.ref = np.zeros((classes, channels), dtype=np.float32)
        self.has_ref = np.zeros(classes, dtype=bool)
        self.s1 = np.zeros((classes, folds, channels), dtype=np.float64)
        self.s2 = np.zeros((classes, folds, channels), dtype=np.float64)
        self.low = np.full((classes, channels), np.inf, dtype=np.float32)
        self.high = np.full((classes, channels), -np.inf, dtype=np.float32)
        self.hist = np.zeros((channels, groups, self.bins), dtype=np.int64)
        self.near_count = np.zeros(channels, dtype=np.int64)  # used when near_one is not a bin edge
        self.excess = 0.0  # sum of max(s - 1, 0): |1 - s| = 1 - s + 2 max(s - 1, 0)
        self.eval_every = max(1, math.ceil(samples / max(1, settings.max_eval_samples)))
        self.eval_rows: list[np.ndarray] = []
        self.eval_labels: list[np.ndarray] = []
        self.eval_folds: list[np.ndarray] = []

    def add(self, start: int, gates: np.ndarray, labels: np.ndarray) -> None:
        """Add rows ``start ...`` of the block (``gates`` is modified in place)."""
        folds = self.settings.folds
        n = len(gates)
        if n == 0:
            return
        index = np.arange(start, start + n)
        fold = index % folds
        # Scored rows: whole runs of `folds` consecutive samples, so every fold
        # is represented equally whatever the stride.
        keep = (index // folds) % self.eval_every == 0
        self.eval_rows.append(gates[keep])  # boolean indexing copies
        self.eval_labels.append(labels[keep])
        self.eval_folds.append(fold[keep])

        key = labels * folds + fold
        order = np.argsort(key, kind="stable")
        keys = key[order]
        rows = gates if np.array_equal(order, np.arange(n)) else gates[order]
        cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        starts, stops = np.r_[0, cut], np.r_[cut, n]
        segments = list(zip(starts.tolist(), stops.tolist(), keys[starts].tolist(), strict=True))

        lows, highs = [], []
        for a, b, k in segments:
            cls = k // folds
            seg_low, seg_high = rows[a:b].min(axis=0), rows[a:b].max(axis=0)
            np.minimum(self.low[cls], seg_low, out=self.low[cls])
            np.maximum(self.high[cls], seg_high, out=self.high[cls])
            lows.append(seg_low.min())
            highs.append(seg_high.max())
        low, high = float(np.min(lows)), float(np.max(highs))  # NaN propagates here
        if not (math.isfinite(low) and math.isfinite(high)):
            raise StoreError(
                f"block {self.info.name} has non-finite gate values in samples {start}..{start + n - 1}; "
                "re-record the store (check the model's precision settings)"
            )
        _add_histogram(self.hist, rows, self.hist_group[keys // folds], self.bins, low < 0.0, high)
        if self.near_bin is None:
            self.near_count += np.count_nonzero(rows >= self.settings.near_one, axis=0)
        if high > 1.0:
            self.excess += float(np.maximum(rows - 1.0, 0.0).sum(dtype=np.float64))

        for a, b, k in segments:
            cls, f = divmod(k, folds)
            if not self.has_ref[cls]:
                self.ref[cls] = rows[a]
                self.has_ref[cls] = True
            rows[a:b] -= self.ref[cls]
            for r in range(a, b, _SUM_ROWS):
                part = rows[r : min(b, r + _SUM_ROWS)]
                self.s1[cls, f] += part.sum(axis=0)
                self.s2[cls, f] += np.einsum("ij,ij->j", part, part)
            self.count[cls, f] += b - a

    def finish(self) -> BlockStatistics:
        """Turn the running state into :class:`~seviz.stats.BlockStatistics`."""
        settings = self.settings
        n_k = self.count.sum(axis=1)
        present = n_k > 0
        total = int(n_k.sum())
        safe = np.maximum(n_k, 1)[:, None]
        shift = self.s1.sum(axis=1) / safe
        mean_k = self.ref + shift
        var_k = np.maximum(self.s2.sum(axis=1) / safe - shift**2, 0.0)
        weight = n_k[present, None].astype(np.float64)
        mean_all = (weight * mean_k[present]).sum(axis=0) / total
        between = (weight * (mean_k[present] - mean_all) ** 2).sum(axis=0) / total
        within = (weight * var_k[present]).sum(axis=0) / total
        var_all = between + within
        low_all, high_all = self.low[present].min(axis=0), self.high[present].max(axis=0)

        edges = np.linspace(0.0, 1.0, settings.histogram_bins + 1)
        index = {name: i for i, name in enumerate(self.all_classes)}
        classes = {}
        for group, name in enumerate(self.selected):
            k = index[name]
            classes[name] = self._class_stats(
                name, int(n_k[k]), mean_k[k], var_k[k], self.low[k], self.high[k], self.hist[:, group], edges
            )
        hist_all = self.hist.sum(axis=1)
        everything = self._class_stats(
            ALL_CLASSES, total, mean_all, var_all, low_all, high_all, hist_all, edges
        )

        ratio = between / (within + _VARIANCE_FLOOR)
        spread = float(between.sum() + within.sum())
        accuracy, evaluated = self._centroid_accuracy(mean_all)
        specificity = Specificity(
            variance_ratio=float(ratio.mean()),
            between_share=float(between.sum()) / spread if spread > 0 else 0.0,
            channel_ratio=ratio,
            accuracy=accuracy,
            chance=1.0 / int(present.sum()),
            classes=int(present.sum()),
            folds=settings.folds,
            evaluated=evaluated,
        )

        gates = total * self.info.channels
        near = hist_all[:, self.near_bin :].sum(axis=1) if self.near_bin is not None else self.near_count
        square = var_all + mean_all**2
        with np.errstate(divide="ignore", invalid="ignore"):
            channel_dependence = np.where(square > 0, var_all / np.where(square > 0, square, 1.0), 0.0)
        behaviour = GateBehaviour(
            mean_abs_deviation=(gates - total * float(mean_all.sum()) + 2.0 * self.excess) / gates,
            fraction_near_one=float(near.sum()) / gates,
            near_one=settings.near_one,
            input_dependence=float(var_all.sum() / square.sum()) if square.sum() > 0 else 0.0,
            input_std=float(np.sqrt(var_all.mean())),
            channel_dependence=channel_dependence,
            channel_near_one=near / total,
            min_gate=float(low_all.min()),
            max_gate=float(high_all.max()),
        )
        return BlockStatistics(
            info=self.info,
            classes=classes,
            all=everything,
            specificity=specificity,
            behaviour=behaviour,
            quantile_bins=self.bins,
        )

    def _class_stats(
        self,
        name: str,
        count: int,
        mean: np.ndarray,
        var: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
        fine: np.ndarray,
        edges: np.ndarray,
    ) -> ClassStats:
        coarse = fine.reshape(len(fine), self.settings.histogram_bins, -1).sum(axis=2)
        return ClassStats(
            name=name,
            count=count,
            mean=np.asarray(mean, dtype=np.float64),
            std=np.sqrt(var),
            min=np.asarray(low, dtype=np.float64),
            max=np.asarray(high, dtype=np.float64),
            quantile_levels=self.settings.quantile_levels,
            quantiles=_histogram_quantiles(fine, self.settings.quantile_levels, low, high),
            histogram=coarse,
            bin_edges=edges,
        )

    def _centroid_accuracy(self, center: np.ndarray) -> tuple[float, int]:
        """Nearest-centroid accuracy of the held rows, each scored by centroids without its fold."""
        rows = np.concatenate(self.eval_rows)
        labels = np.concatenate(self.eval_labels)
        folds = np.concatenate(self.eval_folds)
        self.eval_rows.clear()
        # Centring on the overall mean keeps the float32 dot products accurate.
        rows -= center.astype(np.float32)
        total = self.s1.sum(axis=1)
        n_k = self.count.sum(axis=1)
        correct = evaluated = 0
        for fold in range(self.settings.folds):
            mine = folds == fold
            train = n_k - self.count[:, fold]
            candidates = np.flatnonzero(train > 0)
            if not mine.any() or len(candidates) == 0:
                continue
            centroid = (
                self.ref[candidates]
                + (total[candidates] - self.s1[candidates, fold]) / train[candidates, None]
                - center
            )
            centroid = centroid.astype(np.float32)
            # argmin ||x - c||^2 = argmin (||c||^2 - 2 x.c); ties go to the first class.
            score = (centroid.astype(np.float64) ** 2).sum(axis=1) - 2.0 * (rows[mine] @ centroid.T)
            predicted = candidates[np.argmin(score, axis=1)]
            correct += int((predicted == labels[mine]).sum())
            evaluated += int(mine.sum())
        return (correct / evaluated if evaluated else float("nan")), evaluated


def _affordable_bins(info: BlockInfo, groups: int, settings: StatsSettings) -> int:
    bins, coarse = settings.quantile_bins, settings.histogram_bins
    cell = info.channels * groups * 8
    if cell * bins <= settings.histogram_budget_bytes:
        return bins
    lowered = max(coarse, (settings.histogram_budget_bytes // cell) // coarse * coarse)
    log.warning(
        "block %s: %d channels x %d classes; quantile resolution lowered from 1/%d to 1/%d to keep its "
        "histogram within %.1f MiB (pass classes=[...] to report fewer classes, or raise "
        "histogram_budget_bytes)",
        info.name,
        info.channels,
        groups,
        bins,
        lowered,
        settings.histogram_budget_bytes / 2**20,
    )
    return lowered


def _add_histogram(
    hist: np.ndarray, rows: np.ndarray, groups: np.ndarray, bins: int, clip_low: bool, high: float
) -> None:
    """Add ``rows`` (n, C) to ``hist`` (C, H, B); row i counts in group ``groups[i]``.

    Columns go in narrow slabs so that the counts one ``bincount`` touches
    (slab x B for the current group; rows arrive grouped) stay in cache.
    """
    n, channels = rows.shape
    _, n_groups, _ = hist.shape
    per_channel = n_groups * bins
    slab = max(1, min(channels, 64, _HIST_SLAB_BYTES // (bins * 8)))
    offset = np.arange(slab, dtype=np.intp)[None, :] * per_channel + (groups * bins)[:, None]
    scaled = np.empty((n, slab), dtype=np.float32)
    codes = np.empty((n, slab), dtype=np.intp)
    # x * bins can round up to `bins` just below 1 in float32; clip whenever that can happen.
    clip_high = np.float32(high) * np.float32(bins) >= bins
    for c0 in range(0, channels, slab):
        width = min(slab, channels - c0)
        if width < slab:
            scaled, codes, offset = scaled[:, :width], codes[:, :width], offset[:, :width]
        np.multiply(rows[:, c0 : c0 + width], np.float32(bins), out=scaled)
        if clip_high:
            np.minimum(scaled, np.float32(bins - 1), out=scaled)
        if clip_low:
            np.maximum(scaled, np.float32(0.0), out=scaled)
        np.copyto(codes, scaled, casting="unsafe")  # truncation == floor for values >= 0
        codes += offset
        counts = np.bincount(codes.ravel(), minlength=width * per_channel)
        hist[c0 : c0 + width] += counts.reshape(width, n_groups, bins)


def _histogram_quantiles(
    hist: np.ndarray, levels: tuple[float, ...], low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """Quantiles per channel from (C, B) counts over [0, 1], interpolated inside the bin.

    For level q the bin holding the ceil(q n)-th smallest value is found from
    the cumulative counts; the result is placed in it assuming the values
    spread evenly over the bin, then clamped to the observed [min, max].
    """
    channels, bins = hist.shape
    cdf = np.cumsum(hist, axis=1)
    n = cdf[:, -1]
    # One searchsorted over all channels: lift row c by c * (max n + 1) so the
    # concatenated cumulative counts are sorted.
    lift = np.arange(channels, dtype=np.int64) * (int(n.max(initial=0)) + 1)
    flat = (cdf + lift[:, None]).ravel().astype(np.float64)  # exact: < 2**53
    rows = np.arange(channels)
    target = np.asarray(levels, dtype=np.float64)[:, None] * n[None, :]  # (L, C)
    j = np.searchsorted(flat, (target + lift[None, :]).ravel(), side="left").reshape(target.shape)
    j = np.clip(j - rows[None, :] * bins, 0, bins - 1)
    before = np.where(j > 0, cdf[rows[None, :], np.maximum(j - 1, 0)], 0)
    inside = np.maximum(hist[rows[None, :], j], 1)
    value = (j + np.clip((target - before) / inside, 0.0, 1.0)) / bins
    return np.clip(value, low[None, :], high[None, :])
