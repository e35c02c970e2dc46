"""Preprocessing (timm data configs) of the models seviz loads."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)


IMAGENET_DEFAULT_CFG: dict[str, Any] = {
    "input_size": (3, 224, 224),
    "interpolation": "bilinear",
    "crop_pct": 0.875,
    "crop_mode": "center",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}


def _clean_data_config(config: dict[str, Any]) -> dict[str, Any]:
    keys = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")
    clean = {k: config[k] for k in keys if k in config}
    clean["input_size"] = tuple(int(v) for v in clean.get("input_size", (3, 224, 224)))
    clean["mean"] = tuple(float(v) for v in clean.get("mean", IMAGENET_DEFAULT_CFG["mean"]))
    clean["std"] = tuple(float(v) for v in clean.get("std", IMAGENET_DEFAULT_CFG["std"]))
    clean.setdefault("interpolation", "bilinear")
    clean.setdefault("crop_pct", 0.875)
    clean.setdefault("crop_mode", "center")
    return clean
