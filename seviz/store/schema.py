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
whole. Readers open a closed file plainly, and one being written (or left by
a killed writer, which HDF5 refuses a plain open) with ``swmr=True``, and read
only that prefix. ``complete`` is set after a clean close.

The root attributes that say where a store came from are one record,
:class:`Provenance` (``to_attrs`` for the writer, ``from_attrs`` for every
reader, which checks their types). :data:`SAMPLE_COLUMNS`, :data:`BLOCK_ATTRS`
and the ``*_ATTR`` names are the rest of the layout that
:func:`seviz.store.open_store` checks a file against.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from seviz.errors import StoreError

SCHEMA_VERSION = 1


TOPK = 5

# Root attributes the writer keeps itself (the store's state, not its provenance).
SCHEMA_ATTR = "seviz_schema"
DTYPE_ATTR = "dtype"
COMPLETE_ATTR = "complete"
SKIPPED_COUNT_ATTR = "skipped_count"
SAMPLES_ATTR = "samples"

# /samples/<name>: (kind of values, shape after the sample axis). "text" is UTF-8 bytes.
SAMPLE_COLUMNS: dict[str, tuple[str, tuple[int, ...]]] = {
    "label": ("int", ()),
    "class_name": ("text", ()),
    "path": ("text", ()),
    "topk_index": ("int", (TOPK,)),
    "topk_prob": ("float", (TOPK,)),
}
SKIPPED_COLUMNS = ("path", "reason")
BLOCK_DTYPES = ("float16", "float32")
# /blocks/<name> attributes and their types.
BLOCK_ATTRS: dict[str, type] = {
    "module": str,
    "stage": int,
    "block": int,
    "channels": int,
    "kind": str,
    "params": int,
    "flops": int,
}


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


# ---------------------------------------------------------------- attribute types, checked


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _text_value(value: Any, what: str) -> str:
    """An HDF5 attribute that must be text (str, or UTF-8 bytes)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError(f"{what} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise StoreError(f"{what} is {_kind(value)}, not text")
    return str(value)


def _integer_value(value: Any, what: str, minimum: int | None = 0) -> int:
    if not _is_integer(value):
        raise StoreError(f"{what} is {_kind(value)}, not an integer")
    if minimum is not None and int(value) < minimum:
        raise StoreError(f"{what} is {int(value)}; it must be at least {minimum}")
    return int(value)


def _flag_value(value: Any, what: str) -> bool:
    if isinstance(value, (bool, np.bool_)) or (_is_integer(value) and int(value) in (0, 1)):
        return bool(value)
    raise StoreError(f"{what} is {_kind(value)}, not true/false")


def _json_value(value: Any, what: str, kind: type, default: Any) -> Any:
    """A JSON-valued attribute: text holding a ``kind`` (dict or list); already-decoded values pass."""
    if value is None or (isinstance(value, (str, bytes)) and len(value) == 0):
        return default
    if isinstance(value, (str, bytes)):
        text = _text_value(value, what)
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise StoreError(f"{what} is not JSON ({type(error).__name__}: {str(error)[:80]})") from None
    if not isinstance(value, kind):
        expected = "an object" if kind is dict else "a list"
        raise StoreError(f"{what} holds {_kind(value)}, not {expected}")
    return value


def _kind(value: Any) -> str:
    """What a bad value is, for a message: ``an integer 7``, ``a list [1, 2]``, ``an array of shape (3,)``."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, np.generic):
        value = value.item()
    names = {
        bool: "the flag",
        int: "an integer",
        float: "a number",
        str: "text",
        bytes: "bytes",
        list: "a list",
    }
    name = names.get(type(value), "an object" if isinstance(value, dict) else type(value).__name__)
    return f"{name} {value!r}"[:120]


@dataclass(frozen=True)
class RecordedClass:
    """One class a store holds samples of: its index in the model's outputs, name and WordNet id."""

    index: int
    name: str
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "id": self.id}


# Versions of the software that wrote a store, each in a root attribute ``<name>_version``.
VERSION_NAMES = ("seviz", "torch", "timm", "h5py")
_TEXT_FIELDS = (
    "model",
    "model_spec",
    "weights_source",
    "weights_sha256",
    "weights_file_sha256",
    "command",
    "created",
    "finished",
    "precision",
)
_JSON_FIELDS = {"preprocessing": dict, "preprocessing_source": dict, "gate_error": dict, "run_config": dict}
_OPTIONAL_INTEGERS = ("num_classes", "rank", "world_size")


