"""Interactive Altair charts drawn from :mod:`seviz.analysis` results, legible at any store size.

Only reshaping happens here (arrays into long tables for Vega-Lite); every
number comes from the statistics. Every chart has a fixed plot height (axes,
title and legend come on top of it, so a legend never squeezes the plot),
fits the page's width (``fit-x``: nothing runs past the right edge), puts its
legend outside the plot, and fits its y axis to the values drawn unless the
[0, 1] range of a gate or a share is the reference that helps. Small multiples
are laid out by the page in Streamlit columns, which wrap with the page,
rather than as Vega-Lite facets, which do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from seviz.analysis import ALL_CLASSES, BlockStatistics

PLOT_HEIGHT = 300  # px of the plot area of a full-width chart
SMALL_HEIGHT = 220  # px of the plot area of a small multiple
_FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")
_PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#eeca3b")
_ALL_COLOUR = "#222222"  # "all classes" is the reference line, drawn dark as in the paper
_LEGEND_ROWS = 14  # entries a legend at the right holds before it moves below the plot
_PAD = 0.06  # share of the fitted y range added above and below


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


def legend(entries: int, title: str | None = "class") -> alt.Legend:
    """A legend beside the plot, or below it in columns when it has many entries."""
    if entries <= _LEGEND_ROWS:
        return alt.Legend(title=title, orient="right", labelLimit=220)
    return alt.Legend(title=title, orient="bottom", columns=4, labelLimit=220)


def fitted_scale(values: np.ndarray | Sequence[float], full: bool = False, zero: bool = False) -> alt.Scale:
    """A y scale over the values drawn (padded), or [0, 1] (widened to the values) when ``full``.

    ``zero`` keeps 0 inside the fitted range, unpadded (bars and deltas start from it).
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if full:
        return alt.Scale(domain=[min(0.0, low), max(1.0, high)], nice=False, zero=False)
    if zero:
        low, high = min(low, 0.0), max(high, 0.0)
    span = high - low
    pad = _PAD * span if span > 0 else max(abs(high) * 0.05, 1e-3)
    bottom = 0.0 if zero and low == 0.0 else low - pad
    top = 0.0 if zero and high == 0.0 else high + pad
    return alt.Scale(domain=[bottom, top], nice=False, zero=False)


def finish(chart: alt.TopLevelMixin, title: str, height: int = PLOT_HEIGHT) -> alt.TopLevelMixin:
    """The chart with its title, a fixed plot height and a width that fits the page."""
    return chart.properties(title=title, height=height, autosize=_FIT_WIDTH)


def _position_axis(sorted_by: str | None, shown: int, total: int) -> alt.X:
    """The x encoding of a per-channel chart: positions 0 .. shown - 1, whole numbers only."""
    return alt.X(
        "position:Q",
        title=_position_title(sorted_by, shown, total),
        scale=alt.Scale(nice=False),
        axis=alt.Axis(tickMinStep=1, format="d"),
    )


def _position_title(sorted_by: str | None, shown: int, total: int) -> str:
    which = "channel" if shown == total else f"channel ({shown} of {total}; hover for its index)"
    return which if not sorted_by else f"{which}, ranked by {sorted_by}"


# ---------------------------------------------------------------- distributions


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


def figure6(
    stats: BlockStatistics,
    classes: Sequence[str],
    order: np.ndarray,
    sorted_by: str | None = None,
    full_range: bool = False,
):
    """The paper's Figure 6 for one block: mean excitation per channel, one line per class.

    The pointer picks the nearest channel, marks it with a rule, and a tooltip lists
    every class's value there. The hover layer has one invisible rule per channel
    (not one point per channel and class): two layers in all, which keeps the
    browser's work per chart small.
    """
    data = _per_class_table(stats, classes, order, ["mean"])
    names = list(dict.fromkeys(data["class"]))
    colours = class_colours(names)
    x = _position_axis(sorted_by, len(order), stats.channels)
    y = alt.Y("mean:Q", title="mean excitation", scale=fitted_scale(data["mean"], full_range))
    lines = (
        alt.Chart(data)
        .mark_line(strokeWidth=1.3)
        .encode(x=x, y=y, color=alt.Color("class:N", sort=names, scale=colours, legend=legend(len(names))))
    )
    # One row per channel, one column per class (positional names: class names may hold
    # characters that Vega reads as field paths).
    fields = {name: f"c{i}" for i, name in enumerate(names)}
    wide = data.pivot(index=["position", "channel"], columns="class", values="mean")
    table = pd.DataFrame(
        {"position": wide.index.get_level_values(0), "channel": wide.index.get_level_values(1)}
    )
    tooltip = [alt.Tooltip("channel:Q", title="channel")]
    for name in names:
        table[fields[name]] = wide[name].to_numpy()
        tooltip.append(alt.Tooltip(f"{fields[name]}:Q", title=f"{name}: mean excitation", format=".4f"))
    nearest = alt.selection_point(
        nearest=True, on="pointerover", fields=["position"], empty=False, clear="pointerout"
    )
    rules = (
        alt.Chart(table)
        .mark_rule(color="gray", strokeDash=[3, 3])
        .encode(x=x, opacity=alt.condition(nearest, alt.value(0.8), alt.value(0.0)), tooltip=tooltip)
        .add_params(nearest)
    )
    return finish(alt.layer(lines, rules), f"{stats.name}: mean excitation per class")


