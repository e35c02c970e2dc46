"""Compare: two stores side by side (two models, or one model before and after pruning)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from seviz.analysis import StoreStatistics
from seviz.app.views import _charts, _data, depth, pruning


def _numbers(table: pd.DataFrame) -> dict[str, Any]:
    """Column settings that show every float column of ``table`` with 4 decimals (0.0143, 0.0000, 1.0000)."""
    return {
        c: st.column_config.NumberColumn(format="%.4f") for c in table.columns if table[c].dtype.kind == "f"
    }


def _summary(path: Path) -> None:
    store = _data.store(path)
    _data.show_incomplete(store)
    st.markdown(f"**{path.name}**")
    record = store.provenance
    st.dataframe(
        pd.DataFrame(
            [
                ("model", record.model),
                ("weights", record.weights_source),
                ("weights SHA-256", record.weights_sha256[:16]),
                ("precision", record.precision),
                ("samples", f"{len(store):,}"),
                ("classes", str(len(store.recorded_class_names))),
                ("SE blocks", str(len(store.blocks))),
            ],
            columns=["field", "value"],
        ),
        hide_index=True,
    )
    # The names in a caption, which wraps: in a table cell a long list is cut at the column's edge.
    st.caption(f"SE blocks: {', '.join(store.blocks)}")


def render(path: Path, choices: list[Path], root: Path, **_: Any) -> None:
    other = _choose_other(path, choices, root)
    if other is None:
        return
    first, second = _side_by_side((path, other))
    if first is None or second is None:
        return
    (stats_a, table_a), (stats_b, table_b) = first, second
    _blocks_table(path, other, stats_a, table_a, stats_b, table_b)
    _overlay(path, other, stats_a, stats_b)


def _choose_other(path: Path, choices: list[Path], root: Path) -> Path | None:
    """The store to compare ``path`` with, chosen in a select box; None (with a note) when there is none."""
    others = [p for p in choices if p != path]
    if not others:
        st.info(f"Only one store is available under {root}; record or copy a second one there to compare.")
        return None
    other = st.selectbox(
        "Compare with",
        others,
        format_func=lambda p: str(p.relative_to(root)) if p.is_relative_to(root) else str(p),
        key="compare_other",
    )
    if other is None:
        st.info("Choose a store to compare with.")
        return None
    return other


def _side_by_side(pair: tuple[Path, Path]) -> list[tuple[StoreStatistics, pd.DataFrame] | None]:
    """Each store's summary and depth table in its own column; None for a store that could not be read."""
    columns = st.columns(2)
    tables: list[tuple[StoreStatistics, pd.DataFrame] | None] = []
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
            shown = table[["block", "between-class share", "centroid accuracy", "mean |1 - s|"]]
            st.dataframe(shown, hide_index=True, column_config=_numbers(shown))
    return tables


def _blocks_table(
    path: Path,
    other: Path,
    stats_a: StoreStatistics,
    table_a: pd.DataFrame,
    stats_b: StoreStatistics,
    table_b: pd.DataFrame,
) -> None:
    """The blocks of both stores in one table, with each store's verdicts, in the first store's order."""
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
    st.dataframe(merged[keep], hide_index=True, column_config=_numbers(merged[keep]))


def _overlay(path: Path, other: Path, stats_a: StoreStatistics, stats_b: StoreStatistics) -> None:
    """One block common to both stores, chosen in a select box: its channel means and spreads overlaid."""
    common = [b for b in stats_a.block_names if b in stats_b.blocks]
    if not common:
        st.info("The two stores have no SE block in common.")
        return
    block = st.selectbox("Block to overlay", common, index=len(common) - 1, key="compare_block") or common[-1]
    a, b = stats_a.block(block), stats_b.block(block)
    if a.channels != b.channels:
        st.warning(f"{block} has {a.channels} channels in {path.name} but {b.channels} in {other.name}.")
        return
    frames = [
        pd.DataFrame({"channel": np.arange(s.channels), "store": name, "mean": s.all.mean, "std": s.all.std})
        for s, name in ((a, path.name), (b, other.name))
    ]
    data = pd.concat(frames, ignore_index=True)
    chart = _charts.overlay(data, block)
    st.vega_lite_chart(spec=chart, width="stretch")
