"""The single streaming pass behind :func:`seviz.stats.compute_statistics`.

One :class:`BlockAccumulator` per block takes the block's chunks in order and
keeps only fixed-size state (sizes in brackets; K classes, F folds, C
channels, H histogram groups (the reported classes, plus one for the rest), B
fine bins):

* per (class, fold): row count and sum of ``gate - ref``, per class: sum of
  squares of ``gate - ref``, where ``ref`` is the first row seen of that class
  [K*F*C + K*C float64], so gates that never change give a variance of
  exactly 0 (no cancellation);
* per class: minima and maxima [2 x K*C float32];
* per (group, channel): a histogram of B bins over [0, 1], counted in uint16
  and moved into uint32 totals before a count could overflow [H*C*B uint16,
  plus H*C*B uint32 once more than 65,535 rows of one group were seen], from
  which quantiles and coarse histograms are read;
* at most ``max_eval_samples`` rows, evenly spread and chosen by index, to
  score the nearest-centroid classifier once the centroids are known.

Rows of a chunk are first grouped by (class, fold) with one gather, so every
sum above is a plain reduction over contiguous rows.

Float16 chunks (the default store type) are used as read, without the float32
conversion that numpy does one value at a time (about 3x a plain read): a
float16's bit pattern orders non-negative values like the values, so minima
and maxima are integer reductions; a 65,536-entry table maps each pattern to
its fine bin (float16 values are discrete, so the table is exact); and rows
are widened to float32 for the sums by moving the bit fields (exact). Chunks
with negative or non-finite float16 gates, and float32 stores, go through the
same steps on float32 values.

Histogram counts are added with ``np.add.at`` in column slabs of
``_SLAB_COLUMNS`` channels, so the counters one call touches (slab x B x 2
bytes) stay in cache; the counting is what bounds the pass (see
``benchmarks/analysis_scale.py``).
"""

from __future__ import annotations

