"""Attribution: the gate channels that most drive each class, from ``seviz attribute`` (captum).

One bar chart per class, laid out in Streamlit columns that wrap with the page
(three a row), every channel labelled: a chart grows by 20 px a bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from seviz.app.views import _charts, _data

_TOP = 10
_PER_ROW = 3
_MAX_BARS = 40  # bars per chart; more are listed in the table only


def ranking_table(attributions: Any, classes: list[str], k: int) -> pd.DataFrame:
    """The top ``k`` channels of each class (best first), from the store's attribution reader."""
    rows = []
    for name in classes:
        for rank, (channel, value) in enumerate(attributions.top_channels(name, k), start=1):
            rows.append({"class": name, "rank": rank, "channel": channel, "attribution": value})
    return pd.DataFrame(rows, columns=["class", "rank", "channel", "attribution"])


def render(path: Path, **_: Any) -> None:
    opened = _data.store(path)
    _data.show_incomplete(opened)
    tables = _data.attributions(path)
    if not tables:
        st.info(
            f"No attributions are recorded in {path.name}. Compute captum channel rankings with "
            f"`seviz attribute {path.name}` and reload."
        )
        return
    first = next(iter(tables.values()))
    st.caption(f"Method: {first.method} · {first.images:,} images")
    names = list(tables)
    block = st.selectbox("SE block", names, index=len(names) - 1, key="attr_block") or names[-1]
    found = tables[block]
    width = int(found.values.shape[1])
    c1, c2 = st.columns([3, 1])
    classes = c1.multiselect("Classes", found.classes, default=found.classes[:4], key="attr_classes")
    k = int(c2.number_input("Top channels", 1, width, min(_TOP, width), key="attr_k") or min(_TOP, width))
    if not classes:
        st.info("Choose at least one class.")
        return
    table = ranking_table(found, list(classes), k)
    st.subheader(f"{block}: channels that most drive each class")
    if k > _MAX_BARS:
        st.caption(f"The charts show each class's top {_MAX_BARS} channels; the table below lists all {k}.")
    for start in range(0, len(classes), _PER_ROW):
        columns = st.columns(_PER_ROW)
        for column, (i, name) in zip(
            columns, enumerate(classes[start : start + _PER_ROW], start=start), strict=False
        ):
            rows = table[(table["class"] == name) & (table["rank"] <= _MAX_BARS)].copy()
            rows["channel"] = rows["channel"].map(lambda c: f"ch {c}")
            chart = _charts.bars(
                rows,
                "channel",
                "attribution",
                name,
                "mean gradient × gate",
                _charts.colour_of(i),
                [
                    _charts.tip("class:N"),
                    _charts.tip("rank:Q"),
                    _charts.tip("channel:N"),
                    _charts.tip("attribution:Q", format=".4g"),
                ],
            )
            column.vega_lite_chart(spec=chart, width="stretch")
    st.dataframe(table, hide_index=True)
