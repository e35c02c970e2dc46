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

Accumulators of different rows of one store (parts analysed in parallel, or the
shards of a recording) combine with :meth:`BlockAccumulator.merge` into the
state one pass over all the rows would have reached.

Float16 chunks (the default store type) with finite, non-negative gates go
through one compiled loop (:func:`seviz._kernels.add_float16_rows`) that
reads each gate once, rows of one class after another so the histogram
counts being added to stay in cache: it widens the float16 bit pattern to
float32 exactly, updates the extremes and sums and counts the fine bin. That
pass bounds the analysis (see ``benchmarks/analysis_scale.py``). Chunks with
negative or non-finite float16 gates, and float32 stores, take a numpy path
that computes the same state: rows grouped by (class, fold) with one gather,
float32 partial sums, histogram counts added with ``np.add.at`` in column
slabs of ``_SLAB_COLUMNS`` channels.

The large buffers (the chunk being read, the histogram counts, the scored
rows) come from a :class:`Scratch` that a worker reuses from block to block.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from seviz.analysis.results import (
    ALL_CLASSES,
    BlockStatistics,
    ClassStats,
    GateBehaviour,
    Specificity,
    StatsSettings,
)
from seviz.errors import AnalysisError, StoreError
from seviz.store import BlockInfo

log = logging.getLogger(__name__)

# Added to the within-class variance before dividing: about the variance of
# float16 rounding near 1, so exactly constant channels score 0 instead of NaN.
_VARIANCE_FLOOR = 1e-8
_SUM_ROWS = 1024  # float32 partial sums over at most this many rows, then float64
_SLAB_COLUMNS = 256  # histogram columns per np.add.at: 256 x 1000 bins x 2 bytes stay in L2
_SLAB_ELEMENTS = 1 << 17  # values per np.add.at call: large enough to amortise the call
_PENDING_MAX = np.iinfo(np.uint16).max  # rows per group before uint16 counts could overflow
_F16_SIGN_OR_INF = 0x7C00  # float16 bit patterns below this are finite and >= +0
_F16_ONE = 0x3C00  # the bit pattern of 1.0
_ONE = np.uint16(1)