import functools
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
_SLAB_COLUMNS = 256  # histogram columns per np.add.at: 256 x 1000 bins x 2 bytes stay in L2
_SLAB_ELEMENTS = 1 << 17  # values per np.add.at call: large enough to amortise the call
_PENDING_MAX = np.iinfo(np.uint16).max  # rows per group before uint16 counts could overflow
_F16_SIGN_OR_INF = 0x7C00  # float16 bit patterns below this are finite and >= +0
_ONE = np.uint16(1)


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
        self.s2 = np.zeros((classes, channels), dtype=np.float64)
        self.low = np.full((classes, channels), np.inf, dtype=np.float32)
        self.high = np.full((classes, channels), -np.inf, dtype=np.float32)
        # Histogram counts, (group, channel, bin) flattened: uint16 counts of
        # the rows since the group's last flush into the totals.
        self.pending = np.zeros(groups * channels * self.bins, dtype=np.uint16)
        self.pending_rows = [0] * groups
        self.totals: np.ndarray | None = None
        self.totals_dtype = np.uint32 if samples < 2**32 else np.int64
        # Offset of (group, channel) in the flattened histogram.
        self.offset = (np.arange(groups * channels, dtype=np.intp) * self.bins).reshape(groups, channels)
        self.near_count = np.zeros(channels, dtype=np.int64)  # used when near_one is not a bin edge
        # Scratch reused by every chunk (allocating them per slab costs more than filling them).
        slab = min(channels, _SLAB_COLUMNS) * max(1, _SLAB_ELEMENTS // min(channels, _SLAB_COLUMNS))
        self._index = np.empty(slab, dtype=np.intp)
        self._bins = np.empty(slab, dtype=np.intp)
        self._scaled = np.empty(slab, dtype=np.float32)
        self._wide = np.empty(_SUM_ROWS * channels, dtype=np.uint32)
        self.excess = 0.0  # sum of max(s - 1, 0): |1 - s| = 1 - s + 2 max(s - 1, 0)
        self.eval_every = max(1, math.ceil(samples / max(1, settings.max_eval_samples)))
        self.eval_rows: list[np.ndarray] = []
        self.eval_labels: list[np.ndarray] = []
        self.eval_folds: list[np.ndarray] = []

    def add(self, start: int, gates: np.ndarray, labels: np.ndarray) -> None:
        """Add rows ``start ...`` of the block: float16 or float32 (which is modified in place)."""
        folds = self.settings.folds
        n = len(gates)
        if n == 0:
            return
        index = np.arange(start, start + n)
        fold = index % folds
        # Scored rows: whole runs of `folds` consecutive samples, so every fold
        # is represented equally whatever the stride.
        keep = (index // folds) % self.eval_every == 0
        self.eval_rows.append(gates[keep])  # boolean indexing copies; float16 stays float16 until finish
        self.eval_labels.append(labels[keep])
        self.eval_folds.append(fold[keep])

        key = labels * folds + fold
        order = np.argsort(key, kind="stable")
        keys = key[order]
        rows = gates if np.array_equal(order, np.arange(n)) else gates[order]
        cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        starts, stops = np.r_[0, cut], np.r_[cut, n]
        segments = list(zip(starts.tolist(), stops.tolist(), keys[starts].tolist(), strict=True))
        # Runs of one class: consecutive (class, fold) segments.
        runs: list[tuple[int, int, int]] = []
        for a, b, k in segments:
            cls = k // folds
            if runs and runs[-1][2] == cls:
                runs[-1] = (runs[-1][0], b, cls)
            else:
                runs.append((a, b, cls))

        codes = None
        if rows.dtype == np.float16:
            codes = rows.view(np.uint16)
            if int(codes.max()) >= _F16_SIGN_OR_INF:  # negative or non-finite gates
                codes, rows = None, rows.astype(np.float32)
        else:
            rows = np.asarray(rows, dtype=np.float32)
        low, high = (
            self._extremes_of_codes(codes, runs) if codes is not None else self._extremes(rows, runs, start)
        )
        if codes is not None:
            if self.near_bin is None:
                self.near_count += np.count_nonzero(
                    codes >= _first_code_at_least(self.settings.near_one), axis=0
                )
            if high > 1.0:
                rows = _widen(codes)
        elif self.near_bin is None:
            self.near_count += np.count_nonzero(rows >= self.settings.near_one, axis=0)
        if high > 1.0:
            self.excess += float(np.maximum(rows - 1.0, 0.0).sum(dtype=np.float64))

        # x * bins can round up to `bins` just below 1 in float32; clip whenever that can happen.
        clip = (np.float32(high) * np.float32(self.bins) >= self.bins, low < 0.0)
        for a, b, cls in runs:
            self._count(codes if codes is not None else rows, a, b, int(self.hist_group[cls]), clip)
        for a, b, k in segments:
            cls, f = divmod(k, folds)
            for r in range(a, b, _SUM_ROWS):
                r1 = min(b, r + _SUM_ROWS)
                part = _widen(codes[r:r1], self._wide) if codes is not None else rows[r:r1]
                if not self.has_ref[cls]:
                    self.ref[cls] = part[0]
                    self.has_ref[cls] = True
                part -= self.ref[cls]
                self.s1[cls, f] += part.sum(axis=0)
                self.s2[cls] += np.einsum("ij,ij->j", part, part)
            self.count[cls, f] += b - a

    def _extremes_of_codes(self, codes: np.ndarray, runs: list[tuple[int, int, int]]) -> tuple[float, float]:
        """Per-class minima and maxima of finite, non-negative float16 bit patterns; the chunk's range."""
        values = _float16_values()
        lows, highs = [], []
        for a, b, cls in runs:
            seg_low, seg_high = values[codes[a:b].min(axis=0)], values[codes[a:b].max(axis=0)]
            np.minimum(self.low[cls], seg_low, out=self.low[cls])
            np.maximum(self.high[cls], seg_high, out=self.high[cls])
            lows.append(seg_low.min())
            highs.append(seg_high.max())
        return float(np.min(lows)), float(np.max(highs))

    def _extremes(
        self, rows: np.ndarray, runs: list[tuple[int, int, int]], start: int
    ) -> tuple[float, float]:
        """Per-class minima and maxima of float32 rows; the chunk's range, which must be finite."""
        lows, highs = [], []
        for a, b, cls in runs:
            seg_low, seg_high = rows[a:b].min(axis=0), rows[a:b].max(axis=0)
            np.minimum(self.low[cls], seg_low, out=self.low[cls])
            np.maximum(self.high[cls], seg_high, out=self.high[cls])
            lows.append(seg_low.min())
            highs.append(seg_high.max())
        low, high = float(np.min(lows)), float(np.max(highs))  # NaN propagates here
        if not (math.isfinite(low) and math.isfinite(high)):
            last = start + len(rows) - 1
            raise StoreError(
                f"block {self.info.name} has non-finite gate values in samples {start}..{last}; "
                "re-record the store (check the model's precision settings)"
            )
        return low, high

    def _count(self, rows: np.ndarray, a: int, b: int, group: int, clip: tuple[bool, bool]) -> None:
        """Add rows ``a:b`` (float16 bit patterns, or float32 values) to ``group``'s histogram."""
        channels = self.info.channels
        width = min(channels, _SLAB_COLUMNS)
        step = max(1, _SLAB_ELEMENTS // width)
        lut = _bin_table(self.bins) if rows.dtype == np.uint16 else None
        for r0 in range(a, b, step):
            r1 = min(b, r0 + step)
            if self.pending_rows[group] + (r1 - r0) > _PENDING_MAX:
                self._flush(group)
            self.pending_rows[group] += r1 - r0
            for c0 in range(0, channels, width):
                c1 = min(channels, c0 + width)
                block = rows[r0:r1, c0:c1]
                size = (r1 - r0) * (c1 - c0)
                codes = self._bins[:size].reshape(r1 - r0, c1 - c0)
                if lut is not None:
                    index = self._index[:size].reshape(codes.shape)
                    np.copyto(index, block)
                    np.take(lut, index, out=codes, mode="clip")  # exact: one entry per float16 value
                else:
                    scaled = self._scaled[:size].reshape(codes.shape)
                    np.multiply(block, np.float32(self.bins), out=scaled)
                    if clip[0]:
                        np.minimum(scaled, np.float32(self.bins - 1), out=scaled)
                    if clip[1]:
                        np.maximum(scaled, np.float32(0.0), out=scaled)
                    np.copyto(codes, scaled, casting="unsafe")  # truncation == floor for values >= 0
                codes += self.offset[group, c0:c1]
                np.add.at(self.pending, codes.reshape(-1), _ONE)

    def _flush(self, group: int) -> None:
        """Move one group's uint16 counts into the totals."""
        size = self.info.channels * self.bins
        if self.totals is None:
            self.totals = np.zeros(self.pending.shape, dtype=self.totals_dtype)
        part = slice(group * size, (group + 1) * size)
        self.totals[part] += self.pending[part]
        self.pending[part] = 0
        self.pending_rows[group] = 0

    def histograms(self) -> list[np.ndarray]:
        """Every group's counts so far, (channel, bin) views: uint16, or uint32 once a group was flushed."""
        groups = len(self.pending_rows)
        if self.totals is not None:
            for group in range(groups):
                self._flush(group)
        counts = self.pending if self.totals is None else self.totals
        return list(counts.reshape(groups, self.info.channels, self.bins))

    def finish(self) -> BlockStatistics:
        """Turn the running state into :class:`~seviz.stats.BlockStatistics`."""
        settings = self.settings
        n_k = self.count.sum(axis=1)
        present = n_k > 0
        total = int(n_k.sum())
        safe = np.maximum(n_k, 1)[:, None]
        shift = self.s1.sum(axis=1) / safe
        mean_k = self.ref + shift
        var_k = np.maximum(self.s2 / safe - shift**2, 0.0)
        weight = n_k[present, None].astype(np.float64)
        mean_all = (weight * mean_k[present]).sum(axis=0) / total
        between = (weight * (mean_k[present] - mean_all) ** 2).sum(axis=0) / total
        within = (weight * var_k[present]).sum(axis=0) / total
        var_all = between + within
        low_all, high_all = self.low[present].min(axis=0), self.high[present].max(axis=0)

        edges = np.linspace(0.0, 1.0, settings.histogram_bins + 1)
        index = {name: i for i, name in enumerate(self.all_classes)}
        # The fine histograms are only read where a quantile falls (see
        # _histogram_quantiles); "all classes" is the sum of the groups.
        fine = self.histograms()
        coarse = [f.reshape(len(f), settings.histogram_bins, -1).sum(axis=2, dtype=np.int64) for f in fine]
        classes = {}
        for group, name in enumerate(self.selected):
            k = index[name]
            classes[name] = self._class_stats(
                name,
                int(n_k[k]),
                mean_k[k],
                var_k[k],
                self.low[k],
                self.high[k],
                [fine[group]],
                coarse[group],
                edges,
            )
        everything = self._class_stats(
            ALL_CLASSES, total, mean_all, var_all, low_all, high_all, fine, sum(coarse[1:], coarse[0]), edges
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
        if self.near_bin is not None:
            near = sum(f[:, self.near_bin :].sum(axis=1, dtype=np.int64) for f in fine)
        else:
            near = self.near_count
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
        fine: list[np.ndarray],
        coarse: np.ndarray,
        edges: np.ndarray,
    ) -> ClassStats:
        return ClassStats(
            name=name,
            count=count,
            mean=np.asarray(mean, dtype=np.float64),
            std=np.sqrt(var),
            min=np.asarray(low, dtype=np.float64),
            max=np.asarray(high, dtype=np.float64),
            quantile_levels=self.settings.quantile_levels,
            quantiles=_histogram_quantiles(fine, coarse, self.settings.quantile_levels, low, high),
            histogram=coarse,
            bin_edges=edges,
        )

    def _centroid_accuracy(self, center: np.ndarray) -> tuple[float, int]:
        """Nearest-centroid accuracy of the held rows, each scored by centroids without its fold."""
        folds = np.concatenate(self.eval_folds)
        by_fold = np.argsort(folds, kind="stable")  # each fold's rows together, in sample order
        rows = np.concatenate(self.eval_rows)[by_fold]  # as stored; float32 one fold at a time
        labels = np.concatenate(self.eval_labels)[by_fold]
        self.eval_rows.clear()
        bounds = np.searchsorted(folds[by_fold], np.arange(self.settings.folds + 1))
        total = self.s1.sum(axis=1)
        n_k = self.count.sum(axis=1)
        correct = evaluated = 0
        for fold in range(self.settings.folds):
            mine = slice(bounds[fold], bounds[fold + 1])
            train = n_k - self.count[:, fold]
            candidates = np.flatnonzero(train > 0)
            if mine.start == mine.stop or len(candidates) == 0:
                continue
            centroid = (
                self.ref[candidates]
                + (total[candidates] - self.s1[candidates, fold]) / train[candidates, None]
                - center
            )
            centroid = centroid.astype(np.float32)
            # Centring on the overall mean keeps the float32 dot products accurate.
            x = _float32(rows[mine])
            x -= center.astype(np.float32)
            # argmin ||x - c||^2 = argmin (||c||^2 - 2 x.c); ties go to the first class.
            score = (centroid.astype(np.float64) ** 2).sum(axis=1) - 2.0 * (x @ centroid.T)
            predicted = candidates[np.argmin(score, axis=1)]
            correct += int((predicted == labels[mine]).sum())
            evaluated += len(x)
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


def _widen(codes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Float32 values of finite, non-negative float16 bit patterns (exact, subnormals included).

    Shifting the 15 low bits into a float32's place gives the value times
    2**-112 (the exponent biases differ by 112, and a float16 subnormal lands
    on a float32 subnormal); the multiplication restores it. ``out``: flat
    uint32 scratch of at least ``codes.size`` to write into.
    """
    if out is not None:
        out = out[: codes.size].reshape(codes.shape)
    wide = np.left_shift(codes, 13, out=out, dtype=np.uint32).view(np.float32)
    wide *= np.float32(2.0**112)
    return wide


def _float32(rows: np.ndarray) -> np.ndarray:
    """``rows`` as float32: float16 widened by :func:`_widen` where it applies."""
    if rows.dtype == np.float16 and rows.size and int(rows.view(np.uint16).max()) < _F16_SIGN_OR_INF:
        return _widen(rows.view(np.uint16))
    return np.asarray(rows, dtype=np.float32)


@functools.cache
def _float16_values() -> np.ndarray:
    """The float32 value of every float16 bit pattern (65,536 entries)."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@functools.cache
def _bin_table(bins: int) -> np.ndarray:
    """Fine bin of every float16 bit pattern: the bin ``floor(x * bins)`` (clipped) of the float32 path."""
    with np.errstate(invalid="ignore"):
        scaled = _float16_values() * np.float32(bins)
        scaled = np.nan_to_num(np.clip(scaled, np.float32(0.0), np.float32(bins - 1)))
    table = scaled.astype(np.intp)
    table.flags.writeable = False
    return table


@functools.cache
def _first_code_at_least(level: float) -> int:
    """The smallest non-negative float16 bit pattern whose value is >= ``level``."""
    return int(np.searchsorted(_float16_values()[:_F16_SIGN_OR_INF], np.float32(level), side="left"))


def _histogram_quantiles(
    fine: list[np.ndarray], coarse: np.ndarray, levels: tuple[float, ...], low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """Quantiles per channel from counts over [0, 1], interpolated inside the fine bin.

    ``fine`` holds (C, B) counts (any integer type) whose sum is the
    distribution's histogram, ``coarse`` that sum's (C, H) coarse counts (H
    divides B). For level q the bin holding the ceil(q n)-th smallest value
    (numpy's ``inverted_cdf`` rank) is found from the cumulative counts, first
    the coarse bin, then the fine bin inside it, so only H + B / H counts per
    channel and level are read; the result is placed in it assuming the values
    spread evenly over the bin, then clamped to the observed [min, max].
    """
    channels, bins = fine[0].shape
    width = bins // coarse.shape[1]
    rows = np.arange(channels)
    outer = np.cumsum(coarse, axis=1)
    target = np.asarray(levels, dtype=np.float64)[:, None] * outer[None, :, -1]  # (L, C)
    rank = np.ceil(target).astype(np.int64)  # counts are integers: count >= t exactly when count >= ceil(t)
    k = np.minimum((outer[None] < rank[..., None]).sum(axis=2), coarse.shape[1] - 1)
    below = np.where(k > 0, outer[rows[None, :], np.maximum(k - 1, 0)], 0)
    inner = np.zeros((*k.shape, width), dtype=np.int64)  # (L, C, width): the fine bins of coarse bin k
    for counts in fine:
        inner += counts.reshape(channels, -1, width)[rows[None, :], k]
    cdf = below[..., None] + np.cumsum(inner, axis=2)
    local = np.minimum((cdf < rank[..., None]).sum(axis=2), width - 1)
    j = k * width + local
    before = np.where(
        local > 0, np.take_along_axis(cdf, np.maximum(local - 1, 0)[..., None], axis=2)[..., 0], below
    )
    inside = np.maximum(np.take_along_axis(inner, local[..., None], axis=2)[..., 0], 1)
    value = (j + np.clip((target - before) / inside, 0.0, 1.0)) / bins
    return np.clip(value, low[None, :], high[None, :])
