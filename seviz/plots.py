"""Figures of the SENet paper's Section 7 for any store (matplotlib, no pyplot).

* :func:`plot_class_excitations`: Figure 6, one block: mean excitation per
  channel, one line per class plus "all classes".
* :func:`plot_class_across_blocks`: Figure 7, one class: mean and a +/- 1 std
  band per channel, one panel per block.
* :func:`plot_depth`: class specificity and closeness to identity versus
  depth, one point per block.

Figures are built on :class:`matplotlib.figure.Figure` directly (no global
pyplot state, safe in the Streamlit app's threads) and returned; callers own
them. :func:`save_figures` writes PNG and SVG files. The paper sampled 50
channels per block; ``channels=50`` does the same (first or random ones).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seviz._files import atomic_write, check_output
from seviz.analysis import ALL_CLASSES, BlockStatistics, StoreStatistics
from seviz.errors import OutputError, UsageError
from seviz.store import StoreError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PAPER_BLOCKS = ("SE_2_3", "SE_3_4", "SE_4_6", "SE_5_1", "SE_5_2", "SE_5_3")
MAX_DEFAULT_CLASSES = 10  # more lines than this are unreadable in one panel
CHANNEL_SELECTIONS = ("first", "random")


def default_blocks(stats: StoreStatistics) -> list[str]:
    """The paper's blocks (SE_2_3, SE_3_4, SE_4_6, SE_5_1, SE_5_2, SE_5_3) present in ``stats``, else all."""
    present = [name for name in PAPER_BLOCKS if name in stats.blocks]
    return present or stats.block_names


def default_classes(stats: StoreStatistics) -> list[str]:
    """The classes with statistics, at most the first 10."""
    names = list(stats.class_names)
    if len(names) > MAX_DEFAULT_CLASSES:
        log.info("plotting the first %d of %d classes; pass classes=[...]", MAX_DEFAULT_CLASSES, len(names))
    return names[:MAX_DEFAULT_CLASSES]


def select_channels(
    total: int,
    channels: int | Sequence[int] | None = None,
    how: str = "first",
    seed: int = 0,
) -> np.ndarray:
    """Indices of the channels to draw.

    Args:
        total: Channels of the block.
        channels: ``None`` for all, a count (the paper drew 50), or explicit indices.
        how: For a count: ``"first"`` or ``"random"`` (sorted indices, fixed ``seed``).
        seed: Seed of the random choice.

    Raises:
        ValueError: Unknown ``how`` or indices out of range.
    """
    if how not in CHANNEL_SELECTIONS:
        raise UsageError(f"channel selection {how!r} is not one of {', '.join(CHANNEL_SELECTIONS)}")
    if channels is None:
        return np.arange(total)
    if isinstance(channels, (int, np.integer)):
        count = min(int(channels), total)
        if count < 1:
            raise UsageError(f"channels={channels} must be at least 1")
        if how == "first":
            return np.arange(count)
        return np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))
    index = np.asarray(list(channels), dtype=int)
    if index.size == 0 or index.min() < 0 or index.max() >= total:
        raise UsageError(f"channel indices {index.tolist()[:10]} must lie in [0, {total - 1}]")
    return index


# How a channel subset is asked for (the app's controls; ``seviz plot --channels N [--random-channels]``).
CHANNEL_SUBSETS = ("all", "first N", "random N", "indices")
PAPER_CHANNELS = 50  # the paper drew 50 channels per block
# Orders of a block's channels, each by one per-channel statistic (None: channel index).
CHANNEL_SORTS: dict[str, Callable[[BlockStatistics], np.ndarray] | None] = {
    "channel index": None,
    "mean over all classes": lambda b: b.all.mean,
    "class specificity (between/within variance)": lambda b: b.specificity.channel_ratio,
    "input dependence": lambda b: b.behaviour.channel_dependence,
}


