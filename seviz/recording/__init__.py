"""Recording: run a network over images and stream its SE gates into a store.

Rooms: :mod:`~seviz.recording.session` (:func:`record`, prepare -> run -> finish),
:mod:`~seviz.recording.config` (:class:`RecordConfig`, every option checked up front),
:mod:`~seviz.recording.resume` (a resume must continue the same run over the same images),
:mod:`~seviz.recording.interrupts` (Ctrl-C: stop after the batch, or now),
:mod:`~seviz.recording.pipeline` (how decoding, the forward pass and store writes
overlap, by device), :mod:`~seviz.recording.fast_modes` (bf16/fp16, channels-last,
compile, each measured against fp32), :mod:`~seviz.recording.attribution` (captum
channel rankings written into a recorded store), :mod:`~seviz.recording.distributed`
(under torchrun: a shard per rank, combined into one store).

The room is ``recording``, not ``record``: a subpackage named ``seviz.record``
would replace the function ``seviz.record`` the moment it was imported.
"""

from seviz.recording.attribution import AttributionSummary, attribute
from seviz.recording.config import RecordConfig
from seviz.recording.distributed import Shard, shard_from_environment
from seviz.recording.fast_modes import PRECISIONS, FastMode
from seviz.recording.pipeline import Pipeline, plan_pipeline
from seviz.recording.session import RecordSummary, record

__all__ = [
    "PRECISIONS",
    "AttributionSummary",
    "FastMode",
    "Pipeline",
    "RecordConfig",
    "RecordSummary",
    "Shard",
    "attribute",
    "plan_pipeline",
    "record",
    "shard_from_environment",
]
