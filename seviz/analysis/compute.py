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
``seviz.analysis._accumulator`` and ``seviz.analysis._kernels``), and blocks are analysed side by
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

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from seviz.analysis._accumulator import BlockAccumulator, Scratch
from seviz.analysis.results import (
    BlockStatistics,
    StatsSettings,
    StoreStatistics,
    _unknown,
)
from seviz.errors import AnalysisError, StoreError
from seviz.store import BlockInfo, Store, open_store

log = logging.getLogger(__name__)

_CHUNK_ELEMENTS = 1 << 24  # about 32 MiB of float16 (64 MiB of float32) per chunk when chunk_rows is None
# Blocks analysed at once; each worker holds a chunk, histogram counts and the
# scored rows (about 130 MiB for a 2048-channel block with 10 classes and
# 10,000 scored rows), so memory stays under 1 GB.
_MAX_WORKERS = 4
# Below this many gates (samples x channels) numpy is faster than compiling or loading numba's loops:
# the demo store (1,000 images x 3,776 channels) is analysed in numpy in well under a second.
SMALL_STORE_GATES = 1 << 23


def store_identity(store: Store) -> dict[str, Any]:
    """What names a store in derived files: stable across reads of the same file."""
    provenance = store.provenance
    return {
        "file": store.path.name,
        "model": provenance.model,
        "model_spec": provenance.model_spec,
        "weights_sha256": provenance.weights_sha256,
        "created": provenance.created,
        "samples": len(store),
        "complete": bool(store.complete),
        "dtype": store.dtype,
        "precision": provenance.precision,
        "gate_error_max_abs": provenance.gate_error_max_abs,
        # so that pruning and evaluating from a recommendation see images as they were recorded
        "preprocessing": dict(provenance.preprocessing),
    }


