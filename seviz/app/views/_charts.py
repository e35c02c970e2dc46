"""Interactive Vega-Lite charts drawn from :mod:`seviz.analysis` results, legible at any store size.

Only reshaping happens here (arrays into small tables for Vega-Lite); every
number comes from the statistics. Every chart has a fixed plot height (axes,
title and legend come on top of it, so a legend never squeezes the plot),
fits the page's width (``fit-x``: nothing runs past the right edge), puts its
legend outside the plot, and fits its y axis to the values drawn unless the
[0, 1] range of a gate or a share is the reference that helps. Small multiples
are laid out by the page in Streamlit columns, which wrap with the page,
rather than as Vega-Lite facets, which do not.

Charts are Vega-Lite specifications (plain dicts, drawn with
``st.vega_lite_chart``) with their tables as named datasets. Building them
through Altair validated every chart against the Vega-Lite JSON schema on each
rerun, which was most of a Distributions page's server time (about 0.2 s a
chart here); a dict costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from seviz.analysis import ALL_CLASSES, BlockStatistics, ClassStats

Spec = dict[str, Any]

PLOT_HEIGHT = 300  # px of the plot area of a full-width chart
SMALL_HEIGHT = 220  # px of the plot area of a small multiple
_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
_FIT_WIDTH = {"type": "fit-x", "contains": "padding"}
_PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#eeca3b")
_ALL_COLOUR = "#222222"  # "all classes" is the reference line, drawn dark as in the paper
_LEGEND_ROWS = 14  # entries a legend at the right holds before it moves below the plot
_PAD = 0.06  # share of the fitted y range added above and below
_VERDICT_COLOURS = {"identity": "#e45756", "constant": "#eeca3b", "keep": "#4c78a8"}
_TYPES = {"Q": "quantitative", "N": "nominal", "O": "ordinal"}
# A y scale that Vega fits to the values drawn (12 px of padding): the same spec for any data.
_FIT_TO_DATA: Spec = {"zero": False, "nice": False, "padding": 12}


# ---------------------------------------------------------------- building blocks


def field(name: str, **extra: Any) -> Spec:
    """An encoding channel: ``field("mean:Q", title=...)`` (``:Q`` quantitative, ``:N`` nominal, ``:O`` ordinal)."""
    column, _, kind = name.rpartition(":")
    return {"field": column, "type": _TYPES[kind], **extra}


def tip(name: str, title: str | None = None, format: str | None = None) -> Spec:
    """A tooltip entry (``tip("share:Q", format=".2%")``)."""
    entry = field(name)
    if title is not None:
        entry["title"] = title
    if format is not None:
        entry["format"] = format
    return entry


def layer(data: str, mark: str | Spec, encoding: Spec, params: list[Spec] | None = None) -> Spec:
    """One layer of a chart: the named dataset it draws, its mark and its encoding."""
    unit: Spec = {
        "data": {"name": data},
        "mark": {"type": mark} if isinstance(mark, str) else mark,
        "encoding": encoding,
    }
    if params:
        unit["params"] = params
    return unit


def chart(
    layers: list[Spec], datasets: dict[str, pd.DataFrame | pa.Table], title: str, height: int = PLOT_HEIGHT
) -> Spec:
    """A chart of ``layers`` over ``datasets``, with its title, a fixed plot height and a width that fits the page.

    The spec is new on every call: ``st.vega_lite_chart`` moves its datasets out of it.
    """
    return {
        "$schema": _SCHEMA,
        "title": title,
        "height": height,
        "autosize": dict(_FIT_WIDTH),
        "datasets": datasets,
        "layer": layers,
    }


def _hover(fields: Sequence[str]) -> Spec:
    """The pointer picks the nearest value of ``fields`` (cleared when it leaves the plot)."""
    return {
        "name": "hover",
        "select": {
            "type": "point",
            "nearest": True,
            "on": "pointerover",
            "fields": list(fields),
            "clear": "pointerout",
        },
    }


def _when_hovered(shown: float) -> Spec:
    return {"condition": {"param": "hover", "value": shown, "empty": False}, "value": 0.0}


def class_colours(classes: Sequence[str]) -> Spec:
    """A fixed colour per class, in the order chosen, with "all classes" in near-black."""
    colours, i = [], 0
    for name in classes:
        if name == ALL_CLASSES:
            colours.append(_ALL_COLOUR)
        else:
            colours.append(_PALETTE[i % len(_PALETTE)])
            i += 1
    return {"domain": list(classes), "range": colours}


def legend(entries: int, title: str | None = "class") -> Spec:
    """A legend beside the plot, or below it in columns when it has many entries."""
    if entries <= _LEGEND_ROWS:
        return {"title": title, "orient": "right", "labelLimit": 220}
    return {"title": title, "orient": "bottom", "columns": 4, "labelLimit": 220}


def _class_colour(classes: Sequence[str], show_legend: bool = True) -> Spec:
    return field(
        "class:N",
        sort=list(classes),
        scale=class_colours(classes),
        legend=legend(len(classes)) if show_legend else None,
    )


def fitted_scale(values: np.ndarray | Sequence[float], full: bool = False, zero: bool = False) -> Spec:
    """A y scale over the values drawn (padded), or [0, 1] (widened to the values) when ``full``.

    ``zero`` keeps 0 inside the fitted range, unpadded (bars and deltas start from it).
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if full:
        return {"domain": [min(0.0, low), max(1.0, high)], "nice": False, "zero": False}
    if zero:
        low, high = min(low, 0.0), max(high, 0.0)
    span = high - low
    pad = _PAD * span if span > 0 else max(abs(high) * 0.05, 1e-3)
    bottom = 0.0 if zero and low == 0.0 else low - pad
    top = 0.0 if zero and high == 0.0 else high + pad
    return {"domain": [bottom, top], "nice": False, "zero": False}