def figure7(
    stats: BlockStatistics,
    class_name: str,
    order: np.ndarray,
    sorted_by: str | None = None,
    full_range: bool = False,
):
    """The paper's Figure 7 for one block and class: the mean per channel in a band of ±1 std.

    The mean over all classes is drawn as a dashed reference; hovering a channel
    shows its index, the class's mean and std and the all-classes mean.
    """
    cs, everything = stats.class_stats(class_name), stats.all
    data = pd.DataFrame(
        {
            "position": np.arange(len(order)),
            "channel": order,
            "class": class_name,
            "mean": cs.mean[order],
            "std": cs.std[order],
            "all": everything.mean[order],
        }
    )
    data["low"], data["high"] = data["mean"] - data["std"], data["mean"] + data["std"]
    colour = _ALL_COLOUR if class_name == ALL_CLASSES else _PALETTE[0]
    scale = fitted_scale(np.r_[data["low"], data["high"], data["all"]], full_range)
    x = _position_axis(sorted_by, len(order), stats.channels)
    base = alt.Chart(data).encode(x=x)
    band = base.mark_area(opacity=0.3, color=colour).encode(
        y=alt.Y("low:Q", title="excitation (mean ± std)", scale=scale), y2="high:Q"
    )
    line = base.mark_line(strokeWidth=1.3, color=colour).encode(y=alt.Y("mean:Q", scale=scale))
    reference = base.mark_line(strokeWidth=1, strokeDash=[4, 3], color=_ALL_COLOUR).encode(
        y=alt.Y("all:Q", scale=scale)
    )
    nearest = alt.selection_point(
        nearest=True, on="pointerover", fields=["position"], empty=False, clear="pointerout"
    )
    hover = (
        base.mark_point(filled=True, size=36, color=colour)
        .encode(
            y=alt.Y("mean:Q", scale=scale),
            opacity=alt.condition(nearest, alt.value(1.0), alt.value(0.0)),
            tooltip=[
                alt.Tooltip("channel:Q"),
                alt.Tooltip("class:N"),
                alt.Tooltip("mean:Q", title="mean excitation", format=".4f"),
                alt.Tooltip("std:Q", format=".4f"),
                alt.Tooltip("all:Q", title=f"mean ({ALL_CLASSES})", format=".4f"),
            ],
        )
        .add_params(nearest)
    )
    title = f"{stats.name}: {class_name} ({cs.count:,} images), mean ± std; dashed: {ALL_CLASSES}"
    return finish(alt.layer(band, line, reference, hover), title)


def class_histograms(stats: BlockStatistics, classes: Sequence[str], channels: np.ndarray) -> pd.DataFrame:
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


def histograms(
    stats: BlockStatistics, classes: Sequence[str], channels: np.ndarray, full_range: bool = False
):
    """The distribution of the gates per class (chosen channels pooled), one step line per class.

    The x axis spans the bins that hold gates (and one empty bin each side), or [0, 1] when ``full_range``.
    """
    data = class_histograms(stats, classes, channels)
    names = list(classes)
    domain = [0.0, 1.0]
    if not full_range:
        held = data[data["count"] > 0]
        width = float(data["high"].iloc[0] - data["low"].iloc[0])
        domain = [max(0.0, float(held["low"].min()) - width), min(1.0, float(held["high"].max()) + width)]
    return finish(
        alt.Chart(data)
        .mark_line(interpolate="step", strokeWidth=1.5, point=alt.OverlayMarkDef(size=14), clip=True)
        .encode(
            x=alt.X("centre:Q", title="excitation (bin centre)", scale=alt.Scale(domain=domain, nice=False)),
            y=alt.Y(
                "share:Q",
                title="share of the class's gates",
                axis=alt.Axis(format="%"),
                scale=fitted_scale(data["share"], zero=True),
            ),
            color=alt.Color("class:N", sort=names, scale=class_colours(names), legend=legend(len(names))),
            tooltip=[
                "class:N",
                alt.Tooltip("low:Q", title="from", format=".3f"),
                alt.Tooltip("high:Q", title="to", format=".3f"),
                alt.Tooltip("share:Q", format=".2%"),
                alt.Tooltip("count:Q", format=",.0f"),
            ],
        ),
        f"{stats.name}: histogram per class ({len(channels)} channels pooled)",
    )


