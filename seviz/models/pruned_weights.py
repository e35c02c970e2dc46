"""The pruned-model file format: one writer (:func:`save_pruned`) and one reader.

It lives with the models because :func:`~seviz.models.load_model` must rebuild a
pruned network wherever seviz loads one; :mod:`seviz.pruning` makes the edits.

A pruned model is saved as safetensors whose metadata key ``seviz_edits`` holds
JSON::

    {"format": 1, "model": SPEC, "model_name": NAME, "base_weights_sha256": SHA,
     "edits": [{"name", "module_path", "action", "replacement", "folded_into",
                "channels", "channel_dim", "gate_shape"}, ...]}

:func:`seviz.models.weights.load_weights_file` calls :func:`apply_saved_edits` to
rebuild the structure before loading the state dict (folded BatchNorm values
included) strictly, so ``load_model(SPEC, weights="pruned.safetensors")``
gives the model that was saved.

A pruned file may come from anyone, so its edits are checked before the model
is touched or anything is allocated: each field has its type and a sane range,
and each edited module must be an SE block that
:func:`~seviz.se.discover_se_gates` finds in the model, with that block's name
and width (any other module, a classifier ``fc`` say, is refused by name).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seviz._files import atomic_write_with, check_output
from seviz.errors import NoSEBlocksError, PruningError
from seviz.se import SEGate, discover_se_gates

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

EDITS_FORMAT = 1
ACTIONS = ("identity", "constant")
MAX_CHANNELS = 1 << 24  # far above any SE block (SENet-154: 2048): a bound, so nothing absurd is allocated
_MAX_EDITS = 10_000
_FIELDS = (
    "name",
    "module_path",
    "action",
    "replacement",
    "folded_into",
    "channels",
    "channel_dim",
    "gate_shape",
)
_FIX = "the file was not written by `seviz prune`, or by an incompatible version"


# What stands in the SE module's place after an edit.
REPLACEMENTS = ("identity", "ones_gate", "channel_scale", "constant_gate")


@dataclass(frozen=True)
class AppliedEdit:
    """What was done to one SE block; saved in the pruned file's metadata.

    Attributes:
        name: The block's seviz name.
        module_path: The SE module's path (``layer4.1.se``).
        action: ``identity`` or ``constant``.
        replacement: The module now at ``module_path``: ``identity``
            (``nn.Identity``), ``ones_gate`` / ``constant_gate``
            (:class:`~seviz.se.stand_ins.ConstantGate`) or ``channel_scale``
            (:class:`~seviz.se.stand_ins.ChannelScale`).
        folded_into: The BatchNorm that absorbed a constant scale, or None.
        channels: Channels of the block.
        channel_dim: 1 for channels-first inputs, -1 for channels-last.
        gate_shape: The gate's shape without the batch dimension.
    """

    name: str
    module_path: str
    action: str
    replacement: str
    folded_into: str | None
    channels: int
    channel_dim: int = 1
    gate_shape: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        record = dataclasses.asdict(self)
        record["gate_shape"] = list(self.gate_shape)
        return record

    @classmethod
    def from_dict(cls, record: Any) -> AppliedEdit:
        """Read one saved edit, checking each field's type and range (nothing is built yet).

        Raises:
            PruningError: A field is missing, of the wrong type or out of range;
                the message names it.
        """
        if not isinstance(record, Mapping):
            raise PruningError(f"a saved edit is {_shown(record)}, not an object; {_FIX}")
        label = record.get("name") if isinstance(record.get("name"), str) else "?"
        where = f"saved edit {label!r}"
        missing = [k for k in ("name", "module_path", "action", "replacement", "channels") if k not in record]
        if missing:
            raise PruningError(f"{where} lacks {', '.join(missing)}; {_FIX}")
        unknown = [k for k in record if k not in _FIELDS]
        if unknown:
            raise PruningError(
                f"{where} has an unknown field {unknown[0]!r} (fields: {', '.join(_FIELDS)}); {_FIX}"
            )
        texts = {
            k: _text(record[k], f"{where}: {k}") for k in ("name", "module_path", "action", "replacement")
        }
        if texts["action"] not in ACTIONS:
            raise PruningError(
                f"{where}: action {texts['action']!r} is not one of {', '.join(ACTIONS)}; {_FIX}"
            )
        if texts["replacement"] not in REPLACEMENTS:
            raise PruningError(
                f"saved edit of {texts['name']} has unknown replacement {texts['replacement']!r}; "
                f"this seviz knows {', '.join(REPLACEMENTS)} (upgrade seviz?)"
            )
        folded = record.get("folded_into")
        if folded is not None:
            folded = _text(folded, f"{where}: folded_into")
        channels = _count(record["channels"], f"{where}: channels")
        channel_dim = record.get("channel_dim", 1)
        if isinstance(channel_dim, bool) or channel_dim not in (1, -1):
            raise PruningError(f"{where}: channel_dim is {_shown(channel_dim)}; it is 1 or -1; {_FIX}")
        shape = record.get("gate_shape") or [channels, 1, 1]
        if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 3:
            raise PruningError(f"{where}: gate_shape is {_shown(shape)}, not a list of 1 to 3 sizes; {_FIX}")
        gate_shape = tuple(_count(v, f"{where}: gate_shape[{i}]") for i, v in enumerate(shape))
        if math.prod(gate_shape) != channels:
            raise PruningError(
                f"{where}: gate_shape {list(gate_shape)} does not hold {channels} channels, one value each; {_FIX}"
            )
        if folded is not None and (
            texts["action"] != "constant" or texts["replacement"] not in _PASS_THROUGH
        ):
            raise PruningError(
                f"{where}: folded_into {folded!r} goes with a folded constant edit (action 'constant', "
                f"replacement {' or '.join(_PASS_THROUGH)}), not {texts['action']!r} -> "
                f"{texts['replacement']!r}; {_FIX}"
            )
        if texts["action"] == "identity" and texts["replacement"] not in _PASS_THROUGH:
            raise PruningError(
                f"{where}: an identity edit is replaced by {' or '.join(_PASS_THROUGH)}, "
                f"not {texts['replacement']!r}; {_FIX}"
            )
        return cls(
            folded_into=folded, channels=channels, channel_dim=channel_dim, gate_shape=gate_shape, **texts
        )


# What a block becomes when its branch is gone (an identity, or a constant folded into BatchNorm).
_PASS_THROUGH = ("identity", "ones_gate")
# The replacements of a block that scales its input itself, and of a gate whose parent does.
_FOR_SCALING_BLOCKS = ("identity", "channel_scale")
_FOR_GATES = ("ones_gate", "constant_gate")


def _shown(value: Any) -> str:
    """What a bad value is, for a message: ``an integer -5``, ``text '512'``, ``the boolean true``."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int) and abs(value) > 1 << 63:
        return f"an integer of {len(str(abs(value)))} digits"
    names = {int: "an integer", float: "a number", str: "text", list: "a list", dict: "an object"}
    text = repr(value)
    return f"{names.get(type(value), type(value).__name__)} {text if len(text) <= 60 else text[:57] + '...'}"


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise PruningError(f"{what} is {_shown(value)}, not a name; {_FIX}")
    return value


