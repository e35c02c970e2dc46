"""Tests of seviz.plots: what the figures show, and the files written."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest
from _planted import (
    BLOCKS,
    CLASSES,
    MODEL,
    SPECIFIC,
    write_planted_store,
)

from seviz.analysis import ALL_CLASSES, compute_statistics
from seviz.errors import UsageError
from seviz.plots import (
    CHANNEL_SORTS,
    channel_subset,
    default_blocks,
    order_channels,
    parse_channels,
    plot_class_across_blocks,
    plot_class_excitations,
    plot_depth,
    save_figures,
    select_channels,
)
from seviz.store import StoreError


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    return write_planted_store(tmp_path_factory.mktemp("planted") / "planted.h5")


@pytest.fixture(scope="module")
def planted_stats(planted_store):
    return compute_statistics(planted_store)


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_figure6_has_one_line_per_class_plus_all(planted_stats):
    fig = plot_class_excitations(planted_stats, SPECIFIC)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == len(CLASSES) + 1
    assert _legend(ax) == [*CLASSES, ALL_CLASSES]
    assert ax.get_xlabel() == "channel index" and ax.get_ylabel() == "mean excitation"
    assert SPECIFIC in ax.get_title() and MODEL in ax.get_title()
    block = planted_stats.block(SPECIFIC)
    np.testing.assert_allclose(lines[-1].get_ydata(), block.all.mean)
    np.testing.assert_allclose(lines[1].get_ydata(), block.class_stats("pug").mean)


def test_figure6_channel_subsets_and_sorting(planted_stats):
    block = planted_stats.block(SPECIFIC)
    fig = plot_class_excitations(planted_stats, SPECIFIC, classes=["pug"], channels=5, how="random", seed=1)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2 and len(ax.get_lines()[0].get_xdata()) == 5
    assert "5 of 32 channels, random" in ax.get_xlabel()
    index = select_channels(32, 5, "random", seed=1)
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), block.all.mean[index])
    fig = plot_class_excitations(planted_stats, SPECIFIC, sort=True)
    everything = fig.axes[0].get_lines()[-1].get_ydata()
    assert np.all(np.diff(everything) <= 0) and "sorted by mean" in fig.axes[0].get_xlabel()
    np.testing.assert_array_equal(select_channels(32, 50), np.arange(32))  # capped at the block's width
    with pytest.raises(ValueError, match="must lie in"):
        select_channels(32, [40])
    with pytest.raises(ValueError, match="not one of first, random"):
        select_channels(32, 5, "middle")


def test_figure7_mean_and_std_band_per_block(planted_stats):
    fig = plot_class_across_blocks(planted_stats, "pug")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == list(BLOCKS)
    for ax, name in zip(panels, BLOCKS, strict=True):
        assert len(ax.get_lines()) == 1 and len(ax.collections) == 1  # the mean and its +/- std band
        stats = planted_stats.block(name).class_stats("pug")
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), stats.mean)
        assert ax.get_xlabel() == "channel index" and ax.get_ylabel() == "excitation"
    assert "'pug'" in fig.get_suptitle() and MODEL in fig.get_suptitle()


def test_depth_figure_one_point_per_block(planted_stats):
    fig = plot_depth(planted_stats)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == list(BLOCKS)
    accuracy = left.get_lines()[0]
    np.testing.assert_allclose(
        accuracy.get_ydata(), [planted_stats.block(b).specificity.accuracy for b in BLOCKS]
    )
    assert "chance" in _legend(left) and "mean |1 - s|" in _legend(right)
    deviation = right.get_lines()[0].get_ydata()
    assert np.argmin(deviation) == list(BLOCKS).index("SE_5_2")
    assert left.get_xlabel() == "SE block (by depth)"


def test_save_figures_writes_png_and_svg(planted_stats, tmp_path):
    paths = save_figures(planted_stats, tmp_path / "figs", classes=["pug", "cliff"], channels=10)
    stems = [f"excitations_{b}" for b in BLOCKS] + ["class_pug", "class_cliff", "depth"]
    assert paths == [tmp_path / "figs" / f"{s}.{fmt}" for s in stems for fmt in ("png", "svg")]
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
        else:
            root = ET.fromstring(data)
            assert root.tag.endswith("svg")
            assert b"SE_" in data  # titles are text, not paths


def test_svg_files_are_reproducible(planted_stats, tmp_path):
    kwargs = dict(formats=("svg",), blocks=[SPECIFIC], classes=["pug"])
    first = save_figures(planted_stats, tmp_path / "a", **kwargs)
    second = save_figures(planted_stats, tmp_path / "b", **kwargs)
    assert len(first) == 3
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_default_blocks_are_the_papers_when_present(planted_stats):
    assert default_blocks(planted_stats) == ["SE_2_3", "SE_3_4", "SE_4_6", "SE_5_2"]
    renamed = replace(
        planted_stats, blocks={f"X_{i}": b for i, b in enumerate(planted_stats.blocks.values())}
    )
    assert default_blocks(renamed) == ["X_0", "X_1", "X_2", "X_3"]


def test_bad_names_are_clear_errors(planted_stats, tmp_path):
    with pytest.raises(StoreError, match="block 'SE_9_9'"):
        plot_class_excitations(planted_stats, "SE_9_9")
    with pytest.raises(StoreError, match="class 'dog'"):
        plot_class_across_blocks(planted_stats, "dog")
    with pytest.raises(ValueError, match="unsupported figure format"):
        save_figures(planted_stats, tmp_path, formats=("gif",))


def test_channel_subsets_as_the_app_asks_for_them():
    assert parse_channels("0-3, 10, 7 - 8, 30-", 32).tolist() == [0, 1, 2, 3, 7, 8, 10, 30, 31]
    assert parse_channels("5, 5, 100", 8).tolist() == [5]  # unique, clipped to the block
    with pytest.raises(UsageError, match="channels 'ten'"):
        parse_channels("1, ten", 8)
    assert channel_subset("all", 5).tolist() == [0, 1, 2, 3, 4]
    assert channel_subset("indices", 5, text=" ").tolist() == [0, 1, 2, 3, 4]
    assert channel_subset("first N", 100, 3).tolist() == [0, 1, 2]
    # "random N" is what `seviz plot --channels N --random-channels` draws.
    assert channel_subset("random N", 100, 7).tolist() == select_channels(100, 7, how="random").tolist()
    with pytest.raises(UsageError, match="channel subset 'some'"):
        channel_subset("some", 5)


def test_channel_orders_sort_by_a_statistic_stably(planted_stats):
    block = planted_stats.block(SPECIFIC)
    chosen = np.asarray([0, 3, 5, 9])
    assert order_channels(block, chosen, "channel index").tolist() == [0, 3, 5, 9]
    means = block.all.mean[chosen]
    assert (
        order_channels(block, chosen, "mean over all classes").tolist() == chosen[np.argsort(-means)].tolist()
    )
    ascending = order_channels(block, chosen, "class specificity (between/within variance)", descending=False)
    assert np.all(np.diff(block.specificity.channel_ratio[ascending]) >= 0)
    assert set(CHANNEL_SORTS) >= {"channel index", "input dependence"}
    with pytest.raises(UsageError, match="channel order 'size'"):
        order_channels(block, chosen, "size")
