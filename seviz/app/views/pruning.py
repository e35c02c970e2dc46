"""Pruning: verdicts (identity / constant / keep) from :mod:`seviz.pruning.recommendation`, with live thresholds.

The verdicts are :func:`seviz.pruning.recommend` applied to cached statistics
(the ones :func:`seviz.pruning.needed_statistics` names), so moving a threshold
re-judges the blocks without reading the samples; the downloads are the
recommendation's own ``to_json()`` and ``to_markdown()``, equal to what
``seviz recommend`` writes with the same thresholds, and the command shown is
:func:`seviz.pruning.recommend_command`'s. Below them, :mod:`~seviz.app.views.verification`
shows what an evaluation measured for these edits and runs one.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from seviz.app.views import _data, verification
from seviz.pruning import Recommendation, RecommendationError, Thresholds, recommend, recommend_command

_DEFAULTS = Thresholds()


def threshold_controls() -> Thresholds:
    """The threshold widgets (kept in the session, so other pages see the same values)."""
    c1, c2, c3, c4 = st.columns(4)
    deviation = c1.number_input(
        "identity: max mean |1 − s|",
        0.0,
        1.0,
        _DEFAULTS.identity_max_deviation,
        step=0.005,
        format="%.4f",
        key="th_deviation",
        help="A block is identity when its gates are this close to 1 on average ...",
    )
    share = c2.number_input(
        "identity: min share of gates ≥ near one",
        0.0,
        1.0,
        _DEFAULTS.identity_min_near_one,
        step=0.01,
        format="%.2f",
        key="th_share",
        help="... and at least this share of its gates is near one.",
    )
    near_one = c3.number_input(
        "near one",
        0.0,
        1.0,
        _DEFAULTS.near_one,
        step=0.01,
        format="%.2f",
        key="th_near_one",
        help="What counts as a gate near one. Changing it reads the samples again (once per value).",
    )
    dependence = c4.number_input(
        "constant: max input dependence",
        0.0,
        1.0,
        _DEFAULTS.constant_max_dependence,
        step=1e-4,
        format="%.5f",
        key="th_dependence",
        help="Share of the gates' mean square that varies across images; its square root is the relative "
        "RMS error of replacing each gate by its channel mean.",
    )
    return Thresholds(
        identity_max_deviation=float(_DEFAULTS.identity_max_deviation if deviation is None else deviation),
        identity_min_near_one=float(_DEFAULTS.identity_min_near_one if share is None else share),
        near_one=float(_DEFAULTS.near_one if near_one is None else near_one),
        constant_max_dependence=float(
            _DEFAULTS.constant_max_dependence if dependence is None else dependence
        ),
    )


def session_thresholds() -> Thresholds:
    """The thresholds last set on the Pruning page in this session (defaults before that)."""
    state = st.session_state
    try:
        return Thresholds(
            identity_max_deviation=float(state.get("th_deviation", _DEFAULTS.identity_max_deviation)),
            identity_min_near_one=float(state.get("th_share", _DEFAULTS.identity_min_near_one)),
            near_one=float(state.get("th_near_one", _DEFAULTS.near_one)),
            constant_max_dependence=float(state.get("th_dependence", _DEFAULTS.constant_max_dependence)),
        )
    except RecommendationError:
        return _DEFAULTS


def recommendation(path: Path, thresholds: Thresholds) -> Recommendation:
    """The store's recommendation under ``thresholds`` (statistics cached; verdicts recomputed)."""
    stats = _data.verdict_statistics(path, thresholds.near_one)
    try:
        return recommend(stats, thresholds)
    except (RecommendationError, ValueError) as error:
        raise _data.PageError(f"cannot judge the blocks of {path.name}: {error}") from None


