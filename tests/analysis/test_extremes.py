"""Tests of seviz.analysis.extremes: the samples with the highest and lowest gate of each channel."""

from __future__ import annotations

import numpy as np
import pytest
from _planted import write_store

from seviz.analysis import channel_extremes
from seviz.errors import AnalysisError, StoreError
from seviz.store import BlockInfo


def _ranked(values: np.ndarray, k: int, highest: bool) -> list[int]:
    """Sample order by value (highest or lowest first), ties to the earlier sample."""
    key = -values if highest else values
    return np.lexsort((np.arange(len(values)), key))[:k].tolist()


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_extremes_match_a_full_sort_with_ties_to_the_earlier_sample(tmp_path, dtype):
    rng = np.random.default_rng(3)
    n, channels = 333, 6
    g = rng.uniform(0.0, 1.0, size=(n, channels)).astype(np.float32)
    g[:, 1] = np.round(g[:, 1] * 4) / 4  # many ties
    g[:, 2] = 0.5  # all tied
    g[:, 3] -= 0.5  # negative gates too
    g = g.astype(dtype).astype(np.float32)
    info = BlockInfo("SE_2_1", "m", 2, 1, channels)
    path = write_store(tmp_path / "x.h5", np.arange(n) % 2, {"SE_2_1": g}, [info], ("a", "b"), dtype=dtype)
    for rows in (None, 7, 100):
        found = channel_extremes(path, "SE_2_1", k=5, chunk_rows=rows)
        for c in range(channels):
            top, low = found.channel(c)
            assert [i for i, _ in top] == _ranked(g[:, c], 5, True)
            assert [i for i, _ in low] == _ranked(g[:, c], 5, False)
            np.testing.assert_array_equal([v for _, v in top], g[_ranked(g[:, c], 5, True), c])
            np.testing.assert_array_equal([v for _, v in low], g[_ranked(g[:, c], 5, False), c])
    assert found.channel(2)[0] == [(i, 0.5) for i in range(5)]


def test_extremes_of_a_short_store_and_bad_arguments(tmp_path):
    g = np.asarray([[0.2], [0.9], [0.4]], dtype=np.float32)
    info = BlockInfo("SE_2_1", "m", 2, 1, 1)
    path = write_store(tmp_path / "x.h5", np.zeros(3, int), {"SE_2_1": g}, [info], ("a",))
    found = channel_extremes(path, "SE_2_1", k=10)
    assert found.k == 3 and [i for i, _ in found.channel(0)[0]] == [1, 2, 0]
    with pytest.raises(AnalysisError, match="k=0"):
        channel_extremes(path, "SE_2_1", k=0)
    with pytest.raises(StoreError, match="channel 1 is not in block SE_2_1"):
        found.channel(1)
    with pytest.raises(StoreError, match="SE_9_9"):
        channel_extremes(path, "SE_9_9")