def parse_channels(text: str, total: int) -> np.ndarray:
    """Channel indices from ``"0-15, 40, 64-"`` (sorted, unique), clipped to a block of ``total`` channels.

    Raises:
        UsageError: The text is not a list of indices and ranges.
    """
    chosen: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d*)\s*-\s*(\d*)|(\d+)", part)
        if not match:
            raise UsageError(f"channels {part!r}: write indices and ranges such as 0-15, 40, 64-")
        if match.group(3) is not None:
            start = stop = int(match.group(3))
        else:
            start = int(match.group(1) or 0)
            stop = int(match.group(2)) if match.group(2) else total - 1
        chosen.extend(range(start, min(stop, total - 1) + 1))
    return np.asarray(sorted(set(chosen)), dtype=np.intp)


def channel_subset(subset: str, total: int, count: int = PAPER_CHANNELS, text: str = "") -> np.ndarray:
    """The channels of a block of ``total`` channels that one of :data:`CHANNEL_SUBSETS` names.

    ``"first N"`` and ``"random N"`` pick ``count`` channels as :func:`select_channels`
    (and ``seviz plot --channels N [--random-channels]``) does; ``"indices"`` parses
    ``text`` (all channels when it is empty).

    Raises:
        UsageError: Unknown subset, or ``text`` that is not a list of indices.
    """
    if subset not in CHANNEL_SUBSETS:
        raise UsageError(f"channel subset {subset!r} is not one of {', '.join(CHANNEL_SUBSETS)}")
    if subset == "indices":
        return parse_channels(text, total) if text.strip() else np.arange(total)
    if subset == "all":
        return select_channels(total)
    return select_channels(total, count, how="first" if subset == "first N" else "random")


def order_channels(
    block: BlockStatistics, channels: np.ndarray, sort: str, descending: bool = True
) -> np.ndarray:
    """``channels`` in display order: sorted by one of :data:`CHANNEL_SORTS` (stable; ties keep index order).

    Raises:
        UsageError: Unknown sort.
    """
    if sort not in CHANNEL_SORTS:
        raise UsageError(f"channel order {sort!r} is not one of {', '.join(CHANNEL_SORTS)}")
    key = CHANNEL_SORTS[sort]
    if key is None:
        return channels
    values = np.asarray(key(block), dtype=np.float64)[channels]
    return channels[np.argsort(-values if descending else values, kind="stable")]


def plot_class_excitations(
    stats: StoreStatistics,
    block: str,
    classes: Sequence[str] | None = None,
    channels: int | Sequence[int] | None = None,
    how: str = "first",
    sort: bool = False,
    seed: int = 0,
) -> Figure:
    """Figure 6 for one block: mean excitation per channel, one line per class and one for all classes.

    Args:
        stats: Statistics from :func:`seviz.stats.compute_statistics`.
        block: Block name, e.g. ``"SE_5_2"``.
        classes: Classes to draw (default: up to the first 10).
        channels: Channel subset (see :func:`select_channels`).
        how: ``"first"`` or ``"random"`` channels when ``channels`` is a count.
        sort: Order channels by their mean over all classes (descending).
        seed: Seed of a random channel subset.

    Raises:
        StoreError: The block or a class has no statistics.
    """
    data = stats.block(block)
    names = default_classes(stats) if classes is None else list(classes)
    per_class = [data.class_stats(name) for name in names]
    index = _ordered(select_channels(data.channels, channels, how, seed), data.all.mean, sort)
    fig, ax = _figure()
    x = np.arange(len(index))
    for cs in per_class:
        ax.plot(x, cs.mean[index], linewidth=1.0, label=cs.name)
    ax.plot(x, data.all.mean[index], color="black", linewidth=2.0, linestyle="--", label=ALL_CLASSES)
    ax.set_xlabel(_channel_label(data.channels, index, channels, how, sort))
    ax.set_ylabel("mean excitation")
    ax.set_ylim(*_gate_limits(data.all.min.min(), data.all.max.max()))
    ax.set_title(f"{stats.model}: {block}, mean excitation per channel by class")
    ax.legend(loc="best", fontsize="small", ncol=2 if len(names) > 5 else 1)
    ax.grid(alpha=0.3)
    return fig


