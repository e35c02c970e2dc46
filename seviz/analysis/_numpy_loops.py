"""Numpy twins of the compiled summaries in :mod:`seviz.analysis._kernels`, for small stores.

Numba compiles its loops once per installation (several seconds on a slow
machine) and loading them costs a few tenths of a second per process; a store
of a few million gates is analysed faster than that in numpy. These functions
take the same arguments as their compiled namesakes and give the same results
(the same bins, ranks and nearest centroids; sums may differ in the last float
bits).
"""

from __future__ import annotations

import numpy as np


def summarize_counts(
    counts: np.ndarray, coarse_bins: int, levels: np.ndarray, coarse: np.ndarray, quantiles: np.ndarray
) -> None:
    """Coarse counts and quantiles of every group's fine histogram and of their sum (see ``_kernels``).

    The coarse counts are found first; a quantile's rank then falls in one coarse bin, and only that
    bin's fine counts are added up (a tenth of a full cumulative sum over every fine bin).
    """
    groups, channels, bins = counts.shape
    width = bins // coarse_bins
    rows = np.arange(channels)
    fine = counts.reshape(groups, channels, coarse_bins, width)
    # Summed into int32 in place: a widened copy first (astype) costs more than the sum itself.
    coarse[:groups] = fine.sum(axis=3, dtype=np.int32)
    coarse[groups] = coarse[:groups].sum(axis=0)
    for g in range(groups + 1):
        ccdf = np.cumsum(coarse[g], axis=1)  # (C, H)
        total = ccdf[:, -1]
        for i, level in enumerate(np.asarray(levels, dtype=np.float64)):
            target = level * total
            rank = np.ceil(target).astype(np.int64)
            # The coarse bin, then the fine bin, whose cumulative count first reaches the rank
            # (numpy's inverted_cdf rank).
            h = np.minimum((ccdf < rank[:, None]).sum(axis=1), coarse_bins - 1)
            start = np.where(h > 0, ccdf[rows, np.maximum(h - 1, 0)], 0)
            if g < groups:
                inside_bins = fine[g, rows, h].astype(np.int64)  # (C, width)
            else:
                inside_bins = fine[:, rows, h].sum(axis=0, dtype=np.int64)
            cdf = start[:, None] + np.cumsum(inside_bins, axis=1)
            k = np.minimum((cdf < rank[:, None]).sum(axis=1), width - 1)
            j = h * width + k
            before = np.where(k > 0, cdf[rows, np.maximum(k - 1, 0)], start)
            inside = np.maximum(cdf[rows, k] - before, 1)
            fraction = np.clip((target - before) / inside, 0.0, 1.0)
            quantiles[g, i] = (j + fraction) / bins


def nearest_centroids(
    rows: np.ndarray, centroids: np.ndarray, norms: np.ndarray, nearest: np.ndarray
) -> None:
    """Nearest centroid of each centred float32 row: argmin ||c||^2 - 2 x.c, ties to the first."""
    step = max(1, (1 << 22) // max(1, centroids.shape[0]))  # bounded scores matrix
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        # einsum's own loops, not BLAS: BLAS threads spin and starve the blocks analysed beside.
        scores = norms[None, :] - 2.0 * np.einsum("ij,kj->ik", part, centroids).astype(np.float64)
        nearest[start : start + len(part)] = np.argmin(scores, axis=1)