def violins(stats: BlockStatistics, classes: Sequence[str], channels: np.ndarray, full_range: bool = False):
    """Violins per class side by side (one view, no facets), one rectangle per histogram bin.

    Each bin of a class's histogram is a rectangle centred on the class, as wide
    as its share of the gates (the widest bin of the chart spans 0.9 of a slot).
    """
    data = class_histograms(stats, classes, channels)
    names = list(classes)
    slot = {name: i for i, name in enumerate(names)}
    widest = max(float(data["share"].max()), 1e-12)
    data["slot"] = data["class"].map(slot).astype(float)
    data["left"] = data["slot"] - 0.45 * data["share"] / widest
    data["right"] = data["slot"] + 0.45 * data["share"] / widest
    drawn = data[data["share"] > 0]
    labels = "[" + ", ".join(_js_string(n) for n in names) + "]"
    x_axis = alt.Axis(
        values=list(range(len(names))),
        labelExpr=f"{labels}[datum.value] || ''",
        labelAngle=-30 if len(names) > 6 else 0,
        labelLimit=160,
        grid=False,
        title="class",
    )
    scale = fitted_scale(np.r_[drawn["low"], drawn["high"]], full_range)
    return finish(
        alt.Chart(drawn)
        .mark_rect(opacity=0.85)
        .encode(
            y=alt.Y("low:Q", title="excitation", scale=scale),
            y2="high:Q",
            x=alt.X("left:Q", axis=x_axis, scale=alt.Scale(domain=[-0.6, len(names) - 0.4], nice=False)),
            x2="right:Q",
            color=alt.Color("class:N", sort=names, scale=class_colours(names), legend=None),
            tooltip=[
                "class:N",
                alt.Tooltip("low:Q", title="from", format=".3f"),
                alt.Tooltip("high:Q", title="to", format=".3f"),
                alt.Tooltip("share:Q", format=".2%"),
            ],
        ),
        f"{stats.name}: distribution per class ({len(channels)} channels pooled)",
    )


def _js_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------- depth, verdicts, comparisons


def per_block(data: pd.DataFrame, columns: Sequence[tuple[str, str]], title: str, y_title: str):
    """Scores per block over depth (blocks in depth order), stage boundaries marked; y over [0, 1].

    ``data`` has ``block`` and ``stage`` columns and one column per score in ``columns``
    (column, label). Dashed vertical rules separate the stages; each stage is named at the top.
    """
    blocks = list(data["block"])
    labels = "[" + ", ".join(_js_string(b) for b in blocks) + "]"
    long = data.melt(
        id_vars=["block", "stage"], value_vars=[c for c, _ in columns], var_name="score", value_name="value"
    )
    names = dict(columns)
    long["score"] = long["score"].map(names)
    long["depth"] = long["block"].map({b: i for i, b in enumerate(blocks)})
    order = [label for _, label in columns]
    depth_scale = alt.Scale(domain=[-0.5, len(blocks) - 0.5], nice=False, zero=False)
    x = alt.X(
        "depth:Q",
        title="SE block (depth order)",
        scale=depth_scale,
        axis=alt.Axis(
            values=list(range(len(blocks))),
            labelExpr=f"{labels}[datum.value] || ''",
            labelAngle=-45 if len(blocks) > 8 else 0,
            grid=False,
        ),
    )
    y = alt.Y("value:Q", title=y_title, scale=fitted_scale(long["value"], full=True))
    lines = (
        alt.Chart(long)
        .mark_line(point=alt.OverlayMarkDef(size=45, filled=True), strokeWidth=2)
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "score:N",
                sort=order,
                legend=alt.Legend(
                    title=None, orient="top", direction="horizontal", labelLimit=320, offset=22
                ),
            ),
            tooltip=["block:N", "stage:Q", "score:N", alt.Tooltip("value:Q", format=".4f")],
        )
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
    rules = (
        alt.Chart(stages.iloc[1:])
        .mark_rule(color="#999999", strokeDash=[5, 4])
        .encode(x=alt.X("boundary:Q", scale=depth_scale))
    )
    names_layer = (
        alt.Chart(stages)
        .mark_text(baseline="bottom", dy=-4, color="#666666", fontSize=12)
        .encode(x=alt.X("centre:Q", scale=depth_scale), y=alt.value(0), text="label:N")
    )
    return finish(alt.layer(rules, names_layer, lines), title)