def compute_statistics(
    store: Store | str | os.PathLike,
    blocks: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    settings: StatsSettings | None = None,
    chunk_rows: int | None = None,
    workers: int | None = None,
    jobs: int = 1,
    compiled: bool | None = None,
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
        jobs: Parts each block's rows are split into (contiguous, in order),
            analysed side by side and merged (``BlockAccumulator.merge``): the
            same numbers as one pass (exactly for counts, extremes, histograms
            and quantiles; means and stds up to float rounding). Each part
            holds its own histograms, so memory grows with ``jobs``; with
            ``workers`` blocks at once, up to ``workers x jobs`` threads run.

    Returns:
        A :class:`StoreStatistics`; ``stats.block("SE_5_2").class_stats("cat").mean``
        is the mean excitation per channel of class "cat" in block SE_5_2.

    Raises:
        StoreError: The file is not a seviz store, has no samples, a block or
            class is not in it, or a block holds non-finite gates.
    """
    settings = settings or StatsSettings()
    if not isinstance(store, Store):
        with open_store(store) as opened:
            return compute_statistics(opened, blocks, classes, settings, chunk_rows, workers, jobs, compiled)
    if len(store) == 0:
        raise StoreError(f"store {str(store.path)!r} has no committed samples yet; record some first")
    names = _checked_blocks(store, blocks)
    if compiled is None:
        compiled = len(store) * sum(store.blocks[name].channels for name in names) > SMALL_STORE_GATES
    if compiled:
        _start_loading_kernels()
    all_classes, selected, labels = _class_labels(store, classes)
    analyse = _block_analyser(
        _Pass(store, labels, all_classes, selected, settings, chunk_rows, compiled), jobs
    )
    results = _statistics_by_block(store, names, analyse, workers, jobs)
    for result in results.values():
        _warn_outside_unit_range(store, result)
    return StoreStatistics(
        store=store_identity(store), settings=settings, class_names=tuple(selected), blocks=results
    )


def _checked_blocks(store: Store, blocks: Sequence[str] | None) -> list[str]:
    """The blocks to analyse (default: all, in depth order), each checked to be in the store."""
    names = list(store.blocks) if blocks is None else list(blocks)
    for name in names:
        store.block(name)  # raises StoreError naming the block and the ones there are
    return names


def _class_labels(store: Store, classes: Sequence[str] | None) -> tuple[list[str], list[str], np.ndarray]:
    """Every class of the store (recording order first), the ones to report, and each sample's class index."""
    present, inverse = np.unique(store.class_names, return_inverse=True)
    recorded = store.recorded_class_names
    all_classes = recorded + sorted(set(present.tolist()) - set(recorded))
    selected = list(all_classes) if classes is None else list(classes)
    for name in selected:
        if name not in all_classes:
            raise StoreError(_unknown("class", name, all_classes, f"store {str(store.path)!r}"))
    index = {name: i for i, name in enumerate(all_classes)}
    labels = np.asarray([index[name] for name in present.tolist()], dtype=np.intp)[inverse.ravel()]
    return all_classes, selected, labels


@dataclass(frozen=True)
class _Pass:
    """What every block's pass over the store shares: the rows' class indices, the classes, the settings."""

    store: Store
    labels: np.ndarray  # each sample's index into ``all_classes``
    all_classes: list[str]
    selected: list[str]  # the classes reported
    settings: StatsSettings
    chunk_rows: int | None
    compiled: bool


def _block_analyser(run: _Pass, jobs: int) -> Callable[[str], BlockStatistics]:
    """The statistics of one block by name, each worker's buffers reused block after block."""
    spare: queue.SimpleQueue[Scratch] = queue.SimpleQueue()  # one per worker, reused block after block

    def one(name: str) -> BlockStatistics:
        info = run.store.blocks[name]
        log.info("statistics of %s (%d channels, %d samples)", name, info.channels, len(run.store))
        try:
            scratch = spare.get_nowait()
        except queue.Empty:
            scratch = Scratch()
        try:
            if jobs > 1:
                return _merged_block_statistics(run, info, jobs)
            return _accumulate(run, info, scratch).finish()
        finally:
            spare.put(scratch)

    return one


def _statistics_by_block(
    store: Store,
    names: list[str],
    analyse: Callable[[str], BlockStatistics],
    workers: int | None,
    jobs: int,
) -> dict[str, BlockStatistics]:
    """Analyse every block, side by side in threads when more than one worker fits, results in ``names`` order."""
    if workers is not None and workers < 1:
        raise AnalysisError(f"workers={workers} must be at least 1")
    if jobs < 1:
        raise AnalysisError(f"jobs={jobs} must be at least 1")
    # With parts, each block already runs on ``jobs`` threads.
    workers = min(len(names), workers or max(1, min(_MAX_WORKERS, _cpus()) // jobs))
    if workers <= 1:
        return {name: analyse(name) for name in names}
    # Blocks are independent and the compiled loops that take the time
    # release the GIL, so blocks run side by side; largest first, so no
    # worker is left with a big block at the end.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seviz-stats") as pool:
        by_size = sorted(names, key=lambda name: -store.blocks[name].channels)
        futures = {name: pool.submit(analyse, name) for name in by_size}
        try:
            return {name: futures[name].result() for name in names}
        except BaseException:
            for future in futures.values():
                future.cancel()
            raise


def _warn_outside_unit_range(store: Store, result: BlockStatistics) -> None:
    """Say which block has gates outside [0, 1], and by how much.

    A sigmoid gate lies in [0, 1], but a gain-scaled one (NFNet's ``attn_gain``,
    a hand-written ``2 * sigmoid``) may legitimately exceed 1, so this is a
    warning: the statistics are computed all the same (gates outside [0, 1]
    land in the edge bins of the histograms and quantiles).
    """
    low, high = float(np.min(result.all.min)), float(np.max(result.all.max))
    if low >= 0.0 and high <= 1.0:
        return
    parts = []
    if high > 1.0:
        parts.append(f"up to {high:.4g} ({high - 1.0:.4g} above 1)")
    if low < 0.0:
        parts.append(f"down to {low:.4g} ({-low:.4g} below 0)")
    why = (
        "no SE gate (sigmoid, hard-sigmoid, or a gain-scaled one) is negative"
        if low < 0.0
        else "fine for a gain-scaled gate (NFNet's attn_gain), not for a plain sigmoid"
    )
    log.warning(
        "store %s, block %s (%s): gates outside [0, 1], %s: %s. The statistics use the values as "
        "stored; histograms and quantiles put what lies outside [0, 1] in their edge bins.",
        store.path.name,
        result.name,
        result.info.module or "?",
        " and ".join(parts),
        why,
    )


def _accumulate(run: _Pass, info: BlockInfo, scratch: Scratch, part: slice | None = None) -> BlockAccumulator:
    """One block's state over rows ``part`` (default all) of the store."""
    store, chunk_rows = run.store, run.chunk_rows
    rows = max(256, _CHUNK_ELEMENTS // max(1, info.channels)) if chunk_rows is None else int(chunk_rows)
    if rows < 1:
        raise AnalysisError(f"chunk_rows={chunk_rows} must be at least 1")
    acc = BlockAccumulator(
        info, len(store), run.all_classes, run.selected, run.settings, scratch, run.compiled
    )
    # As stored: the accumulator works on float16 gates directly, faster than
    # converting them to float32 first; it copies what it keeps of a chunk, so
    # every chunk is read into the same memory.
    buffer = scratch.take("chunk", rows * info.channels * 4, np.uint8)  # float16 or float32
    if part is None:
        try:
            chunks = store.iter_chunks(info.name, rows=rows, dtype=None, buffer=buffer)
        except TypeError:  # an iter_chunks without ``dtype`` (a wrapper, an older Store): float32 chunks
            chunks = store.iter_chunks(info.name, rows=rows)
    else:
        chunks = store.iter_chunks(
            info.name, rows=rows, dtype=None, buffer=buffer, start=part.start, stop=part.stop
        )
    for row_slice, gates in chunks:
        acc.add(row_slice.start, gates, run.labels[row_slice])
    return acc


def _merged_block_statistics(run: _Pass, info: BlockInfo, jobs: int) -> BlockStatistics:
    """One block in ``jobs`` contiguous parts, side by side, merged in order."""
    n = len(run.store)
    bounds = [(n * j // jobs, n * (j + 1) // jobs) for j in range(jobs)]
    parts = [slice(a, b) for a, b in bounds if b > a]

    def one(part: slice) -> BlockAccumulator:
        # A Scratch per part: a part's histograms live in it until the merge.
        return _accumulate(run, info, Scratch(), part)

    with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="seviz-stats-part") as pool:
        accumulators = list(pool.map(one, parts))
    merged = accumulators[0]
    for other in accumulators[1:]:
        merged.merge(other)
    return merged.finish()


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
        from seviz.analysis._kernels import load_all

        load_all()
    except Exception:  # the workers' own first calls will raise it where it can be reported
        log.debug("loading the compiled kernels ahead failed", exc_info=True)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