def _position_axis(shown: int, total: int) -> Spec:
    """The x encoding of a per-channel chart: positions 0 .. shown - 1, whole numbers only.

    Its title does not name the order (the page's caption does): a new sort then
    changes only the chart's data, which the browser updates in its drawn chart
    instead of building the chart anew.
    """
    which = "channel" if shown == total else f"channel ({shown} of {total})"
    return field(
        "position:Q",
        title=f"{which} in the order chosen; hover for its index",
        scale={"nice": False},
        axis={"tickMinStep": 1, "format": "d"},
    )


def _js_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _labels_at(values: Sequence[str]) -> str:
    """A Vega expression naming position ``datum.value`` by ``values`` (axis labels of a numeric axis)."""
    return "[" + ", ".join(_js_string(v) for v in values) + "][datum.value] || ''"


# ---------------------------------------------------------------- distributions


def figure6(
    stats: BlockStatistics,
    classes: Sequence[str],
    order: np.ndarray,
    full_range: bool = False,
) -> Spec:
    """The paper's Figure 6 for one block: mean excitation per channel, one line per class.

    The pointer picks the nearest channel, marks it with a rule, and a tooltip lists
    every class's value there. The hover layer has one invisible rule per channel
    (not one point per channel and class): two layers in all, which keeps the
    browser's work per chart small.

    Which classes, their colours and the fitted y range are in the chart's data,
    not its spec: adding or removing a class (or a new sort) changes only the data,
    which the browser updates in the drawn chart instead of building it anew.
    """
    names = list(dict.fromkeys(classes))
    means = np.stack([np.asarray(stats.class_stats(n).mean, dtype=np.float64)[order] for n in names])
    shown = len(order)
    lines = pd.DataFrame(
        {
            "position": np.tile(np.arange(shown), len(names)),
            "channel": np.tile(order, len(names)),
            "class": np.repeat(names, shown),
            "order": np.repeat(_colour_orders(names), shown),
            "mean": means.ravel(),
        }
    )
    # One row per channel, one column per class, named as the tooltip shows them (an Arrow
    # table: a DataFrame's index would show as "(index)").
    columns = {"position": np.arange(shown), "channel": np.asarray(order)}
    columns.update({f"{name}: mean excitation": np.round(means[i], 4) for i, name in enumerate(names)})
    wide = pa.table(columns)
    x = _position_axis(shown, stats.channels)
    scale = fitted_scale(means, True) if full_range else _FIT_TO_DATA
    y = field("mean:Q", title="mean excitation", scale=scale)
    colour = _ordered_class_colour(names)
    return chart(
        [
            layer("lines", {"type": "line", "strokeWidth": 1.3}, {"x": x, "y": y, "color": colour}),
            layer(
                "channels",
                {"type": "rule", "color": "gray", "strokeDash": [3, 3], "tooltip": {"content": "data"}},
                {"x": x, "opacity": _when_hovered(0.8)},
                params=[_hover(["position"])],
            ),
        ],
        {"lines": lines, "channels": wide},
        f"{stats.name}: mean excitation per class",
    )


