"""Attribution: the gate channels that most drive each class, from ``seviz attribute`` (captum)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from seviz.app.views import _data

_TOP = 10


def ranking_table(attributions: Any, classes: list[str], k: int) -> pd.DataFrame:
    """The top ``k`` channels of each class (best first), from the store's attribution reader."""
    rows = []
    for name in classes:
        for rank, (channel, value) in enumerate(attributions.top_channels(name, k), start=1):
            rows.append({"class": name, "rank": rank, "channel": channel, "attribution": value})
    return pd.DataFrame(rows)


def render(path: Path, **_: Any) -> None:
    store = _data.store(path)
    _data.show_incomplete(store)
    tables = _data.attributions(path)
    if not tables:
        st.info(
            f"No attributions are recorded in {path.name}. Compute captum channel rankings with "
            f"`seviz attribute {path.name}` and reload."
        )
        return
    first = next(iter(tables.values()))
    st.caption(f"Method: {first.method} · {first.images:,} images")
    block = st.selectbox("SE block", list(tables), index=len(tables) - 1, key="attr_block")
    found = tables[block]
    c1, c2 = st.columns([3, 1])
    classes = c1.multiselect("Classes", found.classes, default=found.classes[:4], key="attr_classes")
    k = int(
        c2.number_input(
            "Top channels", 1, int(found.values.shape[1]), min(_TOP, found.values.shape[1]), key="attr_k"
        )
    )
    if not classes:
        st.info("Choose at least one class.")
        return
    table = ranking_table(found, classes, k)
    chart = (
        alt.Chart(table)
        .mark_bar()
        .encode(
            y=alt.Y("channel:N", sort=None, title="channel"),
            x=alt.X("attribution:Q", title="mean gradient × gate"),
            color=alt.Color("class:N", legend=None),
            tooltip=["class:N", "rank:Q", "channel:Q", alt.Tooltip("attribution:Q", format=".4g")],
        )
        .properties(width=200, height=alt.Step(14))
        .facet(column=alt.Column("class:N", sort=classes, title=None))
        .resolve_scale(y="independent")
        .properties(title=f"{block}: channels that most drive each class")
    )
    st.altair_chart(chart)
    st.dataframe(table, hide_index=True)
