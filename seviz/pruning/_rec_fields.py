"""Checks of one field of ``rec.json`` each, for :meth:`seviz.pruning.Recommendation.from_dict`.

``rec.json`` is read by one reader (:mod:`seviz.pruning.recommendation`); these
helpers hold its rules for single values, so that every refusal names the
field (``blocks[3].constant_vector[17]``) and what it should be. Numbers are
checked where they will be used: a gate value must be finite *as a float32*
(``1e39`` is finite in float64 and +inf in a float32 model), an integer must
fit in 64 bits (JSON allows ``10**400``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from seviz.errors import RecommendationError

FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_INT = (1 << 63) - 1
MAX_CHANNELS = 1 << 24  # far above any SE block (SENet-154: 2048); a bound, so nothing absurd is allocated


def fail(where: str, message: str) -> RecommendationError:
    return RecommendationError(
        f"{where} {message}; write the file with `seviz recommend STORE --out rec.json`"
    )


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int) and abs(value) > MAX_INT:
        return f"an integer of {len(str(abs(value)))} digits"
    names = {dict: "an object", list: "a list", str: "text", int: "an integer", float: "a number"}
    return f"{names.get(type(value), type(value).__name__)} {shown(value)}"


def mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(where, f"is {kind(value)}, not an object")
    return value


def only_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    unknown = [key for key in data if key not in allowed]
    if unknown:
        raise fail(
            where,
            f"has a field {unknown[0]!r} that rec.json does not have (its fields: {', '.join(allowed)})",
        )


def text(value: Any, where: str, required: bool = False) -> str:
    if not isinstance(value, str):
        raise fail(where, f"is {kind(value)}, not text")
    if required and not value.strip():
        raise fail(where, "is empty")
    return value


def integer(value: Any, where: str, low: int = 0, high: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(where, f"is {kind(value)}, not an integer")
    if not low <= value <= high:
        raise fail(where, f"is {kind(value)}; it must lie in [{low}, {high}]")
    return value


def number(value: Any, where: str, low: float | None = None, high: float | None = FLOAT32_MAX) -> float:
    """A finite number (not a boolean); ``high`` defaults to float32's largest, where gates live."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(where, f"is {kind(value)}, not a number")
    try:
        result = float(value)
    except OverflowError:
        raise fail(where, f"is {kind(value)}, too large for a float") from None
    if not math.isfinite(result):
        raise fail(where, f"is {result}, not a finite number")
    if high is not None and abs(result) > high:
        raise fail(
            where, f"is {result:g}, beyond float32's range (+-{FLOAT32_MAX:.4g}): it would become infinite"
        )
    if low is not None and result < low:
        raise fail(where, f"is {result:g}; it must be at least {low:g}")
    return result


def scalar(value: Any, where: str) -> Any:
    """Text, a finite number, a boolean or null: what a field of ``store`` or ``statistics`` holds."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return integer(value, where, low=-MAX_INT)
    if isinstance(value, float):
        return number(value, where, high=None)
    raise fail(where, f"is {kind(value)}; expected text, a number, true/false or null")


def gate_vector(value: Any, where: str, channels: int) -> tuple[float, ...]:
    """A ``constant`` block's per-channel gate: finite float32 values >= 0, not all 0, ``channels`` of them."""
    if not isinstance(value, list):
        raise fail(where, f"is {kind(value)}, not a list of per-channel gate values")
    if not value:
        raise fail(where, "is empty; a constant block needs one gate value per channel")
    if len(value) > MAX_CHANNELS:
        raise fail(where, f"has {len(value)} values, more than any SE block has channels")
    if channels and len(value) != channels:
        raise fail(where, f"has {len(value)} gate values for a block of {channels} channels")
    values = tuple(
        number(v, f"{where}[{i}]", low=0.0) for i, v in enumerate(value)
    )  # an SE gate (sigmoid, hard-sigmoid, gain-scaled) is never negative
    if not any(values):
        raise fail(where, "is 0 on every channel: that switches the block's branch off, not what a gate does")
    return values
