"""Checks before ``resume=True`` appends to an interrupted store: it must be the same run.

A resumed run rebuilds its image list from the data folder and continues after
the committed entries. That is only right when the options and the images
before the cut point are the ones the store was started with: a file added
to, removed from or renamed in the folder shifts the list, and the run would
store one image twice and drop another. So the options (:func:`check_options`)
and every committed path (:func:`check_committed_paths`) are compared first,
and a difference is refused by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seviz.data import ImageItem
from seviz.errors import StoreError
from seviz.store import open_store


@dataclass(frozen=True)
class Committed:
    """What an interrupted store holds: its run options and the images it has consumed."""

    run_config: dict[str, Any]
    paths: list[str] = field(default_factory=list)  # recorded samples, in order
    skipped: list[str] = field(default_factory=list)  # unreadable files among the consumed entries


def read_committed(path: Path) -> Committed:
    """Before loading any model: the store to resume is readable and not complete.

    Raises:
        StoreError: The store is not one (or was killed before it had a layout), or is complete.
    """
    try:
        existing = open_store(path, warn_incomplete=False)
    except StoreError as error:
        raise StoreError(
            f"cannot resume: {error}. A run stopped before it had set up the store leaves nothing to "
            "resume: record it again with `overwrite=True` instead of `resume=True`",
            param="resume",
        ) from None
    with existing:
        if existing.complete:
            raise StoreError(
                f"cannot resume: store {str(path)!r} is already complete ({len(existing)} samples); "
                "drop `resume=True`, or pass `overwrite=True` to record it again",
                param="resume",
            )
        return Committed(
            run_config=dict(existing.provenance.run_config),
            paths=existing.paths.tolist(),
            skipped=[p for p, _ in existing.skipped],
        )


def check_options(path: Path, committed: Committed, run_config: dict[str, Any]) -> None:
    """Refuse to resume with options other than the store's (the first difference named)."""
    previous = committed.run_config
    differing = [k for k in run_config if previous.get(k) != run_config[k]]
    if differing:
        key = differing[0]
        raise StoreError(
            f"cannot resume {str(path)!r}: it was recorded with {key}={previous.get(key)!r}, this run has "
            f"{key}={run_config[key]!r}; rerun with the original options or record a new store "
            "(`overwrite=True`)",
            param="resume",
        )


def check_committed_paths(path: Path, committed: Committed, items: Sequence[ImageItem]) -> None:
    """Refuse to resume when the rebuilt image list disagrees with the committed samples.

    The first ``consumed`` entries of ``items`` must be, in order, the store's
    committed samples with its skipped files among them.
    """
    skipped = set(committed.skipped)
    consumed = len(committed.paths) + len(committed.skipped)
    listed = [item.path for item in items[:consumed]]
    expected = [p for p in listed if p not in skipped]
    where = _first_difference(committed.paths, expected)
    missing = sorted(skipped - set(listed))
    if where is None and not missing and len(listed) == consumed:
        return
    if where is not None:
        stored = committed.paths[where] if where < len(committed.paths) else "nothing"
        now = expected[where] if where < len(expected) else "nothing"
        detail = f"committed sample {where} is {stored!r}, but the image list rebuilt now has {now!r} there"
    elif missing:
        detail = f"the skipped file {missing[0]!r} is no longer among the first {consumed} images"
    else:
        detail = f"the store has consumed {consumed} images, the folder now lists {len(items)}"
    raise StoreError(
        f"cannot resume {str(path)!r}: the data folder changed since the run began ({detail}); resuming "
        "would store some images twice and drop others: restore the folder, or record a new store "
        "(`overwrite=True`)",
        param="resume",
    )


def _first_difference(a: Sequence[str], b: Sequence[str]) -> int | None:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))