def _count(value: Any, what: str) -> int:
    """A positive size no larger than any SE block has: checked before anything of that size exists."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PruningError(f"{what} is {_shown(value)}, not a whole number; {_FIX}")
    if not 1 <= value <= MAX_CHANNELS:
        raise PruningError(f"{what} is {_shown(value)}; it must lie in [1, {MAX_CHANNELS}]; {_FIX}")
    return value


def parse_saved_edits(
    saved: str | bytes | Mapping[str, Any] | Sequence[Any],
) -> tuple[list[AppliedEdit], str]:
    """The edits (checked field by field) and base model spec of ``seviz_edits`` metadata.

    Args:
        saved: The metadata's JSON text, its parsed object, or the bare list of edits.

    Raises:
        PruningError: Not JSON, a newer format, or a malformed edit.
    """
    if isinstance(saved, (str, bytes)):
        try:
            saved = json.loads(saved)
        except RecursionError:
            raise PruningError(f"the pruned file's seviz_edits metadata nests too deeply; {_FIX}") from None
        except ValueError as error:
            raise PruningError(
                f"the pruned file's seviz_edits metadata is not JSON ({error}); {_FIX}"
            ) from None
    spec = "its base model"
    if isinstance(saved, Mapping):
        version = saved.get("format", EDITS_FORMAT)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise PruningError(f"pruned-model edits format {_shown(version)} is not a format number; {_FIX}")
        if version > EDITS_FORMAT:
            raise PruningError(
                f"pruned-model edits format {version!r} is newer than this seviz reads ({EDITS_FORMAT}); "
                "upgrade seviz"
            )
        records = saved.get("edits", [])
        if isinstance(saved.get("model"), str) and saved["model"]:
            spec = saved["model"]
    else:
        records = saved
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
        raise PruningError(f"the pruned file's edits are {_shown(records)}, not a list of edits; {_FIX}")
    if len(records) > _MAX_EDITS:
        raise PruningError(
            f"the pruned file lists {len(records):,} edits, more than any model has SE blocks; {_FIX}"
        )
    edits = [AppliedEdit.from_dict(r) for r in records]
    paths = [e.module_path for e in edits]
    twice = next((p for p in paths if paths.count(p) > 1), None)
    if twice is not None:
        raise PruningError(f"the pruned file edits {twice!r} twice; {_FIX}")
    return edits, spec


def replacement_class(replacement: str) -> type:
    from torch import nn

    from seviz.se.stand_ins import ChannelScale, ConstantGate  # imports torch

    return {"identity": nn.Identity, "channel_scale": ChannelScale}.get(replacement, ConstantGate)


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


def save_pruned(
    model: nn.Module,
    edits: Sequence[AppliedEdit],
    out_path: str | os.PathLike,
    base_spec: str,
    *,
    model_name: str | None = None,
    base_weights_sha256: str | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike | None] = (),
) -> Path:
    """Write a pruned model as safetensors, its edits in the ``seviz_edits`` metadata.

    Args:
        model: The edited model (from :func:`prune`).
        edits: The applied edits (``PrunedModel.edits``).
        out_path: Where to write (``.safetensors``).
        base_spec: The ``--model`` spec that builds the unpruned network.
        model_name: What that spec resolved to, for the record.
        base_weights_sha256: The unpruned weights' hash, for the record.
        overwrite: Replace an existing file.
        inputs: Files it may not replace (the base weights, a rec.json, a model file).

    Returns:
        The path written.

    Raises:
        OutputError: ``out_path`` exists and ``overwrite`` is False, or is one of ``inputs``.
        PruningError: A wrong suffix, or a model that does not carry ``edits``.
    """
    from safetensors.torch import save_file

    path = Path(out_path).expanduser()
    if path.suffix != ".safetensors":
        raise PruningError(
            f"pruned models are saved as safetensors; name the file *.safetensors, not {path.name!r}"
        )
    check_output(path, inputs=inputs, overwrite=overwrite, param="out_path", what="pruned model")
    for edit in edits:
        expected = replacement_class(edit.replacement)
        try:
            present = model.get_submodule(edit.module_path)
        except AttributeError:
            present = None
        if not isinstance(present, expected):
            raise PruningError(
                f"the model does not carry the edit of {edit.name}: {edit.module_path!r} is "
                f"{type(present).__name__}, not {expected.__name__}; save the model returned by prune()"
            )
    metadata = {
        "format": EDITS_FORMAT,
        "model": base_spec,
        "model_name": model_name,
        "base_weights_sha256": base_weights_sha256,
        "edits": [e.to_dict() for e in edits],
    }
    # clone() unties shared tensors, which safetensors refuses to write.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_with(
        path, lambda temp: save_file(state, str(temp), metadata={"seviz_edits": json.dumps(metadata)})
    )
    log.info("wrote %s (%d edited SE blocks of %s)", path, len(edits), base_spec)
    return path


def read_saved_edits(path: str | os.PathLike) -> list[AppliedEdit]:
    """The edits recorded in a pruned safetensors file (empty for an unpruned one).

    Raises:
        PruningError: The file cannot be read as safetensors, or its edits are malformed.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(Path(path).expanduser()), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types
        raise PruningError(f"cannot read {str(path)!r} as safetensors: {error}") from None
    if "seviz_edits" not in metadata:
        return []
    return parse_saved_edits(metadata["seviz_edits"])[0]