def bars(
    data: pd.DataFrame, category: str, value: str, title: str, value_title: str, colour: str, tooltip: list
):
    """Horizontal bars, one per row of ``data`` in its order, each label readable (>= 20 px a bar)."""
    rows = len(data)
    return finish(
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y(
                f"{category}:N", sort=None, title=category, axis=alt.Axis(labelOverlap=False, labelLimit=200)
            ),
            x=alt.X(f"{value}:Q", title=value_title, scale=fitted_scale(data[value], zero=True)),
            color=alt.value(colour),
            tooltip=tooltip,
        ),
        title,
        height=max(SMALL_HEIGHT, 20 * rows),
    )


def colour_of(index: int) -> str:
    """The palette's ``index``-th colour (the same one :func:`class_colours` gives that class)."""
    return _PALETTE[index % len(_PALETTE)]


def verdict_deltas(data: pd.DataFrame, title: str):
    """Accuracy change of removing each block alone (points of top-1), blocks in depth order, by verdict."""
    order = list(data["block"])
    return finish(
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X(
                "block:N",
                sort=order,
                title="SE block (depth order)",
                axis=alt.Axis(labelAngle=-45, labelOverlap=False),
            ),
            y=alt.Y(
                "delta:Q",
                title="top-1 change when removed alone (points)",
                scale=fitted_scale(data["delta"], zero=True),
            ),
            color=alt.Color(
                "verdict:N",
                scale=alt.Scale(
                    domain=["identity", "constant", "keep"], range=["#e45756", "#eeca3b", "#4c78a8"]
                ),
                legend=alt.Legend(title="verdict", orient="top", direction="horizontal"),
            ),
            tooltip=[
                "block:N",
                "verdict:N",
                alt.Tooltip("delta:Q", title="top-1 change (points)", format="+.2f"),
                alt.Tooltip("agreement:Q", format=".2%"),
                alt.Tooltip("kl:Q", format=".4g"),
            ],
        ),
        title,
    )


def overlay(data: pd.DataFrame, block: str):
    """Two stores' mean excitation over all classes for one block (Compare)."""
    return finish(
        alt.Chart(data)
        .mark_line(strokeWidth=1.3, point=alt.OverlayMarkDef(size=12, opacity=0.4))
        .encode(
            x=alt.X("channel:Q", scale=alt.Scale(nice=False)),
            y=alt.Y("mean:Q", title=f"mean excitation ({ALL_CLASSES})", scale=fitted_scale(data["mean"])),
            color=alt.Color(
                "store:N",
                scale=alt.Scale(range=list(_PALETTE[:2])),
                legend=alt.Legend(title="store", orient="top", direction="horizontal", labelLimit=400),
            ),
            tooltip=[
                "store:N",
                "channel:Q",
                alt.Tooltip("mean:Q", format=".4f"),
                alt.Tooltip("std:Q", format=".4f"),
            ],
        ),
        f"{block}: mean excitation over all classes",
    )


def class_boxes(data: pd.DataFrame, title: str, full_range: bool = False):
    """One channel's distribution per class as boxes: 25-75% box, 5-95% whiskers, median tick.

    ``data`` has ``class``, ``q05``, ``q25``, ``q50``, ``q75``, ``q95``, ``mean`` and
    ``count``, one row per class in display order.
    """
    order = list(data["class"])
    scale = fitted_scale(np.r_[data["q05"], data["q95"]], full_range)
    x = alt.X(
        "class:N",
        sort=order,
        title="class",
        axis=alt.Axis(labelAngle=-40 if len(order) > 8 else 0, labelOverlap=False, labelLimit=160),
    )
    tooltip: list[str | alt.Tooltip] = ["class:N", alt.Tooltip("count:Q", format=",")]
    tooltip += [alt.Tooltip(f"{c}:Q", format=".4f") for c in ("mean", "q05", "q25", "q50", "q75", "q95")]
    colour = alt.Color("class:N", sort=order, scale=class_colours(order), legend=None)
    base = alt.Chart(data).encode(x=x, tooltip=tooltip)
    whiskers = base.mark_rule(color="#555555").encode(
        y=alt.Y("q05:Q", title="excitation", scale=scale), y2="q95:Q"
    )
    box = base.mark_bar(size=18, opacity=0.85).encode(y=alt.Y("q25:Q", scale=scale), y2="q75:Q", color=colour)
    median = base.mark_tick(color="white", thickness=2, size=18).encode(y=alt.Y("q50:Q", scale=scale))
    return finish(alt.layer(whiskers, box, median), title)
