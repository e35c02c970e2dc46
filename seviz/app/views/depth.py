"""Depth view: the paper's depth figure, how class-specific and how close to identity each SE block is.

The paper (Sec. 7.2) reads off Figure 6 that early excitations are
class-agnostic, deeper ones class-specific, and SE_5_2/SE_5_3 close to
identity; this page puts the numbers of :mod:`seviz.analysis` behind that
story: both per block in depth order on [0, 1], stage boundaries marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from seviz.analysis import StoreStatistics
from seviz.app.views import _charts, _data


def depth_table(stats: StoreStatistics) -> pd.DataFrame:
    """One row per block (depth order) with its specificity and closeness-to-identity scores."""
    rows = []
    for block in stats.blocks.values():
        spec, gate = block.specificity, block.behaviour
        rows.append(
            {
                "block": block.name,
                "stage": block.info.stage,
                "channels": block.channels,
                "between-class share": spec.between_share,
                "variance ratio": spec.variance_ratio,
                "centroid accuracy": spec.accuracy,
                "chance": spec.chance,
                "mean |1 - s|": gate.mean_abs_deviation,
                f"share >= {gate.near_one:g}": gate.fraction_near_one,
                "input dependence": gate.input_dependence,
            }
        )
    return pd.DataFrame(rows)


def render(path: Path, **_: Any) -> None:
    opened = _data.store(path)
    _data.show_incomplete(opened)
    stats = _data.statistics(path)
    table = depth_table(stats)
    near = next(c for c in table.columns if c.startswith("share >="))
    st.vega_lite_chart(
        spec=_charts.per_block(
            table,
            [
                ("centroid accuracy", "nearest-centroid accuracy (5-fold CV)"),
                ("chance", "chance accuracy"),
                ("between-class share", "between-class share of gate variance"),
            ],
            "Class specificity per block",
            "specificity",
        ),
        width="stretch",
    )
    st.vega_lite_chart(
        spec=_charts.per_block(
            table,
            [
                ("mean |1 - s|", "mean |1 − s| (0 = identity)"),
                (near, f"share of gates {near.removeprefix('share ')}"),
                ("input dependence", "input dependence (0 = constant)"),
            ],
            "Closeness to identity per block",
            "score",
        ),
        width="stretch",
    )
    st.caption(
        "In the SENet paper specificity rises with depth and SE_5_2 is close to identity. "
        "Dashed lines separate the network's stages. Between-class share: between-class variance / total "
        f"variance of the gates, pooled over channels. Centroid accuracy: {stats.settings.folds}-fold "
        "cross-validated nearest-centroid accuracy of predicting the class from the excitation vector, "
        "against chance. Mean |1 − s| near 0 and a share of gates near one close to 1 mark a block that "
        "is close to identity; input dependence near 0 marks a block whose gates do not depend on the image."
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(format="%.4f")
            for c in table.columns
            if table[c].dtype.kind == "f"
        },
    )