def apply_saved_edits(
    model: nn.Module,
    saved: str | bytes | Mapping[str, Any] | Sequence[Any],
    input_size: tuple[int, int, int] | None = None,
) -> list[AppliedEdit]:
    """Rebuild a pruned model's structure before its state dict is loaded.

    Replaces each edited SE module with an empty stand-in of the right shape;
    the saved state dict then fills in the fixed scales and the folded
    BatchNorm values. Every edit is checked first (see the module docstring);
    the model is changed only when all of them pass.

    Args:
        model: The unpruned network built from the saved ``model`` spec.
        saved: The ``seviz_edits`` metadata: its JSON text, parsed object, or ``edits`` list.
        input_size: (C, H, W) of the probe pass that finds the model's SE
            gates (default: the model's ``pretrained_cfg``, else 3x224x224).

    Returns:
        The edits applied.

    Raises:
        PruningError: Unknown format, malformed edits, an edited module path
            the model does not have (the file belongs to another model), or a
            module that is not one of its SE blocks.
    """
    import torch
    from torch import nn

    from seviz.se.stand_ins import ChannelScale, ConstantGate

    edits, spec = parse_saved_edits(saved)
    if not edits:
        return []
    for edit in edits:
        try:
            model.get_submodule(edit.module_path)
        except AttributeError:
            raise PruningError(
                f"the pruned weights edit {edit.name} at {edit.module_path!r}, which "
                f"{type(model).__name__} does not have; load them with --model {spec!r}"
            ) from None
    gates = _se_gates(model, input_size, spec)
    for edit in edits:
        _check_against_gate(model, edit, gates.get(edit.module_path), spec)
    for edit in edits:
        current = model.get_submodule(edit.module_path)
        parameter = next(current.parameters(), None)
        device = parameter.device if parameter is not None else None
        if edit.replacement == "identity":
            new: nn.Module = nn.Identity()
        elif edit.replacement == "channel_scale":
            new = ChannelScale(torch.zeros(edit.channels), edit.channel_dim)
        else:  # ones_gate / constant_gate: values come from the state dict
            new = ConstantGate(torch.zeros(edit.channels), edit.gate_shape)
        set_module(model, edit.module_path, new.to(device) if device is not None else new)
    log.debug("rebuilt %d edited SE blocks of %s", len(edits), spec)
    return edits


