"""seviz: see what the Squeeze-and-Excitation gates of a network do, and which can go.

The public API is imported lazily so that ``import seviz`` (and ``seviz --help``)
stay fast: torch, timm, matplotlib and streamlit load only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "record": "seviz.recording",
    "RecordSummary": "seviz.recording",
    "Recorder": "seviz.recorder",
    "open_store": "seviz.store",
    "Store": "seviz.store",
    "StoreError": "seviz.store",
    "discover_se_gates": "seviz.discover",
    "register_se_adapter": "seviz.discover",
    "SEAdapter": "seviz.discover",
    "SEGate": "seviz.discover",
    "load_model": "seviz.models",
    "MODEL_ALIASES": "seviz.models",
    "resolve_classes": "seviz.classes",
    "find_images": "seviz.data",
    "compute_statistics": "seviz.stats",
    "StatsSettings": "seviz.stats",
    "Thresholds": "seviz.recommend",
    "Recommendation": "seviz.recommend",
    "load_recommendation": "seviz.recommend",
    "save_figures": "seviz.plots",
    "prune_blocks": "seviz.pruning",
    "prune_from_recommendation": "seviz.pruning",
    "PrunedModel": "seviz.pruning",
    "EvaluationReport": "seviz.evaluate",
    "run_demo": "seviz.demo",
    "launch_app": "seviz.app_launcher",
}
# ``recommend``, ``evaluate`` and ``attribute`` are modules as well as functions: import the
# functions from them (``from seviz.recommend import recommend``), so that a
# submodule import never shadows a name exported here.

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