def plot_class_across_blocks(
    stats: StoreStatistics,
    class_name: str,
    blocks: Sequence[str] | None = None,
    channels: int | Sequence[int] | None = None,
    how: str = "first",
    sort: bool = False,
    seed: int = 0,
) -> Figure:
    """Figure 7 for one class: mean and +/- 1 std per channel within the class, one panel per block.

    Raises:
        StoreError: A block or the class has no statistics.
    """
    names = default_blocks(stats) if blocks is None else list(blocks)
    if not names:
        raise StoreError("no blocks to plot; the statistics hold none")
    data = [stats.block(name) for name in names]
    per_class = [b.class_stats(class_name) for b in data]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = _figure(rows, cols, width=4.2 * cols, height=3.2 * rows)
    flat = np.atleast_1d(axes).ravel()
    for ax, block, cs in zip(flat, data, per_class, strict=False):  # spare panels are hidden
        index = _ordered(select_channels(block.channels, channels, how, seed), cs.mean, sort)
        x = np.arange(len(index))
        mean, std = cs.mean[index], cs.std[index]
        ax.plot(x, mean, color="tab:blue", linewidth=1.0, label="mean")
        ax.fill_between(x, mean - std, mean + std, color="tab:blue", alpha=0.3, label="mean \u00b1 std")
        ax.set_title(block.name)
        ax.set_xlabel(_channel_label(block.channels, index, channels, how, sort))
        ax.set_ylabel("excitation")
        ax.set_ylim(*_gate_limits(cs.min.min(), cs.max.max()))
        ax.grid(alpha=0.3)
    for ax in flat[len(names) :]:
        ax.set_visible(False)
    flat[0].legend(loc="best", fontsize="small")
    count = per_class[0].count
    fig.suptitle(f"{stats.model}: class {class_name!r} ({count} images), excitations within the class")
    return fig


def plot_depth(stats: StoreStatistics, blocks: Sequence[str] | None = None) -> Figure:
    """Class specificity and closeness to identity of each block, in depth order.

    Left: cross-validated nearest-centroid accuracy against chance, and the
    between-class share of gate variance. Right: mean |1 - s|, the fraction
    of gates near one, and input dependence.
    """
    names = stats.block_names if blocks is None else list(blocks)
    data = [stats.block(name) for name in names]
    fig, (left, right) = _figure(1, 2, width=12.0, height=4.5)
    x = np.arange(len(names))
    spec = [b.specificity for b in data]
    left.plot(x, [s.accuracy for s in spec], marker="o", label="nearest-centroid accuracy (CV)")
    left.plot(x, [s.between_share for s in spec], marker="s", label="between-class share of variance")
    left.plot(x, [s.chance for s in spec], color="gray", linestyle="--", label="chance")
    left.set_title("class specificity")
    left.set_ylabel("accuracy / share")
    gates = [b.behaviour for b in data]
    right.plot(x, [g.mean_abs_deviation for g in gates], marker="o", label="mean |1 - s|")
    near = gates[0].near_one if gates else stats.settings.near_one
    label = f"fraction of gates \u2265 {near:g}"
    right.plot(x, [g.fraction_near_one for g in gates], marker="s", label=label)
    right.plot(x, [g.input_dependence for g in gates], marker="^", label="input dependence")
    right.set_title("closeness to identity")
    right.set_ylabel("score")
    for ax in (left, right):
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_xlabel("SE block (by depth)")
        ax.set_ylim(-0.02, 1.05)
        ax.legend(loc="best", fontsize="small")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{stats.model}: class specificity and closeness to identity vs depth")
    return fig


