"""Overview: where a store came from and what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from seviz.app.views import _data


def render(path: Path, **_: Any) -> None:
    store = _data.store(path)
    _data.show_incomplete(store)
    counts = store.class_counts()
    cols = st.columns(5)
    cols[0].metric("Samples", f"{len(store):,}")
    cols[1].metric("Classes", len(store.recorded_class_names))
    cols[2].metric("SE blocks", len(store.blocks))
    cols[3].metric("Skipped files", len(store.skipped))
    cols[4].metric("Complete", "yes" if store.complete else "no")

    st.subheader("Provenance")
    rows = list(_data.provenance(store).items())
    st.dataframe(pd.DataFrame(rows, columns=["field", "value"]), hide_index=True)
    preprocessing, gate_error = _data.recording_details(store)
    left, right = st.columns(2)
    with left:
        st.markdown("**Preprocessing**")
        st.json(preprocessing, expanded=False)
    with right:
        st.markdown("**Gate error of the recording precision** (vs fp32)")
        st.json(gate_error, expanded=False)

    st.subheader("Classes")
    ids = {c.get("name"): c.get("id", "") for c in store.classes}
    st.dataframe(
        pd.DataFrame(
            [(name, ids.get(name, ""), counts.get(name, 0)) for name in store.recorded_class_names],
            columns=["class", "id", "samples"],
        ),
        hide_index=True,
    )

    st.subheader("SE blocks")
    st.dataframe(
        pd.DataFrame(
            [
                (b.name, b.module, b.stage, b.block, b.channels, b.kind, b.params, b.flops)
                for b in store.blocks.values()
            ],
            columns=["block", "module", "stage", "block index", "channels", "kind", "params", "flops"],
        ),
        hide_index=True,
    )

    st.subheader("Skipped files")
    if store.skipped:
        st.dataframe(pd.DataFrame(store.skipped, columns=["path", "reason"]), hide_index=True)
    else:
        st.write("None: every listed image was recorded.")
