"""Comparing two statistics results: what must be equal exactly, and what up to float rounding."""

from __future__ import annotations

import numpy as np
import pytest

from seviz.analysis import ALL_CLASSES, StoreStatistics

# Means and second moments summed in another order (parts merged, other chunk bounds)
# differ by rounding: the pass adds float32 partial sums over up to 1024 rows of a
# class into float64 totals, so one pass's std is itself within about 1e-5 (seen:
# 6e-6) of numpy's float64 std, and a cut elsewhere moves it by as much.
ROUNDING = {"rtol": 1e-5, "atol": 1e-8}


def assert_same_statistics(got: StoreStatistics, want: StoreStatistics) -> None:
    """Counts, extremes, histograms and quantiles equal; means, stds and what follows from them close."""
    assert got.block_names == want.block_names and got.class_names == want.class_names
    for name in want.block_names:
        a, b = got.block(name), want.block(name)
        assert a.quantile_bins == b.quantile_bins
        for cls in [*want.class_names, ALL_CLASSES]:
            x, y = a.class_stats(cls), b.class_stats(cls)
            assert x.count == y.count, (name, cls)
            for field in ("min", "max", "histogram", "quantiles"):
                np.testing.assert_array_equal(
                    getattr(x, field), getattr(y, field), err_msg=f"{name} {cls} {field}"
                )
            for field in ("mean", "std"):
                np.testing.assert_allclose(
                    getattr(x, field), getattr(y, field), **ROUNDING, err_msg=f"{name} {cls} {field}"
                )
        sa, sb = a.specificity, b.specificity
        assert (sa.accuracy, sa.evaluated, sa.classes, sa.chance) == (
            sb.accuracy,
            sb.evaluated,
            sb.classes,
            sb.chance,
        )
        np.testing.assert_allclose(sa.channel_ratio, sb.channel_ratio, **ROUNDING)
        assert sa.variance_ratio == pytest.approx(sb.variance_ratio, rel=1e-5, abs=1e-8)
        ga, gb = a.behaviour, b.behaviour
        assert (ga.fraction_near_one, ga.min_gate, ga.max_gate) == (
            gb.fraction_near_one,
            gb.min_gate,
            gb.max_gate,
        )
        np.testing.assert_array_equal(ga.channel_near_one, gb.channel_near_one)
        for field in ("mean_abs_deviation", "input_dependence", "input_std"):
            assert getattr(ga, field) == pytest.approx(getattr(gb, field), rel=1e-5, abs=1e-8), (name, field)