class Scratch:
    """Memory one worker reuses from block to block.

    Fresh pages cost the kernel a fault and a zeroing each; a worker that
    analyses sixteen blocks one after another keeps its largest buffers here
    instead (the chunk being read, the histogram counts, the scored rows).
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def take(self, name: str, size: int, dtype: np.dtype | type, zero: bool = False) -> np.ndarray:
        """A flat array of ``size`` elements: the memory last taken under ``name``, grown when needed."""
        dtype = np.dtype(dtype)
        nbytes = size * dtype.itemsize
        memory = self._buffers.get(name)
        if memory is None or memory.nbytes < nbytes:
            memory = self._buffers[name] = np.empty(nbytes, dtype=np.uint8)
        out = memory[:nbytes].view(dtype)
        if zero:
            out.fill(0)
        return out


class BlockAccumulator:
    """Fixed-size running state of one block; feed chunks with :meth:`add`, then :meth:`finish`."""

    def __init__(
        self,
        info: BlockInfo,
        samples: int,
        all_classes: list[str],
        selected: list[str],
        settings: StatsSettings,
        scratch: Scratch | None = None,
        compiled: bool = True,
    ) -> None:
        self.info = info
        self.samples = samples  # rows of the whole store (parts of it merge: see merge)
        self.compiled = compiled  # False: numpy only (small stores; numba is never imported)
        self.scratch = scratch or Scratch()
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
        # Gates >= near_one are read off the fine histogram when near_one is a bin edge (the default).
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
        self.pending = self.scratch.take("pending", groups * channels * self.bins, np.uint16, zero=True)
        self.pending_rows = [0] * groups
        self.totals: np.ndarray | None = None
        self.totals_dtype = np.uint32 if samples < 2**32 else np.int64
        # Offset of (group, channel) in the flattened histogram.
        self.offset = (np.arange(groups * channels, dtype=np.intp) * self.bins).reshape(groups, channels)
        self.near_count = np.zeros(channels, dtype=np.int64)  # used when near_one is not a bin edge
        # Scratch reused by every chunk (allocating them per slab costs more than filling them).
        slab = min(channels, _SLAB_COLUMNS) * max(1, _SLAB_ELEMENTS // min(channels, _SLAB_COLUMNS))
        self._bins = np.empty(slab, dtype=np.intp)
        self._scaled = np.empty(slab, dtype=np.float32)
        self._partial_sums = np.zeros((folds, channels), dtype=np.float32)  # the compiled pass's float32 sums
        self._partial_squares = np.zeros(channels, dtype=np.float32)
        self._bits = np.empty(channels, dtype=np.uint32)  # its widened row
        slot_type = np.int32 if self.pending.size < 2**31 else np.intp  # int32 is faster
        self._slots = np.empty(channels, dtype=slot_type)  # and its histogram slots
        self.excess = 0.0  # sum of max(s - 1, 0): |1 - s| = 1 - s + 2 max(s - 1, 0)
        self.eval_every = max(1, math.ceil(samples / max(1, settings.max_eval_samples)))
        # Scored rows, fold by fold: sample i (when scored) sits at [i % folds, i // folds // eval_every].
        slots = math.ceil(math.ceil(samples / folds) / self.eval_every)
        self.eval_rows: np.ndarray | None = None  # (folds, slots, C), the store's dtype, made by add()
        self.eval_labels = np.full((folds, slots), -1, dtype=np.intp)

    def add(self, start: int, gates: np.ndarray, labels: np.ndarray) -> None:
        """Add rows ``start ...`` of the block: float16 or float32 (which is modified in place)."""
        folds = self.settings.folds
        n = len(gates)
        if n == 0:
            return
        fold = np.arange(start, start + n) % folds
        self._hold(start, gates, labels)
        labels = np.asarray(labels, dtype=np.intp)
        self.count += np.bincount(labels * folds + fold, minlength=self.count.size).reshape(self.count.shape)
        if gates.dtype == np.float16 and self.compiled:
            codes = np.ascontiguousarray(gates).view(np.uint16)
            top = int(codes.max())
            if top < _F16_SIGN_OR_INF:  # finite and non-negative: the compiled pass
                if top > _F16_ONE or self.near_bin is None:  # widened once for both
                    values = _widen(codes)
                    if top > _F16_ONE:  # gates above 1 (not a sigmoid): |1 - s| needs their excess
                        self.excess += float(np.maximum(values - 1.0, 0.0).sum(dtype=np.float64))
                    if self.near_bin is None:  # near_one is not a fine-bin edge
                        self.near_count += np.count_nonzero(values >= self.settings.near_one, axis=0)
                for r0 in range(0, n, _PENDING_MAX):
                    r1 = min(n, r0 + _PENDING_MAX)
                    self._add_codes(codes[r0:r1], labels[r0:r1], fold[r0:r1])
                return
        self._add_values(np.asarray(gates, dtype=np.float32), labels, fold, start)

    def _hold(self, start: int, gates: np.ndarray, labels: np.ndarray) -> None:
        """Keep the rows the nearest-centroid classifier will score (copies; ``gates`` may be reused).

        Scored samples come in whole runs of ``folds`` consecutive samples,
        every ``eval_every``-th run, so each fold is represented equally; the
        rows of one fold in a chunk are an evenly strided slice of it.
        """
        folds, every = self.settings.folds, self.eval_every
        if self.eval_rows is None:
            shape = (*self.eval_labels.shape, self.info.channels)
            # As read: float16 stays float16 until finish.
            self.eval_rows = self.scratch.take("eval", math.prod(shape), gates.dtype).reshape(shape)
        stride = folds * every
        for fold in range(folds):
            run = -(-(start - fold) // folds)  # the first run holding a sample >= start in this fold
            run = -(-run // every) * every  # ... that is scored
            first = run * folds + fold - start
            if first >= len(gates):
                continue
            rows = gates[first::stride]
            slot = run // every
            self.eval_rows[fold, slot : slot + len(rows)] = rows
            self.eval_labels[fold, slot : slot + len(rows)] = labels[first::stride]

    def _add_codes(self, codes: np.ndarray, labels: np.ndarray, fold: np.ndarray) -> None:
        """Float16 bit patterns of finite, non-negative gates: one compiled pass (``seviz.analysis._kernels``)."""
        from seviz.analysis._kernels import add_float16_rows

        self._reserve(labels)
        # Rows of one class together, so the histogram counts being added to stay in cache.
        order = np.argsort(labels, kind="stable")
        add_float16_rows(
            codes,
            order,
            labels,
            fold,
            self.hist_group,
            self.bins,
            self.ref,
            self.has_ref,
            self.s1,
            self.s2,
            self.low,
            self.high,
            self.pending,
            self._partial_sums,
            self._partial_squares,
            self._bits,
            self._bits.view(np.float32),
            self._slots,
        )

    def _reserve(self, labels: np.ndarray) -> None:
        """Flush the uint16 counts of every group these rows would take past 65,535."""
        rows = np.bincount(self.hist_group[labels], minlength=len(self.pending_rows))
        for group in np.flatnonzero(rows).tolist():
            self._make_room(group, int(rows[group]))

    def _make_room(self, group: int, rows: int) -> None:
        """Count ``rows`` more rows of ``group``, flushing its uint16 counts first if they could overflow."""
        if self.pending_rows[group] + rows > _PENDING_MAX:
            self._flush(group)
        self.pending_rows[group] += rows

    def _add_values(self, gates: np.ndarray, labels: np.ndarray, fold: np.ndarray, start: int) -> None:
        """Float32 gates (float32 stores, or float16 chunks with negative or non-finite gates): numpy."""
        folds = self.settings.folds
        n = len(gates)
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

        low, high = self._extremes(rows, runs, start)
        if self.near_bin is None:
            self.near_count += np.count_nonzero(rows >= self.settings.near_one, axis=0)
        if high > 1.0:
            self.excess += float(np.maximum(rows - 1.0, 0.0).sum(dtype=np.float64))

        # x * bins can round up to `bins` just below 1 in float32; clip whenever that can happen.
        clip = (bool(np.float32(high) * np.float32(self.bins) >= self.bins), low < 0.0)
        for a, b, cls in runs:
            self._count(rows, a, b, int(self.hist_group[cls]), clip)
        for a, b, k in segments:
            cls, f = divmod(k, folds)
            for r in range(a, b, _SUM_ROWS):
                part = rows[r : min(b, r + _SUM_ROWS)]
                if not self.has_ref[cls]:
                    self.ref[cls] = part[0]
                    self.has_ref[cls] = True
                part -= self.ref[cls]
                self.s1[cls, f] += part.sum(axis=0)
                self.s2[cls] += np.einsum("ij,ij->j", part, part)

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
        """Add float32 rows ``a:b`` to ``group``'s histogram."""
        channels = self.info.channels
        width = min(channels, _SLAB_COLUMNS)
        step = max(1, _SLAB_ELEMENTS // width)
        for r0 in range(a, b, step):
            r1 = min(b, r0 + step)
            self._make_room(group, r1 - r0)
            for c0 in range(0, channels, width):
                c1 = min(channels, c0 + width)
                block = rows[r0:r1, c0:c1]
                size = (r1 - r0) * (c1 - c0)
                codes = self._bins[:size].reshape(r1 - r0, c1 - c0)
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
            self.totals = self.scratch.take("totals", self.pending.size, self.totals_dtype, zero=True)
        part = slice(group * size, (group + 1) * size)
        self.totals[part] += self.pending[part]
        self.pending[part] = 0
        self.pending_rows[group] = 0

    def histograms(self) -> np.ndarray:
        """Every group's counts so far, (group, channel, bin): uint16, or uint32 once a group was flushed."""
        groups = len(self.pending_rows)
        if self.totals is not None:
            for group in range(groups):
                self._flush(group)
        counts = self.pending if self.totals is None else self.totals
        return counts.reshape(groups, self.info.channels, self.bins)

    def merge(self, other: BlockAccumulator) -> None:
        """Add the state of ``other``, which took other rows of the same store, into this one.

        Both must have been made for the same block, store size, classes and
        settings, and fed rows by their index in the whole store (``start``),
        so folds and scored rows line up with one pass over it. Then the
        merged counts, extremes and histograms (hence quantiles) equal one
        pass's exactly; means and second moments follow Chan et al.'s
        parallel update (*Updating formulae and a pairwise algorithm for
        computing sample variances*, 1979) and equal one pass's up to float
        rounding.
        """
        self._check_mergeable(other)
        n_a, n_b = self.count.sum(axis=1), other.count.sum(axis=1)
        for k in np.flatnonzero(n_b > 0).tolist():
            if n_a[k] == 0:  # the class is new here: take its state as it is
                self.ref[k], self.has_ref[k] = other.ref[k], True
                self.s1[k], self.s2[k] = other.s1[k], other.s2[k]
                continue
            self._merge_moments(k, int(n_a[k]), int(n_b[k]), other)
        self.count += other.count
        np.minimum(self.low, other.low, out=self.low)
        np.maximum(self.high, other.high, out=self.high)
        self.near_count += other.near_count
        self.excess += other.excess
        self._merge_histograms(other)
        if other.eval_rows is not None:
            held = other.eval_labels >= 0
            if self.eval_rows is None:
                shape = (*self.eval_labels.shape, self.info.channels)
                self.eval_rows = self.scratch.take("eval", math.prod(shape), other.eval_rows.dtype)
                self.eval_rows = self.eval_rows.reshape(shape)
            self.eval_rows[held] = other.eval_rows[held]
            self.eval_labels[held] = other.eval_labels[held]

    def _check_mergeable(self, other: BlockAccumulator) -> None:
        same = (
            self.info == other.info
            and self.samples == other.samples
            and self.all_classes == other.all_classes
            and self.selected == other.selected
            and self.settings == other.settings
            and self.bins == other.bins
        )
        if not same:
            raise AnalysisError(
                f"cannot merge the statistics of block {other.info.name} into those of {self.info.name}: "
                "parts must come from one store, with the same classes and settings"
            )

    def _merge_moments(self, k: int, n_a: int, n_b: int, other: BlockAccumulator) -> None:
        """Class ``k`` seen by both: Chan's update of its mean and second moment, about this side's ref."""
        shift = other.ref[k].astype(np.float64) - self.ref[k]  # the other side's sums, moved to our ref
        mean_a = self.s1[k].sum(axis=0) / n_a  # both means relative to self.ref[k]
        mean_b = other.s1[k].sum(axis=0) / n_b + shift
        m2_a = np.maximum(self.s2[k] - n_a * mean_a**2, 0.0)
        m2_b = np.maximum(other.s2[k] - n_b * (mean_b - shift) ** 2, 0.0)
        n = n_a + n_b
        delta = mean_b - mean_a
        mean = mean_a + delta * (n_b / n)
        m2 = m2_a + m2_b + delta**2 * (n_a * n_b / n)
        # Per-fold sums move by the shift (linear); their total is n * mean as above.
        self.s1[k] += other.s1[k] + other.count[k][:, None] * shift
        self.s2[k] = m2 + n * mean**2

    def _merge_histograms(self, other: BlockAccumulator) -> None:
        counts = other.histograms().reshape(-1)
        for group in range(len(self.pending_rows)):
            self._flush(group)  # creates the totals: the sum may not fit the uint16 counts
        assert self.totals is not None
        self.totals += counts.astype(self.totals.dtype, copy=False)

    def finish(self) -> BlockStatistics:
        """Turn the running state into :class:`~seviz.stats.BlockStatistics`."""
        n_k, present, mean_k, var_k = self._class_moments()
        total = int(n_k.sum())
        mean_all, between, within = self._pooled_moments(n_k, present, mean_k, var_k, total)
        var_all = between + within
        low_all, high_all = self.low[present].min(axis=0), self.high[present].max(axis=0)
        counts, coarse, quantiles = self._summarize_histograms()
        classes = self._selected_class_stats(n_k, mean_k, var_k, coarse, quantiles)
        everything = self._class_stats(
            ALL_CLASSES, total, mean_all, var_all, low_all, high_all, coarse[-1], quantiles[-1]
        )
        specificity = self._specificity(present, mean_all, between, within)
        behaviour = self._behaviour(counts, total, mean_all, var_all, low_all, high_all)
        return BlockStatistics(
            info=self.info,
            classes=classes,
            all=everything,
            specificity=specificity,
            behaviour=behaviour,
            quantile_bins=self.bins,
        )

    def _class_moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per class: row count, whether seen, mean and variance (from the sums about ``ref``)."""
        n_k = self.count.sum(axis=1)
        present = n_k > 0
        safe = np.maximum(n_k, 1)[:, None]
        shift = self.s1.sum(axis=1) / safe
        mean_k = self.ref + shift
        var_k = np.maximum(self.s2 / safe - shift**2, 0.0)
        return n_k, present, mean_k, var_k

    def _pooled_moments(
        self, n_k: np.ndarray, present: np.ndarray, mean_k: np.ndarray, var_k: np.ndarray, total: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Over all rows: the mean, and the variance's between-class and within-class parts."""
        weight = n_k[present, None].astype(np.float64)
        mean_all = (weight * mean_k[present]).sum(axis=0) / total
        between = (weight * (mean_k[present] - mean_all) ** 2).sum(axis=0) / total
        within = (weight * var_k[present]).sum(axis=0) / total
        return mean_all, between, within

    def _summarize_histograms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fine counts, and from them each group's (and all classes') coarse histogram and quantiles."""
        if self.compiled:
            from seviz.analysis._kernels import summarize_counts
        else:
            from seviz.analysis._numpy_loops import summarize_counts

        settings = self.settings
        counts = self.histograms()
        # Per group (the reported classes, plus the rest), then for all classes (their sum).
        levels = np.asarray(settings.quantile_levels, dtype=np.float64)
        coarse = np.empty((len(counts) + 1, self.info.channels, settings.histogram_bins), dtype=np.int64)
        quantiles = np.empty((len(counts) + 1, len(levels), self.info.channels), dtype=np.float64)
        summarize_counts(counts, settings.histogram_bins, levels, coarse, quantiles)
        return counts, coarse, quantiles

    def _selected_class_stats(
        self,
        n_k: np.ndarray,
        mean_k: np.ndarray,
        var_k: np.ndarray,
        coarse: np.ndarray,
        quantiles: np.ndarray,
    ) -> dict[str, ClassStats]:
        """The :class:`ClassStats` of each reported class, by name, in the reported order."""
        index = {name: i for i, name in enumerate(self.all_classes)}
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
                coarse[group],
                quantiles[group],
            )
        return classes

    def _specificity(
        self, present: np.ndarray, mean_all: np.ndarray, between: np.ndarray, within: np.ndarray
    ) -> Specificity:
        """How class-specific the block's gates are: variance ratios and nearest-centroid accuracy."""
        ratio = between / (within + _VARIANCE_FLOOR)
        spread = float(between.sum() + within.sum())
        accuracy, evaluated = self._centroid_accuracy(mean_all)
        return Specificity(
            variance_ratio=float(ratio.mean()),
            between_share=float(between.sum()) / spread if spread > 0 else 0.0,
            channel_ratio=ratio,
            accuracy=accuracy,
            chance=1.0 / int(present.sum()),
            classes=int(present.sum()),
            folds=self.settings.folds,
            evaluated=evaluated,
        )

    def _behaviour(
        self,
        counts: np.ndarray,
        total: int,
        mean_all: np.ndarray,
        var_all: np.ndarray,
        low_all: np.ndarray,
        high_all: np.ndarray,
    ) -> GateBehaviour:
        """How the gates behave over all rows: distance from 1, share near 1, input dependence, range."""
        gates = total * self.info.channels
        if self.near_bin is not None:
            near = counts[:, :, self.near_bin :].sum(axis=(0, 2), dtype=np.int64)
        else:
            near = self.near_count
        square = var_all + mean_all**2
        with np.errstate(divide="ignore", invalid="ignore"):
            channel_dependence = np.where(square > 0, var_all / np.where(square > 0, square, 1.0), 0.0)
        return GateBehaviour(
            mean_abs_deviation=(gates - total * float(mean_all.sum()) + 2.0 * self.excess) / gates,
            fraction_near_one=float(near.sum()) / gates,
            near_one=self.settings.near_one,
            input_dependence=float(var_all.sum() / square.sum()) if square.sum() > 0 else 0.0,
            input_std=float(np.sqrt(var_all.mean())),
            channel_dependence=channel_dependence,
            channel_near_one=near / total,
            min_gate=float(low_all.min()),
            max_gate=float(high_all.max()),
        )

    def _class_stats(
        self,
        name: str,
        count: int,
        mean: np.ndarray,
        var: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
        coarse: np.ndarray,
        quantiles: np.ndarray,
    ) -> ClassStats:
        return ClassStats(
            name=name,
            count=count,
            mean=np.asarray(mean, dtype=np.float64),
            std=np.sqrt(var),
            min=np.asarray(low, dtype=np.float64),
            max=np.asarray(high, dtype=np.float64),
            quantile_levels=self.settings.quantile_levels,
            quantiles=np.clip(quantiles, low[None, :], high[None, :]),
            histogram=coarse,
            bin_edges=np.linspace(0.0, 1.0, self.settings.histogram_bins + 1),
        )

    def _centroid_accuracy(self, center: np.ndarray) -> tuple[float, int]:
        """Nearest-centroid accuracy of the held rows, each scored by centroids without its fold."""
        total = self.s1.sum(axis=1)
        n_k = self.count.sum(axis=1)
        correct = evaluated = 0
        for fold in range(self.settings.folds):
            labels = self.eval_labels[fold]
            held = int(np.count_nonzero(labels >= 0))  # the fold's slots fill from the front
            train = n_k - self.count[:, fold]
            candidates = np.flatnonzero(train > 0)
            if held == 0 or len(candidates) == 0 or self.eval_rows is None:
                continue
            centroid = (
                self.ref[candidates]
                + (total[candidates] - self.s1[candidates, fold]) / train[candidates, None]
                - center
            )
            nearest = self._nearest(self.eval_rows[fold, :held], center.astype(np.float32), centroid)
            correct += int((candidates[nearest] == labels[:held]).sum())
            evaluated += held
        return (correct / evaluated if evaluated else float("nan")), evaluated

    def _nearest(self, rows: np.ndarray, center: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid for each row (rows and centroids less ``center``).

        argmin ||x - c||^2 = argmin (||c||^2 - 2 x.c), ties to the first
        centroid, in compiled loops: BLAS would do the products faster but
        leaves its threads spinning, which starves the blocks analysed beside.
        """
        centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        norms = (centroids.astype(np.float64) ** 2).sum(axis=1)
        nearest = np.empty(len(rows), dtype=np.intp)
        if not self.compiled:
            from seviz.analysis import _numpy_loops

            _numpy_loops.nearest_centroids(
                np.asarray(rows, dtype=np.float32) - center, centroids, norms, nearest
            )
            return nearest
        from seviz.analysis._kernels import nearest_centroids, nearest_centroids_float32

        codes = rows.view(np.uint16) if rows.dtype == np.float16 else None
        if codes is not None and codes.size and int(codes.max()) < _F16_SIGN_OR_INF:
            row = np.empty(self.info.channels, dtype=np.float32)
            nearest_centroids(
                codes, center, centroids, norms, nearest, self._bits, self._bits.view(np.float32), row
            )
        else:
            nearest_centroids_float32(np.asarray(rows, dtype=np.float32) - center, centroids, norms, nearest)
        return nearest


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


def _widen(codes: np.ndarray) -> np.ndarray:
    """Float32 values of finite, non-negative float16 bit patterns (exact, subnormals included).

    Shifting the 15 low bits into a float32's place gives the value times
    2**-112 (the exponent biases differ by 112, and a float16 subnormal lands
    on a float32 subnormal); the multiplication restores it (numpy converts
    float16 one value at a time, several times slower).
    """
    wide = np.left_shift(codes, 13, dtype=np.uint32).view(np.float32)
    wide *= np.float32(2.0**112)
    return wide