def verdict_table(rec: Recommendation) -> pd.DataFrame:
    """One row per block: the verdict and the scores that decided it."""
    near = f"gates ≥ {rec.thresholds.near_one:g}"
    rows = []
    for b in rec.blocks:
        s = b.scores
        rows.append(
            {
                "block": b.name,
                "module": b.module,
                "verdict": b.verdict,
                "mean |1 - s|": s.get("mean_abs_deviation"),
                near: s.get("fraction_near_one"),
                "input dependence": s.get("input_dependence"),
                "centroid accuracy": s.get("centroid_accuracy"),
                "chance": s.get("chance"),
                "SE params": b.params,
                "SE FLOPs": b.flops,
                "reason": b.reason,
            }
        )
    return pd.DataFrame(rows)


def _highlight(row: pd.Series) -> list[str]:
    colour = {"identity": "background-color: #fde2e1", "constant": "background-color: #fff3cd"}
    return [colour.get(row["verdict"], "")] * len(row)


def render(path: Path, **_: Any) -> None:
    opened = _data.store(path)
    _data.show_incomplete(opened)
    try:
        thresholds = threshold_controls()
    except RecommendationError as error:
        st.error(str(error))
        return
    rec = recommendation(path, thresholds)
    _show_totals(rec)
    _show_verdicts(rec)
    _show_downloads(path, rec, thresholds)
    # The Markdown file holds the table above; it is offered as a download only (rendering it
    # in the page as well cost about 0.4 s of every load in Chromium here).
    verification.render(path, opened, rec)


def _show_totals(rec: Recommendation) -> None:
    """A row of metrics: blocks per verdict, and the SE parameters and FLOPs the edits remove."""
    totals = rec.totals
    metrics = st.columns(5)
    metrics[0].metric("identity", totals["identity"])
    metrics[1].metric("constant", totals["constant"])
    metrics[2].metric("keep", totals["keep"])
    metrics[3].metric(
        "SE params removable",
        f"{totals['removable_params']:,}",
        f"{(totals['removable_params_fraction'] or 0):.1%} of {totals['se_params']:,}",
        delta_color="off",
        delta_arrow="off",
    )
    metrics[4].metric(
        "SE FLOPs removable",
        f"{totals['removable_flops']:,}",
        f"{(totals['removable_flops_fraction'] or 0):.1%} of {totals['se_flops']:,}",
        delta_color="off",
        delta_arrow="off",
    )


def _show_verdicts(rec: Recommendation) -> None:
    """The verdict table, rows coloured by verdict, and a caption on what the verdicts mean."""
    table = verdict_table(rec)
    # A static table: a handful of rows, the text stays in the page (searchable, copyable).
    st.table(
        table.style.apply(_highlight, axis=1).format(precision=4, subset=list(table.columns[3:8])).hide()
    )
    st.caption(
        "identity: remove the SE branch. constant: fold the per-channel mean gate into the preceding "
        "BatchNorm. Savings count the SE branches only (parameters and multiply-accumulates per image)."
    )


def _show_downloads(path: Path, rec: Recommendation, thresholds: Thresholds) -> None:
    """The recommendation's JSON and Markdown as downloads, and the command that writes the same files."""
    stem = path.stem
    c1, c2, _rest = st.columns([1, 1, 2])
    c1.download_button(
        "Download JSON",
        rec.to_json(),
        file_name=f"{stem}.rec.json",
        mime="application/json",
        key="download_json",
        on_click="ignore",
        width="stretch",
        help="The recommendation `seviz recommend` writes with these thresholds (rec.json).",
    )
    c2.download_button(
        "Download Markdown",
        rec.to_markdown(),
        file_name=f"{stem}.rec.md",
        mime="text/markdown",
        key="download_md",
        on_click="ignore",
        width="stretch",
        help="The same verdicts as the Markdown file `seviz recommend` writes beside rec.json.",
    )
    st.markdown(
        f"The same files from the command line: {inline_code(shlex.join(recommend_command(path.name, thresholds)))}"
    )


def inline_code(text: str) -> str:
    """``text`` as a Markdown code span, fenced by more backticks than it holds in a row.

    Not ``st.code``: its syntax highlighter costs the browser ~0.75 s on every page load here.
    """
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
