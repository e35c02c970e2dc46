"""Distributions: the paper's Figures 6 and 7, histograms and violins, per block and class.

Channel subsets and orders are :mod:`seviz.plots`'s (what ``seviz plot`` draws);
each chart gets only the channels and classes chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from seviz.analysis import ALL_CLASSES, BlockStatistics, StoreStatistics, preload_classes
from seviz.app.views import _charts, _data
from seviz.errors import UsageError
from seviz.plots import (
    CHANNEL_SORTS,
    CHANNEL_SUBSETS,
    PAPER_CHANNELS,
    channel_subset,
    default_blocks,
    default_classes,
    order_channels,
)

if TYPE_CHECKING:
    import pandas as pd

VIEWS = ("Figure 6: mean per class", "Figure 7: mean ± std", "Histograms", "Violins")
Y_AXES = ("fit to the data", "[0, 1]")
# The paper's figures draw 50 channels a block; a line over every one of 2,048 channels is
# more than a chart of ~900 px can show (and what the browser takes longest to draw).
DEFAULT_SUBSET = "random N"


def _controls(stats: StoreStatistics) -> dict[str, Any]:
    """The page's controls (kept in the session under their keys); their values, narrowed."""
    names = stats.block_names
    blocks = st.multiselect(
        "SE blocks",
        names,
        default=default_blocks(stats),
        key="dist_blocks",
        help="Default: the blocks of the SENet paper's Figures 6 and 7 (SE_2_3 ... SE_5_3) when present.",
    )
    classes = list(stats.class_names)
    c1, c2 = st.columns([3, 1])
    chosen = c1.multiselect("Classes", classes, default=default_classes(stats), key="dist_classes")
    with_all = c2.checkbox(f'Add "{ALL_CLASSES}"', value=True, key="dist_all")
    view = st.radio("View", VIEWS, horizontal=True, key="dist_view") or VIEWS[0]
    c1, c2, c3, c4, c5 = st.columns([2, 2, 3, 2, 2])
    subset = (
        c1.selectbox(
            "Channels",
            CHANNEL_SUBSETS,
            index=CHANNEL_SUBSETS.index(DEFAULT_SUBSET),
            key="dist_subset",
            help="The paper's 50 channels (random, seeded, as `seviz plot --channels 50 --random-channels`), "
            "every channel, the first N, or a list of indices.",
        )
        or DEFAULT_SUBSET
    )
    count, text = PAPER_CHANNELS, ""
    if subset in ("first N", "random N"):
        count = int(c2.number_input("N", 1, 100_000, PAPER_CHANNELS, key="dist_count") or PAPER_CHANNELS)
    elif subset == "indices":
        text = c2.text_input("Indices", "", key="dist_channels", placeholder="e.g. 0-63, 100, 200-") or ""
    sort = c3.selectbox("Sort channels by", list(CHANNEL_SORTS), key="dist_sort") or "channel index"
    descending = c4.checkbox("Descending", value=True, key="dist_desc", disabled=CHANNEL_SORTS[sort] is None)
    y_axis = c5.radio(
        "Y axis", Y_AXES, key="dist_y", help="Fitted to the values drawn, or the gates' [0, 1]."
    )
    shown = list(chosen) + ([ALL_CLASSES] if with_all else [])
    figure7_class = None
    if view == VIEWS[1] and shown:
        figure7_class = st.selectbox(
            "Class of Figure 7", shown, key="dist_f7_class", help="The paper's Figure 7 draws one class."
        )
    return {
        "blocks": list(blocks),
        "chosen": list(chosen),
        "with_all": bool(with_all),
        "shown": shown,
        "view": view,
        "subset": subset,
        "count": count,
        "text": text,
        "sort": sort,
        "descending": bool(descending),
        "full": y_axis == Y_AXES[1],
        "figure7_class": figure7_class,
    }


def _chart(
    block: BlockStatistics, c: dict[str, Any], channels: np.ndarray, table: pd.DataFrame | None
) -> Any:
    """The block's chart in the chosen view (``table``: the histograms of the last two views)."""
    if c["view"] == VIEWS[2]:
        return _charts.histograms(block, table, channels.size, c["full"])
    if c["view"] == VIEWS[3]:
        return _charts.violins(block, table, channels.size, full_range=c["full"])
    order = order_channels(block, channels, c["sort"], c["descending"])
    if c["view"] == VIEWS[0]:
        return _charts.figure6(block, c["shown"], order, c["full"])
    return _charts.figure7(block, c["figure7_class"] or c["shown"][0], order, c["full"])


def _figure7_note(block: BlockStatistics, c: dict[str, Any]) -> str:
    """The class Figure 7 draws, for the caption above it (its chart's title does not name it)."""
    if c["view"] != VIEWS[1]:
        return ""
    name = c["figure7_class"] or c["shown"][0]
    return f" · Figure 7 of {name} ({block.class_stats(name).count:,} images)"


def _resolution_note(block: BlockStatistics, table: pd.DataFrame) -> None:
    """Say so when the gates drawn fill at most two histogram bins (their shape is finer than a bin)."""
    bins, low, high = _charts.held_bins(table)
    if 0 < bins <= 2:
        width = float(block.all.bin_edges[1] - block.all.bin_edges[0])
        st.caption(
            f"Every gate drawn lies in [{low:.2f}, {high:.2f}]: {bins} histogram bin{'s' if bins > 1 else ''} "
            f"of width {width:g}, too coarse for their shape. Figure 6 and 7 show their means and spread; the "
            "channel explorer shows one channel's quantiles per class."
        )


def render(path: Path, **_: Any) -> None:
    opened = _data.store(path)
    _data.show_incomplete(opened)
    stats = _data.statistics(path)
    c = _controls(stats)
    if not c["blocks"]:
        st.info("Choose at least one SE block.")
        return
    if not c["shown"]:
        st.info('Choose at least one class (or tick "all classes").')
        return
    for name in c["blocks"]:
        block = stats.block(name)
        preload_classes(block, c["shown"])  # one read of the cache file for every class drawn
        try:
            channels = channel_subset(c["subset"], block.channels, c["count"], c["text"])
        except UsageError as error:
            st.error(str(error))
            return
        if channels.size == 0:
            st.warning(f"{name}: none of the chosen channels exist (it has {block.channels}).")
            continue
        sorted_by = None if CHANNEL_SORTS[c["sort"]] is None else c["sort"]
        order_text = (
            "channel order"
            if sorted_by is None
            else f"sorted by {sorted_by}, {'descending' if c['descending'] else 'ascending'}"
        )
        st.subheader(name)
        st.caption(
            f"{block.channels} channels ({channels.size} shown, {order_text}) · {len(c['chosen'])} classes"
            f"{' and all' if c['with_all'] else ''} · module {block.info.module} · "
            f"specificity {block.specificity.between_share:.3f} (between-class share) · "
            f"mean |1 − s| {block.behaviour.mean_abs_deviation:.4f}{_figure7_note(block, c)}"
        )
        table: pd.DataFrame | None = None
        if c["view"] in (VIEWS[2], VIEWS[3]):
            table = _charts.class_histograms(block, c["shown"], channels)  # one table for note and chart
            _resolution_note(block, table)
        st.vega_lite_chart(spec=_chart(block, c, channels, table), width="stretch")
