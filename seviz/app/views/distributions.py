"""Distributions: the paper's Figures 6 and 7, histograms and violins, per block and class."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from seviz.analysis import ALL_CLASSES, BlockStatistics
from seviz.app.views import _charts, _data
from seviz.errors import UsageError
from seviz.plots import default_blocks, default_classes, select_channels

VIEWS = ("Figure 6: mean per class", "Figure 7: mean ± std", "Histograms", "Violins")
SORTS = {
    "channel index": None,
    "mean over all classes": lambda b: b.all.mean,
    "class specificity (between/within variance)": lambda b: b.specificity.channel_ratio,
    "input dependence": lambda b: b.behaviour.channel_dependence,
}
SUBSETS = ("all", "first N", "random N", "indices")
_PAPER_CHANNELS = 50  # the paper drew 50 channels per block


def parse_channels(text: str, channels: int) -> np.ndarray:
    """Channel indices from ``"0-15, 40, 64-"``, clipped to the block's width.

    Raises:
        ValueError: The text is not a list of indices and ranges.
    """
    chosen: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d*)\s*-\s*(\d*)|(\d+)", part)
        if not match:
            raise UsageError(f"channels {part!r}: write indices and ranges such as 0-15, 40, 64-")
        if match.group(3) is not None:
            start = stop = int(match.group(3))
        else:
            start = int(match.group(1) or 0)
            stop = int(match.group(2)) if match.group(2) else channels - 1
        chosen.extend(range(start, min(stop, channels - 1) + 1))
    return np.asarray(sorted(set(chosen)), dtype=np.intp)


def chosen_channels(subset: str, count: int, text: str, total: int) -> np.ndarray:
    """The channels of a block the controls ask for (first/random N as ``seviz plot`` picks them)."""
    if subset == "indices":
        return parse_channels(text, total) if text.strip() else np.arange(total)
    if subset == "all":
        return select_channels(total)
    return select_channels(total, count, how="first" if subset == "first N" else "random")


def channel_order(block: BlockStatistics, channels: np.ndarray, sort: str, descending: bool) -> np.ndarray:
    """The chosen channels in display order (sorted by one of the block's per-channel statistics)."""
    key = SORTS[sort]
    if key is None:
        return channels
    values = np.asarray(key(block), dtype=np.float64)[channels]
    order = np.argsort(-values if descending else values, kind="stable")
    return channels[order]


def render(path: Path, **_: Any) -> None:
    store = _data.store(path)
    _data.show_incomplete(store)
    stats = _data.statistics(path)
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
    view = st.radio("View", VIEWS, horizontal=True, key="dist_view")
    c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
    subset = c1.selectbox(
        "Channels",
        SUBSETS,
        key="dist_subset",
        help="Every channel, the first or a random (seeded) N like the paper's 50, or a list of indices.",
    )
    count, channel_text = _PAPER_CHANNELS, ""
    if subset in ("first N", "random N"):
        count = int(c2.number_input("N", 1, 100_000, _PAPER_CHANNELS, key="dist_count"))
    elif subset == "indices":
        channel_text = c2.text_input("Indices", "", key="dist_channels", placeholder="e.g. 0-63, 100, 200-")
    sort = c3.selectbox("Sort channels by", list(SORTS), key="dist_sort")
    descending = c4.checkbox("Descending", value=True, key="dist_desc", disabled=SORTS[sort] is None)
    shown = chosen + ([ALL_CLASSES] if with_all else [])
    if not blocks:
        st.info("Choose at least one SE block.")
        return
    if not shown:
        st.info('Choose at least one class (or tick "all classes").')
        return
    for name in blocks:
        block = stats.block(name)
        try:
            channels = chosen_channels(subset, count, channel_text, block.channels)
        except ValueError as error:
            st.error(str(error))
            return
        if channels.size == 0:
            st.warning(f"{name}: none of the chosen channels exist (it has {block.channels}).")
            continue
        order = channel_order(block, channels, sort, descending)
        sorted_by = None if SORTS[sort] is None else sort
        st.subheader(name)
        order_text = (
            "channel order"
            if sorted_by is None
            else (f"sorted by {sorted_by}, {'descending' if descending else 'ascending'}")
        )
        st.caption(
            f"{block.channels} channels ({channels.size} shown, {order_text}) · {len(chosen)} classes"
            f"{' and all' if with_all else ''} · module {block.info.module} · "
            f"specificity {block.specificity.between_share:.3f} (between-class share) · "
            f"mean |1 − s| {block.behaviour.mean_abs_deviation:.4f}"
        )
        if view == VIEWS[0]:
            chart = _charts.figure6(block, shown, order, sorted_by)
        elif view == VIEWS[1]:
            chart = _charts.figure7(block, shown, order, sorted_by)
        elif view == VIEWS[2]:
            chart = _charts.histograms(block, shown, channels)
        else:
            chart = _charts.violins(block, shown, channels)
        st.altair_chart(chart, width="stretch" if view == VIEWS[0] else "content")
