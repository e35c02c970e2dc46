"""Interactive Altair charts drawn from :mod:`seviz.analysis.compute` results.

Only reshaping happens here (arrays into long tables for Vega-Lite); every
number comes from a :class:`~seviz.stats.BlockStatistics`. Hovering a line
shows the channel, the class and the value.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from seviz.analysis import ALL_CLASSES, BlockStatistics

_HEIGHT = 260
_PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#eeca3b")
_ALL_COLOUR = "#222222"  # "all classes" is the reference line, drawn dark as in the paper


def class_colours(classes: Sequence[str]) -> alt.Scale:
    """A fixed colour per class, in the order chosen, with "all classes" in near-black."""
    colours, i = [], 0
    for name in classes:
        if name == ALL_CLASSES:
            colours.append(_ALL_COLOUR)
        else:
            colours.append(_PALETTE[i % len(_PALETTE)])
            i += 1
    return alt.Scale(domain=list(classes), range=colours)


def _position_title(sorted_by: str | None) -> str:
    return "channel" if not sorted_by else f"channel rank (sorted by {sorted_by})"


def _hover_lines(
    data: pd.DataFrame, y: str, y_title: str, x_title: str, title: str, extra: Sequence[str] = ()
):
    """Lines per class; the pointer picks the nearest channel and a tooltip lists every class's value there.

    The hover layer has one invisible rule per channel (not one point per channel
    and class): with thousands of channels that keeps the browser's nearest-point
    search and redraws cheap, which is what makes a control change feel quick.
    """
    classes = list(dict.fromkeys(data["class"]))
    colours = class_colours(classes)
    x = alt.X("position:Q", title=x_title, scale=alt.Scale(nice=False))
    lines = (
        alt.Chart(data)
        .mark_line(strokeWidth=1.2)
        .encode(
            x=x,
            y=alt.Y(f"{y}:Q", title=y_title),
            color=alt.Color("class:N", title="class", sort=classes, scale=colours),
        )
    )
    # One row per channel, one column per class (positional names: class names may hold
    # characters that Vega reads as field paths).
    fields = {name: f"c{i}" for i, name in enumerate(classes)}
    wide = data.pivot(index=["position", "channel"], columns="class", values=[y, *extra])
    table = pd.DataFrame(
        {"position": wide.index.get_level_values(0), "channel": wide.index.get_level_values(1)}
    )
    tooltip = [alt.Tooltip("channel:Q", title="channel")]
    for name in classes:
        table[fields[name]] = wide[(y, name)].to_numpy()
        tooltip.append(alt.Tooltip(f"{fields[name]}:Q", title=f"{name}: {y_title}", format=".4f"))
        for column in extra:
            table[f"{fields[name]}_{column}"] = wide[(column, name)].to_numpy()
            tooltip.append(alt.Tooltip(f"{fields[name]}_{column}:Q", title=f"{name}: {column}", format=".4f"))
    nearest = alt.selection_point(
        nearest=True, on="pointerover", fields=["position"], empty=False, clear="pointerout"
    )
    rules = (
        alt.Chart(table)
        .mark_rule(color="gray", strokeDash=[3, 3])
        .encode(x=x, opacity=alt.condition(nearest, alt.value(0.8), alt.value(0.0)), tooltip=tooltip)
        .add_params(nearest)
    )
    points = (
        alt.Chart(data)
        .mark_point(filled=True, size=40)
        .encode(x=x, y=f"{y}:Q", color=alt.Color("class:N", sort=classes, scale=colours))
        .transform_filter(nearest)
    )
    return (lines + rules + points).properties(title=title, height=_HEIGHT)


def _per_class_table(
    stats: BlockStatistics, classes: Sequence[str], order: np.ndarray, fields: Sequence[str]
):
    frames = []
    for name in classes:
        cs = stats.class_stats(name)
        frame = {"position": np.arange(len(order)), "channel": order, "class": name}
        for field in fields:
            frame[field] = np.asarray(getattr(cs, field), dtype=np.float64)[order]
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def figure6(stats: BlockStatistics, classes: Sequence[str], order: np.ndarray, sorted_by: str | None = None):
    """The paper's Figure 6 for one block: mean excitation per channel, one line per class."""
    data = _per_class_table(stats, classes, order, ["mean"])
    return _hover_lines(
        data,
        "mean",
        "mean excitation",
        _position_title(sorted_by),
        f"{stats.name}: mean excitation per class",
    )


