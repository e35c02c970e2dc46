"""The seviz app: explore SE excitation stores, see the SENet paper's figures, act on verdicts.

Streamlit runs this file (``seviz app`` starts it, see :mod:`seviz.app.launcher`).
Start it with ``seviz app [STORE ...] [--root DIR] [--port N]`` (see
:mod:`seviz.app.launcher`). The app is thin: every number it shows comes from
``seviz`` (:mod:`seviz.analysis.compute`, :mod:`seviz.pruning.recommendation`, the store); the pages
only choose what to draw.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from seviz.app.launcher import AppConfig, find_stores, parse_app_arguments
from seviz.app.views import attribution, channels, compare, depth, distributions, overview, pruning
from seviz.app.views._data import PageError
from seviz.errors import AppPathError

PAGES: dict[str, Callable[..., Any]] = {
    "Overview": overview.render,
    "Distributions": distributions.render,
    "Depth view": depth.render,
    "Pruning": pruning.render,
    "Channel explorer": channels.render,
    "Attribution": attribution.render,
    "Compare": compare.render,
}


def _label(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def store_choices(config: AppConfig) -> list[Path]:
    """Stores named at launch first, then the others found under the root."""
    named = list(config.stores)
    return named + [p for p in find_stores(config.root) if p not in named]


def main() -> None:
    st.set_page_config(page_title="seviz", page_icon="📊", layout="wide")
    try:
        config = parse_app_arguments(sys.argv[1:])
    except AppPathError as error:
        st.error(str(error))
        return
    page = st.sidebar.radio("Page", list(PAGES), key="page", bind="query-params") or next(iter(PAGES))
    choices = store_choices(config)
    st.sidebar.caption(f"Root: {config.root}")
    if not choices:
        st.title("seviz")
        st.info(
            f"No stores (.h5) under {config.root}. Record one with `seviz record --model ... --data ... "
            "--out store.h5`, or start the app with `seviz app STORE --root DIR`."
        )
        return
    path = st.sidebar.selectbox("Store", choices, format_func=lambda p: _label(p, config.root), key="store")
    if path is None:  # the selection was cleared
        path = choices[0]
    st.title(page)
    st.caption(f"Store: {_label(path, config.root)}")
    try:
        PAGES[page](path, choices=choices, root=config.root)
    except PageError as error:
        st.error(str(error))


if __name__ == "__main__":  # Streamlit runs this file as the script __main__
    main()
