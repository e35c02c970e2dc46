"""Squeeze-and-Excitation gates: recognising them, finding them in a network, capturing them.

Rooms: :mod:`~seviz.se.adapters` (the registry of SE implementations),
:mod:`~seviz.se.non_gates` (attention that is not an SE gate, and why: the reasons a model is refused),
:mod:`~seviz.se.discover` (:func:`discover_se_gates`, the paper's naming),
:mod:`~seviz.se.recorder` (:class:`Recorder`, the one owner of capture hooks),
:mod:`~seviz.se.gate_layers` (each gate's ``s`` as a module's output, for captum's
layer attribution), :mod:`~seviz.se.stand_ins` (fixed modules that replace a pruned
gate). These two import torch, so the door leaves them out and ``import seviz.se``
stays light.
"""

from seviz.errors import NoSEBlocksError
from seviz.se.adapters import SEAdapter, register_se_adapter
from seviz.se.discover import SEGate, discover_se_gates, format_gate_table, get_module, stage_and_block
from seviz.se.recorder import Recorder, gate_values

__all__ = [
    "NoSEBlocksError",
    "Recorder",
    "SEAdapter",
    "SEGate",
    "discover_se_gates",
    "format_gate_table",
    "gate_values",
    "get_module",
    "register_se_adapter",
    "stage_and_block",
]
