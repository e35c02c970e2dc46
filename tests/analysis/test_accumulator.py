"""Tests of ``BlockAccumulator.merge`` (seviz/analysis/_accumulator.py): parts merge into one pass.

Counts, extremes, histograms and quantiles must equal one pass exactly; means
and stds (Chan's parallel update) up to float rounding. Parts are contiguous
row ranges fed with their index in the whole store, as ``compute_statistics(jobs=N)``
and the shards of a torchrun recording give them.
"""

from __future__ import annotations

import numpy as np
import pytest
from _planted import BLOCKS, CONSTANT, planted_gates, write_store
from _same_statistics import ROUNDING, assert_same_statistics

from seviz.analysis import ALL_CLASSES, StatsSettings, compute_statistics
from seviz.analysis._accumulator import BlockAccumulator, Scratch
from seviz.errors import AnalysisError
from seviz.store import BlockInfo


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    labels, gates = planted_gates(997, seed=3)  # a prime: every split is uneven
    return {
        dtype: write_store(root / f"{dtype}.h5", labels, gates, dtype=dtype)
        for dtype in ("float16", "float32")
    }


@pytest.mark.parametrize("dtype", ["float16", "float32"])  # the compiled pass and the numpy path
@pytest.mark.parametrize("jobs", [2, 3, 7])
def test_parts_merged_equal_one_pass(stores, dtype, jobs):
    one = compute_statistics(stores[dtype])
    merged = compute_statistics(stores[dtype], jobs=jobs)
    assert_same_statistics(merged, one)
    # A constant block stays exactly constant: Chan's update adds no rounding to zero spread.
    assert merged.block(CONSTANT).all.std.max() == 0.0
    assert merged.block(CONSTANT).behaviour.input_dependence == 0.0


def test_a_class_missing_from_one_part(tmp_path):
    """Rows sorted by class: the first part has no 'cliff', the last no 'goldfish'."""
    labels, gates = planted_gates(400, seed=4)
    order = np.argsort(labels, kind="stable")
    path = write_store(tmp_path / "sorted.h5", labels[order], {k: g[order] for k, g in gates.items()})
    one = compute_statistics(path)
    for jobs in (2, 4, 5):
        assert_same_statistics(compute_statistics(path, jobs=jobs), one)


def test_more_parts_than_rows(tmp_path):
    labels, gates = planted_gates(6, seed=5)
    path = write_store(tmp_path / "small.h5", labels, gates)
    assert_same_statistics(compute_statistics(path, jobs=10), compute_statistics(path))


def _accumulator(rows: np.ndarray, labels: np.ndarray, start: int, total: int, settings: StatsSettings):
    acc = BlockAccumulator(
        BlockInfo("SE_2_1", "m", 2, 1, rows.shape[1]), total, ["a", "b"], ["a", "b"], settings, Scratch()
    )
    acc.add(start, rows.copy(), labels)
    return acc


def test_merge_by_hand_matches_numpy_and_one_pass():
    """Two accumulators fed by hand (histograms past uint16 in the merged totals included)."""
    rng = np.random.default_rng(0)
    n, channels = 1500, 6
    rows = rng.uniform(0.0, 1.0, size=(n, channels)).astype(np.float16)
    labels = (rng.uniform(size=n) < 0.3).astype(np.intp)
    settings = StatsSettings()
    whole = _accumulator(rows, labels, 0, n, settings).finish()
    cut = 611
    left = _accumulator(rows[:cut], labels[:cut], 0, n, settings)
    left.merge(_accumulator(rows[cut:], labels[cut:], cut, n, settings))
    merged = left.finish()
    for cls in ("a", "b", ALL_CLASSES):
        x, y = merged.class_stats(cls), whole.class_stats(cls)
        np.testing.assert_array_equal(x.histogram, y.histogram)
        np.testing.assert_array_equal(x.quantiles, y.quantiles)
        np.testing.assert_allclose(x.mean, y.mean, **ROUNDING)
        np.testing.assert_allclose(x.std, y.std, **ROUNDING)
        subset = (
            rows.astype(np.float64)
            if cls == ALL_CLASSES
            else rows[labels == ("a", "b").index(cls)].astype(np.float64)
        )
        np.testing.assert_allclose(x.mean, subset.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(x.std, subset.std(axis=0), rtol=1e-5)
    assert merged.specificity.accuracy == whole.specificity.accuracy
    assert merged.specificity.evaluated == whole.specificity.evaluated == n


def test_only_parts_of_one_store_and_settings_merge(tmp_path):
    rows = np.full((4, 3), 0.5, dtype=np.float16)
    labels = np.zeros(4, dtype=np.intp)
    acc = _accumulator(rows, labels, 0, 8, StatsSettings())
    with pytest.raises(AnalysisError, match="one store, with the same classes and settings"):
        acc.merge(_accumulator(rows, labels, 4, 8, StatsSettings(folds=3)))
    with pytest.raises(AnalysisError, match="one store"):
        acc.merge(_accumulator(rows, labels, 4, 20, StatsSettings()))  # another store size
    labels, gates = planted_gates(8, seed=6)
    path = write_store(tmp_path / "s.h5", labels, {CONSTANT: gates[CONSTANT]}, blocks=[BLOCKS[CONSTANT]])
    with pytest.raises(AnalysisError, match="jobs=0 must be at least 1"):
        compute_statistics(path, jobs=0)
