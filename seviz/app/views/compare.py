"""Compare: two stores side by side (two models, or one model before and after pruning)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from seviz.analysis import ALL_CLASSES
from seviz.app.views import _data, depth, pruning


def _summary(path: Path) -> None:
    store = _data.store(path)
    _data.show_incomplete(store)
    st.markdown(f"**{path.name}**")
    st.dataframe(
        pd.DataFrame(
            [
                ("model", str(store.attrs.get("model", ""))),
                ("weights", str(store.attrs.get("weights_source", ""))),
                ("weights SHA-256", str(store.attrs.get("weights_sha256", ""))[:16]),
                ("precision", str(store.attrs.get("precision", ""))),
                ("samples", f"{len(store):,}"),
                ("classes", str(len(store.recorded_class_names))),
                ("SE blocks", ", ".join(store.blocks)),
            ],
            columns=["field", "value"],
        ),
        hide_index=True,
    )


def render(path: Path, choices: list[Path], root: Path, **_: Any) -> None:
    others = [p for p in choices if p != path]
    if not others:
        st.info(f"Only one store is available under {root}; record or copy a second one there to compare.")
        return
    other = st.selectbox(
        "Compare with",
        others,
        format_func=lambda p: str(p.relative_to(root)) if p.is_relative_to(root) else str(p),
        key="compare_other",
    )
    pair = (path, other)
    columns = st.columns(2)
    tables = []
    for column, which in zip(columns, pair, strict=True):
        with column:
            try:
                _summary(which)
                stats = _data.statistics(which)
            except _data.PageError as error:
                st.error(str(error))
                tables.append(None)
                continue
            table = depth.depth_table(stats)
            tables.append((stats, table))
            st.dataframe(
                table[["block", "between-class share", "centroid accuracy", "mean |1 - s|"]], hide_index=True
            )
    if any(t is None for t in tables):
        return
    (stats_a, table_a), (stats_b, table_b) = tables
    st.subheader("Blocks")
    st.caption("Verdicts use the thresholds set on the Pruning page (defaults until changed).")
    only_a = [b for b in stats_a.block_names if b not in stats_b.blocks]
    only_b = [b for b in stats_b.block_names if b not in stats_a.blocks]
    if only_a or only_b:
        st.write(
            f"Only in {path.name}: {', '.join(only_a) or 'none'} · "
            f"only in {other.name}: {', '.join(only_b) or 'none'}"
        )
    thresholds = pruning.session_thresholds()
    for which, table in ((path, table_a), (other, table_b)):
        verdicts = {b.name: b.verdict for b in pruning.recommendation(which, thresholds).blocks}
        table.insert(1, "verdict", table["block"].map(verdicts))
    merged = table_a.merge(table_b, on="block", how="outer", suffixes=(f" ({path.name})", f" ({other.name})"))
    order = {name: i for i, name in enumerate(stats_a.block_names + only_b)}
    merged = merged.sort_values("block", key=lambda s: s.map(order)).reset_index(drop=True)
    keep = ["block"] + [
        c for c in merged.columns if c.startswith(("verdict", "between-class share", "mean |1 - s|"))
    ]
    st.dataframe(merged[keep], hide_index=True)
    common = [b for b in stats_a.block_names if b in stats_b.blocks]
    if not common:
        st.info("The two stores have no SE block in common.")
        return
    block = st.selectbox("Block to overlay", common, index=len(common) - 1, key="compare_block")
    a, b = stats_a.block(block), stats_b.block(block)
    if a.channels != b.channels:
        st.warning(f"{block} has {a.channels} channels in {path.name} but {b.channels} in {other.name}.")
        return
    frames = [
        pd.DataFrame({"channel": np.arange(s.channels), "store": name, "mean": s.all.mean, "std": s.all.std})
        for s, name in ((a, path.name), (b, other.name))
    ]
    data = pd.concat(frames, ignore_index=True)
    chart = (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(size=12, opacity=0.4))
        .encode(
            x=alt.X("channel:Q", scale=alt.Scale(nice=False)),
            y=alt.Y("mean:Q", title=f"mean excitation ({ALL_CLASSES})"),
            color=alt.Color("store:N"),
            tooltip=[
                "store:N",
                "channel:Q",
                alt.Tooltip("mean:Q", format=".4f"),
                alt.Tooltip("std:Q", format=".4f"),
            ],
        )
        .properties(title=f"{block}: mean excitation over all classes", height=260)
    )
    st.altair_chart(chart, width="stretch")