@dataclass(frozen=True)
class Provenance:
    """Where a store came from: the model, its weights, the run and the software (the root attributes).

    The writer stores :meth:`to_attrs`; every reader takes :meth:`from_attrs`,
    which checks each attribute's type, so no reader repeats an attribute name.

    Attributes:
        model: What was built (``legacy_seresnet50.in1k``).
        model_spec: What the user asked for (``se_resnet50``, ``file.py:factory``).
        weights_source: ``pretrained:NAME``, ``torchvision:ENTRY``, ``demo``,
            ``random`` or the weights file's path.
        weights_sha256: SHA-256 of the loaded tensors.
        weights_file_sha256: SHA-256 of the weights file's bytes ("" when none).
        num_classes: Outputs of the model.
        preprocessing: The data config (input size, crop, mean, std, ...).
        classes: The recorded classes, in recording order.
        command: The command line that recorded the store.
        created: When the recording started (ISO 8601).
        finished: When it ended ("" while running, or when it was killed).
        precision: ``fp32``, or the fast mode it recorded in.
        gate_error: The fast mode's measured gate error against fp32.
        run_config: The options a ``--resume`` must repeat.
        versions: ``{"seviz": ..., "torch": ..., "timm": ..., "h5py": ...}``.
        preprocessing_source: Where each preprocessing value came from (``flags``,
            ``file:PATH``, ``store:PATH``, ``model``, ``default``).
        preprocessing_notes: Plain-words warnings about the preprocessing (an
            ImageNet fallback, upscaled images).
        rank, world_size: A torchrun shard's rank and the number of ranks (None otherwise).
    """

    model: str = ""
    model_spec: str = ""
    weights_source: str = ""
    weights_sha256: str = ""
    weights_file_sha256: str = ""
    num_classes: int | None = None
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    classes: tuple[RecordedClass, ...] = ()
    command: str = ""
    created: str = ""
    finished: str = ""
    precision: str = "fp32"
    gate_error: Mapping[str, Any] = field(default_factory=dict)
    run_config: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    preprocessing_source: Mapping[str, Any] = field(default_factory=dict)
    preprocessing_notes: tuple[str, ...] = ()
    rank: int | None = None
    world_size: int | None = None

    @property
    def gate_error_max_abs(self) -> float:
        """The largest gate difference the fast mode showed against fp32 (0 for an fp32 recording)."""
        return float(self.gate_error.get("max_abs", 0.0) or 0.0)

    def to_attrs(self) -> dict[str, Any]:
        """The root attributes that store this record (containers as JSON text)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _TEXT_FIELDS}
        for name in _OPTIONAL_INTEGERS:
            if getattr(self, name) is not None:
                out[name] = int(getattr(self, name))
        out["preprocessing_notes"] = json.dumps(list(self.preprocessing_notes))
        for name in _JSON_FIELDS:
            out[name] = json.dumps(dict(getattr(self, name)), default=str)
        out["classes"] = json.dumps([c.to_dict() for c in self.classes])
        for name in VERSION_NAMES:
            if name in self.versions:
                out[f"{name}_version"] = str(self.versions[name])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (containers as they are, not as text)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["classes"] = [c.to_dict() for c in self.classes]
        out["preprocessing_notes"] = list(self.preprocessing_notes)
        for name in (*_JSON_FIELDS, "versions"):
            out[name] = dict(out[name])
        return out

    @classmethod
    def attr_names(cls) -> tuple[str, ...]:
        """Every root attribute this record reads and writes."""
        return (
            *_TEXT_FIELDS,
            *_OPTIONAL_INTEGERS,
            *_JSON_FIELDS,
            "preprocessing_notes",
            "classes",
            *(f"{name}_version" for name in VERSION_NAMES),
        )

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str = "store", strict: bool = False) -> Provenance:
        """Read the record from root attributes (HDF5's, or the mapping a writer is given).

        Attributes that are absent take their defaults. Others (the store's
        state, attributes of a newer seviz) are ignored, unless ``strict``.

        Raises:
            StoreError: An attribute has the wrong type, a JSON attribute is
                not JSON, or (``strict``) an attribute is not a provenance
                attribute; the message names it.
        """

        def what(key: str) -> str:
            return f"{where}: root attribute {key!r}"

        if strict:
            unknown = sorted(set(attrs) - set(cls.attr_names()))
            if unknown:
                raise StoreError(
                    f"{where}: {', '.join(map(repr, unknown))} is not a provenance attribute; "
                    f"a store's provenance is {', '.join(cls.attr_names())}"
                )

        values: dict[str, Any] = {}
        for name in _TEXT_FIELDS:
            if name in attrs and attrs[name] is not None:
                values[name] = _text_value(attrs[name], what(name))
        for name in _OPTIONAL_INTEGERS:
            if attrs.get(name) is not None:
                values[name] = _integer_value(attrs[name], what(name))
        notes = _json_value(attrs.get("preprocessing_notes"), what("preprocessing_notes"), list, [])
        if not all(isinstance(note, str) for note in notes):
            raise StoreError(
                f"{what('preprocessing_notes')} holds a non-text entry; it is a list of sentences"
            )
        values["preprocessing_notes"] = tuple(notes)
        for name, kind in _JSON_FIELDS.items():
            values[name] = _json_value(attrs.get(name), what(name), kind, {})
        gate_error = values["gate_error"]
        for key in ("max_abs", "mean_abs"):
            if key in gate_error and not (
                _is_number(gate_error[key]) and math.isfinite(gate_error[key]) and gate_error[key] >= 0
            ):
                raise StoreError(f"{what('gate_error')}: {key} is {gate_error[key]!r}, not a number >= 0")
        values["classes"] = _recorded_classes(
            _json_value(attrs.get("classes"), what("classes"), list, []), what("classes")
        )
        versions = {}
        for name in VERSION_NAMES:
            key = f"{name}_version"
            if key in attrs:
                versions[name] = _text_value(attrs[key], what(key))
        values["versions"] = versions
        return cls(**values)


def _recorded_classes(entries: list[Any], what: str) -> tuple[RecordedClass, ...]:
    classes = []
    for position, entry in enumerate(entries):
        at = f"{what}[{position}]"
        if not isinstance(entry, dict):
            raise StoreError(f"{at} is {_kind(entry)}, not an object {{index, name, id}}")
        if "index" not in entry or "name" not in entry:
            raise StoreError(f"{at} lacks {'index' if 'index' not in entry else 'name'}")
        index = _integer_value(entry["index"], f"{at}.index")
        name = entry["name"]
        if not isinstance(name, str) or not name:
            raise StoreError(f"{at}.name is {_kind(name)}, not a class name")
        class_id = entry.get("id")
        if class_id is not None and not isinstance(class_id, str):
            raise StoreError(f"{at}.id is {_kind(class_id)}, not text or null")
        classes.append(RecordedClass(index, name, class_id))
    return tuple(classes)
