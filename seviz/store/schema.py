"""The seviz store: one HDF5 file of per-image SE excitation vectors.

Layout (schema 1)::

    /                       attrs: seviz_schema, seviz_version, torch_version,
                            timm_version, h5py_version, model, model_spec,
                            weights_source, weights_sha256 (tensors),
                            weights_file_sha256 (file bytes, or ""), preprocessing (JSON),
                            classes (JSON list of {index, name, id}), command,
                            created, precision, gate_error (JSON), dtype,
                            run_config (JSON), complete, finished, skipped_count
    /samples/label          [N] int64     class index (in the model's class space)
    /samples/class_name     [N] str
    /samples/path           [N] str
    /samples/topk_index     [N, 5] int32  the model's top-5 predictions
    /samples/topk_prob      [N, 5] float32
    /blocks/<SE_s_b>        [N, C] float16|float32, attrs: module, stage, block,
                            channels, kind, params, flops
    /skipped/path           [M] str       unreadable images, never recorded
    /skipped/reason         [M] str
    /progress               [2] int64     (samples committed, image-list entries consumed)
    /attributions/<SE_s_b>  [K, C] float32  optional, by ``seviz attribute``: mean
                            attribution of each gate channel to each class's logit;
                            group attrs: method, classes (JSON), images, weights_sha256

Sharded stores (``torchrun``, :mod:`seviz.store.shards`): each rank's shard is a
store as above with root attrs ``rank`` and ``world_size``, and its run_config
adds ``world_size``, ``rank``, ``shard_start`` and ``shard_stop`` (its slice of
the image list). The combined store has the same layout, its ``/samples`` and
``/blocks`` columns virtual datasets over the shards, plus root attrs
``world_size``, ``shards`` (JSON list of the shard files, relative to the store)
and ``ranks`` (JSON: every rank's recording summary).

Crash safety: the file is written in HDF5 SWMR mode. Each batch is appended to
every dataset and flushed, and only then is ``/progress`` advanced, so a run
killed at any instant leaves a file whose first ``progress[0]`` samples are
whole. Readers open with ``swmr=True`` (which also opens files whose writer
died) and read only that prefix. ``complete`` is set after a clean close.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SCHEMA_VERSION = 1


TOPK = 5


_REASON_LENGTH = 240

# Sharded stores (see the layout above).
RANK_ATTR = "rank"
WORLD_SIZE_ATTR = "world_size"
SHARDS_ATTR = "shards"
RANKS_ATTR = "ranks"
# run_config keys that differ from shard to shard of one recording.
SHARD_RUN_KEYS = ("rank", "shard_start", "shard_stop")


def _fixed_str(length: int) -> np.dtype:
    # Fixed-length strings, not variable-length ones: HDF5 SWMR does not keep
    # the global heap behind variable-length data consistent for readers or
    # after a crash.
    # Stored as fixed-size bytes holding UTF-8; readers decode them.
    return np.dtype(f"S{max(1, int(length))}")


def _utf8(values: Sequence[str], length: int) -> np.ndarray:
    encoded = [v.encode("utf-8")[:length] for v in values]
    return np.asarray(encoded, dtype=f"S{max(1, length)}")


@dataclass(frozen=True)
class BlockInfo:
    """What the store knows about one recorded SE block."""

    name: str
    module: str
    stage: int
    block: int
    channels: int
    kind: str = ""
    params: int = 0  # parameters of the whole SE branch (excitation FCs)
    flops: int = 0  # multiply-accumulates of the SE branch per image (pool, FCs, scale)


@dataclass(frozen=True)
class SampleBatch:
    """One batch of recorded samples, ready to append to a store."""

    label: np.ndarray
    class_name: Sequence[str]
    path: Sequence[str]
    topk_index: np.ndarray
    topk_prob: np.ndarray
    gates: Mapping[str, np.ndarray]
    consumed: int  # image-list entries this batch accounts for (its samples and skipped files)
    skipped: Sequence[tuple[str, str]] = ()


def _attr_value(value: Any) -> Any:
    """HDF5-storable form of an attribute: scalars as they are, containers as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return str(value)  # numpy str_ would become an unstorable '<U' array
    if isinstance(value, (bool, int, float, np.integer, np.floating, np.bool_)):
        return value
    return json.dumps(value, default=str)


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "OS":
        return np.asarray(
            [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in values],
            dtype=str,
        )
    return values


def _json_attr(attrs: Mapping[str, Any], key: str, default: Any) -> Any:
    value = attrs.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