def save_figures(
    stats: StoreStatistics,
    out_dir: str | os.PathLike,
    formats: Sequence[str] = ("png", "svg"),
    blocks: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    channels: int | Sequence[int] | None = None,
    how: str = "first",
    sort: bool = False,
    dpi: int = 150,
    class_figures: Sequence[str] | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike | None] = (),
) -> list[Path]:
    """Write Figure 6 per block, Figure 7 per class and the depth figure.

    Files: ``excitations_<block>.<fmt>``, ``class_<class>.<fmt>``, ``depth.<fmt>``.

    Args:
        stats: Statistics from :func:`seviz.stats.compute_statistics`.
        out_dir: Folder to write into (created if missing).
        formats: Any of ``"png"``, ``"svg"``, ``"pdf"``.
        blocks: Blocks (default: the paper's six when present, else all).
        classes: Classes (default: up to the first 10).
        channels, how, sort: Channel subset and order (see :func:`plot_class_excitations`).
        dpi: Resolution of raster formats.
        class_figures: Classes that get a Figure 7 (default: the same as ``classes``).
        overwrite: Replace figures that exist (every file is checked before any is drawn).
        inputs: Files no figure may replace (the store).

    Returns:
        The written paths, in a fixed order.

    Raises:
        OutputError: ``out_dir`` is a file, or a figure exists and ``overwrite`` is false.
    """
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad:
        raise UsageError(f"unsupported figure format(s) {bad}; use png, svg or pdf")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputError(f"`out_dir` {str(out)!r} is a file, not a folder for figures", param="out_dir")
    names = default_blocks(stats) if blocks is None else list(blocks)
    chosen = default_classes(stats) if classes is None else list(classes)
    figures: list[tuple[str, Callable[[], Figure]]] = [
        (f"excitations_{_safe(b)}", partial(plot_class_excitations, stats, b, chosen, channels, how, sort))
        for b in names
    ]
    figures += [
        (f"class_{_safe(c)}", partial(plot_class_across_blocks, stats, c, names, channels, how, sort))
        for c in (chosen if class_figures is None else list(class_figures))
    ]
    figures.append(("depth", partial(plot_depth, stats, names)))
    for stem, _ in figures:
        for fmt in formats:
            check_output(
                out / f"{stem}.{fmt}", inputs=inputs, overwrite=overwrite, param="out_dir", what="figure"
            )
    from matplotlib import rc_context

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, make in figures:
        fig = make()
        for fmt in formats:
            # A fixed SVG hash salt and no date keep the files reproducible.
            with rc_context({"svg.hashsalt": "seviz"}), atomic_write(out / f"{stem}.{fmt}") as temp:
                fig.savefig(temp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=_metadata(fmt))
            path = out / f"{stem}.{fmt}"
            paths.append(path)
        log.info("wrote %s.{%s}", out / stem, ",".join(formats))
    return paths


def _figure(rows: int = 1, cols: int = 1, width: float = 9.0, height: float = 4.8):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=True)
    for ax in np.atleast_1d(axes).ravel():
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, axes


def _ordered(index: np.ndarray, key: np.ndarray, sort: bool) -> np.ndarray:
    return index[np.argsort(-key[index], kind="stable")] if sort else index


def _channel_label(total: int, index: np.ndarray, channels: object, how: str, sort: bool) -> str:
    if channels is None and not sort:
        return "channel index"
    counted = isinstance(channels, (int, np.integer))
    what = f"{len(index)} of {total} channels" + (f", {how}" if counted else "")
    return f"channel ({what}{', sorted by mean' if sort else ''})"


def _gate_limits(low: float, high: float) -> tuple[float, float]:
    return min(0.0, float(low)) - 0.02, max(1.0, float(high)) + 0.02


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "unnamed"


def _metadata(fmt: str) -> dict[str, str | None]:
    if fmt == "svg":
        return {"Date": None}
    if fmt == "pdf":
        return {"CreationDate": None}
    return {}