def figure7(stats: BlockStatistics, classes: Sequence[str], order: np.ndarray, sorted_by: str | None = None):
    """The paper's Figure 7 for one block: per class, the mean per channel in a band of ±1 std.

    One panel per class (bands of several classes on one axis hide each other);
    hovering a channel marks it in every panel and shows channel, class, mean and std.
    """
    data = _per_class_table(stats, classes, order, ["mean", "std"])
    data["low"] = data["mean"] - data["std"]
    data["high"] = data["mean"] + data["std"]
    names = list(dict.fromkeys(data["class"]))
    colour = alt.Color("class:N", sort=names, scale=class_colours(names), legend=None)
    x = alt.X("position:Q", title=_position_title(sorted_by), scale=alt.Scale(nice=False))
    nearest = alt.selection_point(
        nearest=True, on="pointerover", fields=["position"], empty=False, clear="pointerout"
    )
    base = alt.Chart().encode(x=x)
    band = base.mark_area(opacity=0.3).encode(
        y=alt.Y("low:Q", title="excitation (mean ± std)"), y2="high:Q", color=colour
    )
    line = base.mark_line(strokeWidth=1).encode(y="mean:Q", color=colour)
    hover = (
        base.mark_point(filled=True, size=30)
        .encode(
            y="mean:Q",
            color=colour,
            opacity=alt.condition(nearest, alt.value(1.0), alt.value(0.0)),
            tooltip=[
                alt.Tooltip("channel:Q"),
                alt.Tooltip("class:N"),
                alt.Tooltip("mean:Q", title="mean excitation", format=".4f"),
                alt.Tooltip("std:Q", format=".4f"),
            ],
        )
        .add_params(nearest)
    )
    return (
        alt.layer(band, line, hover, data=data)
        .properties(width=250, height=160)
        .facet(facet=alt.Facet("class:N", sort=names, title=None), columns=3)
        .properties(title=f"{stats.name}: mean ± std per class")
    )


def _class_histograms(stats: BlockStatistics, classes: Sequence[str], channels: np.ndarray) -> pd.DataFrame:
    """Histogram counts of the chosen channels pooled, as a share of each class's gates."""
    frames = []
    for name in classes:
        cs = stats.class_stats(name)
        counts = cs.histogram[channels].sum(axis=0).astype(np.float64)
        share = counts / max(1.0, counts.sum())
        edges = np.asarray(cs.bin_edges, dtype=np.float64)
        frames.append(
            pd.DataFrame(
                {"class": name, "low": edges[:-1], "high": edges[1:], "share": share, "count": counts}
            )
        )
    data = pd.concat(frames, ignore_index=True)
    data["centre"] = (data["low"] + data["high"]) / 2
    return data


def histograms(stats: BlockStatistics, classes: Sequence[str], channels: np.ndarray):
    """Histograms of the gates per class (chosen channels pooled), one panel per class."""
    data = _class_histograms(stats, classes, channels)
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("low:Q", bin="binned", title="excitation"),
            x2="high:Q",
            y=alt.Y("share:Q", title="share of gates"),
            color=alt.Color("class:N", sort=list(classes), scale=class_colours(classes), legend=None),
            tooltip=[
                "class:N",
                alt.Tooltip("centre:Q", title="excitation", format=".3f"),
                alt.Tooltip("share:Q", format=".3%"),
                alt.Tooltip("count:Q", format=",.0f"),
            ],
        )
        .properties(width=180, height=150)
        .facet(column=alt.Column("class:N", sort=list(classes), title=None))
        .properties(title=f"{stats.name}: histogram per class")
    )


def violins(stats: BlockStatistics, classes: Sequence[str], channels: np.ndarray):
    """Violins per class drawn from the histogram counts (chosen channels pooled)."""
    data = _class_histograms(stats, classes, channels)
    data["left"] = -data["share"]
    return (
        alt.Chart(data)
        .mark_area(orient="horizontal", interpolate="step")
        .encode(
            y=alt.Y("centre:Q", title="excitation", scale=alt.Scale(domain=[0, 1])),
            x=alt.X("left:Q", title=None, axis=None),
            x2="share:Q",
            color=alt.Color("class:N", sort=list(classes), scale=class_colours(classes), legend=None),
            tooltip=[
                "class:N",
                alt.Tooltip("centre:Q", title="excitation", format=".3f"),
                alt.Tooltip("share:Q", format=".3%"),
            ],
        )
        .properties(width=110, height=220)
        .facet(column=alt.Column("class:N", sort=list(classes), title=None))
        .properties(title=f"{stats.name}: distribution per class")
    )


def per_block(data: pd.DataFrame, columns: Sequence[tuple[str, str]], title: str, y_title: str):
    """Lines over depth (blocks in depth order) of a few per-block scores, with tooltips."""
    long = data.melt(
        id_vars=["block"], value_vars=[c for c, _ in columns], var_name="score", value_name="value"
    )
    names = dict(columns)
    long["score"] = long["score"].map(names)
    order = list(data["block"])
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("block:N", sort=order, title="SE block (depth order)"),
            y=alt.Y("value:Q", title=y_title),
            color=alt.Color("score:N", title=None, legend=alt.Legend(orient="bottom", columns=1)),
            tooltip=["block:N", "score:N", alt.Tooltip("value:Q", format=".4f")],
        )
        .properties(title=title, height=_HEIGHT)
    )
