"""Channel explorer: for one channel of one block, the images that excite it most and least, and per class.

The samples are ranked once per block (:func:`seviz.analysis.cached_channel_extremes`,
saved beside the store); their images are shown as thumbnails from the paths
stored with them (a file that is gone is shown as missing), with class and
gate. Below, the channel's distribution per class (quantiles from the
statistics) for the classes that excite it most, or the ones chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from seviz.analysis import ALL_CLASSES, BlockStatistics, class_counts, class_quantiles, class_values
from seviz.app.views import _charts, _data
from seviz.plots import PAPER_BLOCKS
from seviz.store import Store

_K = 8  # samples ranked per channel and side (the most the page shows)
_PER_ROW = 8
_CLASSES = 12  # classes in the per-class chart by default
_GATE_FORMAT = "%.4f"  # gates in the table, as in the thumbnails' captions


def default_block(names: list[str]) -> str:
    """The deepest of the paper's blocks present, else the deepest block."""
    present = [name for name in PAPER_BLOCKS if name in names]
    return present[-1] if present else names[-1]


def samples_table(opened: Store, ranked: list[tuple[int, float]], side: str) -> pd.DataFrame:
    """One row per ranked sample: rank, index, class, gate, stored path and whether the file exists."""
    rows = []
    paths = opened.paths_at([index for index, _ in ranked])
    for rank, ((index, value), stored) in enumerate(zip(ranked, paths, strict=True), start=1):
        file = _data.image_file(opened, str(stored))
        rows.append(
            {
                "side": side,
                "rank": rank,
                "sample": index,
                "class": str(opened.class_names[index]),
                "gate": value,
                "path": str(stored),
                "found": file is not None,
            }
        )
    return pd.DataFrame(rows, columns=["side", "rank", "sample", "class", "gate", "path", "found"])


def _thumbnails(opened: Store, table: pd.DataFrame) -> None:
    for start in range(0, len(table), _PER_ROW):
        columns = st.columns(_PER_ROW)
        for column, row in zip(
            columns, table.iloc[start : start + _PER_ROW].to_dict("records"), strict=False
        ):
            caption = f"{row['class']} · {_GATE_FORMAT % row['gate']} · #{row['sample']}"
            file = _data.image_file(opened, row["path"])
            image = _data.thumbnail(file) if file is not None else None
            with column:
                if image is None:
                    st.markdown(
                        "<div style='height:96px;border:1px dashed #bbb;display:flex;align-items:center;"
                        "justify-content:center;color:#888;font-size:0.8em'>missing</div>",
                        unsafe_allow_html=True,
                    )
                    st.caption(f"{caption} · missing: {row['path']}")
                else:
                    st.image(image, caption=caption, width="stretch")


def class_table(block: BlockStatistics, channel: int, classes: list[str]) -> pd.DataFrame:
    """One row per class (and all classes) with the channel's mean, count and quantiles 5/25/50/75/95."""
    names = list(block.classes)
    means = class_values(block, "mean", channel)
    quantiles = class_quantiles(block, channel)
    counts = class_counts(block)  # not block.classes[name].count: that reads the class's every statistic
    levels = block.all.quantile_levels
    wanted = {name: i for i, name in enumerate(names)}
    rows = []
    for name in [*classes, ALL_CLASSES]:
        if name == ALL_CLASSES:
            mean, q, count = block.all.mean[channel], block.all.quantiles[:, channel], block.all.count
        else:
            i = wanted[name]
            mean, q, count = means[i], quantiles[i], counts[i]
        row = {"class": name, "count": int(count), "mean": float(mean)}
        for level, value in zip(levels, q, strict=True):
            row[f"q{round(100 * level):02d}"] = float(value)
        rows.append(row)
    return pd.DataFrame(rows)


def render(path: Path, **_: Any) -> None:
    opened = _data.store(path)
    _data.show_incomplete(opened)
    stats = _data.statistics(path)
    names = stats.block_names
    c1, c2, c3 = st.columns([2, 2, 1])
    start = default_block(names)
    block_name = c1.selectbox("SE block", names, index=names.index(start), key="chan_block") or start
    block = stats.block(block_name)
    best = int(np.argmax(block.specificity.channel_ratio))
    channel = int(
        c2.number_input(
            f"Channel (0-{block.channels - 1})",
            0,
            block.channels - 1,
            best,
            key=f"chan_channel_{block_name}",
            help="Default: the block's most class-specific channel (between/within variance).",
        )
        or 0
    )
    k = int(c3.number_input("Images per side", 1, _K, _K, key="chan_k") or _K)
    ranked = _data.extremes(path, block_name, _K)
    top, low = ranked.channel(channel)
    st.caption(
        f"{block_name} channel {channel}: mean {block.all.mean[channel]:.4f} over {block.all.count:,} images, "
        f"std {block.all.std[channel]:.4f}, class specificity {block.specificity.channel_ratio[channel]:.3g} "
        f"(between/within variance), input dependence {block.behaviour.channel_dependence[channel]:.3g}."
    )
    highest, lowest = samples_table(opened, top[:k], "highest"), samples_table(opened, low[:k], "lowest")
    st.subheader("Highest gates")
    _thumbnails(opened, highest)
    st.subheader("Lowest gates")
    _thumbnails(opened, lowest)
    missing = int((~highest["found"]).sum() + (~lowest["found"]).sum())
    if missing:
        st.warning(f"{missing} of the images are not where the store says they are (shown as missing).")
    st.dataframe(
        pd.concat([highest, lowest], ignore_index=True),
        hide_index=True,
        key="chan_samples",
        # As the captions: a near-1 gate (0.9987) must not read as 1.
        column_config={"gate": st.column_config.NumberColumn(format=_GATE_FORMAT)},
    )
    _per_class(block, channel)


@st.fragment
def _per_class(block: BlockStatistics, channel: int) -> None:
    """The channel's distribution per class: its own controls rerun only this part."""
    names = list(block.classes)
    if not names:
        st.info("These statistics have no per-class part.")
        return
    means = class_values(block, "mean", channel)
    by_mean = [names[i] for i in np.argsort(-means, kind="stable")]
    c1, c2 = st.columns([4, 1])
    chosen = c1.multiselect(
        "Classes",
        names,
        default=by_mean[:_CLASSES],
        key=f"chan_classes_{block.name}_{channel}",
        help=f"Default: the {_CLASSES} classes with the highest mean gate on this channel.",
    )
    full = c2.radio("Y axis", ("fit to the data", "[0, 1]"), key="chan_y") == "[0, 1]"
    position = {name: i for i, name in enumerate(names)}
    order = sorted(chosen, key=lambda name: -means[position[name]])
    table = class_table(block, channel, order)
    st.vega_lite_chart(
        spec=_charts.class_boxes(
            table,
            f"{block.name} channel {channel}: gate per class (5-95% whiskers, 25-75% box, median)",
            full,
        ),
        width="stretch",
    )
