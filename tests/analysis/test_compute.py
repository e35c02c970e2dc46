"""Tests of seviz.analysis.compute on synthetic stores with planted behaviour."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import h5py
import numba
import numpy as np
import pytest
from _planted import (
    AGNOSTIC,
    BLOCKS,
    CLASSES,
    CONSTANT,
    IDENTITY,
    SPECIFIC,
    planted_gates,
    write_planted_store,
    write_store,
)

from seviz.analysis import ALL_CLASSES, SPECIFICITY_METHODS, StatsSettings, compute, compute_statistics
from seviz.store import BlockInfo, StoreError, open_store

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


@pytest.fixture(scope="module", autouse=True)
def _compiled_even_when_small():
    """These stores are small, which seviz analyses in numpy; most tests here check the compiled pass.

    The numpy path is checked against it in ``test_small_stores_are_analysed_in_numpy_alike``.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compute, "SMALL_STORE_GATES", 0)
        yield


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    return write_planted_store(tmp_path_factory.mktemp("planted") / "planted.h5")


@pytest.fixture(scope="module")
def planted_stats(planted_store):
    return compute_statistics(planted_store)


def _whole(path):
    with open_store(path) as store:
        return {name: store.gates(name) for name in store.blocks}, store.class_names.copy()


def _check_against_numpy(stats, gates, class_names, block, resolution=1e-3):
    b = stats.block(block)
    g = gates[block]
    edges = np.linspace(0.0, 1.0, 21)
    for name in [*b.class_names, ALL_CLASSES]:
        x = g if name == ALL_CLASSES else g[class_names == name]
        cs = b.class_stats(name)
        assert cs.count == len(x)
        np.testing.assert_allclose(cs.mean, x.mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(cs.std, x.astype(np.float64).std(axis=0), rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(cs.min, x.min(axis=0))
        np.testing.assert_array_equal(cs.max, x.max(axis=0))
        expected = np.stack([np.histogram(np.clip(col, 0, 1), bins=edges)[0] for col in x.T])
        np.testing.assert_array_equal(cs.histogram, expected)
        exact = np.quantile(x, LEVELS, axis=0, method="inverted_cdf")
        assert np.abs(cs.quantiles - exact).max() <= resolution + 1e-7
        np.testing.assert_array_equal(cs.quantile(0.5), cs.quantiles[2])


@pytest.mark.parametrize("block", list(BLOCKS))
def test_streaming_statistics_equal_numpy_on_the_whole_array(planted_stats, planted_store, block):
    gates, class_names = _whole(planted_store)
    _check_against_numpy(planted_stats, gates, class_names, block)


def test_chunk_size_does_not_change_results(planted_store, planted_stats):
    for rows in (1, 7, 64):
        other = compute_statistics(planted_store, chunk_rows=rows)
        for name in BLOCKS:
            a, b = planted_stats.block(name), other.block(name)
            for cls in [*CLASSES, ALL_CLASSES]:
                x, y = a.class_stats(cls), b.class_stats(cls)
                for field in ("mean", "std", "min", "max", "quantiles"):
                    np.testing.assert_allclose(getattr(x, field), getattr(y, field), rtol=1e-6, atol=1e-9)
                np.testing.assert_array_equal(x.histogram, y.histogram)
            assert a.specificity.accuracy == b.specificity.accuracy
            for x, y in (
                (a.specificity.variance_ratio, b.specificity.variance_ratio),
                (a.behaviour.input_dependence, b.behaviour.input_dependence),
            ):
                assert x == pytest.approx(y, rel=1e-6, abs=1e-12)
            assert a.behaviour.fraction_near_one == b.behaviour.fraction_near_one


def test_specificity_is_chance_for_class_agnostic_and_high_for_class_specific(planted_stats):
    agnostic = planted_stats.block(AGNOSTIC).specificity
    specific = planted_stats.block(SPECIFIC).specificity
    assert agnostic.chance == specific.chance == 1 / len(CLASSES)
    assert abs(agnostic.accuracy - agnostic.chance) < 0.1
    assert agnostic.variance_ratio < 0.05 and agnostic.between_share < 0.05
    assert specific.accuracy > 0.95
    assert specific.variance_ratio > 10 and specific.between_share > 0.9
    assert specific.methods == ("between_within_variance_ratio", "nearest_centroid_cv_accuracy")
    assert specific.evaluated == 400 and specific.folds == 5
    # Constant gates carry no class signal: every centroid is the same vector.
    constant = planted_stats.block(CONSTANT).specificity
    assert constant.variance_ratio == 0.0 and constant.between_share == 0.0
    assert constant.accuracy == pytest.approx(constant.chance)


def test_gate_behaviour_scores(planted_stats, planted_store):
    gates, _ = _whole(planted_store)
    for name, g in gates.items():
        b = planted_stats.block(name).behaviour
        g64 = g.astype(np.float64)
        assert b.mean_abs_deviation == pytest.approx(np.abs(1 - g64).mean(), abs=1e-7)
        assert b.fraction_near_one == pytest.approx((g >= 0.95).mean())
        var, square = g64.var(axis=0), (g64**2).mean(axis=0)
        assert b.input_dependence == pytest.approx(var.sum() / square.sum(), rel=1e-5, abs=1e-9)
        np.testing.assert_allclose(b.channel_dependence, var / square, rtol=1e-4, atol=1e-9)
    identity = planted_stats.block(IDENTITY).behaviour
    assert identity.mean_abs_deviation < 0.01 and identity.fraction_near_one == 1.0
    constant = planted_stats.block(CONSTANT).behaviour
    assert constant.input_dependence < 1e-12 and constant.input_std < 1e-6
    assert planted_stats.block(AGNOSTIC).behaviour.input_dependence == pytest.approx(0.25, abs=0.03)
    assert planted_stats.block(SPECIFIC).behaviour.input_dependence > 0.05


def test_gates_outside_unit_interval(tmp_path):
    """Gates above 1 (e.g. a gate-excite variant): |1 - s| and histograms still right."""
    rng = np.random.default_rng(3)
    labels = np.arange(300) % 2
    g = rng.uniform(-0.2, 1.5, size=(300, 8)).astype(np.float32)
    info = BlockInfo("SE_2_1", "m", 2, 1, 8)
    path = write_store(tmp_path / "wide.h5", labels, {"SE_2_1": g}, [info], ("a", "b"), dtype="float32")
    stats = compute_statistics(path, chunk_rows=50)
    b = stats.block("SE_2_1")
    assert b.behaviour.mean_abs_deviation == pytest.approx(np.abs(1 - g.astype(np.float64)).mean(), rel=1e-6)
    assert b.behaviour.max_gate == pytest.approx(g.max()) and b.behaviour.min_gate == pytest.approx(g.min())
    expected = np.stack([np.histogram(np.clip(col, 0, 1), bins=np.linspace(0, 1, 21))[0] for col in g.T])
    np.testing.assert_array_equal(b.all.histogram, expected)
    np.testing.assert_allclose(b.all.std, g.astype(np.float64).std(axis=0), rtol=1e-5)


def test_float16_and_float32_stores_give_the_same_statistics(tmp_path):
    """The compiled float16 pass and the numpy float32 path compute the same state."""
    labels, gates = planted_gates(300, seed=5)
    gates = {name: g.astype(np.float16).astype(np.float32) for name, g in gates.items()}
    half = compute_statistics(write_store(tmp_path / "half.h5", labels, gates), chunk_rows=70)
    full = compute_statistics(
        write_store(tmp_path / "full.h5", labels, gates, dtype="float32"), chunk_rows=70
    )
    for name in BLOCKS:
        a, b = half.block(name), full.block(name)
        for cls in [*CLASSES, ALL_CLASSES]:
            x, y = a.class_stats(cls), b.class_stats(cls)
            assert x.count == y.count
            for field in ("min", "max", "histogram", "quantiles"):
                np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
            np.testing.assert_allclose(x.mean, y.mean, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(x.std, y.std, rtol=1e-5, atol=1e-9)
        assert a.specificity.accuracy == b.specificity.accuracy
        assert a.behaviour.fraction_near_one == b.behaviour.fraction_near_one
        np.testing.assert_array_equal(a.behaviour.channel_near_one, b.behaviour.channel_near_one)


def test_float16_gates_outside_unit_interval(tmp_path):
    """Float16 chunks with gates above 1 stay compiled, chunks with negative gates take numpy's path."""
    rng = np.random.default_rng(4)
    labels = np.arange(400) % 2
    g = rng.uniform(0.0, 1.4, size=(400, 8))
    g[300:] -= 0.3  # the last chunk holds negative gates
    g = g.astype(np.float16).astype(np.float32)
    info = BlockInfo("SE_2_1", "m", 2, 1, 8)
    path = write_store(tmp_path / "wide16.h5", labels, {"SE_2_1": g}, [info], ("a", "b"))
    b = compute_statistics(path, chunk_rows=100).block("SE_2_1")
    g64 = g.astype(np.float64)
    assert b.behaviour.mean_abs_deviation == pytest.approx(np.abs(1 - g64).mean(), rel=1e-6)
    assert b.behaviour.min_gate == g.min() and b.behaviour.max_gate == g.max()
    expected = np.stack([np.histogram(np.clip(col, 0, 1), bins=np.linspace(0, 1, 21))[0] for col in g.T])
    np.testing.assert_array_equal(b.all.histogram, expected)
    np.testing.assert_allclose(b.all.std, g64.std(axis=0), rtol=1e-5)
    np.testing.assert_allclose(b.class_stats("b").mean, g64[labels == 1].mean(axis=0), rtol=1e-6)


def test_near_one_off_the_bin_edges_is_counted_gate_by_gate(planted_store):
    gates, _ = _whole(planted_store)
    stats = compute_statistics(planted_store, settings=StatsSettings(near_one=0.9505))  # 950.5 bins
    for name, g in gates.items():
        behaviour = stats.block(name).behaviour
        assert behaviour.fraction_near_one == pytest.approx((g >= 0.9505).mean())
        np.testing.assert_allclose(behaviour.channel_near_one, (g >= 0.9505).mean(axis=0))


def test_histogram_counts_past_65535_rows_of_one_class(tmp_path):
    """The uint16 counts are moved into wider totals before they could overflow."""
    rng = np.random.default_rng(6)
    g = rng.uniform(0.0, 1.0, size=(70_000, 2)).astype(np.float16).astype(np.float32)
    g[:, 1] = 0.5  # one bin takes every row
    info = BlockInfo("SE_2_1", "m", 2, 1, 2)
    path = write_store(
        tmp_path / "long.h5", np.zeros(70_000, int), {"SE_2_1": g}, [info], ("a",), batch=10_000
    )
    stats = compute_statistics(path)
    _check_against_numpy(stats, {"SE_2_1": g}, np.full(70_000, "a"), "SE_2_1")
    assert stats.block("SE_2_1").all.histogram[1, 10] == 70_000


def test_workers_change_nothing_but_speed(planted_store, planted_stats):
    other = compute_statistics(planted_store, workers=3)
    assert json.dumps(other.to_dict()) == json.dumps(planted_stats.to_dict())
    with pytest.raises(ValueError, match="workers=0 must be at least 1"):
        compute_statistics(planted_store, workers=0)


def test_scored_rows_are_every_eval_every_th_run_of_folds(planted_store):
    """Rows held for the nearest-centroid scores: whole runs of `folds` samples, evenly spread."""
    from seviz.analysis._accumulator import BlockAccumulator

    for samples, limit, chunk in ((400, 100, 7), (997, 50, 13), (50, 7, 1), (12_345, 999, 1000)):
        settings = StatsSettings(max_eval_samples=limit)
        acc = BlockAccumulator(BlockInfo("SE_2_1", "m", 2, 1, 3), samples, ["a"], ["a"], settings)
        for start in range(0, samples, chunk):
            index = np.arange(start, min(samples, start + chunk))
            acc._hold(start, np.repeat(index[:, None], 3, axis=1).astype(np.float32), index)
        every, index = acc.eval_every, np.arange(samples)
        scored = (index // settings.folds) % every == 0
        for fold in range(settings.folds):
            want = index[scored & (index % settings.folds == fold)]
            held = acc.eval_labels[fold]
            np.testing.assert_array_equal(held[held >= 0], want)
            np.testing.assert_array_equal(acc.eval_rows[fold, : len(want), 0], want)
        assert scored.sum() <= limit + settings.folds


def test_evaluation_subset_is_bounded_and_spread(planted_store):
    stats = compute_statistics(planted_store, settings=StatsSettings(max_eval_samples=100))
    spec = stats.block(SPECIFIC).specificity
    assert 80 <= spec.evaluated <= 105
    assert spec.accuracy > 0.95
    assert abs(stats.block(AGNOSTIC).specificity.accuracy - 0.25) < 0.2


def test_class_subset_reports_only_those_classes(planted_store, planted_stats):
    stats = compute_statistics(planted_store, classes=["pug"])
    block = stats.block(SPECIFIC)
    assert block.class_names == ["pug"] and stats.class_names == ("pug",)
    full = planted_stats.block(SPECIFIC)
    np.testing.assert_array_equal(block.all.histogram, full.all.histogram)
    np.testing.assert_allclose(block.class_stats("pug").quantiles, full.class_stats("pug").quantiles)
    assert block.specificity.accuracy == full.specificity.accuracy  # specificity always uses every class


def test_histogram_budget_lowers_quantile_resolution(planted_store, caplog):
    settings = StatsSettings(histogram_budget_bytes=24 * 4 * 8 * 100)  # 100 bins: 24 channels x 4 classes
    with caplog.at_level(logging.WARNING):
        stats = compute_statistics(planted_store, blocks=[CONSTANT], settings=settings)
    block = stats.block(CONSTANT)
    assert block.quantile_bins == 100
    assert "quantile resolution lowered" in caplog.text
    gates, class_names = _whole(planted_store)
    _check_against_numpy(stats, gates, class_names, CONSTANT, resolution=1 / 100)


def test_incomplete_store_is_read_with_a_warning(tmp_path, caplog):
    path = write_planted_store(tmp_path / "partial.h5", n=120, complete=False)
    with caplog.at_level(logging.WARNING):
        stats = compute_statistics(path)
    assert "incomplete" in caplog.text
    assert stats.complete is False and stats.store["samples"] == 120
    assert stats.block(SPECIFIC).all.count == 120


def test_not_a_seviz_store(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(StoreError, match="not a seviz store"):
        compute_statistics(path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(StoreError, match="not a readable HDF5 file"):
        compute_statistics(text)


def test_unknown_block_or_class_names_the_value_and_the_choices(planted_store, planted_stats):
    with pytest.raises(StoreError, match=r"block 'SE_9_9' is not in .*SE_2_3"):
        compute_statistics(planted_store, blocks=["SE_9_9"])
    with pytest.raises(StoreError, match=r"class 'gldfish' .*did you mean 'goldfish'"):
        compute_statistics(planted_store, classes=["gldfish"])
    with pytest.raises(StoreError, match=r"block 'SE_5_3' .*SE_5_2"):
        planted_stats.block("SE_5_3")
    with pytest.raises(StoreError, match=r"class 'pugg' .*did you mean 'pug'"):
        planted_stats.block(SPECIFIC).class_stats("pugg")
    with pytest.raises(StoreError, match="quantile 0.9 was not computed"):
        planted_stats.block(SPECIFIC).all.quantile(0.9)


def test_non_finite_gates_and_empty_stores_are_refused(tmp_path):
    g = np.full((20, 4), 0.5, dtype=np.float32)
    g[7, 2] = np.nan
    info = BlockInfo("SE_2_1", "m", 2, 1, 4)
    path = write_store(tmp_path / "nan.h5", np.zeros(20, int), {"SE_2_1": g}, [info], classes=("a",))
    with pytest.raises(StoreError, match=r"SE_2_1 has non-finite gate values in samples 0\.\.19"):
        compute_statistics(path)
    empty = write_store(tmp_path / "empty.h5", np.zeros(0, int), {"SE_2_1": g[:0]}, [info], classes=("a",))
    with pytest.raises(StoreError, match="no committed samples"):
        compute_statistics(empty)


def test_settings_are_checked(planted_store):
    with pytest.raises(ValueError, match="chunk_rows=0 must be at least 1"):
        compute_statistics(planted_store, chunk_rows=0)
    with pytest.raises(ValueError, match="multiple of histogram_bins"):
        StatsSettings(quantile_bins=1001)
    with pytest.raises(ValueError, match="at least 2 folds"):
        StatsSettings(folds=1)


def test_to_dict_is_plain_json(planted_stats):
    data = json.loads(json.dumps(planted_stats.to_dict(), allow_nan=False))
    assert data["seviz_statistics"] == 1
    assert data["store"]["model"] == "planted_senet" and data["store"]["samples"] == 400
    block = data["blocks"][SPECIFIC]
    assert set(block["classes"]) == set(CLASSES)
    assert len(block["all"]["mean"]) == BLOCKS[SPECIFIC].channels
    assert block["specificity"]["methods"] == list(SPECIFICITY_METHODS)
    assert "classes" not in planted_stats.to_dict(per_class=False)["blocks"][SPECIFIC]


def test_import_stays_light():
    code = (
        "import sys, seviz.analysis.compute, seviz.pruning.recommendation, seviz.plots; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'streamlit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_kernels_loaded_ahead_are_the_ones_the_analysis_calls(planted_store):
    """``load_all`` (run while the store opens) must match the accumulator's argument types, or it loads in vain."""
    code = (
        "import sys\n"
        "from seviz.analysis import _kernels, compute as stats\n"
        "_kernels.load_all()\n"
        "kernels = (_kernels.add_float16_rows, _kernels.summarize_counts, _kernels.nearest_centroids)\n"
        "before = [list(k.signatures) for k in kernels]\n"
        "stats.compute_statistics(sys.argv[1], workers=1, compiled=True)\n"
        "print([len(b) for b in before], [list(k.signatures) == b for k, b in zip(kernels, before)])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(planted_store)], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[1, 1, 1] [True, True, True]"


def test_kernels_work_where_numba_cannot_cache_them(planted_store):
    """A locked-down container (no writable cache folder): compiled in the process, with one warning."""
    code = (
        "import sys, logging\n"
        "logging.basicConfig()\n"
        "from seviz.analysis import _kernels, compute as stats\n"
        "result = stats.compute_statistics(sys.argv[1], blocks=['SE_4_6'], workers=1, compiled=True)\n"
        "print(len(_kernels._uncached), result.block('SE_4_6').specificity.accuracy > 0.95)\n"
    )
    # A locator list with nothing that applies to a plain module makes numba refuse to cache.
    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "IPythonCacheLocator"}
    run = subprocess.run(
        [sys.executable, "-c", code, str(planted_store)], check=True, capture_output=True, text=True, env=env
    )
    assert run.stdout.split() == [str(_kernel_count()), "True"]
    assert run.stderr.count("numba cannot cache the statistics kernels") == 1


def test_small_stores_are_analysed_in_numpy_alike(planted_store, planted_stats):
    """Below SMALL_STORE_GATES numpy does the work (numba is not even imported), with the same results."""
    gates, class_names = _whole(planted_store)
    small = compute_statistics(planted_store, compiled=False)
    for name in BLOCKS:
        _check_against_numpy(small, gates, class_names, name)
        a, b = small.block(name), planted_stats.block(name)
        for cls in [*CLASSES, ALL_CLASSES]:
            x, y = a.class_stats(cls), b.class_stats(cls)
            for field in ("min", "max", "histogram"):
                np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
            np.testing.assert_allclose(x.quantiles, y.quantiles, atol=1e-12)
            np.testing.assert_allclose(x.mean, y.mean, rtol=1e-6, atol=1e-9)
        assert a.specificity.accuracy == b.specificity.accuracy
        assert a.behaviour.fraction_near_one == b.behaviour.fraction_near_one
    code = (
        "import sys\n"
        "from seviz.analysis import compute_statistics\n"
        "compute_statistics(sys.argv[1])\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(planted_store)], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == "False"


def _kernel_count() -> int:
    import seviz.analysis._kernels as kernels

    return sum(isinstance(v, numba.core.registry.CPUDispatcher) for v in vars(kernels).values())
