"""Compiled (numba) loops of the statistics pass (``seviz.analysis._accumulator``).

:class:`seviz._streaming.BlockAccumulator` spends nearly all its time in
:func:`add_float16_rows` on a large store: every gate of every block goes
through it once. Numpy needs about ten passes over a chunk for the same work
(widening, sums, extremes, bin lookup, index arithmetic, ``np.add.at``); one
compiled loop reads each gate once and keeps the per-class accumulators hot
in cache. :func:`summarize_counts` reads quantiles and coarse counts off the
fine histograms, and :func:`nearest_centroids` scores the held rows. See
``benchmarks/analysis_scale.py`` for the figures.

Only float16 bit patterns of finite, non-negative gates (below 0x7C00) come
to the float16 loops; other chunks and float32 stores take the numpy path of
the accumulator. Every loop releases the GIL, so blocks run side by side in
threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

log = logging.getLogger(__name__)

# A float16 bit pattern shifted into a float32's place reads as the value
# times 2**-112 (the exponent biases differ by 112), subnormals included.
_WIDEN_SCALE = np.float32(2.0**112)


_uncached: list[str] = []  # kernels numba could not cache


def _compiled(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` releasing the GIL, with the machine code cached on disk where numba can.

    Numba caches next to this file, or in its user cache folder when this
    folder is read-only; where neither is writable (a locked-down container)
    it refuses to cache, and the kernels are compiled in every process
    instead (a few seconds) rather than failing. ``NUMBA_CACHE_DIR`` names a
    cache folder.
    """

    def decorate(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(nogil=True, cache=True, **options)(function)
        except RuntimeError as error:  # "cannot cache function ...: no locator available"
            level = logging.DEBUG if _uncached else logging.WARNING  # say it once
            log.log(
                level, "numba cannot cache the statistics kernels (%s); compiling them in this process", error
            )
            _uncached.append(function.__name__)
            return numba.njit(nogil=True, **options)(function)

    return decorate


# Rows summed in float32 before the sums are added to the float64 totals.
_PARTIAL_ROWS = 1024


@_compiled(boundscheck=False)
def add_float16_rows(
    codes: np.ndarray,  # (n, C) uint16: float16 bit patterns, all < 0x7C00
    order: np.ndarray,  # (n,) intp: rows in the order to add them (grouped by class)
    labels: np.ndarray,  # (n,) intp class of each row
    folds: np.ndarray,  # (n,) intp fold of each row
    groups: np.ndarray,  # (K,) intp histogram group of each class
    bins: int,  # fine bins over [0, 1]
    ref: np.ndarray,  # (K, C) float32 reference row per class (set from the first row seen)
    has_ref: np.ndarray,  # (K,) bool
    sums: np.ndarray,  # (K, F, C) float64: sum of (gate - ref)
    squares: np.ndarray,  # (K, C) float64: sum of (gate - ref) ** 2
    low: np.ndarray,  # (K, C) float32 minima
    high: np.ndarray,  # (K, C) float32 maxima
    counts: np.ndarray,  # (G * C * bins,) uint16 histogram counts, (group, channel, bin)
    partial_sums: np.ndarray,  # (F, C) float32 scratch, zero
    partial_squares: np.ndarray,  # (C,) float32 scratch, zero
    bits: np.ndarray,  # (C,) uint32 scratch
    values: np.ndarray,  # (C,) float32 view of ``bits``
    slots: np.ndarray,  # (C,) int32 scratch (intp for histograms of 2**31 counts or more)
) -> None:
    """Add rows of one block to the running per-class sums, extremes and histogram counts.

    Sums and squares of ``gate - ref`` are added up in float32 over at most
    1024 rows of one class, then into the float64 totals (the numpy path does
    the same). The caller keeps each group's counts below 65,536 per row added
    (see ``BlockAccumulator._flush``). Per channel, the fine bin of a gate
    ``x`` is ``min(floor(x * bins), bins - 1)`` with ``x * bins`` rounded to
    float32, the same as the numpy path.
    """
    n, channels = codes.shape
    fbins = np.float32(bins)
    top = np.float32(bins - 1)
    group_size = channels * bins
    current, held = -1, 0  # the class being summed in float32, and its rows so far
    for j in range(n + 1):
        k = labels[order[j]] if j < n else -1
        if k != current or held == _PARTIAL_ROWS:
            if current >= 0:
                _flush_partial(partial_sums, partial_squares, sums[current], squares[current])
            current, held = k, 0
        if j == n:
            break
        held += 1
        i = order[j]
        row = codes[i]
        for c in range(channels):
            bits[c] = np.uint32(row[c]) << 13
        if not has_ref[k]:
            for c in range(channels):
                ref[k, c] = values[c] * _WIDEN_SCALE
            has_ref[k] = True
        r = ref[k]
        s = partial_sums[folds[i]]
        lo = low[k]
        hi = high[k]
        base = groups[k] * group_size
        for c in range(channels):
            x = values[c] * _WIDEN_SCALE
            lo[c] = min(lo[c], x)
            hi[c] = max(hi[c], x)
            d = x - r[c]
            s[c] += d
            partial_squares[c] += d * d
            slots[c] = np.int32(min(x * fbins, top)) + base + c * bins
        for c in range(channels):
            counts[slots[c]] += 1


@_compiled(boundscheck=False)
def _flush_partial(
    partial_sums: np.ndarray, partial_squares: np.ndarray, sums: np.ndarray, squares: np.ndarray
) -> None:
    """Add the float32 partial sums of one class into its float64 totals, and zero them."""
    for f in range(partial_sums.shape[0]):
        for c in range(partial_sums.shape[1]):
            sums[f, c] += partial_sums[f, c]
            partial_sums[f, c] = 0.0
    for c in range(partial_squares.shape[0]):
        squares[c] += partial_squares[c]
        partial_squares[c] = 0.0


@_compiled()
def summarize_counts(
    counts: np.ndarray,  # (G, C, B) fine histogram counts per group (uint16 or uint32)
    coarse_bins: int,  # H, dividing B
    levels: np.ndarray,  # (L,) float64 quantile levels in [0, 1]
    coarse: np.ndarray,  # (G + 1, C, H) int64 out: coarse counts per group, then of all groups
    quantiles: np.ndarray,  # (G + 1, L, C) float64 out: quantiles, before clamping to [min, max]
) -> None:
    """Coarse counts and quantiles per channel of each group's fine histogram and of their sum.

    For level q the fine bin holding the ceil(q n)-th smallest value (numpy's
    ``inverted_cdf`` rank) is found from the cumulative counts; the quantile
    is placed in it assuming the values spread evenly over the bin.
    """
    groups, channels, bins = counts.shape
    every = np.zeros(bins, dtype=np.int64)  # the sum of the groups, bin by bin
    cdf = np.zeros(bins, dtype=np.int64)
    for c in range(channels):
        every[:] = 0
        for g in range(groups):
            row = counts[g, c]
            running = 0
            for b in range(bins):
                count = int(row[b])
                every[b] += count
                running += count
                cdf[b] = running
            _summarize(cdf, coarse_bins, levels, coarse[g, c], quantiles[g, :, c])
        running = 0
        for b in range(bins):
            running += every[b]
            cdf[b] = running
        _summarize(cdf, coarse_bins, levels, coarse[groups, c], quantiles[groups, :, c])


@_compiled()
def _summarize(
    cdf: np.ndarray, coarse_bins: int, levels: np.ndarray, coarse: np.ndarray, out: np.ndarray
) -> None:
    """Coarse counts and quantiles of one histogram, from its cumulative counts ``cdf``."""
    bins = len(cdf)
    width = bins // coarse_bins
    total = cdf[bins - 1]
    for h in range(coarse_bins):
        start = cdf[h * width - 1] if h > 0 else 0
        coarse[h] = cdf[(h + 1) * width - 1] - start
    for level in range(len(levels)):
        target = levels[level] * total
        rank = np.int64(np.ceil(target))
        j = min(int(np.searchsorted(cdf, rank)), bins - 1)  # first bin whose cdf reaches the rank
        before = cdf[j - 1] if j > 0 else 0
        inside = max(cdf[j] - before, 1)
        fraction = min(max((target - before) / inside, 0.0), 1.0)
        out[level] = (j + fraction) / bins


# Reassociation lets the dot products vectorise; nothing else is relaxed.
_DOT_MATH = {"reassoc", "contract"}


@_compiled(boundscheck=False, fastmath=_DOT_MATH)
def _nearest(x: np.ndarray, centroids: np.ndarray, norms: np.ndarray) -> int:
    """Index of the centroid nearest to ``x``: argmin ||c||^2 - 2 x.c, ties to the first."""
    best, best_score = 0, np.inf
    for k in range(centroids.shape[0]):
        centroid = centroids[k]
        dot = np.float32(0.0)
        for c in range(x.shape[0]):
            dot += x[c] * centroid[c]
        score = norms[k] - 2.0 * np.float64(dot)
        if score < best_score:
            best, best_score = k, score
    return best


@_compiled(boundscheck=False)
def nearest_centroids(
    codes: np.ndarray,  # (n, C) uint16: float16 bit patterns, all < 0x7C00
    center: np.ndarray,  # (C,) float32, subtracted from every row and centroid
    centroids: np.ndarray,  # (K, C) float32, already centred
    norms: np.ndarray,  # (K,) float64 squared norms of the centroids
    nearest: np.ndarray,  # (n,) intp out
    bits: np.ndarray,  # (C,) uint32 scratch
    values: np.ndarray,  # (C,) float32 view of ``bits``
    row: np.ndarray,  # (C,) float32 scratch
) -> None:
    """Nearest centroid of each float16 row (centring keeps the float32 dot products accurate)."""
    n, channels = codes.shape
    for i in range(n):
        source = codes[i]
        for c in range(channels):
            bits[c] = np.uint32(source[c]) << 13
        for c in range(channels):
            row[c] = values[c] * _WIDEN_SCALE - center[c]
        nearest[i] = _nearest(row, centroids, norms)


@_compiled()
def nearest_centroids_float32(
    rows: np.ndarray,  # (n, C) float32, already centred
    centroids: np.ndarray,  # (K, C) float32, already centred
    norms: np.ndarray,  # (K,) float64
    nearest: np.ndarray,  # (n,) intp out
) -> None:
    """:func:`nearest_centroids` for float32 rows."""
    for i in range(rows.shape[0]):
        nearest[i] = _nearest(rows[i], centroids, norms)


def load_all() -> None:
    """Call every kernel once on tiny inputs, so numba loads them (from its cache, or compiles them) now.

    The first call of a numba function in a process costs about 0.15 s
    (setting up the compiler, reading the cached machine code) and holds
    numba's compiler lock; :func:`seviz.stats.compute_statistics` starts this
    in a thread while it opens the store, instead of making its workers wait.
    The argument types match the accumulator's calls.
    """
    channels, rows, bins = 2, 1, 4
    codes = np.zeros((rows, channels), dtype=np.uint16)
    index = np.zeros(rows, dtype=np.intp)
    bits = np.zeros(channels, dtype=np.uint32)
    counts = np.zeros(channels * bins, dtype=np.uint16)
    add_float16_rows(
        codes,
        index,
        index,
        index,
        np.zeros(1, dtype=np.intp),
        bins,
        np.zeros((1, channels), dtype=np.float32),
        np.zeros(1, dtype=bool),
        np.zeros((1, 1, channels)),
        np.zeros((1, channels)),
        np.zeros((1, channels), dtype=np.float32),
        np.zeros((1, channels), dtype=np.float32),
        counts,
        np.zeros((1, channels), dtype=np.float32),
        np.zeros(channels, dtype=np.float32),
        bits,
        bits.view(np.float32),
        np.zeros(channels, dtype=np.int32),
    )
    levels = np.array([0.5])
    summarize_counts(
        counts.reshape(1, channels, bins),
        2,
        levels,
        np.zeros((2, channels, 2), dtype=np.int64),
        np.zeros((2, 1, channels)),
    )
    center = np.zeros(channels, dtype=np.float32)
    centroids = np.zeros((1, channels), dtype=np.float32)
    nearest = np.zeros(rows, dtype=np.intp)
    nearest_centroids(
        codes, center, centroids, np.zeros(1), nearest, bits, bits.view(np.float32), center.copy()
    )