def _se_gates(model: nn.Module, input_size: tuple[int, int, int] | None, spec: str) -> dict[str, SEGate]:
    """The model's SE gates by module path, found as seviz finds them anywhere else."""
    if input_size is None:
        config = getattr(model, "pretrained_cfg", None) or {}
        size = config.get("input_size") if isinstance(config, Mapping) else None
        input_size = (3, 224, 224)
        if isinstance(size, (list, tuple)) and len(size) == 3:
            input_size = (int(size[0]), int(size[1]), int(size[2]))
    try:
        gates = discover_se_gates(model, input_size)
    except NoSEBlocksError as error:
        raise PruningError(
            f"the pruned weights edit SE blocks, but {type(model).__name__} has none ({error}); "
            f"load them with --model {spec!r}"
        ) from None
    except Exception as error:  # the probe pass of a model that wants another input size
        raise PruningError(
            f"cannot find the SE blocks of {type(model).__name__} to check the pruned weights against: a probe "
            f"pass of input size {input_size} failed ({type(error).__name__}: {str(error)[:200]})"
        ) from None
    return {g.module_path: g for g in gates}


def _check_against_gate(model: nn.Module, edit: AppliedEdit, gate: SEGate | None, spec: str) -> None:
    if gate is None:
        kind = type(model.get_submodule(edit.module_path)).__name__
        raise PruningError(
            f"the pruned weights edit {edit.module_path!r} ({kind}), which is not an SE block of "
            f"{type(model).__name__}; seviz edits only the SE blocks it finds (`seviz blocks --model {spec}` "
            "lists them), so this file was not written by `seviz prune`"
        )
    where = f"the pruned weights' edit of {edit.module_path!r}"
    if edit.name != gate.name:
        raise PruningError(f"{where} calls it {edit.name}, but it is {gate.name} in this model; {_FIX}")
    if edit.channels != gate.channels:
        raise PruningError(
            f"{where} has {edit.channels} channels, but {gate.name} has {gate.channels} in this model; {_FIX}"
        )
    allowed = _FOR_SCALING_BLOCKS if gate.scales_input else _FOR_GATES
    if edit.replacement not in allowed:
        raise PruningError(
            f"{where} replaces it by {edit.replacement!r}, but {gate.name} ({gate.kind}) is replaced by "
            f"{' or '.join(allowed)}; {_FIX}"
        )
    if edit.folded_into is not None:
        from torch import nn

        try:
            norm = model.get_submodule(edit.folded_into)
        except AttributeError:
            norm = None
        if not isinstance(norm, nn.BatchNorm2d) or norm.num_features != gate.channels:
            raise PruningError(
                f"{where} says it was folded into {edit.folded_into!r}, which is not a BatchNorm2d of "
                f"{gate.channels} channels in this model; {_FIX}"
            )


__all__ = [
    "EDITS_FORMAT",
    "REPLACEMENTS",
    "AppliedEdit",
    "apply_saved_edits",
    "parse_saved_edits",
    "read_saved_edits",
    "replacement_class",
    "save_pruned",
    "set_module",
]