_RANGE_STEP = 90  # colours a data-driven class scale holds, in steps (ten turns of the palette)


def _colour_orders(names: Sequence[str]) -> list[int]:
    """Each class's place in a data-driven colour scale: "all classes" first, the rest in the order chosen."""
    return [-1 if name == ALL_CLASSES else position for position, name in enumerate(names)]


def _colour_order_column(classes: pd.Series, names: Sequence[str]) -> pd.Series:
    """The ``order`` column of a table with a ``class`` column (see :func:`_ordered_class_colour`)."""
    return classes.map(dict(zip(names, _colour_orders(names), strict=True)))


def _ordered_class_colour(names: Sequence[str], show_legend: bool = True) -> Spec:
    """A colour encoding whose classes and their order come from the data's ``order`` column.

    Its spec is the same for any classes (see :func:`_ordered_colours`), so adding one
    changes only the chart's data.
    """
    return field(
        "class:N",
        sort={"field": "order", "op": "min"},
        scale={"range": _ordered_colours(names)},
        legend=legend(len(names)) if show_legend else None,
    )


def _ordered_colours(names: Sequence[str]) -> list[str]:
    """The range of a colour scale whose domain is the classes drawn, ordered by :func:`_colour_orders`.

    The same list for any classes (it changes only with "all classes" shown or not, and
    every 90 classes), so the chart's spec stays the same when classes are added.
    """
    others = sum(name != ALL_CLASSES for name in names)
    turns = max(1, -(-others // _RANGE_STEP)) * _RANGE_STEP
    palette = [colour_of(i) for i in range(turns)]
    return [_ALL_COLOUR, *palette] if ALL_CLASSES in names else palette


def figure7(
    stats: BlockStatistics,
    class_name: str,
    order: np.ndarray,
    full_range: bool = False,
) -> Spec:
    """The paper's Figure 7 for one block and class: the mean per channel in a band of ±1 std.

    The mean over all classes is drawn as a dashed reference; hovering a channel
    shows its index, the class (and its images), its mean and std and the
    all-classes mean. The class, its colour and the fitted y range are in the
    chart's data, so choosing another class (or sort) changes only the data and
    the browser updates the drawn chart.
    """
    cs, everything = stats.class_stats(class_name), stats.all
    data = _band_table(cs, everything, class_name, order)
    scale = fitted_scale(np.r_[data["low"], data["high"], data["all"]], True) if full_range else _FIT_TO_DATA
    x = _position_axis(len(order), stats.channels)
    title = f"{stats.name}: the class's mean ± std per channel; dashed: {ALL_CLASSES}"
    return chart(_band_layers(x, scale), {"channels": data}, title)


def _band_table(cs: ClassStats, everything: ClassStats, class_name: str, order: np.ndarray) -> pd.DataFrame:
    """Figure 7's data, one row per shown channel: the class's mean, std, band, the all-classes mean and its colour."""
    mean, std = np.asarray(cs.mean, dtype=np.float64)[order], np.asarray(cs.std, dtype=np.float64)[order]
    return pd.DataFrame(
        {
            "position": np.arange(len(order)),
            "channel": order,
            "class": class_name,
            "images": cs.count,
            "colour": _ALL_COLOUR if class_name == ALL_CLASSES else _PALETTE[0],
            "mean": mean,
            "std": std,
            "all": np.asarray(everything.mean, dtype=np.float64)[order],
            "low": mean - std,
            "high": mean + std,
        }
    )


def _band_layers(x: Spec, scale: Spec) -> list[Spec]:
    """Figure 7's layers: the ±1 std band, the class mean, the dashed all-classes mean, hover points."""
    colour = {"field": "colour", "type": "nominal", "scale": None}
    tooltip = [
        tip("channel:Q"),
        tip("class:N"),
        tip("images:Q", format=","),
        tip("mean:Q", title="mean excitation", format=".4f"),
        tip("std:Q", format=".4f"),
        tip("all:Q", title=f"mean ({ALL_CLASSES})", format=".4f"),
    ]
    return [
        layer(
            "channels",
            {"type": "area", "opacity": 0.3},
            {
                "x": x,
                "y": field("low:Q", title="excitation (mean ± std)", scale=scale),
                "y2": {"field": "high"},
                "color": colour,
            },
        ),
        layer(
            "channels",
            {"type": "line", "strokeWidth": 1.3},
            {"x": x, "y": field("mean:Q", scale=scale), "color": colour},
        ),
        layer(
            "channels",
            {"type": "line", "strokeWidth": 1, "strokeDash": [4, 3], "color": _ALL_COLOUR},
            {"x": x, "y": field("all:Q", scale=scale)},
        ),
        layer(
            "channels",
            {"type": "point", "filled": True, "size": 36},
            {
                "x": x,
                "y": field("mean:Q", scale=scale),
                "color": colour,
                "opacity": _when_hovered(1.0),
                "tooltip": tooltip,
            },
            params=[_hover(["position"])],
        ),
    ]


def class_histograms(stats: BlockStatistics, classes: Sequence[str], channels: np.ndarray) -> pd.DataFrame:
    """Histogram counts of the chosen channels pooled, as a share of each class's gates."""
    counts, edges = [], []
    for name in classes:
        cs = stats.class_stats(name)
        counts.append(cs.histogram[channels].sum(axis=0).astype(np.float64))
        edges.append(np.asarray(cs.bin_edges, dtype=np.float64))
    bins = len(edges[0]) - 1
    count = np.concatenate(counts)
    totals = np.repeat([max(1.0, c.sum()) for c in counts], bins)
    low = np.concatenate([e[:-1] for e in edges])
    high = np.concatenate([e[1:] for e in edges])
    return pd.DataFrame(
        {
            "class": np.repeat(list(classes), bins),
            "low": low,
            "high": high,
            "share": count / totals,
            "count": count,
            "centre": (low + high) / 2,
        }
    )


def held_bins(table: pd.DataFrame) -> tuple[int, float, float]:
    """How many bins of :func:`class_histograms`' ``table`` hold gates (of any class), and the range they span.

    A block whose gates all sit in one or two bins (SE_5_2, near 1) has no shape
    a histogram can show at the statistics' bin width.
    """
    held = table[table["count"] > 0]
    if held.empty:
        return 0, 0.0, 0.0
    return int(held["low"].nunique()), float(held["low"].min()), float(held["high"].max())


def histograms(stats: BlockStatistics, table: pd.DataFrame, channels: int, full_range: bool = False) -> Spec:
    """The distribution of the gates per class, one step line per class.

    ``table`` is :func:`class_histograms` of the classes drawn, in their order, over the
    ``channels`` chosen channels (pooled).

    The x axis spans the bins that hold gates (and one empty bin each side), or [0, 1] when ``full_range``.
    Which classes, their colours and both ranges are in the chart's data (the bins drawn), not its
    spec: adding a class changes only the data, which the browser updates in the drawn chart.
    """
    data, names = table.copy(), list(dict.fromkeys(table["class"]))
    if full_range:
        x_scale: Spec = {"domain": [0.0, 1.0], "nice": False}
    else:
        data = _trim_to_held_bins(data)
        x_scale = {"zero": False, "nice": False}
    data["order"] = _colour_order_column(data["class"], names)
    y_title, y_scale = "share of the class's gates", {"zero": True, "nice": False}
    y = field("share:Q", title=y_title, axis={"format": "%"}, scale=y_scale)
    # Room above the highest bin (else a bin holding every gate runs along the plot's top edge):
    # an invisible rule at the top of that room, so the fitted y range stays data, not spec.
    data["headroom"] = float(data["share"].max()) * (1 + _PAD) if len(data) else 1.0
    # The outline steps at the bin edges (each bin's share from its low edge to its high edge,
    # the last one closed at its high edge); a point at each bin's centre carries the tooltip.
    last = data.groupby("class", sort=False).tail(1)
    outline = pd.concat(
        [
            data[["class", "order", "low", "share"]],
            last[["class", "order", "high", "share"]].rename(columns={"high": "low"}),
        ]
    )
    # Classes in the order chosen, so "all classes" (last) is drawn on top, as in the paper.
    outline["slot"] = outline["class"].map({name: i for i, name in enumerate(names)})
    outline = outline.sort_values(["slot", "low"], kind="stable").drop(columns="slot")
    colour = _ordered_class_colour(names)
    tooltip = [
        tip("class:N"),
        tip("low:Q", title="from", format=".3f"),
        tip("high:Q", title="to", format=".3f"),
        tip("share:Q", format=".2%"),
        tip("count:Q", format=",.0f"),
    ]
    return chart(
        [
            layer(
                "outline",
                {"type": "line", "interpolate": "step-after", "strokeWidth": 1.5, "clip": True},
                {"x": field("low:Q", title="excitation (bin edges)", scale=x_scale), "y": y, "color": colour},
            ),
            layer(
                "bins",
                {"type": "point", "size": 14, "filled": True, "clip": True},
                {"x": field("centre:Q", scale=x_scale), "y": y, "color": colour, "tooltip": tooltip},
            ),
            layer(
                "bins",
                {"type": "rule", "opacity": 0},
                {"y": field("headroom:Q", aggregate="max", title=y_title, scale=y_scale)},
            ),
        ],
        {"outline": outline.reset_index(drop=True), "bins": data},
        f"{stats.name}: histogram per class ({channels} channels pooled)",
    )


def _trim_to_held_bins(data: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`class_histograms` from the first bin that holds gates to the last, one empty bin each side."""
    bins, low, high = held_bins(data)
    if not bins:
        return data
    width = float(data["high"].iloc[0] - data["low"].iloc[0])
    low, high = low - width, high + width
    slack = 1e-9 * width  # bin edges are floats
    return data[(data["low"] >= low - slack) & (data["high"] <= high + slack)].reset_index(drop=True)


def violins(stats: BlockStatistics, table: pd.DataFrame, channels: int, full_range: bool = False) -> Spec:
    """Violins per class side by side (one view, no facets), one rectangle per histogram bin.

    ``table`` is :func:`class_histograms` of the classes drawn, in their order, over the
    ``channels`` chosen channels (pooled).

    Each bin of a class's histogram is a rectangle centred on the class, as wide
    as its share of the gates (the widest bin of the chart spans 0.9 of a slot).
    Which classes, their names under the axis, their colours and both ranges are in
    the chart's data (the bins, and one row a class slot), not its spec: adding a class
    changes only the data, which the browser updates in the drawn chart.
    """
    data, names = table.copy(), list(dict.fromkeys(table["class"]))
    slot = {name: i for i, name in enumerate(names)}
    widest = max(float(data["share"].max()), 1e-12)
    data["slot"] = data["class"].map(slot).astype(float)
    data["order"] = _colour_order_column(data["class"], names)
    data["left"] = data["slot"] - 0.45 * data["share"] / widest
    data["right"] = data["slot"] + 0.45 * data["share"] / widest
    drawn = data[data["share"] > 0].reset_index(drop=True)
    # One row a slot, in slot order: the axis names slot i by row i, and the (invisible) slot
    # rectangles keep every slot inside the x range.
    slots = pd.DataFrame(
        {"slot": np.arange(len(names)), "class": names, "from": np.arange(len(names)) - 0.6}
    ).assign(to=lambda t: t["from"] + 1.2)
    x_axis = {
        "tickMinStep": 1,
        "labelExpr": "(data('slots')[datum.value] || {})['class'] || ''",
        "labelAngle": -30 if len(names) > 6 else 0,
        "labelLimit": 160,
        "grid": False,
        "title": "class",
    }
    x_scale = {"zero": False, "nice": False}
    y_scale = {"domain": [0.0, 1.0], "nice": False, "zero": False} if full_range else _FIT_TO_DATA
    encoding = {
        "y": field("low:Q", title="excitation", scale=y_scale),
        "y2": {"field": "high"},
        "x": field("left:Q", axis=x_axis, scale=x_scale),
        "x2": {"field": "right"},
        "color": _ordered_class_colour(names, show_legend=False),
        "tooltip": [
            tip("class:N"),
            tip("low:Q", title="from", format=".3f"),
            tip("high:Q", title="to", format=".3f"),
            tip("share:Q", format=".2%"),
        ],
    }
    return chart(
        [
            # Under the violins, so that the pointer finds their bins (and their tooltips) first.
            layer(
                "slots",
                {"type": "rect", "opacity": 0},
                {"x": field("from:Q", axis=x_axis, scale=x_scale), "x2": {"field": "to"}},
            ),
            layer("bins", {"type": "rect", "opacity": 0.85}, encoding),
        ],
        {"bins": drawn, "slots": slots},
        f"{stats.name}: distribution per class ({channels} channels pooled)",
    )


# ---------------------------------------------------------------- depth, verdicts, comparisons


def per_block(data: pd.DataFrame, columns: Sequence[tuple[str, str]], title: str, y_title: str) -> Spec:
    """Scores per block over depth (blocks in depth order), stage boundaries marked; y over [0, 1].

    ``data`` has ``block`` and ``stage`` columns and one column per score in ``columns``
    (column, label). Dashed vertical rules separate the stages; each stage is named at the top.
    """
    blocks = list(data["block"])
    long = data.melt(
        id_vars=["block", "stage"], value_vars=[c for c, _ in columns], var_name="score", value_name="value"
    )
    long["score"] = long["score"].map(dict(columns))
    long["depth"] = long["block"].map({b: i for i, b in enumerate(blocks)})
    order = [label for _, label in columns]
    depth_scale = {"domain": [-0.5, len(blocks) - 0.5], "nice": False, "zero": False}
    x = field(
        "depth:Q",
        title="SE block (depth order)",
        scale=depth_scale,
        axis={
            "values": list(range(len(blocks))),
            "labelExpr": _labels_at(blocks),
            "labelAngle": -45 if len(blocks) > 8 else 0,
            "grid": False,
        },
    )
    stages = (
        data.assign(depth=range(len(blocks)))
        .groupby("stage", sort=False)["depth"]
        .agg(["min", "max"])
        .reset_index()
    )
    stages["centre"] = (stages["min"] + stages["max"]) / 2
    stages["boundary"] = stages["min"] - 0.5
    stages["label"] = stages["stage"].map(lambda s: f"stage {s}")
    score_legend = {
        "title": None,
        "orient": "top",
        "direction": "horizontal",
        "labelLimit": 320,
        "offset": 22,
    }
    lines = {
        "x": x,
        "y": field("value:Q", title=y_title, scale=fitted_scale(long["value"], full=True)),
        "color": field("score:N", sort=order, legend=score_legend),
        "tooltip": [tip("block:N"), tip("stage:Q"), tip("score:N"), tip("value:Q", format=".4f")],
    }
    return chart(
        [
            layer(
                "boundaries",
                {"type": "rule", "color": "#999999", "strokeDash": [5, 4]},
                {"x": field("boundary:Q", scale=depth_scale)},
            ),
            layer(
                "stages",
                {"type": "text", "baseline": "bottom", "dy": -4, "color": "#666666", "fontSize": 12},
                {"x": field("centre:Q", scale=depth_scale), "y": {"value": 0}, "text": field("label:N")},
            ),
            layer("scores", {"type": "line", "point": {"size": 45, "filled": True}, "strokeWidth": 2}, lines),
        ],
        {"boundaries": stages.iloc[1:].reset_index(drop=True), "stages": stages, "scores": long},
        title,
    )


def bars(
    data: pd.DataFrame,
    category: str,
    value: str,
    title: str,
    value_title: str,
    colour: str,
    tooltip: list[Spec],
) -> Spec:
    """Horizontal bars, one per row of ``data`` in its order, each label readable (>= 20 px a bar)."""
    encoding = {
        "y": field(
            f"{category}:N", sort=None, title=category, axis={"labelOverlap": False, "labelLimit": 200}
        ),
        "x": field(f"{value}:Q", title=value_title, scale=fitted_scale(data[value], zero=True)),
        "color": {"value": colour},
        "tooltip": tooltip,
    }
    return chart(
        [layer("bars", "bar", encoding)], {"bars": data}, title, height=max(SMALL_HEIGHT, 20 * len(data))
    )


def colour_of(index: int) -> str:
    """The palette's ``index``-th colour (the same one :func:`class_colours` gives that class)."""
    return _PALETTE[index % len(_PALETTE)]


def verdict_deltas(data: pd.DataFrame, title: str) -> Spec:
    """Accuracy change of removing each block alone (points of top-1), blocks in depth order, by verdict."""
    encoding = {
        "x": field(
            "block:N",
            sort=list(data["block"]),
            title="SE block (depth order)",
            axis={"labelAngle": -45, "labelOverlap": False},
        ),
        "y": field(
            "delta:Q",
            title="top-1 change when removed alone (points)",
            scale=fitted_scale(data["delta"], zero=True),
        ),
        "color": field(
            "verdict:N",
            scale={"domain": list(_VERDICT_COLOURS), "range": list(_VERDICT_COLOURS.values())},
            legend={"title": "verdict", "orient": "top", "direction": "horizontal"},
        ),
        "tooltip": [
            tip("block:N"),
            tip("verdict:N"),
            tip("delta:Q", title="top-1 change (points)", format="+.2f"),
            tip("agreement:Q", format=".2%"),
            tip("kl:Q", format=".4g"),
        ],
    }
    return chart([layer("blocks", "bar", encoding)], {"blocks": data}, title)


def overlay(data: pd.DataFrame, block: str) -> Spec:
    """Two stores' mean excitation over all classes for one block (Compare)."""
    encoding = {
        "x": field("channel:Q", scale={"nice": False}),
        "y": field("mean:Q", title=f"mean excitation ({ALL_CLASSES})", scale=fitted_scale(data["mean"])),
        "color": field(
            "store:N",
            scale={"range": list(_PALETTE[:2])},
            legend={"title": "store", "orient": "top", "direction": "horizontal", "labelLimit": 400},
        ),
        "tooltip": [
            tip("store:N"),
            tip("channel:Q"),
            tip("mean:Q", format=".4f"),
            tip("std:Q", format=".4f"),
        ],
    }
    mark = {"type": "line", "strokeWidth": 1.3, "point": {"size": 12, "opacity": 0.4}}
    return chart(
        [layer("stores", mark, encoding)], {"stores": data}, f"{block}: mean excitation over all classes"
    )


def class_boxes(data: pd.DataFrame, title: str, full_range: bool = False) -> Spec:
    """One channel's distribution per class as boxes: 25-75% box, 5-95% whiskers, median tick.

    ``data`` has ``class``, ``q05``, ``q25``, ``q50``, ``q75``, ``q95``, ``mean`` and
    ``count``, one row per class in display order.
    """
    order = list(data["class"])
    scale = fitted_scale(np.r_[data["q05"], data["q95"]], full_range)
    x = field(
        "class:N",
        sort=order,
        title="class",
        axis={"labelAngle": -40 if len(order) > 8 else 0, "labelOverlap": False, "labelLimit": 160},
    )
    tooltip = [tip("class:N"), tip("count:Q", format=",")]
    tooltip += [tip(f"{c}:Q", format=".4f") for c in ("mean", "q05", "q25", "q50", "q75", "q95")]
    return chart(
        [
            layer(
                "classes",
                {"type": "rule", "color": "#555555"},
                {
                    "x": x,
                    "y": field("q05:Q", title="excitation", scale=scale),
                    "y2": {"field": "q95"},
                    "tooltip": tooltip,
                },
            ),
            layer(
                "classes",
                {"type": "bar", "size": 18, "opacity": 0.85},
                {
                    "x": x,
                    "y": field("q25:Q", scale=scale),
                    "y2": {"field": "q75"},
                    "color": _class_colour(order, show_legend=False),
                    "tooltip": tooltip,
                },
            ),
            layer(
                "classes",
                {"type": "tick", "color": "white", "thickness": 2, "size": 18},
                {"x": x, "y": field("q50:Q", scale=scale), "tooltip": tooltip},
            ),
        ],
        {"classes": data},
        title,
    )
