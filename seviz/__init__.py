"""seviz: see what the Squeeze-and-Excitation gates of a network do, and which can go.

The public API is imported lazily so that ``import seviz`` (and ``seviz --help``)
stay fast: torch, timm, matplotlib and streamlit load only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "record": "seviz.recording.session",
    "RecordSummary": "seviz.recording.session",
    "RecordConfig": "seviz.recording.config",
    "Recorder": "seviz.se.recorder",
    "open_store": "seviz.store.reader",
    "Store": "seviz.store.reader",
    "StoreError": "seviz.errors",
    "discover_se_gates": "seviz.se.discover",
    "register_se_adapter": "seviz.se.adapters",
    "SEAdapter": "seviz.se.adapters",
    "SEGate": "seviz.se.discover",
    "load_model": "seviz.models.registry",
    "MODEL_ALIASES": "seviz.models.builders",
    "resolve_classes": "seviz.models.classes",
    "find_images": "seviz.data.folders",
    "compute_statistics": "seviz.analysis.compute",
    "StatsSettings": "seviz.analysis.results",
    "Thresholds": "seviz.pruning.recommendation",
    "Recommendation": "seviz.pruning.recommendation",
    "load_recommendation": "seviz.pruning.recommendation",
    "save_figures": "seviz.plots",
    "prune_blocks": "seviz.pruning.apply",
    "prune_from_recommendation": "seviz.pruning.apply",
    "PrunedModel": "seviz.pruning.apply",
    "EvaluationReport": "seviz.pruning.verify",
    "run_demo": "seviz.demo",
    "launch_app": "seviz.app.launcher",
    "recommend": "seviz.pruning.recommendation",
    "evaluate": "seviz.pruning.verify",
    "attribute": "seviz.recording.attribution",
    "SevizError": "seviz.errors",
}
# No subpackage or top-level module is named like an export (the recording room is
# ``seviz.recording``, not ``seviz.record``): importing it would replace the name here.

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
